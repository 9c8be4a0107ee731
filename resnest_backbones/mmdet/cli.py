"""What ``tools/mmdet_train.py`` and ``tools/mmdet_test.py`` add to the OpenMMLab tool mains
(:mod:`resnest_backbones.openmmlab.cli`, ``.engine`` and ``.checkpoint``: config and command line, the CPU/torchrun
runner, safe and strict loading of whole-model checkpoints): detection's metric lines, the SHA-256 check of
mmdet's released files and ``--toy``.
"""
from __future__ import annotations

import os
from typing import Dict, Optional

from ..models.file_hash import verify_hash
from . import own_data
from .toy import toy_counterpart

__all__ = ["check_released_name", "print_detection_metrics"]

# mmdet's CocoMetric reports fractions; the tools print these as percentages.
_PERCENT = {"coco/bbox_mAP": "box AP", "coco/bbox_mAP_50": "box AP50", "coco/segm_mAP": "mask AP",
            "coco/segm_mAP_50": "mask AP50"}


def check_released_name(path: Optional[str], tool: str) -> None:
    """Check a local checkpoint against the SHA-256 prefix in its name (mmdet's released files carry one, as in
    ``..._20200926_125502-20289c16.pth``); a name without a hash (a training checkpoint) is not checked."""
    if path and os.path.isfile(path):
        checked = verify_hash(path)  # raises CheckpointError for a corrupt, truncated or renamed file
        if checked:
            print(f"[{tool}] {os.path.basename(path)}: {checked[1]} starts with {checked[0]} as its name says",
                  flush=True)


def print_detection_metrics(tool: str, metrics: Optional[Dict[str, float]]) -> None:
    """One line with every metric, then box AP / AP50 (and mask AP / AP50) in percent, one per line."""
    if not metrics:
        print(f"[{tool}] no metrics (the config has no evaluator?)", flush=True)
        return
    print(f"[{tool}] metrics: " + ", ".join(f"{key} {value}" for key, value in metrics.items()), flush=True)
    for key, name in _PERCENT.items():
        if key in metrics:
            print(f"[{tool}] {name} = {100 * float(metrics[key]):.2f} %", flush=True)


#: What the detection tools pass to the OpenMMLab tool mains (``resnest_backbones.openmmlab.cli.train_tool`` /
#: ``test_tool``): their metric lines, the released file's SHA-256 check and ``--toy`` (no converter: mmdet's
#: released detectors load as downloaded), and the user's COCO files (``--train-data``/``--val-data``,
#: :mod:`.own_data`).
DETECTION_TOOL = dict(print_metrics=print_detection_metrics, check_checkpoint=check_released_name,
                      toy=toy_counterpart, own_data=own_data)
