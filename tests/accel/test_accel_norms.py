"""The memory-saving training ops for every norm that computes plain batch norm at that moment (``_BatchNorm``
subclasses keeping ``_BatchNorm.forward``: ``nn.BatchNorm2d``, mmengine's ``_BatchNormXd``, also with
``momentum=None``, ``track_running_stats=False`` or ``affine=False``; torch's and this package's
``SyncBatchNorm`` and detectron2's ``NaiveSyncBatchNorm`` while they do not synchronise (synchronising:
tests/accel/test_accel_sync.py)) and for ``nn.GroupNorm``, in train and eval mode: same values, gradients
(and gradcheck), running statistics and ``num_batches_tracked`` as the reference modules, and less saved
activation memory; other forwards and frozen norms (torchvision's, detectron2's ``FrozenBatchNorm2d``, where the
ops would save nothing) keep the reference path in the models.
"""
from __future__ import annotations

import copy
from typing import Callable, Dict, Tuple

import pytest
import torch
import torch.distributed as dist
from support.frameworks import require
from support.numerics import saved_bytes, train_like_reference
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

import resnest_backbones as rb
from resnest_backbones.accel import memory_efficient_training, ops, reference_modules
from resnest_backbones.layers import SyncBatchNorm
from resnest_backbones.layers.split_attention import combine_splits

NormFactory = Callable[[int], nn.Module]


def _mmengine_bn(channels: int) -> nn.Module:
    utils = pytest.importorskip("mmengine.model.utils", reason="mmengine is not installed")
    return utils._BatchNormXd(channels)


def _torchvision_frozen(channels: int) -> nn.Module:
    return pytest.importorskip("torchvision.ops", reason="torchvision is not installed").FrozenBatchNorm2d(channels)


def _detectron2_frozen(channels: int) -> nn.Module:
    require("detectron2")
    from detectron2.layers import FrozenBatchNorm2d

    return FrozenBatchNorm2d(channels)


NORMS: Dict[str, NormFactory] = {
    "BatchNorm2d": nn.BatchNorm2d,
    "BatchNorm2d-momentum-None": lambda c: nn.BatchNorm2d(c, momentum=None),
    "BatchNorm2d-untracked": lambda c: nn.BatchNorm2d(c, track_running_stats=False),
    "mmengine-BatchNormXd": _mmengine_bn,
    "torch-SyncBatchNorm": nn.SyncBatchNorm,  # one process: plain batch norm
    "resnest-SyncBatchNorm": SyncBatchNorm,
    "GroupNorm": lambda c: nn.GroupNorm(2, c),
}
# Frozen norms: the models keep their own forward (see ops.supports).
FROZEN_NORMS: Dict[str, NormFactory] = {
    "torchvision-FrozenBatchNorm2d": _torchvision_frozen,
    "detectron2-FrozenBatchNorm2d": _detectron2_frozen,
}
# Norms a whole model cannot use (ResNeSt initialises norm weights), checked at the op level only.
OP_ONLY_NORMS: Dict[str, NormFactory] = {"BatchNorm2d-no-affine": lambda c: nn.BatchNorm2d(c, affine=False)}
ALL_NORMS = {**NORMS, **OP_ONLY_NORMS}


def _randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random affine parameters and statistics for every norm-like child (fresh ones would be the identity)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, norm in module.named_modules():
            if not (isinstance(norm, (_BatchNorm, nn.GroupNorm)) or _is_frozen(norm)):
                continue
            n = norm.weight.numel() if norm.weight is not None else norm.num_features
            small = 0.1 if name.endswith("bn3") else 1.0  # as in helpers.randomize_norms: a tame deep network
            values = {"weight": (torch.rand(n, generator=gen) * 0.5 + 0.75) * small,
                      "bias": torch.randn(n, generator=gen) * 0.1,
                      "running_mean": torch.randn(n, generator=gen) * 0.1,
                      "running_var": torch.rand(n, generator=gen) * 0.5 + 0.75}
            for key, value in values.items():
                tensor = getattr(norm, key, None)
                if isinstance(tensor, Tensor):
                    tensor.copy_(value)
    return module


def _norm(kind: str, channels: int, training: bool) -> nn.Module:
    return _randomize(ALL_NORMS[kind](channels)).double().train(training)


def _is_frozen(norm: nn.Module) -> bool:
    return type(norm).__name__ == "FrozenBatchNorm2d"


# ------------------------------------------------------------------------- the ops, per norm kind
class _NormReLUConv(nn.Module):
    """``conv(relu(norm(x)))``: through :func:`ops.bn_relu_conv` (``fused``) or the modules themselves."""

    def __init__(self, norm: nn.Module, conv: nn.Conv2d, fused: bool) -> None:
        super().__init__()
        self.norm, self.conv, self.fused = norm, conv, fused

    def forward(self, x: Tensor) -> Tensor:
        if self.fused:
            assert ops.supports(self.norm, x)
            return ops.bn_relu_conv(x, self.norm, self.conv)
        return self.conv(torch.relu(self.norm(x)))


class _NormReLUCombine(nn.Module):
    """Split attention's ``relu(norm(x))`` -> weights from it -> weighted sum of the radix splits."""

    def __init__(self, norm: nn.Module, radix: int, channels: int, fused: bool) -> None:
        super().__init__()
        self.norm, self.radix, self.channels, self.fused = norm, radix, channels, fused
        gen = torch.Generator().manual_seed(3)
        self.mix = nn.Parameter(torch.randn(radix, channels, dtype=torch.double, generator=gen))

    def weights_of(self, means: Tensor) -> Tensor:
        pooled = means.view(means.shape[0], self.radix, self.channels).sum(1)
        return torch.softmax(pooled.unsqueeze(1) * self.mix, dim=1).view(-1, self.radix, self.channels, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        if self.fused:
            assert ops.supports(self.norm, x)
            z, means, scale, shift, cache = ops.bn_relu(x, self.norm)
            return ops.combine_splits_recompute(z, self.weights_of(means), x, scale, shift, cache)
        z = torch.relu(self.norm(x))
        return combine_splits(z, self.weights_of(z.mean((2, 3))))


def _chain(op: str, kind: str, training: bool) -> Tuple[nn.Module, nn.Module]:
    """``(fused, reference)`` twins with equal (separate) parameters and statistics."""
    if op == "conv":
        conv = nn.Conv2d(4, 6, 3, padding=1, groups=2, bias=False).double()
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=torch.Generator().manual_seed(1)))
        fused: nn.Module = _NormReLUConv(_norm(kind, 4, training), conv, fused=True)
    else:
        fused = _NormReLUCombine(_norm(kind, 2 * 3, training), radix=2, channels=3, fused=True)
    reference = copy.deepcopy(fused)
    reference.fused = False
    return fused, reference


def _input(channels: int, seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(3, channels, 5, 4, generator=gen, dtype=torch.double, requires_grad=True)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("op", ["conv", "combine"])
@pytest.mark.parametrize("kind", list(ALL_NORMS))
def test_ops_match_reference_per_norm(kind: str, op: str, training: bool) -> None:
    fused, reference = _chain(op, kind, training)
    x = _input(4 if op == "conv" else 6)
    params = [p for p in reference.parameters()]
    for step in range(2):  # two steps: the cumulative average (momentum=None) changes its factor
        out_f, out_r = fused(x), reference(x)
        assert torch.equal(out_f, out_r), step  # the same kernels / arithmetic: bit-identical values
        probe = torch.randn(out_r.shape, dtype=out_r.dtype, generator=torch.Generator().manual_seed(2 + step))
        grads_f = torch.autograd.grad((out_f * probe).sum(), [x, *fused.parameters()])
        grads_r = torch.autograd.grad((out_r * probe).sum(), [x, *params])
        for gf, gr in zip(grads_f, grads_r):
            assert torch.allclose(gf, gr, rtol=1e-10, atol=1e-12), step
        for (name, bf), br in zip(fused.named_buffers(), reference.buffers()):
            assert torch.equal(bf, br), (name, step)  # running statistics and num_batches_tracked
    if training and getattr(reference.norm, "track_running_stats", False):
        assert int(reference.norm.num_batches_tracked) == 2


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("op", ["conv", "combine"])
@pytest.mark.parametrize("kind", list(ALL_NORMS))
def test_ops_gradcheck_per_norm(kind: str, op: str, training: bool) -> None:
    fused, _ = _chain(op, kind, training)
    names = [name for name, p in fused.named_parameters() if p.requires_grad]
    x = _input(4 if op == "conv" else 6)

    def fn(x: Tensor, *values: Tensor) -> Tensor:
        return torch.func.functional_call(fused, dict(zip(names, values)), (x,))

    inputs = (x, *(p.detach().clone().requires_grad_() for p in fused.parameters()))
    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("op", ["conv", "combine"])
@pytest.mark.parametrize("kind", list(ALL_NORMS))
def test_saved_memory_of_the_ops_per_norm(kind: str, op: str) -> None:
    """The ops keep the norm's input where the plain ops keep it and the ReLU output: half."""
    fused, reference = _chain(op, kind, training=True)
    x = torch.randn(4, 4 if op == "conv" else 6, 32, 32, dtype=torch.double, requires_grad=True)
    saved_fused, saved_plain = saved_bytes(fused, x), saved_bytes(reference, x)
    assert saved_fused <= 0.55 * saved_plain, (saved_fused, saved_plain)


@pytest.mark.parametrize("kind", list(FROZEN_NORMS))
def test_frozen_norms_are_not_accelerated(kind: str) -> None:
    assert not ops.supports(FROZEN_NORMS[kind](4), _input(4))


def test_other_forwards_and_synchronising_norms_keep_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    x = _input(4)

    class Scaled(nn.BatchNorm2d):
        def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
            return super().forward(x) * 2

    class ScaledFrozen(pytest.importorskip("torchvision.ops", reason="torchvision is not installed").FrozenBatchNorm2d):
        def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
            return super().forward(x) * 2

    class ScaledGroupNorm(nn.GroupNorm):
        def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
            return super().forward(x) * 2

    assert not ops.supports(Scaled(4), x)
    assert not ops.supports(ScaledFrozen(4), x)
    assert not ops.supports(ScaledGroupNorm(2, 4), x)
    assert not ops.supports(nn.LayerNorm(4), x)
    assert ops.supports(nn.GroupNorm(2, 4), x)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast's group norm policy: the reference path
        assert not ops.supports(nn.GroupNorm(2, 4), x) and ops.supports(nn.BatchNorm2d(4), x)

    torch_sync, ours = nn.SyncBatchNorm(4).train(), SyncBatchNorm(4).train()
    assert ops.supports(torch_sync, x) and ops.supports(ours, x)
    # Pretend a process group of two: ours synchronises in training, with the ops' all-reduces (their results:
    # tests/accel/test_accel_sync.py); torch's raises for CPU inputs, so the reference must run and raise.
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    assert not ops.supports(torch_sync, x) and ops.supports(ours, x)
    assert ops.supports(torch_sync.eval(), x) and ops.supports(ours.eval(), x)
    # One process under an initialised group: torch's forward still raises for CPU inputs.
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 1)
    assert not ops.supports(torch_sync.train(), x)
    assert ops.supports(ours.train(), x)


def test_detectron2_naive_sync_bn_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    """detectron2's ``NaiveSyncBatchNorm`` is plain batch norm in one process or eval mode; synchronising, the ops
    compute its own statistics (their results: tests/accel/test_accel_sync.py), except for an empty batch."""
    require("detectron2")
    from detectron2.layers import NaiveSyncBatchNorm

    from resnest_backbones.accel.norms import LOCAL, kernel_for
    from resnest_backbones.detectron2.accel import NaiveSyncKernel  # the detectron2 adapter registers its kernel

    x, norm = _input(4), NaiveSyncBatchNorm(4).train()
    assert kernel_for(norm, x) == LOCAL
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    assert kernel_for(norm, x) == NaiveSyncKernel("")
    assert not ops.supports(norm, x[:0])
    assert kernel_for(norm.eval(), x) == LOCAL


# --------------------------------------------------------------------- whole models, per norm kind
def _model(kind: str, training: bool) -> nn.Module:
    torch.manual_seed(0)
    norm_layer = {**NORMS, **FROZEN_NORMS}[kind]
    model = rb.create_model("resnest14d", num_classes=10, memory_efficient=False, norm_layer=norm_layer)
    return _randomize(model).double().train(training)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("kind", [*NORMS, *FROZEN_NORMS])
def test_models_match_reference_and_save_memory_per_norm(kind: str, training: bool) -> None:
    plain = _model(kind, training)
    fast = memory_efficient_training(copy.deepcopy(plain))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1), dtype=torch.double)
    frozen = kind in FROZEN_NORMS
    assert (train_like_reference(fast, plain, x) > 0) != frozen, "the memory-saving path was (not) taken"

    # The ops engage: less saved activation memory than the reference modules (float32, as in training).
    model = _model(kind, training).float()
    image = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    saved_fast = saved_bytes(memory_efficient_training(model), image)
    saved_plain = saved_bytes(reference_modules(model), image)
    if frozen:
        assert saved_fast == saved_plain  # the reference path
    else:
        assert saved_fast <= 0.85 * saved_plain, (saved_fast, saved_plain)
