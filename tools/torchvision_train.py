#!/usr/bin/env python
"""Train torchvision's Faster R-CNN with a ResNeSt-FPN backbone on the toy COCO data or your own, then evaluate it.

ResNeSt (Zhang et al., 2020, "ResNeSt: Split-Attention Networks") through ``resnest_backbones.torchvision``,
in a plain PyTorch loop: the toy data is generated on first use (``data/toy_coco_torchvision``), or your COCO files
are read (``--train-data``/``--val-data``: instances file and image folder; any category ids, image sizes, grayscale
or RGBA); the model trains for ``--iters`` steps on the CPU (or a GPU when there is one), printing its losses, and
is evaluated on the val split (detections, and COCO box AP / AP50 and AP per class when pycocotools is installed).
``--output`` saves a model file that rebuilds itself (variant, image size, class names, weights);
``--init-from`` starts from such a file, fine-tuning when its class count differs (its class layers start fresh).

Examples:
    python tools/torchvision_train.py --iters 20     # the README demo: losses fall, too few steps for AP
    python tools/torchvision_train.py                # 200 steps from scratch: box AP50 ~0.96 on the toy val set
    python tools/torchvision_train.py --variant resnest50d --weights resnest50-528c19ca.pth
    python tools/torchvision_train.py --train-data my/train.json my/images --val-data my/val.json my/images \\
        --init-from toy_model.pth --output my_model.pth                 # your data (docs/own_data.md)
"""
from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from resnest_backbones.models.checkpoint import CheckpointError  # noqa: E402
from resnest_backbones.own_data import COCO_FILES, add_data_arguments  # noqa: E402
from resnest_backbones.torchvision import CocoBoxes, toy_faster_rcnn  # noqa: E402
from resnest_backbones.torchvision.engine import cpu_threads, evaluate, train  # noqa: E402
from resnest_backbones.torchvision.model_file import fine_tune_from, save_model_file  # noqa: E402
from resnest_backbones.toy_data import make_toy_coco  # noqa: E402


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=200, help="training steps (default: %(default)s)")
    parser.add_argument("--variant", default=None,
                        help="ResNeSt variant (default: --init-from's, else resnest14d)")
    parser.add_argument("--weights", default=None, help="ImageNet checkpoint of the variant (default: none)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per step (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=0.02, help="SGD learning rate (default: %(default)s)")
    # Not detectron2's data/toy_coco: that set has other sizes, and a run making one would replace the other's files
    # under a concurrent run of the other tool.
    parser.add_argument("--data-root", default="data/toy_coco_torchvision",
                        help="toy COCO directory (default: %(default)s)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="the side images are resized to (default: --init-from's, else 128, the toy images')")
    add_data_arguments(parser, COCO_FILES)
    parser.add_argument("--init-from", metavar="MODEL.pth",
                        help="start from a model file this tool saved (--output): fine-tuning when its class count "
                             "differs (its class layers start fresh); the backbone must fit")
    parser.add_argument("--num-train", type=int, default=128, help="toy training images (default: %(default)s)")
    parser.add_argument("--num-val", type=int, default=32, help="toy val images (default: %(default)s)")
    parser.add_argument("--output", default=None,
                        help="save the trained model here (weights with its variant, image size and class names)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default: %(default)s)")
    parser.add_argument("--data-seed", type=int, default=0, help="toy data seed (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads; 0 (default): torch's default, or 1 when the machine is already busy")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.iters < 1 or args.batch_size < 1:
        parser.error("--iters and --batch-size must be positive")

    if bool(args.train_data) != bool(args.val_data):
        parser.error("--train-data and --val-data go together (the toy data has both splits)")

    cpu_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if args.train_data:
        train_set, val = CocoBoxes(args.train_data[1], args.train_data[0]), CocoBoxes(args.val_data[1],
                                                                                        args.val_data[0])
        if train_set.classes != val.classes:
            parser.error(f"--train-data and --val-data name other classes ({train_set.classes} vs {val.classes})")
        where = args.train_data[0]
    else:
        paths = make_toy_coco(args.data_root, num_train=args.num_train, num_val=args.num_val,
                              image_size=args.image_size or 128, seed=args.data_seed)
        train_set, val = CocoBoxes(paths["train_images"], paths["train_json"]), CocoBoxes(paths["val_images"],
                                                                                          paths["val_json"])
        where = paths["root"]
    try:
        start = fine_tune_from(args.init_from, args.variant, args.image_size, train_set.classes, log=print) \
            if args.init_from else None
        variant = args.variant or (start.variant if start else "resnest14d")
        image_size = args.image_size or (start.image_size if start else 128)
        model = toy_faster_rcnn(variant, len(train_set.classes) + 1, image_size,  # + background
                                weights=args.weights)
        if start:
            start.load_into(model)
    except CheckpointError as error:
        raise SystemExit(f"error: {error}") from None
    model.to(device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"Faster R-CNN, {variant}-FPN backbone: {trainable / 1e6:.1f} M trainable parameters; "
          f"{len(train_set)} train images ({where}), classes {train_set.classes}; {args.iters} steps of "
          f"{args.batch_size} on {device}", flush=True)
    train(model, train_set, iters=args.iters, batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=device,
          log=functools.partial(print, flush=True))
    if args.output:
        save_model_file(args.output, model, variant=variant, image_size=image_size, classes=train_set.classes)
        print(f"model saved to {args.output} (variant {variant}, image size {image_size}, classes "
              f"{train_set.classes})")
    print("val: " + evaluate(model, val, device, args.batch_size), flush=True)
    if args.iters < 100:
        print(f"note: {args.iters} steps only show the losses falling; train ~200 steps (the default) for useful "
              f"detections", flush=True)


if __name__ == "__main__":
    main()
