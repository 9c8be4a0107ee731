"""The norms the memory-saving ops compute: one kernel per kind, behind a registry.

The ops (:mod:`resnest_backbones.accel.ops`) recompute ``relu(norm(x))`` from the norm's input, so they must compute
exactly what the norm module computes now. :func:`kernel_for` says which kernel does (:mod:`.kernel` describes a
kernel and the registry), or None where the module keeps its own forward. The kinds registered here:

* every ``_BatchNorm`` that keeps ``_BatchNorm.forward`` (``nn.BatchNorm2d``, mmengine's ``_BatchNormXd``):
  :data:`LOCAL`, ATen's batch norm (:mod:`.batch`), bit-identical forward values;
* torch's and :class:`resnest_backbones.layers.SyncBatchNorm`: :data:`LOCAL` while they do not synchronise (eval
  mode, one process), else a :class:`SyncBatchNormKernel` (:mod:`.sync`) that gets its batch statistics from the
  same all-reduces as :class:`resnest_backbones.layers.SyncBatchNorm` and all-reduces the two per-channel gradient
  sums in backward, as torch's SyncBN does; outputs equal the modules' up to float rounding. Where torch's own
  forward raises (synchronising on CPU), None: the reference must raise;
* ``nn.GroupNorm`` itself: :class:`GroupNormKernel` (:mod:`.group`; ATen's group-norm kernels, scale and shift per
  sample and channel), except under autocast.

Framework adapters register their norms on import (one :func:`register_kernel` call), so this package imports and
names no framework: detectron2's ``NaiveSyncBatchNorm`` (its own synchronised statistics) is registered by
:mod:`resnest_backbones.detectron2.accel`. Frozen batch norms (detectron2's and torchvision's ``FrozenBatchNorm2d``)
have no kernel on purpose: their plain path keeps a single map already (``x * scale`` saves only ``scale``, and the
ReLU and its consumer share the ReLU output), so recomputing would keep as much (the norm's input instead) and only
add work. Other forwards (a ``_BatchNorm`` subclass that overrides it, LayerNorm) have none either.

Adding a norm kind: a kernel (a :class:`NormKernel` subclass, or an existing kernel) and one :func:`register_kernel`
call, here for a torch-only norm or in the framework's adapter.
"""
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ...layers.sync_batchnorm import SyncBatchNorm
from .batch import LOCAL, BatchNormKernel, choose_local
from .group import GroupNormKernel, choose_group_norm
from .kernel import KernelChooser, NormArguments, NormKernel, kernel_for, register_kernel
from .sync import SyncBatchNormKernel, SynchronisedBatchNormKernel, choose_sync, choose_torch_sync, is_distributed

__all__ = [
    "LOCAL", "BatchNormKernel", "GroupNormKernel", "KernelChooser", "NormArguments", "NormKernel",
    "SyncBatchNormKernel", "SynchronisedBatchNormKernel", "is_distributed", "kernel_for", "register_kernel",
]

register_kernel(_BatchNorm, choose_local)
register_kernel(nn.SyncBatchNorm, choose_torch_sync)
register_kernel(SyncBatchNorm, choose_sync)
register_kernel(nn.GroupNorm, choose_group_norm)
