"""The backward of ``bn(conv1x1(c))`` without the convolution's output (the Gram route of
:func:`resnest_backbones.accel.ops.combine_splits_conv_bn`).

A bottleneck's ``bn3(conv3(...))`` has the block's widest map between the convolution and the norm. Batch norm's
backward needs that map ``y = W c``; written in terms of ``W`` and the convolution's input ``c`` it does not: see
:func:`projection_bn_backward`. The algebra holds for norms with per-channel scale and shift
(:attr:`~resnest_backbones.accel.norms.NormKernel.per_channel`): local and synchronised batch norm alike.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .norms.kernel import stats_dtype

__all__ = ["projection_bn_backward"]

def _weight_gradient(grad_out: Tensor, conv_input: Tensor, out_channels: int) -> Tensor:
    """``sum over (n, h, w) of grad_out[:, o] * conv_input[:, i]``, shaped ``(out_channels, in_channels)``: a 1x1
    convolution's weight gradient (oneDNN's kernel, any memory format)."""
    shape = (out_channels, conv_input.shape[1], 1, 1)
    _, grad_weight, _ = torch.ops.aten.convolution_backward(
        grad_out, conv_input, conv_input.new_zeros(shape), None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1,
        [False, True, False])
    return grad_weight.flatten(1)


def projection_bn_backward(ctx: Any, grad_out: Tensor, conv_input: Tensor, conv_weight: Tensor,
                           bn_weight: Optional[Tensor], needs: Sequence[bool]) -> Tuple[Optional[Tensor], ...]:
    """Gradients of ``bn(conv1x1(conv_input))`` w.r.t. ``(conv_input, conv_weight, bn weight, bn bias)`` without
    the convolution's output ``y = W c`` (never materialised in backward); ``ctx.kernel`` is the norm's per-channel
    kernel, which ran the forward with this ``ctx``.

    With ``a = gamma * invstd`` per output channel, batch norm's input gradient is ``a * dy + b * y + k`` where
    ``b`` and ``k`` hold the (batch-statistics) mean terms. Every place that needs ``y`` takes it through ``W``:
    ``sum(dy * y)[o] = sum_i W[o, i] * D[o, i]`` with ``D = dy (x) c`` (what the weight gradient needs anyway),
    ``sum(y (x) c) = W G`` with the Gram matrix ``G = c (x) c`` (in x in), and ``W^T diag(b) y = (W^T diag(b) W) c``.
    So the price of not keeping ``y`` is ``G`` and one in->in 1x1 convolution: half a recomputation of ``y``.
    """
    kernel = ctx.kernel
    dtype, stat = conv_input.dtype, stats_dtype(conv_input.dtype)
    out_channels = conv_weight.shape[0]
    dims = [0] + list(range(2, grad_out.dim()))
    w = conv_weight.flatten(1).to(stat)
    mean, invstd = (t.to(stat) for t in kernel.normalisation(ctx))
    d = _weight_gradient(grad_out, conv_input, out_channels).to(stat)
    sum_dy = grad_out.sum(dims, dtype=stat)
    sum_dy_xhat = invstd * ((w * d).sum(1) - mean * sum_dy)  # batch norm's weight gradient
    a = invstd if bn_weight is None else bn_weight.to(stat) * invstd
    b: Optional[Tensor] = None
    if ctx.training:  # batch statistics: the mean terms, over all processes' batches when synchronised
        count = float(grad_out.numel() // out_channels)
        mean_dy, mean_dy_xhat = kernel.batch_means(ctx, torch.cat([sum_dy, sum_dy_xhat]), count).chunk(2)
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
