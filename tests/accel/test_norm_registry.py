"""The registry of norm kernels behind the memory-saving ops (``resnest_backbones.accel.norms``): which kernel a norm
module gets, how a norm kind is added (one ``register_kernel`` call), and the errors of a wrong registration.
The kernels' values and gradients are checked per norm kind in test_accel.py, test_accel_norms.py and
test_accel_sync.py.
"""
from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from resnest_backbones.accel import ops
from resnest_backbones.accel.norms import LOCAL, GroupNormKernel, kernel_for, register_kernel
from resnest_backbones.accel.norms.batch import choose_local
from resnest_backbones.layers import SyncBatchNorm


def test_built_in_kinds() -> None:
    x = torch.randn(2, 4, 3, 3)
    assert kernel_for(nn.BatchNorm2d(4), x) == LOCAL
    assert kernel_for(nn.BatchNorm2d(4).eval(), x) == LOCAL
    assert kernel_for(nn.GroupNorm(2, 4), x) == GroupNormKernel(2)
    assert kernel_for(SyncBatchNorm(4), x) == LOCAL  # no process group: plain batch norm
    assert kernel_for(nn.SyncBatchNorm(4), x) == LOCAL
    assert kernel_for(nn.LayerNorm([4, 3, 3]), x) is None
    assert kernel_for(nn.Identity(), x) is None


class _OwnForward(nn.BatchNorm2d):
    """Batch norm through a forward of its own (``_BatchNorm``'s): the ops cannot know what it computes unless told."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x)


class _KeepsForward(_OwnForward):
    pass


class _OverridesAgain(_OwnForward):
    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) * 2


def test_a_registered_kind_runs_through_the_ops() -> None:
    """Unregistered, a ``_BatchNorm`` subclass with its own forward keeps it; one ``register_kernel`` call adds its
    kind (covering subclasses that keep that forward, not those that override it again), and the ops then give
    the module's values, gradients and running statistics."""
    x = torch.randn(3, 4, 5, 5, dtype=torch.double, requires_grad=True)
    assert not ops.supports(_OwnForward(4).double(), x)
    register_kernel(_OwnForward, choose_local)
    assert ops.supports(_KeepsForward(4).double(), x)
    assert not ops.supports(_OverridesAgain(4).double(), x)

    norms = [_OwnForward(4).double() for _ in range(2)]
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=False).double()
    assert ops.supports(norms[0], x)
    fused = ops.bn_relu_conv(x, norms[0], conv)
    plain = conv(torch.relu(norms[1](x)))
    torch.testing.assert_close(fused, plain, rtol=1e-12, atol=1e-12)
    probe = torch.randn_like(plain)
    grads = [torch.autograd.grad((out * probe).sum(), [x, norm.weight, norm.bias, conv.weight])
             for out, norm in ((fused, norms[0]), (plain, norms[1]))]
    for g_fused, g_plain in zip(*grads):
        torch.testing.assert_close(g_fused, g_plain, rtol=1e-10, atol=1e-12)
    for b_fused, b_plain in zip(norms[0].buffers(), norms[1].buffers()):
        assert torch.equal(b_fused, b_plain)


def test_wrong_registrations_are_refused() -> None:
    with pytest.raises(TypeError, match="nn.Module subclass"):
        register_kernel(lambda x: x, choose_local)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="BatchNorm2d inherits its forward: register the class that defines it"):
        register_kernel(nn.BatchNorm2d, choose_local)
