#!/usr/bin/env python
"""Evaluate a trained MMSegmentation model with a ResNeSt backbone (Zhang et al., 2020) through mmengine's Runner.

Same command line as mmseg's ``tools/test.py`` (config, checkpoint, ``--work-dir``, ``--cfg-options``,
``--launcher``); prints the test metrics (mIoU for the segmentation configs).

    python tools/mmseg_test.py configs/mmseg/toy/deeplabv3_resnest14d-d8_toy-ade.py work_dirs/demo_mmseg/iter_150.pth
"""
from __future__ import annotations

import os
import sys
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout's package

from resnest_backbones.mmseg.cli import SEGMENTATION_TOOL  # noqa: E402
from resnest_backbones.openmmlab.cli import test_tool  # noqa: E402


def main(argv: Optional[List[str]] = None) -> None:
    test_tool(argv, tool="mmseg_test", description=__doc__.split("\n")[0], tta=True,
              checkpoint_help="checkpoint of the whole segmentor (e.g. work_dirs/.../iter_160000.pth), or a released "
                              "mmseg / PyTorch-Encoding ResNeSt file as downloaded", **SEGMENTATION_TOOL)


if __name__ == "__main__":
    main()
