#!/usr/bin/env python
"""The main job on built-in toy data (README's first command, run through `make demo`).

Runs, in order, every section whose framework is installed, and prints one result line per section:
1. core: every variant builds; ResNeSt-50 features at output stride 8/16/32; a checkpoint round trip.
2. torchvision: Faster R-CNN with a ResNeSt-FPN backbone trained a few steps on the toy COCO data.
3. mmseg: a toy DeepLabV3 trained and evaluated on the toy ADE20K-layout data (prints its mIoU).
4. detectron2 (only when detectron2 is installed): a toy Faster R-CNN trained and evaluated with COCOEvaluator.
5. mmdet (only when mmdet is installed): a toy Faster R-CNN trained and evaluated with mmdet's COCO metric.
Toy data is generated deterministically under data/ on first use. Each trained model is then run on a few toy
val images (resnest_backbones.predict, as tools/predict.py does) and drawn into one PNG per section under
work_dirs/demo_pictures/ (boxes on the detection images; segmentation next to the ground truth), whose paths are
printed.
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
from typing import Callable, List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
PICTURES = ROOT / "work_dirs" / "demo_pictures"
SHOWN = 4  # val images per picture


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


def _save(rows: List[List[np.ndarray]], name: str) -> Path:
    """Tile drawn images (rows of equal-height images, 4 px gaps) into ``PICTURES/name``."""
    from PIL import Image

    if not rows or not all(rows):
        raise FileNotFoundError("no toy val images to draw on (data/ was not made?)")
    gap = 4
    lines = [np.concatenate([np.pad(im, ((0, 0), (0, gap), (0, 0)), constant_values=255) for im in row], axis=1)
             for row in rows]
    width = max(line.shape[1] for line in lines)
    lines = [np.pad(line, ((0, gap), (0, width - line.shape[1]), (0, 0)), constant_values=255) for line in lines]
    PICTURES.mkdir(parents=True, exist_ok=True)
    path = PICTURES / name
    Image.fromarray(np.concatenate(lines, axis=0)).save(path)
    return path


def _detections(predictor: Callable[[np.ndarray], np.ndarray], data: str, name: str) -> Path:
    """The first images of the toy COCO set ``data/<data>`` with ``predictor``'s boxes drawn, in a row."""
    from resnest_backbones.predict import read_image

    images = sorted((ROOT / "data" / data / "val").glob("*.png"))[:SHOWN]
    return _save([[predictor(read_image(path)) for path in images]], name)


def torchvision_picture() -> Path:
    from resnest_backbones.predict import torchvision_predictor

    # 20 steps leave every score far below predict.py's 0.5: the picture shows the 3 best boxes, whatever their score
    return _detections(torchvision_predictor(ROOT / "work_dirs" / "demo_torchvision" / "model.pth",
                                             score_threshold=0.0, max_detections=3), "toy_coco_torchvision",
                       "torchvision_faster_rcnn.png")


def mmseg_picture() -> Path:
    """Ground truth | prediction for the first toy ADE20K val images, one row each."""
    from PIL import Image

    from resnest_backbones.mmseg.predict import MMSegPredictor
    from resnest_backbones.predict import read_image

    work = ROOT / "work_dirs" / "demo_mmseg"
    checkpoint = ROOT / (work / "last_checkpoint").read_text().strip()  # relative to the run's directory
    predictor = MMSegPredictor(ROOT / MMSEG_CONFIG, checkpoint, with_labels=False)
    rows = []
    for path in sorted((ROOT / "data" / "toy_ade" / "images" / "validation").glob("*.jpg"))[:SHOWN]:
        labels = np.asarray(Image.open(path.parents[2] / "annotations" / "validation" / f"{path.stem}.png"))
        truth = np.where(labels == 0, 255, labels.astype(np.int64) - 1)  # the config's reduce_zero_label
        rows.append([predictor(read_image(path), ground_truth=truth)])
    return _save(rows, "mmseg_deeplabv3.png")


def mmdet_picture() -> Path:
    from resnest_backbones.mmdet.predict import MMDetPredictor

    work = ROOT / "work_dirs" / "demo_mmdet"
    checkpoint = ROOT / (work / "last_checkpoint").read_text().strip()  # relative to the run's directory
    return _detections(MMDetPredictor(ROOT / MMDET_CONFIG, checkpoint), "toy_coco", "mmdet_faster_rcnn.png")


def detectron2_picture() -> Path:
    from resnest_backbones.detectron2.predict import detectron2_predictor

    predictor = detectron2_predictor(ROOT / DETECTRON2_CONFIG, ROOT / "work_dirs" / "demo_d2" / "model_final.pth")
    return _detections(predictor, "toy_coco", "detectron2_faster_rcnn.png")


MMSEG_CONFIG = "configs/mmseg/toy/deeplabv3_resnest14d-d8_toy-ade.py"
DETECTRON2_CONFIG = "configs/detectron2/toy/faster_rcnn_toy.yaml"
MMDET_CONFIG = "configs/mmdet/toy/faster-rcnn_resnest14d_fpn_toy-coco.py"

# (title, framework module that must be importable or None, command, picture) -- each command prints its own
# result; picture() draws the trained model's predictions and returns the PNG's path.
SECTIONS = [
    ("torchvision Faster R-CNN on toy COCO", None,
     [sys.executable, "tools/torchvision_train.py", "--iters", "20",
      "--output", "work_dirs/demo_torchvision/model.pth"],
     torchvision_picture),
    ("mmseg DeepLabV3 on toy ADE20K", "mmseg.models",
     [sys.executable, "tools/mmseg_train.py", MMSEG_CONFIG, "--work-dir", "work_dirs/demo_mmseg"], mmseg_picture),
    ("detectron2 Faster R-CNN on toy COCO", "detectron2.modeling",
     [sys.executable, "tools/train_net.py", "--config-file", DETECTRON2_CONFIG, "OUTPUT_DIR", "work_dirs/demo_d2"],
     detectron2_picture),
    ("mmdet Faster R-CNN on toy COCO", "mmdet.models",
     [sys.executable, "tools/mmdet_train.py", MMDET_CONFIG, "--work-dir", "work_dirs/demo_mmdet"], mmdet_picture),
]


def _imports(module: str) -> bool:
    try:
        importlib.import_module(module)
    except Exception:  # noqa: BLE001 - a broken install is as good as none for the demo
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["core", *(title.split()[0] for title, *_ in SECTIONS)],
                        help="run one section")
    args = parser.parse_args()
    failures = []
    start = time.time()
    if args.only in (None, "core"):
        print("[demo] core ...", flush=True)
        print("[demo] core:\n    " + core_section(), flush=True)
    pictures: List[Path] = []
    for title, framework, command, picture in SECTIONS:
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
        else:
            try:
                pictures.append(picture())
                print(f"[demo] {title}: predictions drawn in {pictures[-1]}", flush=True)
            except Exception as error:  # noqa: BLE001 - report it with the section, go on with the others
                print(f"[demo] {title}: drawing the predictions failed: {error!r}", flush=True)
                failures.append(title)
        print(f"[demo] {title}: {'FAILED' if title in failures else 'done'} in {time.time() - t0:.0f} s", flush=True)
    if pictures:
        print("[demo] pictures:\n    " + "\n    ".join(str(p.relative_to(ROOT)) for p in pictures))
    print(f"[demo] finished in {time.time() - start:.0f} s" + (f"; failed: {failures}" if failures else ""))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
