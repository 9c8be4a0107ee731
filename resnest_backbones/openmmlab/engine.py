"""mmengine's ``Runner`` for the OpenMMLab tools (``tools/mmseg_*.py``, ``tools/mmdet_*.py``): CPU processes
(gloo) as well as GPUs, strict and safe checkpoint loading (:mod:`.checkpoint`, through the framework's converter
where it has one), and the metrics of the last validation."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Union

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import BaseTTAModel, MMDistributedDataParallel, is_model_wrapper
from mmengine.registry import MODEL_WRAPPERS
from mmengine.runner import Runner
from torch import nn

from ..accel import fuse_resnest_modules
from ..distributed import sync_on_cpu
from .checkpoint import Converter, load_whole_model, read_checkpoint
from .own_data import class_layers

__all__ = ["AnyDeviceRunner", "FuseForInference", "MetricsHook", "build_runner"]


class AnyDeviceRunner(Runner):
    """mmengine's ``Runner`` that also runs distributed on CPU processes (gloo).

    There, torch's ``SyncBatchNorm`` layers (which refuse CPU tensors; every recipe's SyncBN builds them, in the
    backbone and in the heads) become :class:`resnest_backbones.layers.SyncBatchNorm`, and DDP gets no
    ``device_ids`` (it refuses them for CPU modules). On GPUs or in one process it is mmengine's ``Runner``.
    """

    #: The framework's converter of its released whole-model files (:func:`build_runner` sets it), or ``None``.
    convert: Optional[Converter] = None

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

    #: ``load_from`` starts a training (the training tool sets it): a file of another class count fine-tunes.
    fine_tune = False
    _resuming = False
    #: Converts released files to this project's keys (mmseg's tools), or None.
    convert: Optional[Converter] = None

    def resume(self, *args: Any, **kwargs: Any) -> None:
        """mmengine's ``resume``; the checkpoint loads exactly (never as a fine-tuning start)."""
        self._resuming = True
        try:
            super().resume(*args, **kwargs)
        finally:
            self._resuming = False

    def load_checkpoint(self, filename: str, map_location: Union[str, Callable] = "cpu", strict: bool = True,
                        revise_keys: list = [(r"^module\.", "")]) -> dict:  # noqa: B006 - mmengine's signature
        """mmengine's ``load_checkpoint`` (``load_from``, ``--resume``), reading safely and loading strictly.

        The file is unpickled by torch's weights-only unpickler with only :data:`TRAINING_CHECKPOINT_GLOBALS`
        added; a released file is converted to this project's keys by :attr:`convert` (mmseg's tools: the released
        mmseg and PyTorch-Encoding ResNeSt segmentors). With
        ``strict`` (the default here; mmengine's default only logs), a checkpoint that leaves a model tensor unset
        or holds tensors the model lacks is an error naming them; mis-shaped tensors too, except when ``load_from``
        starts a training (:attr:`fine_tune`, not resuming) from a file of another class count: its class layers
        then start fresh, said in one line (:mod:`resnest_backbones.models.checkpoint.fit`).

        Raises:
            CheckpointError: the file asks the unpickler to run code, or does not cover the model exactly.
        """
        checkpoint = read_checkpoint(filename, map_location, self.logger)
        self.call_hook("after_load_checkpoint", checkpoint=checkpoint)
        model = self.model
        while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
            model = model.module
        mode = "finetune" if self.fine_tune and not self._resuming else "exact"
        load_whole_model(model, checkpoint, filename, strict=strict, revise_keys=revise_keys, logger=self.logger,
                         convert=self.convert, mode=mode,
                         class_layers=lambda: class_layers(self.cfg.model, self.cfg.get("default_scope")),
                         classes=self._training_classes())
        self._has_loaded = True
        self.logger.info(f"Load checkpoint from {filename}")
        return checkpoint

    def _training_classes(self) -> Optional[Sequence[str]]:
        """The class names of the training data set, once the training loop is built (else None)."""
        dataset = getattr(getattr(self._train_loop, "dataloader", None), "dataset", None)
        return (getattr(dataset, "metainfo", None) or {}).get("classes")


def build_runner(cfg: Config, tool: str, convert: Optional[Converter] = None) -> Runner:
    """The :class:`AnyDeviceRunner` of ``cfg``, loading whole-model files through ``convert`` where given; on a
    machine without CUDA, ``--launcher pytorch`` processes join a gloo process group first (mmengine's own set-up
    selects a GPU per process, which fails there)."""
    if cfg.launcher != "none" and not torch.cuda.is_available() and not dist.is_initialized():
        if cfg.launcher != "pytorch":
            raise SystemExit(f"[{tool}] --launcher {cfg.launcher} needs CUDA devices (mmengine selects a GPU per "
                             f"process); on CPUs start the processes with torchrun and use --launcher pytorch")
        backend = cfg.get("env_cfg", {}).get("dist_cfg", {}).get("backend", "gloo")
        if backend != "gloo":
            print(f"[{tool}] no CUDA: the processes communicate over gloo, not the config's {backend!r}", flush=True)
        dist.init_process_group("gloo")
    runner = AnyDeviceRunner.from_cfg(cfg)
    runner.convert = convert
    return runner


class MetricsHook(Hook):
    """Remembers the metrics and iteration of the latest validation."""

    priority = "LOWEST"

    def __init__(self) -> None:
        self.metrics: Optional[Dict[str, float]] = None
        self.iteration = -1

    def after_val_epoch(self, runner: Any, metrics: Optional[Dict[str, float]] = None) -> None:
        self.metrics = dict(metrics or {})
        self.iteration = runner.iter


class FuseForInference(Hook):
    """Before the test loop (the checkpoint is loaded by then) puts the fused inference copy of every ResNeSt in
    the model in its place (:func:`~resnest_backbones.fuse_resnest_modules`); the tools' default, ``--no-fuse``
    leaves it out."""

    def __init__(self, tool: str) -> None:
        self.tool = tool

    def before_test(self, runner: Any) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        fused = fuse_resnest_modules(model)
        if runner.rank == 0:
            print(f"[{self.tool}] inference with {fused} ResNeSt fused (batch norms folded into the convolutions; "
                  f"--no-fuse runs the model as built)", flush=True)

