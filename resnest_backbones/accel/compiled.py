"""The memory saving ``torch.compile`` cannot find by itself, as a custom op it compiles around.

Under ``torch.compile`` the eager memory-saving ops (:mod:`.ops`) stand aside: their autograd functions update the
running statistics inside ``forward`` and hand recomputed maps from one backward to the next through Python
objects, which Dynamo cannot trace (it breaks the graph at each of them). Most of what they save the compiler saves
by itself: its partitioner recomputes cheap elementwise maps in backward (``relu(bn(x))``, the weighted sum of the
radix splits) instead of keeping them. What it cannot do is go without a convolution's output that batch norm's
backward reads: each bottleneck's ``bn3(conv3(...))`` keeps conv3's output, the block's widest map.

:func:`projection_bn` is that piece as a ``torch.library`` custom op with a fake kernel and an autograd formula:
``batch_norm(conv1x1(c))`` in training, whose backward is :func:`.ops.project_norm_backward` (the Gram route, or
the output recomputed on small maps), so only ``c`` (which the compiler may recompute) and the statistics are kept.
The compiler fuses the elementwise work around it as usual. It applies where :func:`supports` says; elsewhere the
reference modules compile as they are.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import ops
from .norms import kernel_for
from .norms.batch import LOCAL

__all__ = ["projection_bn", "supports"]

_FLOATS = (torch.float32, torch.float64)


@torch.library.custom_op("resnest_backbones::projection_bn", mutates_args=())
def _projection_bn(c: Tensor, conv_weight: Tensor, bn_weight: Tensor, bn_bias: Tensor, running_mean: Tensor,
                   running_var: Tensor, momentum: float, eps: float
                   ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(batch_norm(conv2d(c, conv_weight)), batch mean, batch inverse std, new running mean, new running var)``
    with batch statistics. Functional (an op with an autograd formula may not mutate its inputs): the caller
    writes the new running statistics back."""
    running_mean, running_var = running_mean.clone(), running_var.clone()
    out, mean, invstd = torch.native_batch_norm(F.conv2d(c, conv_weight), bn_weight, bn_bias, running_mean,
                                                running_var, True, momentum, eps)
    return out, mean, invstd, running_mean, running_var


@_projection_bn.register_fake
def _(c: Tensor, conv_weight: Tensor, bn_weight: Tensor, bn_bias: Tensor, running_mean: Tensor,
      running_var: Tensor, momentum: float, eps: float) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    y = F.conv2d(c, conv_weight)  # on fake tensors: the real output's shape and memory format, nothing computed
    stats = y.new_empty(y.shape[1])
    return torch.empty_like(y), stats, torch.empty_like(stats), torch.empty_like(running_mean), \
        torch.empty_like(running_var)


def _setup_context(ctx: Any, inputs: Tuple[Any, ...], output: Tuple[Tensor, ...]) -> None:
    c, conv_weight, bn_weight = inputs[:3]
    mean, invstd = output[1:3]
    ctx.save_for_backward(c, conv_weight, bn_weight, mean, invstd)
    ctx.eps = inputs[7]


def _backward(ctx: Any, grad_out: Tensor, *_statistics: Any) -> Tuple[Optional[Tensor], ...]:
    c, conv_weight, bn_weight, mean, invstd = ctx.saved_tensors
    # What the batch-norm kernel's forward would have left on its ctx (batch statistics, no running ones needed).
    norm_ctx = SimpleNamespace(kernel=LOCAL, training=True, eps=ctx.eps, stats=(None, None, mean, invstd))
    grads = ops.project_norm_backward(norm_ctx, grad_out, c, conv_weight, bn_weight, ctx.needs_input_grad[1:4])
    return (*grads, None, None, None, None)


_projection_bn.register_autograd(_backward, setup_context=_setup_context)


def supports(conv: nn.Module, norm: nn.Module, c: Tensor) -> bool:
    """Whether :func:`projection_bn` stands in for ``norm(conv(c))`` now: while ``torch.compile`` traces a training
    graph (outside autocast, float32/float64), for a plain bias-free 1x1 convolution (``ops.supports_projection``)
    and a batch norm that :mod:`.norms` computes locally, in training with running statistics and a fixed momentum
    (a cumulative average would read a tensor into Python). Elsewhere the modules run as they are."""
    return (ops.compiling() and torch.is_grad_enabled() and not torch.is_autocast_enabled(c.device.type)
            and c.dtype in _FLOATS and ops.supports_projection(conv) and norm.training
            and kernel_for(norm, c) is LOCAL and norm.momentum is not None
            and norm.running_mean is not None and norm.running_var is not None
            and norm.weight is not None and norm.bias is not None)


def projection_bn(c: Tensor, conv: nn.Conv2d, norm: nn.Module) -> Tensor:
    """``norm(conv(c))`` through the custom op (``conv``, ``norm`` as :func:`supports` accepts), counting
    ``num_batches_tracked`` as the norm's forward does."""
    weight, bias, running_mean, running_var, _, momentum, eps = LOCAL.arguments(norm)
    out, _, _, new_mean, new_var = _projection_bn(c, conv.weight, weight, bias, running_mean, running_var, momentum,
                                                  eps)
    with torch.no_grad():
        norm.running_mean.copy_(new_mean)
        norm.running_var.copy_(new_var)
    return out
