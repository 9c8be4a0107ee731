"""Group norm (``nn.GroupNorm`` itself) with ATen's kernels, as ``F.group_norm`` runs them.

Its statistics are per sample and group of channels, so ``scale`` and ``shift`` are per sample and channel
(``(N, C, 1, 1)``) and the Gram route of ``combine_splits_conv_bn`` does not apply (its conv output is recomputed).
Under autocast the module runs ``group_norm`` in float32 on GPUs and the ops would not: there it keeps its forward.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .kernel import NormArguments, NormGradients, NormKernel, first_device, masked

__all__ = ["GroupNormKernel", "choose_group_norm"]


@dataclass(frozen=True)
class GroupNormKernel(NormKernel):
    """Group norm with ``groups`` groups of channels (``ctx.stats``: ATen's per-group mean and inverse standard
    deviation; ``ctx.positions``: values per sample and channel)."""

    groups: int

    def arguments(self, norm: nn.Module) -> NormArguments:
        return norm.weight, norm.bias, None, None, True, 0.0, float(norm.eps)  # no running statistics

    def forward(self, ctx: Any, x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                running_mean: Optional[Tensor], running_var: Optional[Tensor], training: bool, momentum: float,
                eps: float) -> Tuple[Tensor, Tensor, Tensor]:
        batch, channels = x.shape[:2]
        positions = x.numel() // (batch * channels) if batch * channels else 0
        y, mean, rstd = torch.native_group_norm(x, weight, bias, batch, channels, positions, self.groups, eps)
        with torch.no_grad():
            per_channel = channels // self.groups
            scale = rstd.repeat_interleave(per_channel, dim=1)
            if weight is not None:
                scale = scale * weight
            shift = -mean.repeat_interleave(per_channel, dim=1) * scale
            if bias is not None:
                shift = shift + bias
        ctx.stats, ctx.positions = (mean, rstd), positions
        shape = (batch, channels) + (1,) * (x.dim() - 2)
        return y, scale.view(shape).to(x.dtype), shift.view(shape).to(x.dtype)

    def backward(self, ctx: Any, grad_y: Tensor, x: Tensor, weight: Optional[Tensor], needs: Sequence[bool]
                 ) -> NormGradients:
        mean, rstd = ctx.stats
        mask = [bool(needs[0]), bool(needs[1]), bool(needs[2])]
        grads = torch.ops.aten.native_group_norm_backward(
            grad_y, x, mean, rstd, weight, x.shape[0], x.shape[1], ctx.positions, self.groups, mask)
        return masked(grads, mask)


def choose_group_norm(norm: nn.Module, sources: Sequence[Tensor]) -> Optional[NormKernel]:
    """:class:`GroupNormKernel` for ``norm``'s groups, except under autocast on its device."""
    assert isinstance(norm, nn.GroupNorm)
    device = first_device(norm, sources)
    if device is not None and torch.is_autocast_enabled(device.type):
        return None
    return GroupNormKernel(norm.num_groups)
