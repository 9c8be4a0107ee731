"""Memory-saving training ops for ResNeSt (Zhang et al., 2020, "ResNeSt: Split-Attention Networks").

Plain autograd keeps, for every ``conv -> batch norm -> ReLU -> consumer`` chain, both the norm's input (for
the norm's backward) and the ReLU output (for the ReLU's and the consumer's backward). The ReLU output is a
cheap elementwise function of the norm's input, so the functions here save only the norm's input and its
batch statistics and recompute ``relu(bn(x))`` in the backward pass:

* :func:`bn_relu` — ``relu(batch_norm(x))`` whose output is not kept; its consumer must not keep it either.
* :func:`combine_splits_recompute` — split attention's weighted sum of the radix splits, consuming
  :func:`bn_relu`'s output and recomputing it in backward (saves one ``(B, radix*C, H, W)`` map per block);
  it hands the recomputed map on to :func:`bn_relu`'s backward, which runs next and needs it as its ReLU mask.
* :func:`bn_relu_conv` — ``conv2d(relu(batch_norm(x)))`` that recomputes the conv input in backward (saves the
  conv input, e.g. in the deep stem and before every split-attention convolution).

Gradients are those of the plain ops (checked with ``torch.autograd.gradcheck`` in the tests); the forward
values are bit-identical, because the forward runs the very same ATen kernels. The ops are used only in
training with autograd recording, never under TorchScript or ``torch.compile`` (whose compilers plan memory
themselves), and only for norms whose forward is plain batch norm at that moment (:func:`supports`): every
``_BatchNorm`` that keeps ``_BatchNorm.forward`` (``nn.BatchNorm2d``, mmengine's ``_BatchNormXd``) and
``SyncBatchNorm`` (torch's and :class:`resnest_backbones.layers.SyncBatchNorm`) while it does not synchronise.
Frozen batch norms (detectron2's and torchvision's ``FrozenBatchNorm2d``) keep their own forward: there the ops
would save no memory (see :func:`supports`). A synchronising ``SyncBatchNorm`` (training with a process group
of more than one process) keeps its own forward: its statistics come from collectives the ops do not perform.
There is no global switch: :mod:`resnest_backbones.accel.training` puts modules that call these ops into a
model, and takes them out again, explicitly.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..layers.split_attention import combine_splits
from ..layers.sync_batchnorm import SyncBatchNorm as CpuSyncBatchNorm

__all__ = [
    "RecomputeCache", "bn_relu", "bn_relu_conv", "combine_splits_recompute", "supports", "supports_conv",
]


def _compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


#: Devices on which ``torch.nn.SyncBatchNorm`` synchronises; on others its forward raises under a process group.
_SYNC_DEVICES = ("cuda", "hpu", "xpu")


def _first_device(norm: nn.Module, sources: Sequence[Tensor]) -> Optional[torch.device]:
    for t in (*norm.parameters(recurse=False), *norm.buffers(recurse=False), *sources):
        return t.device
    return None


def _torch_sync_needed(norm: nn.SyncBatchNorm, sources: Sequence[Tensor]) -> bool:
    """Whether ``torch.nn.SyncBatchNorm.forward`` would not fall back to plain batch norm now.

    Mirrors torch's condition: training (batch statistics) with an initialised process group; then it raises
    for inputs on other devices than GPUs (the reference forward must raise that error, so this says True)
    and synchronises when the group has more than one process.
    """
    if not (norm.training and dist.is_available() and dist.is_initialized()):
        return False
    device = _first_device(norm, sources)
    allowed = (*_SYNC_DEVICES, torch._C._get_privateuse1_backend_name())
    if device is None or device.type not in allowed:
        return True
    group = norm.process_group if norm.process_group else dist.group.WORLD
    return dist.get_world_size(group) > 1


def _is_plain_batch_norm(norm: nn.Module, sources: Sequence[Tensor] = ()) -> bool:
    """Whether ``norm`` computes plain batch norm now (ATen's kernel, batch or running statistics).

    ``_BatchNorm`` subclasses count only with ``_BatchNorm.forward`` itself, or a ``SyncBatchNorm`` forward
    (torch's, this package's) while it falls back to it; any other override may compute something else.
    """
    if not isinstance(norm, _BatchNorm):
        return False
    forward = type(norm).forward
    if forward is _BatchNorm.forward:
        return True
    if forward is nn.SyncBatchNorm.forward:
        return not _torch_sync_needed(norm, sources)  # type: ignore[arg-type]
    if forward is CpuSyncBatchNorm.forward:
        return not (norm.training and norm._group_size() > 1)  # type: ignore[operator]
    return False


def supports(norm: nn.Module, *sources: Tensor) -> bool:
    """Whether the fused ops apply to ``norm`` now, for an input computed from the tensors ``sources``.

    True for norms whose forward is plain batch norm with statistics now (see :func:`_is_plain_batch_norm`:
    ``_BatchNorm`` subclasses keeping ``_BatchNorm.forward``, a non-synchronising ``SyncBatchNorm``), while
    autograd records a graph that needs gradients (through a source or the norm's parameters), outside
    TorchScript, tracing (ONNX export, fvcore) and ``torch.compile``. ``sources`` lets a caller decide before
    computing the norm's input (e.g. from a block's input and the weight of the conv in between).

    False for frozen batch norms (``FrozenBatchNorm2d``): their plain path already keeps a single map (``x *
    scale`` saves only ``scale``, the ReLU and its consumer share the ReLU output), so recomputing would keep as
    much (the norm's input instead) and only add work (measured: 131,168 vs 131,104 saved bytes on a test chain,
    where batch norm goes from 262,272 to 131,136).
    """
    if not torch.is_grad_enabled() or torch.jit.is_scripting() or torch.jit.is_tracing() or _compiling():
        return False
    if not _is_plain_batch_norm(norm, sources):
        return False
    affine = [t for t in (norm.weight, norm.bias) if t is not None]
    return any(t.requires_grad for t in sources) or any(t.requires_grad for t in affine)


NormInputs = Tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor], Optional[Tensor], bool, float, float]


def _norm_inputs(norm: nn.Module) -> NormInputs:
    """``(weight, bias, running_mean, running_var, use batch statistics, running-average factor, eps)`` for the
    ops, as ``_BatchNorm.forward`` chooses them; updates ``num_batches_tracked`` like the module."""
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


def _scale_shift(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], mean: Tensor, invstd: Tensor
                 ) -> Tuple[Tensor, Tensor]:
    """Per-channel ``scale``, ``shift`` (shaped ``(1, C, 1, 1)``) with ``bn(x) == x * scale + shift``."""
    with torch.no_grad():
        scale = invstd if weight is None else weight * invstd
        shift = -mean * scale if bias is None else bias - mean * scale
    return scale.view(1, -1, 1, 1).to(x.dtype), shift.view(1, -1, 1, 1).to(x.dtype)


def _bn_forward(ctx: Any, x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                running_mean: Optional[Tensor], running_var: Optional[Tensor], training: bool, momentum: float,
                eps: float) -> Tuple[Tensor, Tensor, Tensor]:
    """Batch norm + in-place ReLU with ATen's own kernel (so the values are exactly the plain path's).

    Returns ``(z, scale, shift)``; stores on ``ctx`` what the backward needs besides ``x`` and the parameters.
    """
    if not training:
        assert running_mean is not None and running_var is not None
        # Eval mode normalises with the running statistics; a training forward run before this backward
        # would update them in place, so keep the values used here (two vectors).
        running_mean, running_var = running_mean.clone(), running_var.clone()
    y, save_mean, save_invstd = torch.native_batch_norm(
        x, weight, bias, running_mean, running_var, training, momentum, eps)
    if training:
        mean, invstd = save_mean, save_invstd
    else:
        mean, invstd = running_mean, torch.rsqrt(running_var + eps)
    scale, shift = _scale_shift(x, weight, bias, mean, invstd)
    ctx.training, ctx.eps = training, eps
    ctx.stats = (running_mean, running_var, save_mean, save_invstd)
    return y.relu_(), scale, shift


def _bn_backward(ctx: Any, grad_y: Tensor, x: Tensor, weight: Optional[Tensor], needs: Sequence[bool]
                 ) -> Tuple[Optional[Tensor], ...]:
    """Gradients of the norm w.r.t. ``(x, weight, bias)`` given the gradient w.r.t. its output."""
    running_mean, running_var, save_mean, save_invstd = ctx.stats
    mask = [bool(needs[0]), bool(needs[1]), bool(needs[2])]
    grad_x, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(
        grad_y, x, weight, running_mean, running_var, save_mean, save_invstd, ctx.training, ctx.eps, mask)
    return (grad_x if mask[0] else None, grad_w if mask[1] else None, grad_b if mask[2] else None)


def _relu_backward(grad: Tensor, activated: Tensor) -> Tensor:
    """``grad`` where the ReLU output ``activated`` is positive, else 0: one pass (a bool mask would take three)."""
    return torch.ops.aten.threshold_backward(grad, activated, 0)


class RecomputeCache:
    """Carries the activation :func:`combine_splits_recompute`'s backward recomputed to :func:`bn_relu`'s
    backward (which runs right after it), so it is computed once per backward pass."""

    __slots__ = ("z",)

    def __init__(self) -> None:
        self.z: Optional[Tensor] = None

    def take(self) -> Optional[Tensor]:
        z, self.z = self.z, None
        return z


def _recompute(x: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """``relu(bn(x))`` again from the saved input. It may differ from the forward value by float rounding
    (the kernel orders the arithmetic differently); as a ReLU mask it can only differ where ``bn(x)`` is
    within an ulp of 0, where the ReLU has no derivative anyway."""
    return torch.addcmul(shift, x, scale).relu_()


class _BNReLU(torch.autograd.Function):
    """``relu(batch_norm(x))`` keeping only ``x`` (and the statistics) for backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                running_mean: Optional[Tensor], running_var: Optional[Tensor], training: bool, momentum: float,
                eps: float, cache: RecomputeCache) -> Tuple[Tensor, Tensor, Tensor]:
        z, scale, shift = _bn_forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps)
        ctx.save_for_backward(x, weight, scale, shift)
        ctx.mark_non_differentiable(scale, shift)
        ctx.cache = cache
        return z, scale, shift

    @staticmethod
    def backward(ctx: Any, grad_z: Tensor, _grad_scale: Any, _grad_shift: Any) -> Tuple[Optional[Tensor], ...]:
        x, weight, scale, shift = ctx.saved_tensors
        z = ctx.cache.take()
        if z is None:  # no consumer recomputed it (or a second backward through a retained graph)
            z = _recompute(x, scale, shift)
        grad_y = _relu_backward(grad_z, z)
        del z
        return _bn_backward(ctx, grad_y, x, weight, ctx.needs_input_grad[:3]) + (None,) * 6


def bn_relu(x: Tensor, norm: nn.Module) -> Tuple[Tensor, Tensor, Tensor, RecomputeCache]:
    """``relu(norm(x))`` (``norm`` one that :func:`supports` accepts) that does not keep its output for backward.

    Returns ``(z, scale, shift, cache)``: the output, the per-channel affine form of the norm that produced it
    (``(1, C, 1, 1)``, no gradient) and the cache through which :func:`combine_splits_recompute` passes its
    recomputed ``z`` back. Only useful when no consumer of ``z`` saves it. Running statistics and
    ``num_batches_tracked`` are updated exactly as the module does.
    """
    weight, bias, running_mean, running_var, training, factor, eps = _norm_inputs(norm)
    cache = RecomputeCache()
    z, scale, shift = _BNReLU.apply(x, weight, bias, running_mean, running_var, training, factor, eps, cache)
    return z, scale, shift, cache


class _CombineRecompute(torch.autograd.Function):
    """``sum_r z_r * w_r`` with ``z = relu(x * scale + shift)`` recomputed (not saved) for backward."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, weights: Tensor, x: Tensor, scale: Tensor, shift: Tensor,
                cache: Optional[RecomputeCache]) -> Tensor:
        ctx.save_for_backward(weights, x, scale, shift)
        ctx.cache = cache
        return combine_splits(z, weights)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> Tuple[Optional[Tensor], ...]:
        weights, x, scale, shift = ctx.saved_tensors
        radix, channels = weights.shape[1], weights.shape[2]
        grad_z: Optional[Tensor] = None
        if ctx.needs_input_grad[0]:
            grad_z = torch.empty_like(x)  # same shape and memory format as z
            for r in range(radix):
                torch.mul(grad_out, weights[:, r], out=grad_z[:, r * channels:(r + 1) * channels])
        grad_w: Optional[Tensor] = None
        if ctx.needs_input_grad[1]:
            z = _recompute(x, scale, shift)
            grad_w = torch.empty_like(weights)
            product = torch.empty_like(grad_out)
            for r in range(radix):
                torch.mul(z[:, r * channels:(r + 1) * channels], grad_out, out=product)
                grad_w[:, r] = product.sum((2, 3), keepdim=True)
            del product
            if ctx.cache is not None:
                ctx.cache.z = z
        return grad_z, grad_w, None, None, None, None


def combine_splits_recompute(z: Tensor, weights: Tensor, x: Tensor, scale: Tensor, shift: Tensor,
                             cache: Optional[RecomputeCache] = None) -> Tensor:
    """Split attention's ``sum_r z_r * weights_r`` for ``z, scale, shift, cache = bn_relu(x, norm)``,
    recomputing ``z`` from ``x`` in backward instead of keeping it.

    Args:
        z: ``(B, radix*C, H, W)`` radix-major output of :func:`bn_relu` on ``x``.
        weights: ``(B, radix, C, 1, 1)`` attention weights (computed from ``z``).
        x, scale, shift: the batch norm's input and :func:`bn_relu`'s affine form.
        cache: :func:`bn_relu`'s cache; the recomputed ``z`` is left there for its backward.
    """
    return _CombineRecompute.apply(z, weights, x, scale, shift, cache)


class _BNReLUConv(torch.autograd.Function):
    """``conv2d(relu(batch_norm(x)), weight)`` keeping ``x``, not the conv input, for backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, bn_weight: Optional[Tensor], bn_bias: Optional[Tensor],
                running_mean: Optional[Tensor], running_var: Optional[Tensor], training: bool, momentum: float,
                eps: float, conv_weight: Tensor, stride: List[int], padding: List[int], dilation: List[int],
                groups: int) -> Tensor:
        z, scale, shift = _bn_forward(ctx, x, bn_weight, bn_bias, running_mean, running_var, training, momentum,
                                      eps)
        ctx.conv = (stride, padding, dilation, groups)
        ctx.save_for_backward(x, bn_weight, conv_weight, scale, shift)
        return F.conv2d(z, conv_weight, None, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> Tuple[Optional[Tensor], ...]:
        x, bn_weight, conv_weight, scale, shift = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv
        z = _recompute(x, scale, shift)
        need_bn = ctx.needs_input_grad[:3]
        need_weight = ctx.needs_input_grad[8]
        grad_z, grad_cw, _ = torch.ops.aten.convolution_backward(
            grad_out, z, conv_weight, None, stride, padding, dilation, False, [0, 0], groups,
            [any(need_bn), need_weight, False])
        grads: Tuple[Optional[Tensor], ...] = (None, None, None)
        if any(need_bn):
            grads = _bn_backward(ctx, _relu_backward(grad_z, z), x, bn_weight, need_bn)
        return grads + (None,) * 5 + (grad_cw if need_weight else None,) + (None,) * 4


def bn_relu_conv(x: Tensor, norm: nn.Module, conv: nn.Conv2d) -> Tensor:
    """``conv(relu(norm(x)))`` (``norm`` as in :func:`bn_relu`) recomputing the conv input in backward instead
    of keeping it.

    ``conv`` must be a plain ``nn.Conv2d`` without bias and with zero padding mode (see :func:`supports_conv`).
    """
    weight, bias, running_mean, running_var, training, factor, eps = _norm_inputs(norm)
    return _BNReLUConv.apply(
        x, weight, bias, running_mean, running_var, training, factor, eps, conv.weight,
        list(conv.stride), list(conv.padding), list(conv.dilation), conv.groups)


def supports_conv(conv: nn.Module) -> bool:
    """Whether :func:`bn_relu_conv` can stand in for ``conv`` (a plain, bias-free, zero-padded ``nn.Conv2d``)."""
    return (type(conv) is nn.Conv2d and conv.bias is None and conv.padding_mode == "zeros"
            and not isinstance(conv.padding, str))
