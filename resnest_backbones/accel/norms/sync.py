"""Synchronising batch norm: batch statistics over the batches of all processes in a group.

:class:`SynchronisedBatchNormKernel` is the part every synchronising norm shares: it normalises with statistics
that cover all processes' batches, and in backward all-reduces the two per-channel gradient sums, as torch's SyncBN
does (every process's output depends on every process's input through the shared statistics). Its subclasses say
how the statistics are computed: :class:`SyncBatchNormKernel` as :class:`resnest_backbones.layers.SyncBatchNorm`
computes them (the same all-reduces), for that norm and for torch's ``SyncBatchNorm``; a framework's own
(detectron2's ``NaiveSyncBatchNorm``: :mod:`resnest_backbones.detectron2.accel`). The outputs equal the modules' up
to float rounding (``x * scale + shift`` rounds differently).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ...layers.sync_batchnorm import SyncBatchNorm, all_reduced_moments, update_running_stats
from .batch import LOCAL, BatchNormKernel, scale_shift
from .kernel import NormGradients, NormKernel, first_device, stats_dtype

__all__ = [
    "SyncBatchNormKernel", "SynchronisedBatchNormKernel", "choose_sync", "choose_torch_sync", "is_distributed",
]

#: Devices on which ``torch.nn.SyncBatchNorm`` synchronises; on others its forward raises under a process group.
_SYNC_DEVICES = ("cuda", "hpu", "xpu")


def is_distributed() -> bool:
    """Whether a default process group is initialised."""
    return dist.is_available() and dist.is_initialized()


class SynchronisedBatchNormKernel(BatchNormKernel):
    """Batch norm whose batch statistics cover all processes of :meth:`process_group` (``ctx.count``: what the
    backward's mean terms divide the all-reduced gradient sums by). Without batch statistics it is
    :class:`~resnest_backbones.accel.norms.batch.BatchNormKernel`."""

    def process_group(self) -> Any:
        """The process group the statistics and gradient sums are all-reduced over."""
        raise NotImplementedError

    def statistics(self, values: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
                   momentum: float, eps: float) -> Tuple[Tensor, Tensor, float]:
        """``(mean, invstd, count)`` of the batch statistics over all processes, the running statistics updated;
        ``count`` divides the all-reduced gradient sums into the means over the combined batch."""
        raise NotImplementedError

    def forward(self, ctx: Any, x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                running_mean: Optional[Tensor], running_var: Optional[Tensor], training: bool, momentum: float,
                eps: float) -> Tuple[Tensor, Tensor, Tensor]:
        if not training:
            return super().forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps)
        ctx.training, ctx.eps = training, eps
        with torch.no_grad():
            mean, invstd, ctx.count = self.statistics(
                x.to(stats_dtype(x.dtype)), running_mean, running_var, momentum, eps)
        scale, shift = scale_shift(x, weight, bias, mean, invstd)
        ctx.stats = (None, None, mean, invstd)
        return torch.addcmul(shift, x, scale), scale, shift

    def backward(self, ctx: Any, grad_y: Tensor, x: Tensor, weight: Optional[Tensor], needs: Sequence[bool]
                 ) -> NormGradients:
        """The per-channel sums ``sum(dy)`` and ``sum(dy * x_hat)`` of this process are the weight and bias
        gradients (local: data parallelism averages those); ``x``'s gradient needs them summed over all processes:
        ``dx = w * invstd * (dy - mean(dy) - x_hat * mean(dy * x_hat))``, the means over the combined batch."""
        if not ctx.training:
            return super().backward(ctx, grad_y, x, weight, needs)
        _, _, mean, invstd = ctx.stats
        _, sum_dy_xhat, sum_dy = torch.ops.aten.native_batch_norm_backward(
            grad_y, x, weight, None, None, mean, invstd, True, ctx.eps, [False, True, True])
        grad_x: Optional[Tensor] = None
        if needs[0]:
            mean_dy, mean_dy_xhat = self.batch_means(ctx, torch.cat([sum_dy, sum_dy_xhat]), ctx.count).chunk(2)
            a = invstd if weight is None else weight * invstd  # dx = a * dy + c * x + d, per channel
            c = -a * invstd * mean_dy_xhat
            d = -a * mean_dy - c * mean
            shape = (1, -1) + (1,) * (x.dim() - 2)
            dtype = grad_y.dtype
            grad_x = torch.addcmul(d.view(shape).to(dtype), x, c.view(shape).to(dtype))
            grad_x.addcmul_(grad_y, a.view(shape).to(dtype))
        return (grad_x, sum_dy_xhat if needs[1] else None, sum_dy if needs[2] else None)

    def batch_means(self, ctx: Any, sums: Tensor, count: float) -> Tensor:
        if not ctx.training:
            return super().batch_means(ctx, sums, count)
        dist.all_reduce(sums, group=self.process_group())
        return sums / ctx.count


@dataclass(frozen=True)
class SyncBatchNormKernel(SynchronisedBatchNormKernel):
    """Batch statistics all-reduced over ``group`` as :class:`resnest_backbones.layers.SyncBatchNorm` computes
    them (for that norm and for torch's ``SyncBatchNorm``)."""

    group: Any

    def process_group(self) -> Any:
        return self.group

    def statistics(self, values: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
                   momentum: float, eps: float) -> Tuple[Tensor, Tensor, float]:
        mean, var, count = all_reduced_moments(values, self.group)
        if running_mean is not None and running_var is not None:
            update_running_stats(running_mean, running_var, mean, var, count, momentum)
        return mean, torch.rsqrt(var + eps), count


def _world(group: Optional[Any]) -> Any:
    return group if group is not None else dist.group.WORLD


def choose_torch_sync(norm: nn.Module, sources: Sequence[Tensor]) -> Optional[NormKernel]:
    """What ``torch.nn.SyncBatchNorm.forward`` does now, by torch's condition: plain batch norm unless training
    (batch statistics) with an initialised process group; then it raises for inputs on other devices than GPUs
    (None: the reference forward must raise that error) and synchronises over its group when that has more than
    one process."""
    if not (norm.training and is_distributed()):
        return LOCAL
    device = first_device(norm, sources)
    allowed = (*_SYNC_DEVICES, torch._C._get_privateuse1_backend_name())
    if device is None or device.type not in allowed:
        return None
    group = _world(norm.process_group)
    return SyncBatchNormKernel(group) if dist.get_world_size(group) > 1 else LOCAL


def choose_sync(norm: nn.Module, sources: Sequence[Tensor]) -> NormKernel:
    """:class:`resnest_backbones.layers.SyncBatchNorm`: synchronising in training with more than one process."""
    assert isinstance(norm, SyncBatchNorm)
    synchronising = norm.training and norm._group_size() > 1
    return SyncBatchNormKernel(_world(norm.process_group)) if synchronising else LOCAL
