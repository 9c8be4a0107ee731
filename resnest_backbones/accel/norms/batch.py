"""Batch norm on this process's batch or the running statistics, with ATen's own kernels (:data:`LOCAL`).

It computes every ``_BatchNorm`` that keeps ``_BatchNorm.forward`` (``nn.BatchNorm2d``, mmengine's ``_BatchNormXd``),
and the synchronising norms while they do not synchronise (eval mode, one process). Because the forward runs the very
kernel the module's forward runs, its values are bit-identical to the plain path's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .kernel import NormArguments, NormGradients, NormKernel, masked

__all__ = ["LOCAL", "BatchNormKernel", "choose_local", "scale_shift"]


def scale_shift(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], mean: Tensor, invstd: Tensor
                ) -> Tuple[Tensor, Tensor]:
    """Per-channel ``scale``, ``shift`` (shaped ``(1, C, 1, 1)``) with ``bn(x) == x * scale + shift``."""
    with torch.no_grad():
        scale = invstd if weight is None else weight * invstd
        shift = -mean * scale if bias is None else bias - mean * scale
    return scale.view(1, -1, 1, 1).to(x.dtype), shift.view(1, -1, 1, 1).to(x.dtype)


@dataclass(frozen=True)
class BatchNormKernel(NormKernel):
    """Batch norm with this process's batch statistics or the running statistics (``ctx.stats``: the running
    statistics used and ATen's saved mean and inverse standard deviation)."""

    per_channel = True

    def arguments(self, norm: nn.Module) -> NormArguments:
        factor = 0.0 if norm.momentum is None else norm.momentum
        if norm.training and norm.track_running_stats and norm.num_batches_tracked is not None:
            norm.num_batches_tracked.add_(1)
            if norm.momentum is None:  # cumulative moving average
                factor = 1.0 / float(norm.num_batches_tracked)
        use_batch = norm.training or (norm.running_mean is None and norm.running_var is None)
        tracked = not norm.training or norm.track_running_stats  # otherwise the buffers must not be updated
        running_mean = norm.running_mean if tracked else None
        running_var = norm.running_var if tracked else None
        return norm.weight, norm.bias, running_mean, running_var, use_batch, factor, float(norm.eps)

    def forward(self, ctx: Any, x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                running_mean: Optional[Tensor], running_var: Optional[Tensor], training: bool, momentum: float,
                eps: float) -> Tuple[Tensor, Tensor, Tensor]:
        ctx.training, ctx.eps = training, eps
        if not training:
            assert running_mean is not None and running_var is not None
            # Eval mode normalises with the running statistics; a training forward run before this backward
            # would update them in place, so keep the values used here (two vectors).
            running_mean, running_var = running_mean.clone(), running_var.clone()
        y, save_mean, save_invstd = torch.native_batch_norm(
            x, weight, bias, running_mean, running_var, training, momentum, eps)
        ctx.stats = (running_mean, running_var, save_mean, save_invstd)
        return (y, *scale_shift(x, weight, bias, *self.normalisation(ctx)))

    def backward(self, ctx: Any, grad_y: Tensor, x: Tensor, weight: Optional[Tensor], needs: Sequence[bool]
                 ) -> NormGradients:
        running_mean, running_var, save_mean, save_invstd = ctx.stats
        mask = [bool(needs[0]), bool(needs[1]), bool(needs[2])]
        grads = torch.ops.aten.native_batch_norm_backward(
            grad_y, x, weight, running_mean, running_var, save_mean, save_invstd, ctx.training, ctx.eps, mask)
        return masked(grads, mask)

    def normalisation(self, ctx: Any) -> Tuple[Tensor, Tensor]:
        running_mean, running_var, save_mean, save_invstd = ctx.stats
        if ctx.training:
            return save_mean, save_invstd
        return running_mean, torch.rsqrt(running_var + ctx.eps)

    def batch_means(self, ctx: Any, sums: Tensor, count: float) -> Tensor:
        return sums / count


#: The kernel of every call that normalises with local (or running) statistics.
LOCAL = BatchNormKernel()


def choose_local(norm: nn.Module, sources: Sequence[Tensor]) -> BatchNormKernel:
    """:data:`LOCAL`: ``_BatchNorm.forward`` is always ATen's batch norm."""
    return LOCAL
