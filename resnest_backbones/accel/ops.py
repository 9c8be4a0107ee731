"""Memory-saving training ops for ResNeSt (Zhang et al., 2020, "ResNeSt: Split-Attention Networks").

Plain autograd keeps, for every ``conv -> norm -> ReLU -> consumer`` chain, both the norm's input (for the norm's
backward) and the ReLU output (for the ReLU's and the consumer's backward). The ReLU output is a cheap elementwise
function of the norm's input, so the functions here save only the norm's input and its statistics and recompute
``relu(norm(x))`` in the backward pass:

* :func:`bn_relu` — ``relu(norm(x))`` whose output is not kept; its consumer must not keep it either. It also
  returns the output's spatial means (split attention's pooling), whose gradient joins the output's in one pass.
* :func:`combine_splits_recompute` — split attention's weighted sum of the radix splits, consuming
  :func:`bn_relu`'s output and recomputing it in backward (saves one ``(B, radix*C, H, W)`` map per block);
  it hands the recomputed map on to :func:`bn_relu`'s backward, which runs next and needs it as its ReLU mask.
* :func:`bn_relu_conv` — ``conv2d(relu(norm(x)))`` that recomputes the conv input in backward (saves the
  conv input, e.g. in the deep stem and before every split-attention convolution).
* :func:`combine_splits_conv_bn` — the weighted sum followed by a bottleneck's ``bn3(conv3(...))``, keeping
  neither the sum (the conv's input, recomputed) nor the conv's output (the norm's input, the block's widest map:
  its backward is written without it (:mod:`.projection`), at the cost of a Gram matrix and a small convolution
  per block; on small maps, where that costs more, the conv's output is recomputed instead).

The autograd functions here hold the dataflow; what the norm computes (statistics, running averages, its backward)
is its kernel's (:mod:`resnest_backbones.accel.norms`: which norms have one, and how they are computed), passed to
them as one argument (None: local batch norm). Gradients are those of the plain ops (checked with
``torch.autograd.gradcheck`` in the tests); the forward values of local batch norm are bit-identical, because the
forward runs the very same ATen kernels. The ops are used only in training with autograd recording, never under
TorchScript or ``torch.compile`` (whose compiler recomputes cheap maps itself; :mod:`.compiled` has what it cannot
do), and only for norms that have a kernel now
(:func:`supports`). There is no global switch: :mod:`resnest_backbones.accel.training` puts modules that call these
ops into a model, and takes them out again, explicitly.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers.split_attention import combine_splits
from .norms import LOCAL, NormArguments, NormKernel, kernel_for
from .projection import projection_bn_backward

__all__ = [
    "RecomputeCache", "bn_relu", "bn_relu_conv", "combine_splits_conv_bn", "combine_splits_recompute", "compiling",
    "project_norm_backward", "supports", "supports_conv", "supports_projection",
]


def compiling() -> bool:
    """Whether ``torch.compile`` (Dynamo) is tracing the code now."""
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


def supports(norm: nn.Module, *sources: Tensor) -> bool:
    """Whether the fused ops apply to ``norm`` now, for an input computed from the tensors ``sources``.

    True for norms with a kernel now (:func:`resnest_backbones.accel.norms.kernel_for`: batch norms whose forward
    is ATen's, synchronising or not, and ``nn.GroupNorm`` outside autocast), while autograd records a graph that
    needs gradients (through a source or the norm's parameters), outside TorchScript, tracing (ONNX export, fvcore)
    and ``torch.compile``. ``sources`` lets a caller decide before computing the norm's input (e.g. from a block's
    input and the weight of the conv in between).

    False for frozen batch norms (``FrozenBatchNorm2d``): their plain path already keeps a single map, so
    recomputing would keep as much and only add work (measured: 131,168 vs 131,104 saved bytes on a test chain,
    where batch norm goes from 262,272 to 131,136).
    """
    if not torch.is_grad_enabled() or torch.jit.is_scripting() or torch.jit.is_tracing() or compiling():
        return False
    if kernel_for(norm, *sources) is None:
        return False
    affine = [t for t in (norm.weight, norm.bias) if t is not None]
    return any(t.requires_grad for t in sources) or any(t.requires_grad for t in affine)


def _norm_inputs(norm: nn.Module, x: Tensor) -> Tuple[Any, ...]:
    """The norm's arguments of the autograd functions: :data:`~resnest_backbones.accel.norms.NormArguments` as
    the module's forward chooses them now (counting ``num_batches_tracked`` like it), then its kernel."""
    kernel = kernel_for(norm, x)
    assert kernel is not None, "call the ops only for norms that supports() accepts"
    arguments: NormArguments = kernel.arguments(norm)
    return (*arguments, kernel)


def _norm_forward(ctx: Any, x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                  running_mean: Optional[Tensor], running_var: Optional[Tensor], training: bool, momentum: float,
                  eps: float, kernel: Optional[NormKernel], relu: bool = True) -> Tuple[Tensor, Tensor, Tensor]:
    """``(z, scale, shift)``: the norm by ``kernel`` (None: local batch norm), with an in-place ReLU if ``relu``;
    keeps the kernel on ``ctx`` for backward (``ctx.kernel.backward``)."""
    ctx.kernel = LOCAL if kernel is None else kernel
    y, scale, shift = ctx.kernel.forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps)
    return (y.relu_() if relu else y), scale, shift


def _relu_backward(grad: Tensor, activated: Tensor, in_place: bool = False) -> Tensor:
    """``grad`` where the ReLU output ``activated`` is positive, else 0: one pass (a bool mask would take three),
    written into ``grad`` itself if ``in_place`` (a gradient the caller owns: no new map)."""
    if in_place:
        return torch.ops.aten.threshold_backward.grad_input(grad, activated, 0, grad_input=grad)
    return torch.ops.aten.threshold_backward(grad, activated, 0)


class RecomputeCache:
    """Carries what split attention's combination recomputed in backward (``z``) and the gradient it returned for
    it (``grad``) to :func:`bn_relu`'s backward, which runs right after it: ``z`` is computed once per backward
    pass, and a gradient that arrives as the very tensor the combination made is nobody else's, so that backward
    may finish it in place."""

    __slots__ = ("z", "grad")

    def __init__(self) -> None:
        self.z: Optional[Tensor] = None
        self.grad: Optional[Tensor] = None

    def put(self, z: Tensor, grad: Optional[Tensor]) -> None:
        self.z, self.grad = z, grad

    def take(self) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        z, grad = self.z, self.grad
        self.z = self.grad = None
        return z, grad


def _recompute(x: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """``relu(bn(x))`` again from the saved input. It may differ from the forward value by float rounding
    (the kernel orders the arithmetic differently); as a ReLU mask it can only differ where ``bn(x)`` is
    within an ulp of 0, where the ReLU has no derivative anyway."""
    return torch.addcmul(shift, x, scale).relu_()


class _BNReLU(torch.autograd.Function):
    """``relu(norm(x))`` and its spatial means, keeping only ``x`` (and the statistics) for backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                running_mean: Optional[Tensor], running_var: Optional[Tensor], training: bool, momentum: float,
                eps: float, kernel: Optional[NormKernel], cache: RecomputeCache
                ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        z, scale, shift = _norm_forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps,
                                        kernel)
        ctx.save_for_backward(x, weight, scale, shift)
        ctx.mark_non_differentiable(scale, shift)
        ctx.cache = cache
        return z, z.mean((2, 3)), scale, shift

    @staticmethod
    def backward(ctx: Any, grad_z: Optional[Tensor], grad_means: Optional[Tensor], _grad_scale: Any,
                 _grad_shift: Any) -> Tuple[Optional[Tensor], ...]:
        x, weight, scale, shift = ctx.saved_tensors
        z, made = ctx.cache.take()
        if z is None:  # no consumer recomputed it (or a second backward through a retained graph)
            z = _recompute(x, scale, shift)
        owned = grad_z is not None and grad_z is made
        if grad_means is not None:
            # The means' gradient, spread over the positions, joins z's in one pass (autograd would materialise
            # it as a map of its own and then add the two).
            spread = (grad_means / (z.shape[2] * z.shape[3])).to(z.dtype)[:, :, None, None]
            if grad_z is None:
                grad_z = spread.expand_as(z)
            elif owned:
                grad_z.add_(spread)
            else:
                grad_z, owned = grad_z + spread, True
        assert grad_z is not None, "backward runs only when an output has a gradient"
        grad_y = _relu_backward(grad_z, z, in_place=owned)
        del z, grad_z
        return ctx.kernel.backward(ctx, grad_y, x, weight, ctx.needs_input_grad[:3]) + (None,) * 7


def bn_relu(x: Tensor, norm: nn.Module) -> Tuple[Tensor, Tensor, Tensor, Tensor, RecomputeCache]:
    """``relu(norm(x))`` (``norm`` one that :func:`supports` accepts) that does not keep its output for backward,
    and that output's spatial means (split attention pools them).

    Returns ``(z, means, scale, shift, cache)``: the output ``(N, C, H, W)``, its means over the positions
    ``(N, C)``, the affine form of the norm that produced it (no gradient: ``(1, C, 1, 1)``, per sample
    ``(N, C, 1, 1)`` for group norm) and the cache through which :func:`combine_splits_recompute` passes its
    recomputed ``z`` back. Only useful when no consumer of ``z`` saves it. Take the means from here rather than
    from ``z``: their gradient then joins ``z``'s in one pass. Running statistics and ``num_batches_tracked`` are
    updated exactly as the module does.
    """
    cache = RecomputeCache()
    z, means, scale, shift = _BNReLU.apply(x, *_norm_inputs(norm, x), cache)
    return z, means, scale, shift, cache


#: ``(stride, padding, dilation, groups)`` of a convolution, as ``F.conv2d`` takes them after the bias.
ConvArgs = Tuple[List[int], List[int], List[int], int]


#: A 1x1 convolution's (stride, padding, dilation, groups).
_POINTWISE: ConvArgs = ([1, 1], [0, 0], [1, 1], 1)


def _conv_args(conv: nn.Conv2d) -> ConvArgs:
    return list(conv.stride), list(conv.padding), list(conv.dilation), conv.groups  # type: ignore[arg-type]


def _conv_backward(grad_out: Tensor, conv_input: Tensor, weight: Tensor, conv: ConvArgs, need_input: bool,
                   need_weight: bool) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """Gradients of a bias-free ``F.conv2d(conv_input, weight, None, *conv)`` w.r.t. its input and weight.

    Computed in the dtype the forward convolution ran in, ``grad_out``'s (under autocast: float16/bfloat16 while
    the weight, and a recomputed input, are float32), and returned in the dtypes of ``conv_input`` and ``weight``,
    as autocast's own casts return them."""
    stride, padding, dilation, groups = conv
    dtype = grad_out.dtype
    grad_input, grad_weight, _ = torch.ops.aten.convolution_backward(
        grad_out, conv_input.to(dtype), weight.to(dtype), None, stride, padding, dilation, False, [0, 0], groups,
        [need_input, need_weight, False])
    return (grad_input.to(conv_input.dtype) if need_input else None), \
        (grad_weight.to(weight.dtype) if need_weight else None)


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
            ctx.cache.put(z, grad_z)
        return grad_z, grad_w, None, None, None, None


#: The Gram route (:func:`~resnest_backbones.accel.projection.projection_bn_backward`: extra work ``2 C^2 P + 8 C^3``
#: for ``C`` input channels, ``P`` positions) is cheaper than recomputing the 1x1 convolution's output
#: (``4 C^2 P``) when ``P > 4 C``: on large maps.
GRAM_MIN_POSITIONS_PER_CHANNEL = 4


def project_norm_backward(ctx: Any, grad_out: Tensor, conv_input: Tensor, weight: Tensor,
                          bn_weight: Optional[Tensor], needs: Sequence[bool]) -> Tuple[Optional[Tensor], ...]:
    """Gradients of ``norm(conv1x1(conv_input))`` w.r.t. ``(conv_input, weight, bn weight, bn bias)`` (the last three
    where ``needs`` asks) without the convolution's output having been kept; ``ctx.kernel`` ran the norm's forward
    with this ``ctx``. On large maps the Gram route (per-channel norms), on small ones the output recomputed."""
    positions = grad_out.numel() // grad_out.shape[1]
    if ctx.kernel.per_channel and positions > GRAM_MIN_POSITIONS_PER_CHANNEL * conv_input.shape[1]:
        return projection_bn_backward(ctx, grad_out, conv_input, weight, bn_weight, needs)
    projected = F.conv2d(conv_input, weight)
    grad_projected, grad_bw, grad_bb = ctx.kernel.backward(ctx, grad_out, projected, bn_weight,
                                                           (True, needs[1], needs[2]))
    del projected
    grad_input, grad_cw = _conv_backward(grad_projected, conv_input, weight, _POINTWISE, True, needs[0])
    return grad_input, grad_cw, grad_bw, grad_bb


class _CombineConvBN(torch.autograd.Function):
    """``bn(conv1x1(sum_r z_r * w_r))`` (no ReLU) keeping none of the maps after ``z`` for backward: ``z`` and
    the weighted sum are recomputed from split attention's kept input ``x``; the 1x1 convolution's output (the
    norm's input, the block's widest map) is not kept either: on large maps the backward does without it
    (:func:`~resnest_backbones.accel.projection.projection_bn_backward`, for per-channel norms), on small ones (few
    positions per channel) it is recomputed."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, weights: Tensor, x: Tensor, scale: Tensor, shift: Tensor,
                cache: Optional[RecomputeCache], conv_weight: Tensor, bn_weight: Optional[Tensor],
                bn_bias: Optional[Tensor], running_mean: Optional[Tensor], running_var: Optional[Tensor],
                training: bool, momentum: float, eps: float, kernel: Optional[NormKernel]) -> Tensor:
        projected = F.conv2d(combine_splits(z, weights), conv_weight)
        ctx.conv_dtype = projected.dtype  # autocast's: the weighted sum may be float32 (float32 attention weights)
        out, _, _ = _norm_forward(ctx, projected, bn_weight, bn_bias, running_mean, running_var, training,
                                  momentum, eps, kernel, relu=False)
        ctx.save_for_backward(weights, x, scale, shift, conv_weight, bn_weight)
        ctx.cache = cache
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> Tuple[Optional[Tensor], ...]:
        weights, x, scale, shift, conv_weight, bn_weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        z = _recompute(x, scale, shift)
        combined = combine_splits(z, weights)
        # the convolution as autocast ran it: its input and weight in the forward output's dtype
        conv_input, weight = combined.to(ctx.conv_dtype), conv_weight.to(ctx.conv_dtype)
        grad_combined, grad_cw, grad_bw, grad_bb = project_norm_backward(ctx, grad_out, conv_input, weight,
                                                                         bn_weight, needs[6:9])
        grad_combined = grad_combined.to(combined.dtype)
        grad_cw = None if grad_cw is None else grad_cw.to(conv_weight.dtype)
        del combined, conv_input
        grad_z, grad_w, z = _combine_backward(grad_combined, z, weights, x, scale, shift, needs)
        if ctx.cache is not None:
            ctx.cache.put(z, grad_z)
        return (grad_z, grad_w, None, None, None, None, grad_cw, grad_bw, grad_bb) + (None,) * 6


def combine_splits_recompute(z: Tensor, weights: Tensor, x: Tensor, scale: Tensor, shift: Tensor,
                             cache: Optional[RecomputeCache] = None) -> Tensor:
    """Split attention's ``sum_r z_r * weights_r`` for ``z, means, scale, shift, cache = bn_relu(x, norm)``,
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
    """``conv2d(relu(norm(x)), weight)`` keeping ``x``, not the conv input, for backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, bn_weight: Optional[Tensor], bn_bias: Optional[Tensor],
                running_mean: Optional[Tensor], running_var: Optional[Tensor], training: bool, momentum: float,
                eps: float, kernel: Optional[NormKernel], conv_weight: Tensor, conv: ConvArgs) -> Tensor:
        z, scale, shift = _norm_forward(ctx, x, bn_weight, bn_bias, running_mean, running_var, training,
                                        momentum, eps, kernel)
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
            grad_y = _relu_backward(grad_z, z, in_place=True)  # grad_z: the convolution's, made here
            grads = ctx.kernel.backward(ctx, grad_y, x, bn_weight, need_bn)
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

