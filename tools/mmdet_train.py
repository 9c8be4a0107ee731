#!/usr/bin/env python
"""Train an MMDetection model with a ResNeSt backbone (Zhang et al., 2020) through mmengine's Runner.

Same command line as mmdet's ``tools/train.py``; the configs under ``configs/mmdet`` also run with that tool.
Runs on CPU (one process, or several under torchrun over gloo, SyncBN synchronised) as well as on GPUs; at the
end it prints the metrics of the final evaluation (box AP / AP50, mask AP for the mask models).

    python tools/mmdet_train.py configs/mmdet/toy/faster-rcnn_resnest14d_fpn_toy-coco.py --work-dir work_dirs/demo_mmdet
    torchrun --nproc_per_node=8 tools/mmdet_train.py CONFIG --launcher pytorch     # 8 GPUs
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout's package

from resnest_backbones.distributed import close_process_group, exit_process  # noqa: E402
from resnest_backbones.mmdet.cli import check_released_name, print_detection_metrics  # noqa: E402
from resnest_backbones.mmseg.cli import add_common_arguments, load_config, require_cuda_for_amp  # noqa: E402
from resnest_backbones.mmseg.engine import MetricsHook, build_runner  # noqa: E402
from resnest_backbones.models import CheckpointError  # noqa: E402

TOOL = "mmdet_train"


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", help="config file (e.g. configs/mmdet/faster-rcnn_resnest50d_fpn_syncbn-backbone"
                                       "+head_ms-range-1x_coco.py)")
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
    hook = MetricsHook()
    try:
        check_released_name(cfg.get("load_from"), TOOL)  # before anything is built: a bad download fails at once
        runner = build_runner(cfg, TOOL)
        runner.register_hook(hook)
        runner.train()
    except CheckpointError as error:  # a refused, corrupt or partial checkpoint: the message says what to do
        raise SystemExit(f"[{TOOL}] error: {error}") from None
    if runner.val_loop is not None and hook.iteration != runner.iter:
        runner.val_loop.run()  # the schedule did not end on a validation: evaluate the final model
    if runner.rank == 0:
        print_detection_metrics(TOOL, hook.metrics)
    if close_process_group():  # a distributed run: end without the teardown race (see exit_process)
        exit_process(0)


if __name__ == "__main__":
    main()
