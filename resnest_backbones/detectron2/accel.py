"""detectron2's ``NaiveSyncBatchNorm`` (``NORM: "naiveSyncBN"``) in the memory-saving training ops.

Importing the detectron2 adapter registers its kernel with :func:`resnest_backbones.accel.norms.register_kernel`, so
the ops (:mod:`resnest_backbones.accel.ops`) compute it, synchronising or not, and ``resnest_backbones.accel`` itself
needs no knowledge of detectron2. In eval mode or one process the module runs plain batch norm
(:data:`~resnest_backbones.accel.norms.LOCAL`); synchronising, :class:`NaiveSyncKernel` computes its own statistics.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from detectron2.layers import NaiveSyncBatchNorm
from torch import Tensor, nn

from ..accel.norms import LOCAL, NormArguments, NormKernel, SynchronisedBatchNormKernel, is_distributed, register_kernel

__all__ = ["NaiveSyncKernel"]


@dataclass(frozen=True)
class NaiveSyncKernel(SynchronisedBatchNormKernel):
    """A synchronising ``NaiveSyncBatchNorm``: its statistics over all processes (``stats_mode ""``: the mean of
    the processes' means and mean squares; ``"N"``: weighted by their batch sizes), ``var = E[x^2] - E[x]^2``,
    running averages of the biased variance; its forward neither counts batches nor tracks anything else."""

    stats_mode: str

    def process_group(self) -> Any:
        return dist.group.WORLD

    def arguments(self, norm: nn.Module) -> NormArguments:
        return norm.weight, norm.bias, norm.running_mean, norm.running_var, True, norm.momentum, float(norm.eps)

    def statistics(self, values: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
                   momentum: float, eps: float) -> Tuple[Tensor, Tensor, float]:
        """``count`` is ``1 / weight`` of this process's values in the statistics (the combined batch's size for
        equal batches), which the backward's mean terms divide by."""
        assert running_mean is not None and running_var is not None
        channels, batch = values.shape[1], values.shape[0]
        dims = [0] + list(range(2, values.dim()))
        local = torch.cat([values.mean(dims), (values * values).mean(dims)])
        per_sample = values.numel() // (batch * channels)
        if self.stats_mode == "":
            world = dist.get_world_size()
            dist.all_reduce(local)
            mean, mean_square = (local / world).split(channels)
            count = float(world * batch * per_sample)
        else:  # "N": weighted by batch size
            totals = torch.cat([local * batch, local.new_full((1,), float(batch))])
            dist.all_reduce(totals)
            total_batch = float(totals[-1])
            mean, mean_square = (totals[:-1] / max(total_batch, 1.0)).split(channels)
            momentum = min(total_batch, 1.0) * momentum
            count = total_batch * per_sample
        var = mean_square - mean * mean
        running_mean += momentum * (mean - running_mean)
        running_var += momentum * (var - running_var)
        return mean, torch.rsqrt(var + eps), count


def choose_naive_sync(norm: nn.Module, sources: Sequence[Tensor]) -> Optional[NormKernel]:
    """What ``NaiveSyncBatchNorm.forward`` does now: plain batch norm unless training in more than one process;
    then its own statistics, except for an empty batch (its special case: None, the module runs)."""
    if not (norm.training and is_distributed() and dist.get_world_size() > 1):
        return LOCAL
    if any(t.dim() == 4 and t.shape[0] == 0 for t in sources):
        return None
    return NaiveSyncKernel(norm._stats_mode)  # type: ignore[arg-type]


register_kernel(NaiveSyncBatchNorm, choose_naive_sync)
