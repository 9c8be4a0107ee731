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

import argparse
import os
import sys
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout's package

from resnest_backbones.distributed import close_process_group, exit_process  # noqa: E402
from resnest_backbones.mmdet.cli import check_released_name, print_detection_metrics  # noqa: E402
from resnest_backbones.mmseg.cli import add_common_arguments, load_config  # noqa: E402
from resnest_backbones.mmseg.engine import build_runner  # noqa: E402
from resnest_backbones.models import CheckpointError  # noqa: E402

TOOL = "mmdet_test"


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", help="config file")
    parser.add_argument("checkpoint", help="checkpoint of the whole detector (e.g. work_dirs/.../epoch_12.pth), or "
                                           "mmdet's released ResNeSt file of the config's model as downloaded")
    add_common_arguments(parser)
    args = parser.parse_args(argv)

    cfg = load_config(args, TOOL)
    cfg.load_from = args.checkpoint
    try:
        check_released_name(args.checkpoint, TOOL)  # before anything is built: a bad download fails at once
        runner = build_runner(cfg, TOOL)
        metrics = runner.test()
    except CheckpointError as error:  # a refused, corrupt or partial checkpoint: the message says what to do
        raise SystemExit(f"[{TOOL}] error: {error}") from None
    if runner.rank == 0:
        print_detection_metrics(TOOL, metrics)
    if close_process_group():  # a distributed run: end without the teardown race (see exit_process)
        exit_process(0)


if __name__ == "__main__":
    main()
