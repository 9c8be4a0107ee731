#!/usr/bin/env python
"""The main job on built-in toy data (README's first command, run through `make demo`).

Runs, in order, every section whose framework is installed, and prints one result line per section:
1. core: every variant builds; ResNeSt-50 features at output stride 8/16/32; a checkpoint round trip.
2. torchvision: Faster R-CNN with a ResNeSt-FPN backbone trained a few steps on the toy COCO data.
3. mmseg: a toy DeepLabV3 trained and evaluated on the toy ADE20K-layout data (prints its mIoU).
4. detectron2 (only when detectron2 is installed): a toy Faster R-CNN trained and evaluated with COCOEvaluator.
Toy data is generated deterministically under data/ on first use.
"""
from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def core_section() -> str:
    import torch

    import resnest_backbones as rb

    torch.manual_seed(0)
    for name in rb.list_variants():
        rb.create_model(name, out_features=["res2"])  # builds the stem and res2 only: fast
    model = rb.create_model("resnest50d", num_classes=1000).eval()
    params = rb.models.count_parameters(model) / 1e6
    x = torch.randn(1, 3, 224, 224)
    lines = [f"{len(rb.list_variants())} variants build; resnest50d: {params:.2f} M parameters"]
    for output_stride in (32, 16, 8):
        backbone = rb.create_model("resnest50d", output_stride=output_stride).eval()
        with torch.no_grad():
            shapes = {k: tuple(v.shape[1:]) for k, v in backbone.forward_features(x).items()}
        lines.append(f"OS{output_stride}: {shapes}")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "resnest50d.pth")
        torch.save(model.state_dict(), path)
        copy = rb.create_model("resnest50d", pretrained=path, num_classes=1000).eval()
        with torch.no_grad():
            same = torch.equal(copy(x), model(x))
    lines.append(f"checkpoint round trip: {'identical logits' if same else 'MISMATCH'}")
    if not same:
        raise SystemExit("checkpoint round trip changed the logits")
    return "\n    ".join(lines)


# (title, framework module that must be importable or None, command) -- each command prints its own result.
SECTIONS = [
    ("torchvision Faster R-CNN on toy COCO", None,
     [sys.executable, "tools/torchvision_train.py", "--iters", "20"]),
    ("mmseg DeepLabV3 on toy ADE20K", "mmseg.models",
     [sys.executable, "tools/mmseg_train.py", "configs/mmseg/toy/deeplabv3_resnest14d-d8_toy-ade.py",
      "--work-dir", "work_dirs/demo_mmseg"]),
    ("detectron2 Faster R-CNN on toy COCO", "detectron2.modeling",
     [sys.executable, "tools/train_net.py", "--config-file", "configs/detectron2/toy/faster_rcnn_toy.yaml",
      "OUTPUT_DIR", "work_dirs/demo_d2"]),
]


def _imports(module: str) -> bool:
    try:
        importlib.import_module(module)
    except Exception:  # noqa: BLE001 - a broken install is as good as none for the demo
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["core", "torchvision", "mmseg", "detectron2"], help="run one section")
    args = parser.parse_args()
    failures = []
    start = time.time()
    if args.only in (None, "core"):
        print("[demo] core ...", flush=True)
        print("[demo] core:\n    " + core_section(), flush=True)
    for title, framework, command in SECTIONS:
        key = title.split()[0]
        if args.only not in (None, key):
            continue
        if framework and not _imports(framework):
            print(f"[demo] {title}: skipped ({framework} is not installed or does not import)", flush=True)
            continue
        print(f"[demo] {title}: {' '.join(command[1:])}", flush=True)
        t0 = time.time()
        if subprocess.call(command, cwd=ROOT) != 0:
            failures.append(title)
        print(f"[demo] {title}: {'FAILED' if title in failures else 'done'} in {time.time() - t0:.0f} s", flush=True)
    print(f"[demo] finished in {time.time() - start:.0f} s" + (f"; failed: {failures}" if failures else ""))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
