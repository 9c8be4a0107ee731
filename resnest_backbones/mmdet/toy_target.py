"""mmdet's toy training: Faster R-CNN ResNeSt-14 FPN on the toy COCO data (``tools/mmdet_train.py``), its accuracy
target and its demo section (see :mod:`resnest_backbones.toy_training`; imports no framework).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List

from ..demo_pictures import BOXES, detections, last_checkpoint
from ..toy_training import ToyTraining, last_float

CONFIG = "configs/mmdet/toy/faster-rcnn_resnest14d_fpn_toy-coco.py"
LOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")


def command(seed: int, threads: int, tmp: Path) -> List[str]:
    """The slow test's training with ``seed``, on a copy of the data in ``tmp``."""
    data = tmp / "data"
    return [sys.executable, "tools/mmdet_train.py", CONFIG, "--work-dir", str(tmp / "work"), "--cfg-options",
            f"randomness.seed={seed}", *(f"{loader}.dataset.data_root={data}" for loader in LOADERS),
            *(f"{evaluator}.ann_file={data}/annotations/instances_val.json" for evaluator in ("val_evaluator",
                                                                                           "test_evaluator"))]


def picture(root: Path) -> Path:
    """The demo's trained model's detections on the first toy COCO val images."""
    from .predict import MMDetPredictor

    predictor = MMDetPredictor(root / CONFIG, last_checkpoint(root, "work_dirs/demo_mmdet"))
    return detections(predictor, root, "toy_coco", "mmdet_faster_rcnn.png", f"mmdet: {BOXES}")


TOY = ToyTraining(
    threshold=50.0, metric="toy COCO box AP50 (%), mmdet Faster R-CNN",
    test="tests/frameworks/mmdet/test_mmdet_tools.py::test_toy_faster_rcnn_reaches_ap50_target",
    command=command, parse=last_float(r"\] box AP50 = ([0-9.]+) %"), model="Faster R-CNN ResNeSt-14 FPN",
    demo=(sys.executable, "tools/mmdet_train.py", CONFIG, "--work-dir", "work_dirs/demo_mmdet"),
    picture=picture)
