#!/usr/bin/env python
"""Train an MMSegmentation model with a ResNeSt backbone (Zhang et al., 2020) through mmengine's Runner.

Same command line as mmseg's ``tools/train.py``; the configs under ``configs/mmseg`` also run with that tool.
At the end it prints the metrics of the final evaluation (mIoU for the segmentation configs).

    python tools/mmseg_train.py configs/mmseg/toy/deeplabv3_resnest14d-d8_toy-ade.py --work-dir work_dirs/demo_mmseg
    torchrun --nproc_per_node=4 tools/mmseg_train.py CONFIG --launcher pytorch     # 4 GPUs
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout's package

from resnest_backbones.distributed import close_process_group, exit_process  # noqa: E402
from resnest_backbones.mmseg.cli import add_common_arguments, load_config, require_cuda_for_amp  # noqa: E402
from resnest_backbones.mmseg.engine import MetricsHook, build_runner, print_metrics  # noqa: E402
from resnest_backbones.models import CheckpointError  # noqa: E402

TOOL = "mmseg_train"


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config",
                        help="config file (e.g. configs/mmseg/deeplabv3_resnest50d-d8_4xb4-160k_ade20k-512x512.py)")
    parser.add_argument("--resume", action="store_true", help="resume from the latest checkpoint in the work dir")
    parser.add_argument("--amp", action="store_true", help="automatic mixed precision (CUDA)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)

    cfg = load_config(args, TOOL)
    require_cuda_for_amp(TOOL, args.amp)
    if args.amp:
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.loss_scale = "dynamic"
    cfg.resume = args.resume or cfg.get("resume", False)

    runner = build_runner(cfg, TOOL)
    hook = MetricsHook()
    runner.register_hook(hook)
    try:
        runner.train()
    except CheckpointError as error:  # a refused or partial checkpoint: the message says what to do
        raise SystemExit(f"[{TOOL}] error: {error}") from None
    if runner.val_loop is not None and hook.iteration != runner.iter:
        runner.val_loop.run()  # the schedule did not end on a validation: evaluate the final model
    if runner.rank == 0:
        print_metrics(TOOL, hook.metrics)
    if close_process_group():  # a distributed run: end without the teardown race (see exit_process)
        exit_process(0)


if __name__ == "__main__":
    main()
