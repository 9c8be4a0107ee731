"""Shared command-line plumbing of ``tools/mmseg_train.py`` and ``tools/mmseg_test.py``.

The tools train/evaluate MMSegmentation models with ResNeSt backbones (Zhang et al., 2020) through mmengine's
``Runner``, with the command line of mmseg's own ``tools/train.py``/``tools/test.py``; this module holds the
parts both need, so the tools stay a few lines each.

Checkpoints (``load_from``, ``--resume``, the checkpoint of ``mmseg_test.py``) are read by torch's weights-only
unpickler with only :data:`TRAINING_CHECKPOINT_GLOBALS` added, so a file cannot run code; and they must cover the
model exactly (mmengine's own loader only logs a partial load).
"""
from __future__ import annotations

import argparse
import logging
import os
import os.path as osp
import pickle
import re
from collections import OrderedDict
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.distributed as dist
from mmengine.config import Config, DictAction
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer, print_log
from mmengine.model import BaseTTAModel, MMDistributedDataParallel, is_model_wrapper
from mmengine.registry import MODEL_WRAPPERS
from mmengine.runner import CheckpointLoader, Runner
from torch import nn

from ..distributed import sync_on_cpu
from ..models.checkpoint import CheckpointError, LoadReport, read_file
from ..models.checkpoint.io import safe_unpickling
from .convert import convert_if_released

__all__ = ["TRAINING_CHECKPOINT_GLOBALS", "AnyDeviceRunner", "MetricsHook", "add_common_arguments", "build_runner",
           "find_types", "load_config", "load_whole_model", "print_metrics", "read_checkpoint",
           "require_cuda_for_amp", "use_tta"]


def _history_buffer_statistic(owner: Any, name: str) -> Any:
    """Stands in for ``getattr`` while a training checkpoint is unpickled, resolving only what mmengine writes.

    A ``HistoryBuffer`` pickles its statistics methods (``HistoryBuffer.min``...); pickle protocol 2, torch's,
    cannot name a method, so it writes ``getattr(HistoryBuffer, "min")``. A real ``getattr`` would let a file
    walk from any allowed type to any object (and run it), so only these four are resolved.
    """
    if owner is HistoryBuffer and name in ("min", "max", "mean", "current"):
        return getattr(owner, name)
    raise pickle.UnpicklingError(f"getattr({owner!r}, {name!r}) refused: a training checkpoint only needs "
                                 f"HistoryBuffer's min/max/mean/current")


def _numpy_global(obj: Any) -> List[Any]:
    """``obj`` under its own name and under the other numpy generation's (numpy 2 moved ``numpy.core`` to
    ``numpy._core``; a checkpoint names the module of the numpy that wrote it)."""
    own = f"{obj.__module__}.{obj.__name__}"
    other = own.replace("numpy._core.", "numpy.core.", 1) if own.startswith("numpy._core.") else \
        own.replace("numpy.core.", "numpy._core.", 1)
    return [obj, (obj, other)]


_multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray  # numpy 2 / numpy 1

#: What mmengine's training checkpoints hold beyond tensors and plain values, for torch's weights-only unpickler
#: (found by training the toy config and listing what torch refuses; tests/test_safe_loading.py checks that the
#: list suffices and that each entry is needed). Everything else in a checkpoint is refused.
TRAINING_CHECKPOINT_GLOBALS: List[Any] = [
    HistoryBuffer,                                    # message_hub.log_scalars: the history of each logged value,
    np.ndarray, np.dtype,                             # ... kept as two numpy arrays (values, counts)
    type(np.dtype(np.float64)),                       # ... the dtype objects' own classes (numpy.dtypes.*):
    type(np.dtype(np.int64)),                         # ... float64 values, int64 counts
    *_numpy_global(_multiarray._reconstruct),         # ... (how numpy pickles an array)
    *_numpy_global(_multiarray.scalar),               # message_hub.runtime_info: numpy scalars (the ETA)
    (_history_buffer_statistic, "builtins.getattr"),  # HistoryBuffer's statistics methods (see the function)
]

_WHOLE_MODEL_HINT = ("load_from / --resume / mmseg_test.py take a checkpoint of this config's whole model, as "
                     "mmseg_train.py writes it; to start from ImageNet backbone weights, set "
                     "model.backbone.init_cfg=dict(type='Pretrained', checkpoint=...) instead")


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


def use_tta(cfg: Config, tool: str) -> None:
    """Evaluate with the config's test-time augmentation (as mmseg's ``tools/test.py --tta`` does): the test set
    goes through ``tta_pipeline`` and the model is wrapped in ``tta_model``, which merges the views."""
    missing = [key for key in ("tta_pipeline", "tta_model") if cfg.get(key) is None]
    if missing:
        raise SystemExit(f"[{tool}] --tta: the config defines no {' and no '.join(missing)}; use a config with "
                         f"test-time augmentation (e.g. configs/mmseg/paper/*) or drop --tta")
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


def read_checkpoint(filename: str, map_location: Union[str, Callable] = "cpu", logger: Any = None) -> Dict[str, Any]:
    """Read an mmengine checkpoint without running code: torch's weights-only unpickler with only
    :data:`TRAINING_CHECKPOINT_GLOBALS` added (local files), or mmengine's loader for URLs and ``open-mmlab://``.

    Raises:
        CheckpointError: the file asks the unpickler to run code (the message names what was refused).
    """
    if osp.isfile(filename):
        return read_file(filename, allowed=TRAINING_CHECKPOINT_GLOBALS, map_location=map_location)
    # URLs, open-mmlab://...: mmengine fetches them and reads them with torch.load's default (weights_only=True)
    with safe_unpickling(filename, TRAINING_CHECKPOINT_GLOBALS):
        return CheckpointLoader.load_checkpoint(filename, map_location=map_location, logger=logger)


def load_whole_model(model: nn.Module, checkpoint: Dict[str, Any], filename: str, strict: bool = True,
                     revise_keys: Sequence[Tuple[str, str]] = ((r"^module\.", ""),), logger: Any = None) -> LoadReport:
    """Load ``checkpoint`` (read from ``filename``) into the whole segmentor ``model``.

    A released mmseg or PyTorch-Encoding ResNeSt segmentor is converted to this project's keys first. With
    ``strict``, a checkpoint that leaves a model tensor unset or holds tensors the model lacks is an error naming
    them (without, it is logged); mis-shaped tensors always are.

    Returns:
        The load report.

    Raises:
        CheckpointError: the checkpoint does not fit the model.
    """
    state = checkpoint.get("state_dict", checkpoint)
    state, released = convert_if_released(state, filename)  # mmseg's / PyTorch-Encoding's published files
    if released:
        print_log(f"{filename}: a released {released} model, converted to this project's keys", logger=logger)
    revised = OrderedDict(state)
    for pattern, replacement in revise_keys:
        revised = OrderedDict((re.sub(pattern, replacement, k), v) for k, v in revised.items())
    revised._metadata = getattr(state, "_metadata", OrderedDict())  # type: ignore[attr-defined]
    try:
        result = model.load_state_dict(revised, strict=False)
    except RuntimeError as error:  # torch raises on mis-shaped tensors whatever ``strict`` says
        raise CheckpointError(f"{filename} does not fit the model of this config: {error}\n"
                              f"{_WHOLE_MODEL_HINT}") from None
    report = LoadReport.from_incompatible("whole-model", model.state_dict(), result.missing_keys,
                                          result.unexpected_keys)
    problem = f"{filename} does not cover the model of this config exactly"
    if strict and not report.ok:
        raise report.error(problem, _WHOLE_MODEL_HINT)
    if not report.ok:
        print_log(report.message(problem, _WHOLE_MODEL_HINT), logger=logger, level=logging.WARNING)
    return report


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

    def load_checkpoint(self, filename: str, map_location: Union[str, Callable] = "cpu", strict: bool = True,
                        revise_keys: list = [(r"^module\.", "")]) -> dict:  # noqa: B006 - mmengine's signature
        """mmengine's ``load_checkpoint`` (``load_from``, ``--resume``), reading safely and loading strictly.

        The file is unpickled by torch's weights-only unpickler with only :data:`TRAINING_CHECKPOINT_GLOBALS`
        added; a released mmseg or PyTorch-Encoding ResNeSt segmentor is converted to this project's keys. With
        ``strict`` (the default here; mmengine's default only logs), a checkpoint that leaves a model tensor unset
        or holds tensors the model lacks is an error naming them; mis-shaped tensors always are.

        Raises:
            CheckpointError: the file asks the unpickler to run code, or does not cover the model exactly.
        """
        checkpoint = read_checkpoint(filename, map_location, self.logger)
        self.call_hook("after_load_checkpoint", checkpoint=checkpoint)
        model = self.model
        while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
            model = model.module
        load_whole_model(model, checkpoint, filename, strict=strict, revise_keys=revise_keys, logger=self.logger)
        self._has_loaded = True
        self.logger.info(f"Load checkpoint from {filename}")
        return checkpoint


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
