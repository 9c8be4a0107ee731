#!/usr/bin/env python
"""Train an MMDetection model with a ResNeSt backbone (Zhang et al., 2020) through mmengine's Runner.

Same command line as mmdet's ``tools/train.py``; the configs under ``configs/mmdet`` also run with that tool.
Runs on CPU (one process, or several under torchrun over gloo, SyncBN synchronised) as well as on GPUs; at the
end it prints the metrics of the final evaluation (box AP / AP50, mask AP for the mask models).

    python tools/mmdet_train.py configs/mmdet/toy/faster-rcnn_resnest14d_fpn_toy-coco.py --work-dir work_dirs/demo_mmdet
    torchrun --nproc_per_node=8 tools/mmdet_train.py CONFIG --launcher pytorch     # 8 GPUs
"""
from __future__ import annotations

import os
import sys
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout's package

from resnest_backbones.mmdet.cli import DETECTION_TOOL  # noqa: E402
from resnest_backbones.openmmlab.cli import train_tool  # noqa: E402

EXAMPLE = "configs/mmdet/faster-rcnn_resnest50d_fpn_syncbn-backbone+head_ms-range-1x_coco.py"


def main(argv: Optional[List[str]] = None) -> None:
    train_tool(argv, tool="mmdet_train", description=__doc__.split("\n")[0],
               config_help=f"config file (e.g. {EXAMPLE})", **DETECTION_TOOL)


if __name__ == "__main__":
    main()
