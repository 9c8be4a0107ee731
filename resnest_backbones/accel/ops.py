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
* :func:`combine_splits_conv_bn` — the weighted sum followed by a bottleneck's ``bn3(conv3(...))``, keeping
  neither the sum (the conv's input, recomputed) nor the conv's output (the norm's input, the block's widest map:
  its backward is written without it, at the cost of a Gram matrix and a small convolution per block).

Gradients are those of the plain ops (checked with ``torch.autograd.gradcheck`` in the tests); the forward
values of local batch norm are bit-identical, because the forward runs the very same ATen kernels. The ops are
used only in training with autograd recording, never under TorchScript or ``torch.compile`` (whose compilers plan
memory themselves), and only for norms whose forward is batch norm (:func:`supports`): every ``_BatchNorm`` that
keeps ``_BatchNorm.forward`` (``nn.BatchNorm2d``, mmengine's ``_BatchNormXd``), and torch's and
:class:`resnest_backbones.layers.SyncBatchNorm` and detectron2's ``NaiveSyncBatchNorm``, synchronising or not.
A synchronising ``SyncBatchNorm`` gets its batch statistics from the same all-reduces as
:class:`resnest_backbones.layers.SyncBatchNorm` (forward) and all-reduces the two per-channel gradient sums in
backward, as torch's SyncBN does; ``NaiveSyncBatchNorm`` its own statistics (:class:`NaiveSyncMode`); their
outputs equal the modules' up to float rounding. Frozen batch norms (detectron2's and torchvision's
``FrozenBatchNorm2d``) keep their own forward: there the ops would save no memory (see :func:`supports`).
``nn.GroupNorm`` gets the same treatment (ATen's group-norm kernels; scale and shift per sample and channel),
except under autocast and in the Gram route of :func:`combine_splits_conv_bn` (its conv output is recomputed).
There is no global switch: :mod:`resnest_backbones.accel.training` puts modules that call these ops into a
model, and takes them out again, explicitly.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..layers.split_attention import combine_splits
from ..layers.sync_batchnorm import SyncBatchNorm as CpuSyncBatchNorm
from ..layers.sync_batchnorm import all_reduced_moments, update_running_stats

__all__ = [
    "RecomputeCache", "bn_relu", "bn_relu_conv", "combine_splits_conv_bn", "combine_splits_recompute", "supports",
    "supports_conv", "supports_projection",
]


def _compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


#: Dtypes in which synchronised statistics are computed as they are (others, e.g. float16, in float32).
_STATS_DTYPES = (torch.float32, torch.float64)


def _stats_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype for per-channel sums over a map of ``dtype``: float32 at least."""
    return dtype if dtype in _STATS_DTYPES else torch.float32


#: Devices on which ``torch.nn.SyncBatchNorm`` synchronises; on others its forward raises under a process group.
_SYNC_DEVICES = ("cuda", "hpu", "xpu")


def _first_device(norm: nn.Module, sources: Sequence[Tensor]) -> Optional[torch.device]:
    for t in (*norm.parameters(recurse=False), *norm.buffers(recurse=False), *sources):
        return t.device
    return None


def _world(group: Optional[Any]) -> Any:
    return group if group is not None else dist.group.WORLD


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


#: How a batch norm gets its statistics (:func:`_norm_mode`), besides a process group to all-reduce them over.
UNSUPPORTED, LOCAL = "unsupported", "local"


@dataclass(frozen=True)
class NaiveSyncMode:
    """:func:`_norm_mode` of a synchronising detectron2 ``NaiveSyncBatchNorm``: its own statistics over all
    processes (``stats_mode ""``: the mean of the processes' means and mean squares; ``"N"``: weighted by their
    batch sizes), ``var = E[x^2] - E[x]^2``, running averages of the biased variance."""

    stats_mode: str


@dataclass(frozen=True)
class GroupNormMode:
    """:func:`_norm_mode` of a plain ``nn.GroupNorm``: statistics per sample and group of channels."""

    groups: int


def _torch_sync_mode(norm: nn.SyncBatchNorm, sources: Sequence[Tensor]) -> Any:
    """What ``torch.nn.SyncBatchNorm.forward`` does now, by torch's condition: plain batch norm unless training
    (batch statistics) with an initialised process group; then it raises for inputs on other devices than GPUs
    (the reference forward must raise that error: UNSUPPORTED) and synchronises over its group when that has
    more than one process."""
    if not (norm.training and _distributed()):
        return LOCAL
    device = _first_device(norm, sources)
    allowed = (*_SYNC_DEVICES, torch._C._get_privateuse1_backend_name())
    if device is None or device.type not in allowed:
        return UNSUPPORTED
    group = _world(norm.process_group)
    return group if dist.get_world_size(group) > 1 else LOCAL


def _naive_sync_forward() -> Any:
    """``detectron2.layers.NaiveSyncBatchNorm.forward`` when detectron2 is imported (a model using it is), else None."""
    module = sys.modules.get("detectron2.layers.batch_norm")
    naive = getattr(module, "NaiveSyncBatchNorm", None)
    return naive.forward if naive is not None else None


def _norm_mode(norm: nn.Module, sources: Sequence[Tensor] = ()) -> Any:
    """How ``norm`` normalises now: :data:`LOCAL` (ATen's batch norm, batch or running statistics), a process
    group (batch statistics all-reduced over it, as :class:`resnest_backbones.layers.SyncBatchNorm` and torch's
    SyncBN compute them), a :class:`NaiveSyncMode` (detectron2's synchronising ``NaiveSyncBatchNorm``), a
    :class:`GroupNormMode`, or :data:`UNSUPPORTED`.

    ``_BatchNorm`` subclasses count only with ``_BatchNorm.forward`` itself or a forward known here; any other
    override may compute something else.
    """
    if isinstance(norm, nn.GroupNorm) and type(norm).forward is nn.GroupNorm.forward:
        return GroupNormMode(norm.num_groups)
    if not isinstance(norm, _BatchNorm):
        return UNSUPPORTED
    forward = type(norm).forward
    if forward is _BatchNorm.forward:
        return LOCAL
    if forward is nn.SyncBatchNorm.forward:
        return _torch_sync_mode(norm, sources)  # type: ignore[arg-type]
    if forward is CpuSyncBatchNorm.forward:
        synchronising = norm.training and norm._group_size() > 1  # type: ignore[operator]
        return _world(norm.process_group) if synchronising else LOCAL
    if forward is _naive_sync_forward():
        if not (norm.training and _distributed() and dist.get_world_size() > 1):
            return LOCAL  # it runs plain batch norm
        if any(t.dim() == 4 and t.shape[0] == 0 for t in sources):
            return UNSUPPORTED  # its special case of an empty batch: the reference
        return NaiveSyncMode(norm._stats_mode)  # type: ignore[arg-type]
    return UNSUPPORTED


def supports(norm: nn.Module, *sources: Tensor) -> bool:
    """Whether the fused ops apply to ``norm`` now, for an input computed from the tensors ``sources``.

    True for norms whose forward is batch norm now (see :func:`_norm_mode`: ``_BatchNorm`` subclasses keeping
    ``_BatchNorm.forward``, torch's and this package's ``SyncBatchNorm`` and detectron2's ``NaiveSyncBatchNorm``,
    synchronising or not) or GroupNorm (``nn.GroupNorm`` itself, outside autocast), while
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
    mode = _norm_mode(norm, sources)
    if mode is UNSUPPORTED:
        return False
    if isinstance(mode, GroupNormMode):  # autocast runs group_norm in float32 on GPUs; the ops would not
        device = _first_device(norm, sources)
        if device is not None and torch.is_autocast_enabled(device.type):
            return False
    affine = [t for t in (norm.weight, norm.bias) if t is not None]
    return any(t.requires_grad for t in sources) or any(t.requires_grad for t in affine)


NormInputs = Tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor], Optional[Tensor], bool, float, float, Any]


def _norm_inputs(norm: nn.Module, x: Tensor) -> NormInputs:
    """``(weight, bias, running_mean, running_var, use batch statistics, running-average factor, eps, group)``
    for the ops, as the module's forward chooses them (``group``: None for local statistics, else the process group
    or mode of :func:`_norm_mode`); updates ``num_batches_tracked`` like the module."""
    mode = _norm_mode(norm, (x,))
    assert mode is not UNSUPPORTED, "call the ops only for norms that supports() accepts"
    if isinstance(mode, GroupNormMode):  # no running statistics; ``group`` carries the number of groups
        return norm.weight, norm.bias, None, None, True, 0.0, float(norm.eps), mode
    if isinstance(mode, NaiveSyncMode):  # its forward neither counts batches nor tracks anything else
        return norm.weight, norm.bias, norm.running_mean, norm.running_var, True, norm.momentum, float(norm.eps), mode
    factor = 0.0 if norm.momentum is None else norm.momentum
    if norm.training and norm.track_running_stats and norm.num_batches_tracked is not None:
        norm.num_batches_tracked.add_(1)
        if norm.momentum is None:  # cumulative moving average
            factor = 1.0 / float(norm.num_batches_tracked)
    use_batch = norm.training or (norm.running_mean is None and norm.running_var is None)
    tracked = not norm.training or norm.track_running_stats  # otherwise the buffers must not be updated
    running_mean = norm.running_mean if tracked else None
    running_var = norm.running_var if tracked else None
    group = None if mode is LOCAL else mode
    return norm.weight, norm.bias, running_mean, running_var, use_batch, factor, float(norm.eps), group


def _scale_shift(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], mean: Tensor, invstd: Tensor
                 ) -> Tuple[Tensor, Tensor]:
    """Per-channel ``scale``, ``shift`` (shaped ``(1, C, 1, 1)``) with ``bn(x) == x * scale + shift``."""
    with torch.no_grad():
        scale = invstd if weight is None else weight * invstd
        shift = -mean * scale if bias is None else bias - mean * scale
    return scale.view(1, -1, 1, 1).to(x.dtype), shift.view(1, -1, 1, 1).to(x.dtype)


def _bn_forward(ctx: Any, x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                running_mean: Optional[Tensor], running_var: Optional[Tensor], training: bool, momentum: float,
                eps: float, group: Any, relu: bool = True) -> Tuple[Tensor, Tensor, Tensor]:
    """Batch norm (+ in-place ReLU with ``relu``): with ATen's own kernel (so the values are exactly the plain
    path's), or with batch statistics all-reduced over ``group`` when that is not None.

    Returns ``(z, scale, shift)``; stores on ``ctx`` what the backward needs besides ``x`` and the parameters.
    """
    ctx.training, ctx.eps, ctx.sync, ctx.groups = training, eps, None, None
    if isinstance(group, GroupNormMode):
        return _group_norm_forward(ctx, x, weight, bias, eps, group.groups, relu)
    if training and group is not None:
        with torch.no_grad():
            mean, invstd, count, process_group = _synchronised_statistics(
                x.to(_stats_dtype(x.dtype)), running_mean, running_var, momentum, eps, group)
        scale, shift = _scale_shift(x, weight, bias, mean, invstd)
        ctx.stats, ctx.sync = (None, None, mean, invstd), (process_group, count)
        y = torch.addcmul(shift, x, scale)
        return (y.relu_() if relu else y), scale, shift
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
    ctx.stats = (running_mean, running_var, save_mean, save_invstd)
    return (y.relu_() if relu else y), scale, shift


def _synchronised_statistics(values: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
                             momentum: float, eps: float, group: Any) -> Tuple[Tensor, Tensor, float, Any]:
    """``(mean, invstd, count, process group)`` of a synchronising norm's batch statistics, its running statistics
    updated: detectron2's own for a :class:`NaiveSyncMode`, else all-reduced over the process group ``group`` as
    :class:`resnest_backbones.layers.SyncBatchNorm` computes them. ``count`` is what the backward's mean terms
    divide the all-reduced gradient sums by."""
    if isinstance(group, NaiveSyncMode):
        assert running_mean is not None and running_var is not None
        return (*_naive_sync_statistics(values, running_mean, running_var, momentum, eps, group), dist.group.WORLD)
    mean, var, count = all_reduced_moments(values, group)
    if running_mean is not None and running_var is not None:
        update_running_stats(running_mean, running_var, mean, var, count, momentum)
    return mean, torch.rsqrt(var + eps), count, group


def _naive_sync_statistics(values: Tensor, running_mean: Tensor, running_var: Tensor, momentum: float, eps: float,
                           mode: NaiveSyncMode) -> Tuple[Tensor, Tensor, float]:
    """``(mean, invstd, count)`` as detectron2's ``NaiveSyncBatchNorm`` computes them over all processes, its running
    statistics updated as it does. ``count`` is ``1 / weight`` of this process's values in the statistics (the
    combined batch's size for equal batches), which the backward's mean terms divide by."""
    channels, batch = values.shape[1], values.shape[0]
    dims = [0] + list(range(2, values.dim()))
    local = torch.cat([values.mean(dims), (values * values).mean(dims)])
    per_sample = values.numel() // (batch * channels)
    if mode.stats_mode == "":
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


def _group_norm_forward(ctx: Any, x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], eps: float,
                        groups: int, relu: bool) -> Tuple[Tensor, Tensor, Tensor]:
    """:func:`_bn_forward` for GroupNorm (ATen's kernel, as ``F.group_norm``); ``scale`` and ``shift`` are per
    sample and channel, ``(N, C, 1, 1)``."""
    batch, channels = x.shape[:2]
    positions = x.numel() // (batch * channels) if batch * channels else 0
    y, mean, rstd = torch.native_group_norm(x, weight, bias, batch, channels, positions, groups, eps)
    with torch.no_grad():
        per_channel = channels // groups
        scale = rstd.repeat_interleave(per_channel, dim=1)
        if weight is not None:
            scale = scale * weight
        shift = -mean.repeat_interleave(per_channel, dim=1) * scale
        if bias is not None:
            shift = shift + bias
    ctx.stats, ctx.groups = (None, None, mean, rstd), (groups, positions)
    shape = (batch, channels) + (1,) * (x.dim() - 2)
    return (y.relu_() if relu else y), scale.view(shape).to(x.dtype), shift.view(shape).to(x.dtype)


def _bn_backward(ctx: Any, grad_y: Tensor, x: Tensor, weight: Optional[Tensor], needs: Sequence[bool]
                 ) -> Tuple[Optional[Tensor], ...]:
    """Gradients of the norm w.r.t. ``(x, weight, bias)`` given the gradient w.r.t. its output."""
    running_mean, running_var, save_mean, save_invstd = ctx.stats
    mask = [bool(needs[0]), bool(needs[1]), bool(needs[2])]
    if ctx.groups is not None:
        groups, positions = ctx.groups
        grad_x, grad_w, grad_b = torch.ops.aten.native_group_norm_backward(
            grad_y, x, save_mean, save_invstd, weight, x.shape[0], x.shape[1], positions, groups, mask)
        return (grad_x if mask[0] else None, grad_w if mask[1] else None, grad_b if mask[2] else None)
    if ctx.sync is not None:
        return _synchronised_bn_backward(ctx, grad_y, x, weight, mask)
    grad_x, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(
        grad_y, x, weight, running_mean, running_var, save_mean, save_invstd, ctx.training, ctx.eps, mask)
    return (grad_x if mask[0] else None, grad_w if mask[1] else None, grad_b if mask[2] else None)


def _synchronised_bn_backward(ctx: Any, grad_y: Tensor, x: Tensor, weight: Optional[Tensor], mask: List[bool]
                              ) -> Tuple[Optional[Tensor], ...]:
    """:func:`_bn_backward` for statistics all-reduced over a process group.

    The per-channel sums ``sum(dy)`` and ``sum(dy * x_hat)`` of this process are the weight and bias gradients
    (local: data parallelism averages those); ``x``'s gradient needs them summed over all processes, because
    every process's output depends on ``x`` through the shared mean and variance:
    ``dx = w * invstd * (dy - mean(dy) - x_hat * mean(dy * x_hat))``, the means over the combined batch.
    """
    group, count = ctx.sync
    _, _, mean, invstd = ctx.stats
    _, sum_dy_xhat, sum_dy = torch.ops.aten.native_batch_norm_backward(
        grad_y, x, weight, None, None, mean, invstd, True, ctx.eps, [False, True, True])
    grad_x: Optional[Tensor] = None
    if mask[0]:
        totals = torch.cat([sum_dy, sum_dy_xhat])
        dist.all_reduce(totals, group=group)
        mean_dy, mean_dy_xhat = (totals / count).chunk(2)
        a = invstd if weight is None else weight * invstd  # dx = a * dy + c * x + d, per channel
        c = -a * invstd * mean_dy_xhat
        d = -a * mean_dy - c * mean
        shape = (1, -1) + (1,) * (x.dim() - 2)
        dtype = grad_y.dtype
        grad_x = torch.addcmul(d.view(shape).to(dtype), x, c.view(shape).to(dtype))
        grad_x.addcmul_(grad_y, a.view(shape).to(dtype))
    return (grad_x, sum_dy_xhat if mask[1] else None, sum_dy if mask[2] else None)


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
                eps: float, group: Any, cache: RecomputeCache) -> Tuple[Tensor, Tensor, Tensor]:
        z, scale, shift = _bn_forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps,
                                      group)
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
        return _bn_backward(ctx, grad_y, x, weight, ctx.needs_input_grad[:3]) + (None,) * 7


def bn_relu(x: Tensor, norm: nn.Module) -> Tuple[Tensor, Tensor, Tensor, RecomputeCache]:
    """``relu(norm(x))`` (``norm`` one that :func:`supports` accepts) that does not keep its output for backward.

    Returns ``(z, scale, shift, cache)``: the output, the per-channel affine form of the norm that produced it
    (``(1, C, 1, 1)``, no gradient) and the cache through which :func:`combine_splits_recompute` passes its
    recomputed ``z`` back. Only useful when no consumer of ``z`` saves it. Running statistics and
    ``num_batches_tracked`` are updated exactly as the module does.
    """
    cache = RecomputeCache()
    z, scale, shift = _BNReLU.apply(x, *_norm_inputs(norm, x), cache)
    return z, scale, shift, cache


#: ``(stride, padding, dilation, groups)`` of a convolution, as ``F.conv2d`` takes them after the bias.
ConvArgs = Tuple[List[int], List[int], List[int], int]


#: A 1x1 convolution's (stride, padding, dilation, groups).
_POINTWISE: ConvArgs = ([1, 1], [0, 0], [1, 1], 1)


def _conv_args(conv: nn.Conv2d) -> ConvArgs:
    return list(conv.stride), list(conv.padding), list(conv.dilation), conv.groups  # type: ignore[arg-type]


def _conv_backward(grad_out: Tensor, conv_input: Tensor, weight: Tensor, conv: ConvArgs, need_input: bool,
                   need_weight: bool) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """Gradients of a bias-free ``F.conv2d(conv_input, weight, None, *conv)`` w.r.t. its input and weight."""
    stride, padding, dilation, groups = conv
    grad_input, grad_weight, _ = torch.ops.aten.convolution_backward(
        grad_out, conv_input, weight, None, stride, padding, dilation, False, [0, 0], groups,
        [need_input, need_weight, False])
    return (grad_input if need_input else None), (grad_weight if need_weight else None)


def _combine_backward(grad_out: Tensor, z: Optional[Tensor], weights: Tensor, x: Tensor, scale: Tensor,
                      shift: Tensor, needs: Sequence[bool]) -> Tuple[Optional[Tensor], Optional[Tensor], Tensor]:
    """Gradients of ``combine_splits(z, weights)`` w.r.t. ``(z, weights)``, and ``z`` (recomputed from ``x``
    with :func:`_recompute` unless given)."""
    radix, channels = weights.shape[1], weights.shape[2]
    if z is None:
        z = _recompute(x, scale, shift)
    grad_z: Optional[Tensor] = None
    if needs[0]:
        grad_z = torch.empty_like(x)  # same shape and memory format as z
        for r in range(radix):
            torch.mul(grad_out, weights[:, r], out=grad_z[:, r * channels:(r + 1) * channels])
    grad_w: Optional[Tensor] = None
    if needs[1]:
        grad_w = torch.empty_like(weights)
        product = torch.empty_like(grad_out)
        for r in range(radix):
            torch.mul(z[:, r * channels:(r + 1) * channels], grad_out, out=product)
            grad_w[:, r] = product.sum((2, 3), keepdim=True)
    return grad_z, grad_w, z


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
        grad_z, grad_w, z = _combine_backward(grad_out, None, weights, x, scale, shift, ctx.needs_input_grad)
        if ctx.cache is not None:
            ctx.cache.z = z
        return grad_z, grad_w, None, None, None, None


def _normalisation(ctx: Any) -> Tuple[Tensor, Tensor]:
    """``(mean, invstd)`` with which :func:`_bn_forward` normalised."""
    running_mean, running_var, save_mean, save_invstd = ctx.stats
    if ctx.training:
        return save_mean, save_invstd
    return running_mean, torch.rsqrt(running_var + ctx.eps)


def _weight_gradient(grad_out: Tensor, conv_input: Tensor, out_channels: int) -> Tensor:
    """``sum over (n, h, w) of grad_out[:, o] * conv_input[:, i]``, shaped ``(out_channels, in_channels)``: a 1x1
    convolution's weight gradient (oneDNN's kernel, any memory format)."""
    shape = (out_channels, conv_input.shape[1], 1, 1)
    _, grad_weight, _ = torch.ops.aten.convolution_backward(
        grad_out, conv_input, conv_input.new_zeros(shape), None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1,
        [False, True, False])
    return grad_weight.flatten(1)


def _projection_bn_backward(ctx: Any, grad_out: Tensor, conv_input: Tensor, conv_weight: Tensor,
                            bn_weight: Optional[Tensor], needs: Sequence[bool]) -> Tuple[Optional[Tensor], ...]:
    """Gradients of ``bn(conv1x1(conv_input))`` w.r.t. ``(conv_input, conv_weight, bn weight, bn bias)`` without
    the convolution's output ``y = W c`` (never materialised in backward).

    With ``a = gamma * invstd`` per output channel, batch norm's input gradient is ``a * dy + b * y + k`` where
    ``b`` and ``k`` hold the (batch-statistics) mean terms. Every place that needs ``y`` takes it through ``W``:
    ``sum(dy * y)[o] = sum_i W[o, i] * D[o, i]`` with ``D = dy (x) c`` (what the weight gradient needs anyway),
    ``sum(y (x) c) = W G`` with the Gram matrix ``G = c (x) c`` (in x in), and ``W^T diag(b) y = (W^T diag(b) W) c``.
    So the price of not keeping ``y`` is ``G`` and one in->in 1x1 convolution: half a recomputation of ``y``.
    """
    dtype, stat = conv_input.dtype, _stats_dtype(conv_input.dtype)
    out_channels = conv_weight.shape[0]
    dims = [0] + list(range(2, grad_out.dim()))
    w = conv_weight.flatten(1).to(stat)
    mean, invstd = (t.to(stat) for t in _normalisation(ctx))
    d = _weight_gradient(grad_out, conv_input, out_channels).to(stat)
    sum_dy = grad_out.sum(dims, dtype=stat)
    sum_dy_xhat = invstd * ((w * d).sum(1) - mean * sum_dy)  # batch norm's weight gradient
    a = invstd if bn_weight is None else bn_weight.to(stat) * invstd
    b: Optional[Tensor] = None
    if ctx.training:  # batch statistics: the mean terms, over all processes' batches when synchronised
        totals = torch.cat([sum_dy, sum_dy_xhat])
        count = float(grad_out.numel() // out_channels)
        if ctx.sync is not None:
            group, count = ctx.sync
            dist.all_reduce(totals, group=group)
        mean_dy, mean_dy_xhat = (totals / count).chunk(2)
        b = -a * invstd * mean_dy_xhat
        k = -a * mean_dy - b * mean
    weight_shape = (out_channels, conv_weight.shape[1], 1, 1)
    grad_input, _, _ = torch.ops.aten.convolution_backward(
        grad_out, conv_input, (w * a[:, None]).to(dtype).view(weight_shape), None, [1, 1], [0, 0], [1, 1], False,
        [0, 0], 1, [True, False, False])
    if b is not None:
        mixing = (w.t() @ (b[:, None] * w)).to(dtype)[:, :, None, None]  # W^T diag(b) W, in x in
        grad_input += F.conv2d(conv_input, mixing, (w.t() @ k).to(dtype))
    grad_w: Optional[Tensor] = None
    if needs[0]:
        grad = a[:, None] * d
        if b is not None:
            gram = _weight_gradient(conv_input, conv_input, conv_input.shape[1]).to(stat)
            grad += b[:, None] * (w @ gram) + k[:, None] * conv_input.sum(dims, dtype=stat)[None, :]
        grad_w = grad.view(weight_shape).to(conv_weight.dtype)
    return (grad_input, grad_w, sum_dy_xhat if needs[1] else None, sum_dy if needs[2] else None)


#: :func:`_projection_bn_backward` (extra work ``2 C^2 P + 8 C^3`` for ``C`` input channels, ``P`` positions)
#: is cheaper than recomputing the 1x1 convolution's output (``4 C^2 P``) when ``P > 4 C``: on large maps.
GRAM_MIN_POSITIONS_PER_CHANNEL = 4


class _CombineConvBN(torch.autograd.Function):
    """``bn(conv1x1(sum_r z_r * w_r))`` (no ReLU) keeping none of the maps after ``z`` for backward: ``z`` and
    the weighted sum are recomputed from split attention's kept input ``x``; the 1x1 convolution's output (the
    norm's input, the block's widest map) is not kept either: on large maps the backward does without it
    (:func:`_projection_bn_backward`), on small ones (few positions per channel) it is recomputed."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, weights: Tensor, x: Tensor, scale: Tensor, shift: Tensor,
                cache: Optional[RecomputeCache], conv_weight: Tensor, bn_weight: Optional[Tensor],
                bn_bias: Optional[Tensor], running_mean: Optional[Tensor], running_var: Optional[Tensor],
                training: bool, momentum: float, eps: float, group: Any) -> Tensor:
        projected = F.conv2d(combine_splits(z, weights), conv_weight)
        out, _, _ = _bn_forward(ctx, projected, bn_weight, bn_bias, running_mean, running_var, training, momentum,
                                eps, group, relu=False)
        ctx.save_for_backward(weights, x, scale, shift, conv_weight, bn_weight)
        ctx.cache = cache
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> Tuple[Optional[Tensor], ...]:
        weights, x, scale, shift, conv_weight, bn_weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        z = _recompute(x, scale, shift)
        combined = combine_splits(z, weights)
        positions = grad_out.numel() // grad_out.shape[1]
        if ctx.groups is None and positions > GRAM_MIN_POSITIONS_PER_CHANNEL * combined.shape[1]:
            grad_combined, grad_cw, grad_bw, grad_bb = _projection_bn_backward(
                ctx, grad_out, combined, conv_weight, bn_weight, needs[6:9])
        else:
            weight = conv_weight.to(combined.dtype)  # as autocast ran the forward convolution
            projected = F.conv2d(combined, weight)
            grad_projected, grad_bw, grad_bb = _bn_backward(ctx, grad_out, projected, bn_weight,
                                                            (True, needs[7], needs[8]))
            del projected
            grad_combined, grad_cw = _conv_backward(grad_projected, combined, weight, _POINTWISE, True, needs[6])
            grad_cw = None if grad_cw is None else grad_cw.to(conv_weight.dtype)
        del combined
        grad_z, grad_w, z = _combine_backward(grad_combined, z, weights, x, scale, shift, needs)
        if ctx.cache is not None:
            ctx.cache.z = z
        return (grad_z, grad_w, None, None, None, None, grad_cw, grad_bw, grad_bb) + (None,) * 6


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


def combine_splits_conv_bn(z: Tensor, weights: Tensor, x: Tensor, scale: Tensor, shift: Tensor,
                           cache: Optional[RecomputeCache], conv: nn.Conv2d, norm: nn.Module) -> Tensor:
    """``norm(conv(sum_r z_r * weights_r))`` (a bottleneck's ``bn3(conv3(...))`` after split attention) for
    the arguments of :func:`combine_splits_recompute`, keeping no map of its own for backward (the sum is
    recomputed, the convolution's output is not needed); ``conv`` as :func:`supports_projection` and ``norm``
    as :func:`supports` accept."""
    return _CombineConvBN.apply(z, weights, x, scale, shift, cache, conv.weight, *_norm_inputs(norm, x))


class _BNReLUConv(torch.autograd.Function):
    """``conv2d(relu(batch_norm(x)), weight)`` keeping ``x``, not the conv input, for backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, bn_weight: Optional[Tensor], bn_bias: Optional[Tensor],
                running_mean: Optional[Tensor], running_var: Optional[Tensor], training: bool, momentum: float,
                eps: float, group: Any, conv_weight: Tensor, conv: ConvArgs) -> Tensor:
        z, scale, shift = _bn_forward(ctx, x, bn_weight, bn_bias, running_mean, running_var, training, momentum,
                                      eps, group)
        ctx.conv = conv
        ctx.save_for_backward(x, bn_weight, conv_weight, scale, shift)
        return F.conv2d(z, conv_weight, None, *conv)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> Tuple[Optional[Tensor], ...]:
        x, bn_weight, conv_weight, scale, shift = ctx.saved_tensors
        z = _recompute(x, scale, shift)
        need_bn = ctx.needs_input_grad[:3]
        grad_z, grad_cw = _conv_backward(grad_out, z, conv_weight, ctx.conv, any(need_bn), ctx.needs_input_grad[9])
        grads: Tuple[Optional[Tensor], ...] = (None, None, None)
        if grad_z is not None:
            grads = _bn_backward(ctx, _relu_backward(grad_z, z), x, bn_weight, need_bn)
        return grads + (None,) * 6 + (grad_cw, None)


def bn_relu_conv(x: Tensor, norm: nn.Module, conv: nn.Conv2d) -> Tensor:
    """``conv(relu(norm(x)))`` (``norm`` as in :func:`bn_relu`) recomputing the conv input in backward instead
    of keeping it.

    ``conv`` must be a plain ``nn.Conv2d`` without bias and with zero padding mode (see :func:`supports_conv`).
    """
    return _BNReLUConv.apply(x, *_norm_inputs(norm, x), conv.weight, _conv_args(conv))


def supports_conv(conv: nn.Module) -> bool:
    """Whether the ops can stand in for ``conv`` (a plain, bias-free, zero-padded ``nn.Conv2d``)."""
    return (type(conv) is nn.Conv2d and conv.bias is None and conv.padding_mode == "zeros"
            and not isinstance(conv.padding, str))


def supports_projection(conv: nn.Module) -> bool:
    """Whether :func:`combine_splits_conv_bn` can stand in for ``conv``: a plain, bias-free 1x1 ``nn.Conv2d``
    with stride 1 and one group (a bottleneck's ``conv3``)."""
    return (supports_conv(conv) and tuple(conv.kernel_size) == (1, 1) and tuple(conv.stride) == (1, 1)
            and tuple(conv.padding) == (0, 0) and conv.groups == 1)
