"""Synchronised batch norm that also works for CPU tensors under a gloo process group.

Every official ResNeSt transfer recipe (REFERENCE.md sections 2 and 3) uses SyncBN. ``torch.nn.SyncBatchNorm``
refuses CPU tensors when a process group is active (``SyncBatchNorm expected input tensor to be on GPU``), so
distributed CPU runs (tests, small machines) could not use the recipes' norm. :class:`SyncBatchNorm` is a
drop-in subclass: CUDA tensors and single-process runs take torch's own path; CPU tensors in a multi-process
group are normalised with statistics all-reduced over the group through autograd-aware collectives, so the
forward, the running statistics and the gradients equal plain batch norm over the combined batch.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.nn.functional import all_reduce

__all__ = ["SyncBatchNorm"]


class SyncBatchNorm(nn.SyncBatchNorm):
    """``torch.nn.SyncBatchNorm`` with an all-reduce implementation for CPU tensors.

    Same constructor, parameters and ``state_dict`` as ``torch.nn.SyncBatchNorm`` (and ``BatchNorm2d``), so it
    is an instance of both frameworks' SyncBN checks and loads every checkpoint they load.
    """

    def _group_size(self) -> int:
        if not (dist.is_available() and dist.is_initialized()):
            return 1
        return dist.get_world_size(self.process_group)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or x.is_cuda or self._group_size() == 1:
            return super().forward(x)
        return self._all_reduce_forward(x)

    def _all_reduce_forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        dims = [0] + list(range(2, x.dim()))
        shape = [1, channels] + [1] * (x.dim() - 2)
        group = self.process_group if self.process_group is not None else dist.group.WORLD
        local_count = x.new_full((1,), x.numel() / channels)
        # Two passes (mean first, then squared deviations) avoid E[x^2] - E[x]^2 cancellation.
        totals = all_reduce(torch.cat([x.sum(dims), local_count]), group=group)
        count = totals[channels]
        if count.item() < 2:
            raise ValueError("SyncBatchNorm needs more than one value per channel over all processes; "
                             "use a larger batch or frozen norm statistics")
        mean = totals[:channels] / count
        centered = x - mean.view(shape)
        var = all_reduce((centered * centered).sum(dims), group=group) / count
        self._update_running_stats(mean.detach(), var.detach(), count.item())
        out = centered * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, biased_var: Tensor, count: float) -> None:
        if not self.track_running_stats or self.running_mean is None or self.running_var is None:
            return
        self.num_batches_tracked.add_(1)
        factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        self.running_mean.lerp_(mean, factor)
        self.running_var.lerp_(biased_var * (count / (count - 1)), factor)

    @classmethod
    def convert_sync_batchnorm(cls, module: nn.Module, process_group: Optional[object] = None) -> nn.Module:
        """Return ``module`` with every batch-norm layer replaced by this class (weights and statistics kept)."""
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, cls):
            converted = cls(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, process_group)
            converted.load_state_dict(module.state_dict())
            converted.train(module.training)
            for param, original in zip(converted.parameters(), module.parameters()):
                param.requires_grad_(original.requires_grad)
            return converted
        for name, child in module.named_children():
            module.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        return module
