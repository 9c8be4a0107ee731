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
import contextlib
import io
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.models.detection import FasterRCNN

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from resnest_backbones.toy_data import make_toy_coco  # noqa: E402
from resnest_backbones.toy_detection import toy_faster_rcnn  # noqa: E402

Target = Dict[str, Tensor]


class CocoBoxes(torch.utils.data.Dataset):
    """Images and box targets of a COCO "instances" JSON file (json + Pillow; no pycocotools)."""

    def __init__(self, image_dir: Path, json_path: Path) -> None:
        data = json.loads(json_path.read_text())
        self.image_dir = image_dir
        self.images: List[Dict[str, Any]] = data["images"]
        self.annotations: Dict[int, List[Dict[str, Any]]] = {image["id"]: [] for image in self.images}
        for ann in data["annotations"]:
            self.annotations[ann["image_id"]].append(ann)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Tuple[Tensor, Target]:
        info = self.images[index]
        pixels = np.asarray(Image.open(self.image_dir / info["file_name"]).convert("RGB"), dtype=np.float32)
        image = torch.from_numpy(pixels / 255.0).permute(2, 0, 1)  # detection models normalise internally
        anns = self.annotations[info["id"]]
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)],
                             dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor([a["category_id"] for a in anns], dtype=torch.int64)
        return image, {"boxes": boxes, "labels": labels, "image_id": torch.tensor(info["id"])}


def build_model(args: argparse.Namespace, num_classes: int) -> FasterRCNN:
    """Faster R-CNN with a ResNeSt-FPN backbone sized for the small toy images (see ``toy_faster_rcnn``)."""
    return toy_faster_rcnn(args.variant, num_classes, args.image_size, weights=args.weights)


def evaluate(model: FasterRCNN, dataset: CocoBoxes, json_path: Path, device: torch.device,
             batch_size: int) -> str:
    """Run the model on ``dataset``; returns a one-line summary (with COCO AP when pycocotools is present)."""
    model.eval()
    results: List[Dict[str, Any]] = []
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            batch = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            outputs = model([image.to(device) for image, _ in batch])
            for (_, target), output in zip(batch, outputs):
                for box, score, label in zip(output["boxes"].tolist(), output["scores"].tolist(),
                                             output["labels"].tolist()):
                    results.append({"image_id": int(target["image_id"]), "category_id": int(label),
                                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "score": score})
    confident = sum(r["score"] >= 0.5 for r in results)
    gt = sum(len(a) for a in dataset.annotations.values())
    line = f"{len(dataset)} val images, {gt} objects: {len(results)} detections ({confident} with score >= 0.5)"
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        return line + "; install pycocotools for COCO AP"
    if not results:
        return line + "; bbox AP 0.000, AP50 0.000"
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its whole table
        truth = COCO(str(json_path))
        evaluator = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return line + f"; bbox AP {evaluator.stats[0]:.3f}, AP50 {evaluator.stats[1]:.3f}"


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

    threads = args.threads
    if threads == 0 and hasattr(os, "getloadavg") and os.getloadavg()[0] >= (os.cpu_count() or 1):
        # Measured on a shared 2-core machine: with other jobs running, 2 threads took 7x longer than 1
        # (every parallel region waits for its slowest, starved thread).
        threads = 1
        print("the machine is busy (load average >= cores): using 1 CPU thread (--threads N to override)")
    if threads > 0:
        torch.set_num_threads(threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    paths = make_toy_coco(args.data_root, num_train=args.num_train, num_val=args.num_val,
                          image_size=args.image_size, seed=args.data_seed)
    train = CocoBoxes(paths["train_images"], paths["train_json"])
    val = CocoBoxes(paths["val_images"], paths["val_json"])
    model = build_model(args, num_classes=len(paths["categories"]) + 1).to(device)  # + background
    params = [p for p in model.parameters() if p.requires_grad]
    print(f"Faster R-CNN, {args.variant}-FPN backbone: {sum(p.numel() for p in params) / 1e6:.1f} M trainable "
          f"parameters; {len(train)} train images ({paths['root']}); {args.iters} steps of {args.batch_size} "
          f"on {device}", flush=True)
    optimizer = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=1e-4)
    warmup = min(50, max(1, args.iters // 4))
    schedule = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then cosine decay
        optimizer, lambda i: (i + 1) / warmup if i < warmup
        else 0.5 * (1 + math.cos(math.pi * (i - warmup) / max(1, args.iters - warmup))))
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed))
    position, start, history = 0, time.time(), []
    model.train()
    for step in range(1, args.iters + 1):
        indices = [int(order[(position + k) % len(train)]) for k in range(args.batch_size)]
        position += args.batch_size
        batch = [train[i] for i in indices]
        images = [image.to(device) for image, _ in batch]
        targets = [{k: v.to(device) for k, v in target.items()} for _, target in batch]
        losses = model(images, targets)
        loss = sum(losses.values())
        history.append(loss.item())
        if not torch.isfinite(loss):
            raise SystemExit(f"step {step}: loss is {loss.item()}; lower --lr")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step == 1 or step % max(1, args.iters // 20) == 0 or step == args.iters:
            parts = ", ".join(f"{k.replace('loss_', '')} {v.item():.3f}" for k, v in losses.items())
            print(f"step {step:4d}/{args.iters}  loss {loss.item():.3f} ({parts})  "
                  f"lr {optimizer.param_groups[0]['lr']:.4f}  {time.time() - start:.0f} s", flush=True)
    tail = history[-max(1, len(history) // 5):]
    print(f"train: loss {history[0]:.3f} at step 1, {sum(tail) / len(tail):.3f} on average over the last "
          f"{len(tail)} steps ({time.time() - start:.0f} s)", flush=True)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), args.output)
        print(f"model saved to {args.output}")
    print("val: " + evaluate(model, val, paths["val_json"], device, args.batch_size), flush=True)
    if args.iters < 100:
        print(f"note: {args.iters} steps only show the losses falling; train ~200 steps (the default) for useful "
              f"detections", flush=True)


if __name__ == "__main__":
    main()
