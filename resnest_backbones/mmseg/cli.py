"""Shared command-line plumbing of ``tools/mmseg_train.py`` and ``tools/mmseg_test.py``.

The tools train/evaluate MMSegmentation models with ResNeSt backbones (Zhang et al., 2020) through mmengine's
``Runner``, with the command line of mmseg's own ``tools/train.py``/``tools/test.py``; this module holds the
parts both need, so the tools stay a few lines each.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
from typing import Any, Dict, Iterator, Optional

import torch
import torch.distributed as dist
from mmengine.config import Config, DictAction
from mmengine.hooks import Hook
from mmengine.model import MMDistributedDataParallel, is_model_wrapper
from mmengine.registry import MODEL_WRAPPERS
from mmengine.runner import Runner
from torch import nn

from ..distributed import sync_on_cpu

__all__ = ["AnyDeviceRunner", "MetricsHook", "add_common_arguments", "build_runner", "find_types", "load_config",
           "print_metrics", "require_cuda_for_amp"]


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by both tools (names as in mmseg's tools)."""
    parser.add_argument("--work-dir", help="directory for logs and checkpoints (default: work_dirs/<config name>)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default=None,
                        help="override config entries, e.g. train_cfg.max_iters=100 model.backbone.with_cp=True")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none",
                        help="none: one process; pytorch: under torchrun; slurm: under srun")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0, help=argparse.SUPPRESS)


def find_types(node: Any, wanted: str) -> Iterator[Any]:
    """Every dict in a (nested) config whose ``type`` is ``wanted``."""
    if isinstance(node, dict):
        if node.get("type") == wanted:
            yield node
        for value in node.values():
            yield from find_types(value, wanted)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from find_types(value, wanted)


def load_config(args: argparse.Namespace, tool: str) -> Config:
    """Read the config (running its ``custom_imports``), apply the command line, explain single-process SyncBN."""
    if "LOCAL_RANK" not in os.environ:
        os.environ["LOCAL_RANK"] = str(args.local_rank)
    # mmengine's checkpoints (the ones --resume and mmseg_test.py read: the user's own training outputs) hold
    # the message hub's history buffers and numpy values, which torch >= 2.6's default weights_only=True load
    # refuses. This restores the pre-2.6 default for loads that do not choose; ImageNet backbone weights are
    # read by resnest_backbones with weights_only=True regardless.
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = osp.join("work_dirs", osp.splitext(osp.basename(args.config))[0])
    if args.launcher == "none" and any(True for _ in find_types(cfg.model, "SyncBN")):
        # torch's SyncBatchNorm needs a process group (and GPUs); mmengine's Runner swaps it for plain BN when
        # it does not wrap the model for distributed training. Say so, since the statistics then differ.
        print(f"[{tool}] --launcher none: the config's SyncBN layers run as plain BatchNorm in this single process "
              f"(mmengine reverts them); use --launcher pytorch/slurm for synchronised statistics", flush=True)
    return cfg


class AnyDeviceRunner(Runner):
    """mmengine's ``Runner`` that also runs distributed on CPU processes (gloo).

    There, torch's ``SyncBatchNorm`` layers (which refuse CPU tensors; every recipe's SyncBN builds them, in the
    backbone and in the heads) become :class:`resnest_backbones.layers.SyncBatchNorm`, and DDP gets no
    ``device_ids`` (it refuses them for CPU modules). On GPUs or in one process it is mmengine's ``Runner``.
    """

    def wrap_model(self, model_wrapper_cfg: Optional[Dict], model: nn.Module) -> nn.Module:
        if not self.distributed or torch.cuda.is_available() or is_model_wrapper(model):
            return super().wrap_model(model_wrapper_cfg, model)
        # cfg.sync_bn asks to synchronise every batch norm (mmengine would convert them to torch's SyncBN).
        self.logger.info(f"{self.world_size} CPU processes: "
                         f"{sync_on_cpu(model, every_batchnorm=bool(self.cfg.get('sync_bn')))}")
        wrapper = dict(type=MMDistributedDataParallel, broadcast_buffers=False,
                       find_unused_parameters=self.cfg.get("find_unused_parameters", False))
        wrapper.update(model_wrapper_cfg or {})
        wrapper["device_ids"] = None
        return MODEL_WRAPPERS.build(wrapper, default_args=dict(module=model))


def build_runner(cfg: Config, tool: str) -> Runner:
    """The :class:`AnyDeviceRunner` of ``cfg``; on a machine without CUDA, ``--launcher pytorch`` processes join a
    gloo process group first (mmengine's own set-up selects a GPU per process, which fails there)."""
    if cfg.launcher != "none" and not torch.cuda.is_available() and not dist.is_initialized():
        if cfg.launcher != "pytorch":
            raise SystemExit(f"[{tool}] --launcher {cfg.launcher} needs CUDA devices (mmengine selects a GPU per "
                             f"process); on CPUs start the processes with torchrun and use --launcher pytorch")
        backend = cfg.get("env_cfg", {}).get("dist_cfg", {}).get("backend", "gloo")
        if backend != "gloo":
            print(f"[{tool}] no CUDA: the processes communicate over gloo, not the config's {backend!r}", flush=True)
        dist.init_process_group("gloo")
    return AnyDeviceRunner.from_cfg(cfg)


class MetricsHook(Hook):
    """Remembers the metrics and iteration of the latest validation."""

    priority = "LOWEST"

    def __init__(self) -> None:
        self.metrics: Optional[Dict[str, float]] = None
        self.iteration = -1

    def after_val_epoch(self, runner: Any, metrics: Optional[Dict[str, float]] = None) -> None:
        self.metrics = dict(metrics or {})
        self.iteration = runner.iter


def _number(value: Any) -> str:
    try:
        return f"{float(value):.2f}"
    except (TypeError, ValueError):
        return str(value)


def print_metrics(tool: str, metrics: Optional[Dict[str, float]]) -> None:
    """One line per metric; mmseg's ``IoUMetric`` reports percentages."""
    if not metrics:
        print(f"[{tool}] no metrics (the config has no evaluator?)", flush=True)
        return
    print(f"[{tool}] metrics: " + ", ".join(f"{key} {_number(value)}" for key, value in metrics.items()), flush=True)
    if "mIoU" in metrics:
        print(f"[{tool}] mIoU = {metrics['mIoU']:.2f} %", flush=True)


def require_cuda_for_amp(tool: str, amp: bool) -> None:
    """mmengine's ``AmpOptimWrapper`` needs a CUDA (or NPU/MLU) device; fail early with a clear message."""
    import torch

    if amp and not torch.cuda.is_available():
        raise SystemExit(f"[{tool}] --amp needs a CUDA device (mmengine's AmpOptimWrapper); run without --amp on CPU")
