"""What the detectron2 and mmseg tools need to train distributed on CPU processes (gloo), framework-free.

* :func:`sync_on_cpu` swaps the SyncBN layers a config asked for (``torch.nn.SyncBatchNorm``, which refuses CPU
  tensors, and which ``DistributedDataParallel`` refuses in CPU models) for
  :class:`resnest_backbones.layers.SyncBatchNorm`.
* :func:`close_process_group` ends a distributed run cleanly.
"""
from __future__ import annotations

import torch.distributed as dist
from torch import nn

from .layers import SyncBatchNorm

__all__ = ["close_process_group", "sync_on_cpu"]


def sync_on_cpu(model: nn.Module, *, every_batchnorm: bool = False) -> str:
    """Make a model whose config asked for SyncBN train in CPU processes: its ``torch.nn.SyncBatchNorm`` layers
    (or, with ``every_batchnorm``, all batch norms) become :class:`SyncBatchNorm`, in place. Returns a line for
    the log saying how many layers run synchronised.
    """
    SyncBatchNorm.convert_sync_batchnorm(
        model, source=nn.modules.batchnorm._BatchNorm if every_batchnorm else nn.SyncBatchNorm)
    count = sum(isinstance(module, SyncBatchNorm) for module in model.modules())
    return f"{count} SyncBN layers run as resnest_backbones.layers.SyncBatchNorm (statistics all-reduced over gloo)"


def close_process_group() -> None:
    """Wait until every process is done, then destroy the default process group (no-op without one).

    Neither detectron2's ``launch`` nor mmengine's ``Runner`` does this. A gloo process that reaches interpreter
    exit with its group alive, while another rank still works (rank 0 evaluating), can abort with
    ``terminate called without an active exception``, which fails the whole run.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
