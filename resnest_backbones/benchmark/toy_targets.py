"""The toy accuracy targets: each toy training that a slow test holds to a threshold, the command it runs, and how
its metric is read from the command's output. ``tools/toy_margins.py`` sweeps them over seeds and threads;
``tools/demo.py`` reports its sections against them. Each framework of the table
(:data:`resnest_backbones.frameworks.FRAMEWORKS`) names its target; the target's framework is told from there.
"""
from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

from ..frameworks import FRAMEWORKS

__all__ = ["TARGETS", "Target", "available"]

PY = sys.executable


@dataclass(frozen=True)
class Target:
    """One toy training held to an accuracy threshold by a slow test."""

    name: str  # a framework's ``toy_target`` in the table
    threshold: float  # the test's assertion (same unit as the metric)
    metric: str
    test: str  # the slow test that asserts it
    command: Callable[[int, int, Path], List[str]]  # (seed, threads, scratch dir) -> argv
    parse: Callable[[str], float]

    @property
    def framework(self) -> Optional[str]:
        """The module that must import for it to run (its framework's probe), or None."""
        return next(row.probe for row in FRAMEWORKS.values() if row.toy_target == self.name)


def _last_float(pattern: str, scale: float = 1.0) -> Callable[[str], float]:
    """The last number ``pattern`` captures in a command's output, times ``scale``."""
    regex = re.compile(pattern)

    def parse(output: str) -> float:
        found = regex.findall(output)
        if not found:
            raise ValueError(f"no match for {pattern!r} in the output")
        return float(found[-1]) * scale

    return parse


# Every run makes its own copy of the toy data in its scratch directory (the same files: the data's seed is fixed):
# runs at once must not share a data directory, since a tool that finds other parameters there replaces it.
def _mmseg(seed: int, threads: int, tmp: Path) -> List[str]:
    data = [f"{loader}.dataset.data_root={tmp / 'data'}" for loader in ("train_dataloader", "val_dataloader",
                                                                         "test_dataloader")]
    return [PY, "tools/mmseg_train.py", "configs/mmseg/toy/deeplabv3_resnest14d-d8_toy-ade.py",
            "--work-dir", str(tmp / "work"), "--cfg-options", f"randomness.seed={seed}", *data]


def _detectron2(seed: int, threads: int, tmp: Path) -> List[str]:
    return ["env", f"RESNEST_TOY_COCO={tmp / 'data'}", PY, "tools/train_net.py", "--config-file",
            "configs/detectron2/toy/faster_rcnn_toy.yaml", "OUTPUT_DIR", str(tmp / "out"), "SEED", str(seed)]


def _torchvision(seed: int, threads: int, tmp: Path) -> List[str]:
    return [PY, "tools/torchvision_train.py", "--seed", str(seed), "--threads", str(threads),
            "--data-root", str(tmp / "data")]


def _mmdet(seed: int, threads: int, tmp: Path) -> List[str]:
    data = tmp / "data"
    return [PY, "tools/mmdet_train.py", "configs/mmdet/toy/faster-rcnn_resnest14d_fpn_toy-coco.py",
            "--work-dir", str(tmp / "work"), "--cfg-options", f"randomness.seed={seed}",
            *(f"{loader}.dataset.data_root={data}" for loader in ("train_dataloader", "val_dataloader",
                                                                  "test_dataloader")),
            *(f"{evaluator}.ann_file={data}/annotations/instances_val.json" for evaluator in ("val_evaluator",
                                                                                           "test_evaluator"))]


TARGETS: Dict[str, Target] = {target.name: target for target in (
    Target("mmseg", 60.0, "toy ADE20K mIoU (%)",
           "tests/frameworks/mmseg/test_mmseg_tools.py::test_toy_ade_reaches_miou_target", _mmseg,
           _last_float(r"\] mIoU = ([0-9.]+) %")),
    Target("detectron2", 50.0, "toy COCO box AP50 (%), detectron2 Faster R-CNN",
           "tests/frameworks/detectron2/test_detectron2_tools.py::test_toy_faster_rcnn_reaches_ap50", _detectron2,
           _last_float(r"copypaste: (?:[0-9.]+|nan),([0-9.]+|nan),")),
    Target("torchvision", 50.0, "toy COCO box AP50 (%), torchvision Faster R-CNN",
           "tests/frameworks/torchvision/test_torchvision.py::test_toy_faster_rcnn_reaches_ap50", _torchvision,
           _last_float(r"AP50 ([0-9.]+)", scale=100)),  # the script prints fractions
    Target("mmdet", 50.0, "toy COCO box AP50 (%), mmdet Faster R-CNN",
           "tests/frameworks/mmdet/test_mmdet_tools.py::test_toy_faster_rcnn_reaches_ap50_target", _mmdet,
           _last_float(r"\] box AP50 = ([0-9.]+) %")),
)}


def available(module: Optional[str]) -> bool:
    """Whether the framework module a target needs (None: none) is installed."""
    return module is None or importlib.util.find_spec(module.split(".")[0]) is not None
