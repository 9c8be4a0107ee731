"""torchvision's toy training: Faster R-CNN ResNeSt-14 FPN on the toy COCO data (``tools/torchvision_train.py``),
its accuracy target and its demo section (see :mod:`resnest_backbones.toy_training`; imports no framework).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List

from ..demo_pictures import BOXES, detections
from ..toy_training import ToyTraining, last_float

DEMO_STEPS = 200  # the demo's schedule (fewer leave every score near 0)


def command(seed: int, threads: int, tmp: Path) -> List[str]:
    """The slow test's training (the default schedule), with ``seed`` and ``threads``, on a copy of the data in
    ``tmp``."""
    return [sys.executable, "tools/torchvision_train.py", "--seed", str(seed), "--threads", str(threads),
            "--data-root", str(tmp / "data")]


def picture(root: Path) -> Path:
    """The demo's trained model's detections on the first toy COCO val images."""
    from .predict import torchvision_predictor

    predictor = torchvision_predictor(root / "work_dirs" / "demo_torchvision" / "model.pth")
    return detections(predictor, root, "toy_coco_torchvision", "torchvision_faster_rcnn.png",
                      f"torchvision: {BOXES}")


TOY = ToyTraining(
    threshold=50.0, metric="toy COCO box AP50 (%), torchvision Faster R-CNN",
    test="tests/frameworks/torchvision/test_torchvision.py::test_toy_faster_rcnn_reaches_ap50",
    command=command, parse=last_float(r"AP50 ([0-9.]+)", scale=100),  # the script prints fractions
    model="Faster R-CNN ResNeSt-14 FPN",
    demo=(sys.executable, "tools/torchvision_train.py", "--iters", str(DEMO_STEPS),
          "--output", "work_dirs/demo_torchvision/model.pth"),
    picture=picture)
