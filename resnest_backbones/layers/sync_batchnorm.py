"""Synchronised batch norm that also works for CPU tensors under a gloo process group.

Every official ResNeSt transfer recipe (docs/reference.md sections 2 and 3) uses SyncBN. ``torch.nn.SyncBatchNorm``
refuses CPU tensors when a process group is active (``SyncBatchNorm expected input tensor to be on GPU``), and
``DistributedDataParallel`` refuses CPU models that contain one (``SyncBatchNorm layers only work with GPU
modules``), so distributed CPU runs (tests, small machines) could not use the recipes' norm.
:class:`SyncBatchNorm` normalises with batch statistics all-reduced over the process group through
autograd-aware collectives, so the forward, the running statistics and the gradients equal plain batch norm
over the combined batch of all processes. It is deliberately not a ``torch.nn.SyncBatchNorm`` subclass (DDP
would refuse it on CPU); on GPUs torch's own, fused kernel is the faster choice.
"""
from __future__ import annotations

from typing import Optional, Tuple, Type

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.nn.functional import all_reduce

__all__ = ["SyncBatchNorm", "all_reduced_moments", "update_running_stats"]


def all_reduced_moments(x: Tensor, process_group: Optional[object] = None) -> Tuple[Tensor, Tensor, float]:
    """Per-channel mean and biased variance of ``x`` ``(N, C, ...)`` over the batches of all processes in
    ``process_group`` (default: all), and the number of values per channel they cover.

    Differentiable: the collectives are autograd-aware, so gradients flow to every process's input. Two passes
    (mean first, then squared deviations) avoid the ``E[x^2] - E[x]^2`` cancellation.
    """
    channels = x.shape[1]
    dims = [0] + list(range(2, x.dim()))
    group = process_group if process_group is not None else dist.group.WORLD
    totals = all_reduce(torch.cat([x.sum(dims), x.new_full((1,), x.numel() / channels)]), group=group)
    count = float(totals[channels].item())
    if count < 2:
        raise ValueError("SyncBatchNorm needs more than one value per channel over all processes; "
                         "use a larger batch or frozen norm statistics")
    mean = totals[:channels] / count
    centered = x - mean.view([1, channels] + [1] * (x.dim() - 2))
    var = all_reduce((centered * centered).sum(dims), group=group) / count
    return mean, var, count


@torch.no_grad()
def update_running_stats(running_mean: Tensor, running_var: Tensor, mean: Tensor, biased_var: Tensor, count: float,
                         factor: float) -> None:
    """Move the running statistics towards the batch's by ``factor``, with the unbiased variance (as
    ``torch.nn.SyncBatchNorm`` and batch norm do)."""
    dtype = running_mean.dtype  # float32 statistics of a map that autocast made float16/bfloat16
    running_mean.lerp_(mean.detach().to(dtype), factor)
    running_var.lerp_(biased_var.detach().to(dtype) * (count / (count - 1)), factor)


class SyncBatchNorm(nn.BatchNorm2d):
    """Batch norm synchronised over ``process_group`` (default: all processes) on any device, CPU included.

    Same constructor, parameters and ``state_dict`` as ``torch.nn.SyncBatchNorm`` (and ``BatchNorm2d``), so it
    loads every checkpoint those load. In eval mode, or with one process, it is plain batch norm. Like torch's
    SyncBN it takes any ``(N, C, ...)`` input; it subclasses ``BatchNorm2d`` so that the frameworks' norm checks
    still see a norm (detectron2 gives norm parameters ``SOLVER.WEIGHT_DECAY_NORM``, 0 by default, by
    ``isinstance`` against torch's norm classes).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1, affine: bool = True,
                 track_running_stats: bool = True, process_group: Optional[object] = None,
                 device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        self.process_group = process_group

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"SyncBatchNorm expects an input of at least 2 dimensions (N, C, ...), got {x.dim()}-D")

    def _group_size(self) -> int:
        if not (dist.is_available() and dist.is_initialized()):
            return 1
        return dist.get_world_size(self.process_group)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self._group_size() == 1:
            return super().forward(x)
        self._check_input_dim(x)
        return self._all_reduce_forward(x)

    def _all_reduce_forward(self, x: Tensor) -> Tensor:
        shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
        mean, var, count = all_reduced_moments(x, self.process_group)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            self.num_batches_tracked.add_(1)
            factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            update_running_stats(self.running_mean, self.running_var, mean, var, count, factor)
        out = (x - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out

    @classmethod
    def convert_sync_batchnorm(cls, module: nn.Module, process_group: Optional[object] = None, *,
                               source: Type[nn.Module] = nn.modules.batchnorm._BatchNorm) -> nn.Module:
        """Return ``module`` with every ``source`` layer (default: every batch norm) replaced by this class.

        The new layers share the old ones' parameters and statistics and keep their train/eval mode.
        ``source=nn.SyncBatchNorm`` swaps only the layers a config asked to synchronise (torch's, which refuse CPU
        tensors under a process group) and leaves plain batch norms alone, as
        :func:`resnest_backbones.distributed.sync_on_cpu` does for the detectron2 and mmseg tools.
        """
        if isinstance(module, source) and not isinstance(module, cls):
            group = process_group if process_group is not None else getattr(module, "process_group", None)
            converted = cls(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, group)
            # Share the layer's own tensors: device, requires_grad and optimiser references stay valid.
            for name, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
                setattr(converted, name, tensor)
            return converted.train(module.training)
        for name, child in module.named_children():
            module.add_module(name, cls.convert_sync_batchnorm(child, process_group, source=source))
        return module
