#!/usr/bin/env python
"""Evaluate an MMDetection model with a ResNeSt backbone (Zhang et al., 2020) through mmengine's Runner.

Same command line as mmdet's ``tools/test.py`` (config, checkpoint, ``--work-dir``, ``--cfg-options``,
``--launcher``); prints the test metrics (box AP / AP50, mask AP for the mask models). The checkpoint is a
training checkpoint of the config or mmdet's released file of the same model as downloaded (its SHA-256 prefix
is checked; the OpenMMLab backbone keys load as they are); either must cover the model exactly.

    python tools/mmdet_test.py configs/mmdet/faster-rcnn_resnest50d_fpn_syncbn-backbone+head_ms-range-1x_coco.py \\
        faster_rcnn_s50_fpn_syncbn-backbone+head_mstrain-range_1x_coco_20200926_125502-20289c16.pth
"""
from __future__ import annotations

import os
import sys
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout's package

from resnest_backbones.mmdet.cli import DETECTION_TOOL  # noqa: E402
from resnest_backbones.openmmlab.cli import test_tool  # noqa: E402

CHECKPOINT = ("checkpoint of the whole detector (e.g. work_dirs/.../epoch_12.pth), or mmdet's released ResNeSt file "
              "of the config's model as downloaded")


def main(argv: Optional[List[str]] = None) -> None:
    test_tool(argv, tool="mmdet_test", description=__doc__.split("\n")[0], checkpoint_help=CHECKPOINT,
              **DETECTION_TOOL)


if __name__ == "__main__":
    main()
