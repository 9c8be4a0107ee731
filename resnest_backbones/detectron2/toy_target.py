"""detectron2's toy training: Faster R-CNN ResNeSt-14 FPN on the toy COCO data (``tools/train_net.py``), its
accuracy target and its demo section (see :mod:`resnest_backbones.toy_training`; imports no framework).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List

from ..demo_pictures import BOXES, detections
from ..toy_training import ToyTraining, last_float

CONFIG = "configs/detectron2/toy/faster_rcnn_toy.yaml"


def command(seed: int, threads: int, tmp: Path) -> List[str]:
    """The slow test's training with ``seed``, on a copy of the data in ``tmp``."""
    return ["env", f"RESNEST_TOY_COCO={tmp / 'data'}", sys.executable, "tools/train_net.py", "--config-file",
            CONFIG, "OUTPUT_DIR", str(tmp / "out"), "SEED", str(seed)]


def picture(root: Path) -> Path:
    """The demo's trained model's detections on the first toy COCO val images."""
    from .predict import detectron2_predictor

    predictor = detectron2_predictor(root / CONFIG, root / "work_dirs" / "demo_d2" / "model_final.pth")
    return detections(predictor, root, "toy_coco", "detectron2_faster_rcnn.png", f"detectron2: {BOXES}")


TOY = ToyTraining(
    threshold=50.0, metric="toy COCO box AP50 (%), detectron2 Faster R-CNN",
    test="tests/frameworks/detectron2/test_detectron2_tools.py::test_toy_faster_rcnn_reaches_ap50",
    command=command, parse=last_float(r"copypaste: (?:[0-9.]+|nan),([0-9.]+|nan),"),
    model="Faster R-CNN ResNeSt-14 FPN",
    demo=(sys.executable, "tools/train_net.py", "--config-file", CONFIG, "OUTPUT_DIR", "work_dirs/demo_d2"),
    picture=picture)
