"""mmseg's toy training: DeepLabV3 ResNeSt-14 on the toy ADE20K data (``tools/mmseg_train.py``), its accuracy
target and its demo section (see :mod:`resnest_backbones.toy_training`; imports no framework).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List

import numpy as np

from ..demo_pictures import SHOWN, last_checkpoint, save
from ..toy_training import ToyTraining, last_float

CONFIG = "configs/mmseg/toy/deeplabv3_resnest14d-d8_toy-ade.py"
LOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")


def command(seed: int, threads: int, tmp: Path) -> List[str]:
    """The slow test's training with ``seed``, on a copy of the data in ``tmp``."""
    data = [f"{loader}.dataset.data_root={tmp / 'data'}" for loader in LOADERS]
    return [sys.executable, "tools/mmseg_train.py", CONFIG, "--work-dir", str(tmp / "work"), "--cfg-options",
            f"randomness.seed={seed}", *data]


def picture(root: Path) -> Path:
    """Ground truth | prediction for the first toy ADE20K val images, one row each, regions named."""
    from PIL import Image

    from ..predict import read_image
    from .predict import MMSegPredictor

    predictor = MMSegPredictor(root / CONFIG, last_checkpoint(root, "work_dirs/demo_mmseg"))
    rows = []
    for path in sorted((root / "data" / "toy_ade" / "images" / "validation").glob("*.jpg"))[:SHOWN]:
        labels = np.asarray(Image.open(path.parents[2] / "annotations" / "validation" / f"{path.stem}.png"))
        truth = np.where(labels == 0, 255, labels.astype(np.int64) - 1)  # ADE20K: 0 is "other", ignored
        rows.append([predictor(read_image(path), ground_truth=truth)])
    return save(rows, root, "mmseg_deeplabv3.png", "mmseg: truth | prediction")


TOY = ToyTraining(
    threshold=60.0, metric="toy ADE20K mIoU (%)",
    test="tests/frameworks/mmseg/test_mmseg_tools.py::test_toy_ade_reaches_miou_target",
    command=command, parse=last_float(r"\] mIoU = ([0-9.]+) %"), model="DeepLabV3 ResNeSt-14 (toy ADE20K)",
    demo=(sys.executable, "tools/mmseg_train.py", CONFIG, "--work-dir", "work_dirs/demo_mmseg"),
    picture=picture)
