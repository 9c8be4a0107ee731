"""What ``tools/mmseg_train.py`` and ``tools/mmseg_test.py`` add to the OpenMMLab tool mains
(:mod:`resnest_backbones.openmmlab.cli`: config and command line, the CPU/torchrun runner, safe and strict loading
of whole-model checkpoints): segmentation's metric lines and the converter of released segmentors.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from . import own_data
from .convert import convert_if_released

__all__ = ["SEGMENTATION_TOOL", "print_segmentation_metrics"]


def _number(value: Any) -> str:
    try:
        return f"{float(value):.2f}"
    except (TypeError, ValueError):
        return str(value)


def print_segmentation_metrics(tool: str, metrics: Optional[Dict[str, float]]) -> None:
    """One line with every metric, then the mIoU (mmseg's ``IoUMetric`` reports percentages)."""
    if not metrics:
        print(f"[{tool}] no metrics (the config has no evaluator?)", flush=True)
        return
    print(f"[{tool}] metrics: " + ", ".join(f"{key} {_number(value)}" for key, value in metrics.items()), flush=True)
    if "mIoU" in metrics:
        print(f"[{tool}] mIoU = {metrics['mIoU']:.2f} %", flush=True)


#: What the segmentation tools pass to the OpenMMLab tool mains (``resnest_backbones.openmmlab.cli.train_tool`` /
#: ``test_tool``): their metric lines and the converter of the released mmseg and PyTorch-Encoding ResNeSt
#: segmentors (``load_from``, ``--resume``, ``mmseg_test.py``'s checkpoint load them as downloaded), and the
#: user's images and label PNGs (``--train-data``/``--val-data``, :mod:`.own_data`).
SEGMENTATION_TOOL = dict(print_metrics=print_segmentation_metrics, convert=convert_if_released, own_data=own_data)
