#!/usr/bin/env python
"""Train an MMSegmentation model with a ResNeSt backbone (Zhang et al., 2020) through mmengine's Runner.

Same command line as mmseg's ``tools/train.py``; the configs under ``configs/mmseg`` also run with that tool.
At the end it prints the metrics of the final evaluation (mIoU for the segmentation configs).

    python tools/mmseg_train.py configs/mmseg/toy/deeplabv3_resnest14d-d8_toy-ade.py --work-dir work_dirs/demo_mmseg
    torchrun --nproc_per_node=4 tools/mmseg_train.py CONFIG --launcher pytorch     # 4 GPUs
"""
from __future__ import annotations

import os
import sys
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout's package

from resnest_backbones.mmseg.cli import SEGMENTATION_TOOL  # noqa: E402
from resnest_backbones.openmmlab.cli import train_tool  # noqa: E402


def main(argv: Optional[List[str]] = None) -> None:
    train_tool(argv, tool="mmseg_train", description=__doc__.split("\n")[0],
               config_help="config file (e.g. configs/mmseg/deeplabv3_resnest50d-d8_4xb4-160k_ade20k-512x512.py)",
               **SEGMENTATION_TOOL)


if __name__ == "__main__":
    main()
