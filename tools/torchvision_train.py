#!/usr/bin/env python
"""Train torchvision's Faster R-CNN with a ResNeSt-FPN backbone on the toy COCO data, then evaluate it.

ResNeSt (Zhang et al., 2020, "ResNeSt: Split-Attention Networks") through ``resnest_backbones.torchvision``,
in a plain PyTorch loop: the toy data is generated on first use (``data/toy_coco_torchvision``), the model trains for
``--iters`` steps on the CPU (or a GPU when there is one), printing its losses, and is evaluated on the val
split (detections, and COCO box AP / AP50 when pycocotools is installed).

Examples:
    python tools/torchvision_train.py --iters 20     # the README demo: losses fall, too few steps for AP
    python tools/torchvision_train.py                # 200 steps from scratch: box AP50 ~0.96 on the toy val set
    python tools/torchvision_train.py --variant resnest50d --weights resnest50-528c19ca.pth
"""
from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from resnest_backbones.torchvision import CocoBoxes, toy_faster_rcnn  # noqa: E402
from resnest_backbones.torchvision.engine import cpu_threads, evaluate, train  # noqa: E402
from resnest_backbones.toy_data import make_toy_coco  # noqa: E402


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=200, help="training steps (default: %(default)s)")
    parser.add_argument("--variant", default="resnest14d", help="ResNeSt variant (default: %(default)s)")
    parser.add_argument("--weights", default=None, help="ImageNet checkpoint of the variant (default: none)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per step (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=0.02, help="SGD learning rate (default: %(default)s)")
    # Not detectron2's data/toy_coco: that set has other sizes, and a run making one would replace the other's files
    # under a concurrent run of the other tool.
    parser.add_argument("--data-root", default="data/toy_coco_torchvision",
                        help="toy COCO directory (default: %(default)s)")
    parser.add_argument("--image-size", type=int, default=128, help="toy image side (default: %(default)s)")
    parser.add_argument("--num-train", type=int, default=128, help="toy training images (default: %(default)s)")
    parser.add_argument("--num-val", type=int, default=32, help="toy val images (default: %(default)s)")
    parser.add_argument("--output", default=None, help="save the trained model's state dict here")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default: %(default)s)")
    parser.add_argument("--data-seed", type=int, default=0, help="toy data seed (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads; 0 (default): torch's default, or 1 when the machine is already busy")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.iters < 1 or args.batch_size < 1:
        parser.error("--iters and --batch-size must be positive")

    cpu_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    paths = make_toy_coco(args.data_root, num_train=args.num_train, num_val=args.num_val,
                          image_size=args.image_size, seed=args.data_seed)
    train_set = CocoBoxes(paths["train_images"], paths["train_json"])
    model = toy_faster_rcnn(args.variant, len(paths["categories"]) + 1, args.image_size,  # + background
                            weights=args.weights).to(device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"Faster R-CNN, {args.variant}-FPN backbone: {trainable / 1e6:.1f} M trainable parameters; "
          f"{len(train_set)} train images ({paths['root']}); {args.iters} steps of {args.batch_size} on {device}",
          flush=True)
    train(model, train_set, iters=args.iters, batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=device,
          log=functools.partial(print, flush=True))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), args.output)
        print(f"model saved to {args.output}")
    val = CocoBoxes(paths["val_images"], paths["val_json"])
    print("val: " + evaluate(model, val, device, args.batch_size), flush=True)
    if args.iters < 100:
        print(f"note: {args.iters} steps only show the losses falling; train ~200 steps (the default) for useful "
              f"detections", flush=True)


if __name__ == "__main__":
    main()
