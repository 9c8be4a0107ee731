"""What the detectron2 and mmseg tools need to train distributed on CPU processes (gloo), framework-free.

* :func:`sync_on_cpu` swaps the SyncBN layers a config asked for (``torch.nn.SyncBatchNorm``, which refuses CPU
  tensors, and which ``DistributedDataParallel`` refuses in CPU models) for
  :class:`resnest_backbones.layers.SyncBatchNorm`.
* :func:`close_process_group` and :func:`exit_process` end a distributed run's processes cleanly.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

import torch.distributed as dist
from torch import nn

from .layers import SyncBatchNorm

__all__ = ["close_process_group", "exit_process", "sync_on_cpu"]


def sync_on_cpu(model: nn.Module, *, every_batchnorm: bool = False) -> str:
    """Make a model whose config asked for SyncBN train in CPU processes: its ``torch.nn.SyncBatchNorm`` layers
    (or, with ``every_batchnorm``, all batch norms) become :class:`SyncBatchNorm`, in place. Returns a line for
    the log saying how many layers run synchronised.
    """
    SyncBatchNorm.convert_sync_batchnorm(
        model, source=nn.modules.batchnorm._BatchNorm if every_batchnorm else nn.SyncBatchNorm)
    count = sum(isinstance(module, SyncBatchNorm) for module in model.modules())
    return f"{count} SyncBN layers run as resnest_backbones.layers.SyncBatchNorm (statistics all-reduced over gloo)"


def close_process_group() -> bool:
    """Wait until every process is done, then destroy the default process group. Returns whether there was one.

    Neither detectron2's ``launch`` nor mmengine's ``Runner`` does this. A gloo process that reaches interpreter
    exit with its group alive, while another rank still works (rank 0 evaluating), can abort with
    ``terminate called without an active exception``, which fails the whole run. See also :func:`exit_process`.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return False
    dist.barrier()
    dist.destroy_process_group()
    return True


def exit_process(code: int = 0) -> NoReturn:
    """End this process now with ``code``, after flushing the logs and output, without the interpreter's
    teardown: for the end of a distributed run's processes, after :func:`close_process_group`.

    Why: ``destroy_process_group`` forgets the group, but ``DistributedDataParallel``'s C++ reducer keeps it
    alive, so the gloo backend's threads still run while the interpreter and then C++'s static destructors tear
    the process down. Now and then (about 1 run in 50 of the two-process mmseg test here) that aborts a process
    whose work is done, ``terminate called without an active exception`` after its last output, and the
    launcher then fails the run. Skipping that teardown (``os._exit``) leaves nothing to race with.
    """
    logging.shutdown()  # flushes and closes every logging handler (log files of mmengine, detectron2)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)
