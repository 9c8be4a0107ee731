#!/usr/bin/env python
"""Evaluate a trained MMSegmentation model with a ResNeSt backbone (Zhang et al., 2020) through mmengine's Runner.

Same command line as mmseg's ``tools/test.py`` (config, checkpoint, ``--work-dir``, ``--cfg-options``,
``--launcher``); prints the test metrics (mIoU for the segmentation configs).

    python tools/mmseg_test.py configs/mmseg/toy/deeplabv3_resnest14d-d8_toy-ade.py work_dirs/demo_mmseg/iter_150.pth
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout's package

from resnest_backbones.distributed import close_process_group, exit_process  # noqa: E402
from resnest_backbones.mmseg.cli import add_common_arguments, load_config, use_tta  # noqa: E402
from resnest_backbones.mmseg.engine import build_runner, print_metrics  # noqa: E402
from resnest_backbones.models import CheckpointError  # noqa: E402

TOOL = "mmseg_test"


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", help="config file")
    parser.add_argument("checkpoint", help="checkpoint of the whole segmentor (e.g. work_dirs/.../iter_160000.pth), "
                                           "or a released mmseg / PyTorch-Encoding ResNeSt file as downloaded")
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation: the config's tta_pipeline and tta_model (multi-scale + flip)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)

    cfg = load_config(args, TOOL)
    if args.tta:
        use_tta(cfg, TOOL)
    cfg.load_from = args.checkpoint
    runner = build_runner(cfg, TOOL)
    try:
        metrics = runner.test()
    except CheckpointError as error:  # a refused or partial checkpoint: the message says what to do
        raise SystemExit(f"[{TOOL}] error: {error}") from None
    if runner.rank == 0:
        print_metrics(TOOL, metrics)
    if close_process_group():  # a distributed run: end without the teardown race (see exit_process)
        exit_process(0)


if __name__ == "__main__":
    main()
