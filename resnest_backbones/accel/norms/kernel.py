"""What a norm kernel is, and the registry that says which kernel computes a norm module now.

A :class:`NormKernel` knows how the memory-saving ops (:mod:`resnest_backbones.accel.ops`) compute one kind of norm:
its forward (statistics, running averages, and the affine form ``norm(x) == x * scale + shift`` from which the ops
recompute ``relu(norm(x))`` in backward) and its backward. One kernel instance describes one call (a synchronising
kernel holds its process group, a group norm's its number of groups); the ops' autograd functions get it as an
argument and keep it on their ``ctx``, where its ``forward`` also leaves what its ``backward`` needs.

:func:`register_kernel` ties a norm class to the function that picks the kernel for one of its modules now (or None
where the module's own forward must run); :func:`kernel_for` asks it. Matching is by ``forward``: a registered class
covers its subclasses that keep its ``forward``, never one that overrides it (which may compute something else).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Type

import torch
from torch import Tensor, nn

__all__ = [
    "KernelChooser", "NormArguments", "NormGradients", "NormKernel", "first_device", "kernel_for", "masked",
    "register_kernel", "stats_dtype",
]

#: ``(weight, bias, running_mean, running_var, use batch statistics, running-average factor, eps)`` of one call.
NormArguments = Tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor], Optional[Tensor], bool, float, float]

#: Gradients w.r.t. a norm's ``(input, weight, bias)``.
NormGradients = Tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor]]


class NormKernel:
    """How the ops compute one kind of norm (the kinds: :mod:`resnest_backbones.accel.norms`)."""

    #: Whether ``scale`` and ``shift`` are per channel, the same for every sample (batch norms): then the kernel has
    #: :meth:`normalisation` and :meth:`batch_means`, which the Gram route of ``combine_splits_conv_bn`` needs.
    per_channel = False

    def arguments(self, norm: nn.Module) -> NormArguments:
        """The call's arguments as ``norm``'s own forward would choose them now; updates what that forward updates
        besides the running statistics (``num_batches_tracked``)."""
        raise NotImplementedError

    def forward(self, ctx: Any, x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                running_mean: Optional[Tensor], running_var: Optional[Tensor], training: bool, momentum: float,
                eps: float) -> Tuple[Tensor, Tensor, Tensor]:
        """``(norm(x), scale, shift)`` with ``norm(x) == x * scale + shift`` (``scale``, ``shift`` without gradient,
        shaped to broadcast against ``x``); updates the running statistics; leaves on ``ctx`` what
        :meth:`backward` needs besides ``x`` and ``weight``."""
        raise NotImplementedError

    def backward(self, ctx: Any, grad_y: Tensor, x: Tensor, weight: Optional[Tensor], needs: Sequence[bool]
                 ) -> NormGradients:
        """Gradients w.r.t. ``(x, weight, bias)`` (those ``needs`` asks for, else None) from the output's."""
        raise NotImplementedError

    def normalisation(self, ctx: Any) -> Tuple[Tensor, Tensor]:
        """Per-channel ``(mean, invstd)`` that :meth:`forward` normalised with (:attr:`per_channel` kernels)."""
        raise NotImplementedError

    def batch_means(self, ctx: Any, sums: Tensor, count: float) -> Tensor:
        """Per-channel sums over this process's batch (``count`` values per channel) turned into means over the
        batch the statistics cover: all processes' when they are synchronised (:attr:`per_channel` kernels)."""
        raise NotImplementedError


#: ``choose(norm, sources)``: the kernel that computes ``norm`` now, for an input computed from the tensors
#: ``sources``, or None where ``norm``'s own forward must run.
KernelChooser = Callable[[nn.Module, Sequence[Tensor]], Optional[NormKernel]]

#: ``forward`` function -> (the class that defines it, its chooser).
_CHOOSERS: Dict[Any, Tuple[Type[nn.Module], KernelChooser]] = {}


def register_kernel(norm_type: Type[nn.Module], choose: KernelChooser) -> None:
    """Let the ops compute the modules of ``norm_type`` (and of its subclasses that keep its ``forward``) with the
    kernel that ``choose(norm, sources)`` picks. Registering a class again replaces its chooser."""
    if not (isinstance(norm_type, type) and issubclass(norm_type, nn.Module)):
        raise TypeError(f"register_kernel expects an nn.Module subclass, got {norm_type!r}")
    if "forward" not in vars(norm_type):
        raise ValueError(f"{norm_type.__qualname__} inherits its forward: register the class that defines it "
                         "(its subclasses that keep that forward are covered)")
    _CHOOSERS[norm_type.forward] = (norm_type, choose)


def kernel_for(norm: nn.Module, *sources: Tensor) -> Optional[NormKernel]:
    """The kernel that computes ``norm`` now, for an input computed from ``sources``; None for a norm of no
    registered kind, or where its own forward must run."""
    entry = _CHOOSERS.get(type(norm).forward)
    if entry is None or not isinstance(norm, entry[0]):
        return None
    return entry[1](norm, sources)


#: Dtypes in which per-channel sums are computed as they are (others, e.g. float16, in float32).
_STATS_DTYPES = (torch.float32, torch.float64)


def stats_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype for per-channel sums over a map of ``dtype``: float32 at least."""
    return dtype if dtype in _STATS_DTYPES else torch.float32


def masked(grads: Sequence[Tensor], needs: Sequence[bool]) -> NormGradients:
    """``grads`` (input, weight, bias) with None where ``needs`` is false (ATen's kernels leave those undefined)."""
    return (grads[0] if needs[0] else None, grads[1] if needs[1] else None, grads[2] if needs[2] else None)


def first_device(norm: nn.Module, sources: Sequence[Tensor]) -> Optional[torch.device]:
    """The device of ``norm``'s parameters and buffers, else of the first source; None when it has neither."""
    for t in (*norm.parameters(recurse=False), *norm.buffers(recurse=False), *sources):
        return t.device
    return None
