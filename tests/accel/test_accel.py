"""The acceleration package beside the reference ResNeSt (Zhang et al., 2020): the memory-saving autograd ops
(gradcheck, equality with the plain ops), the explicit swap of the training modules (same gradients, running
statistics and keys as the reference, less saved activation memory), TorchScript of a swapped model, and the
fused inference copy's class.
"""
from __future__ import annotations

import copy

import pytest
import torch
from support.frameworks import require
from support.numerics import max_rel_diff, random_image, randomize_norms, saved_bytes, train_like_reference
from torch import Tensor, nn

import resnest_backbones as rb
from resnest_backbones.accel import (
    InferenceOnly,
    MemoryEfficientBottleneck,
    MemoryEfficientDeepStem,
    MemoryEfficientSplitAttention,
    fuse_for_inference,
    memory_efficient_training,
    ops,
    reference_modules,
)
from resnest_backbones.layers import DeepStem
from resnest_backbones.layers.split_attention import combine_splits
from resnest_backbones.layers.stem import NORM_B, STEM_INDICES, stem_key

CL = torch.channels_last
_ACCELERATED = (MemoryEfficientBottleneck, MemoryEfficientDeepStem, MemoryEfficientSplitAttention)


# ----------------------------------------------------------------------------------- the ops (gradcheck)
def _random_bn(channels: int, training: bool, seed: int = 0) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels).double().train(training)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(channels, generator=gen, dtype=torch.double) + 0.5)
        bn.bias.copy_(torch.randn(channels, generator=gen, dtype=torch.double) * 0.3)
        bn.running_mean.copy_(torch.randn(channels, generator=gen, dtype=torch.double) * 0.2)
        bn.running_var.copy_(torch.rand(channels, generator=gen, dtype=torch.double) + 0.5)
    return bn


def _gradcheck_inputs(channels: int, seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(3, channels, 5, 4, generator=gen, dtype=torch.double, requires_grad=True)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("groups, stride, dilation", [(1, 1, 1), (2, 2, 1), (2, 1, 2)])
def test_bn_relu_conv_gradcheck(training: bool, groups: int, stride: int, dilation: int) -> None:
    bn = _random_bn(4, training)
    conv_weight = torch.randn(6, 4 // groups, 3, 3, dtype=torch.double, generator=torch.Generator().manual_seed(1))
    x = _gradcheck_inputs(4)
    gamma, beta = bn.weight.detach().clone().requires_grad_(), bn.bias.detach().clone().requires_grad_()
    cw = conv_weight.clone().requires_grad_()

    def fused_fn(x: Tensor, gamma: Tensor, beta: Tensor, cw: Tensor) -> Tensor:
        return ops._BNReLUConv.apply(x, gamma, beta, bn.running_mean.clone(), bn.running_var.clone(), training,
                                     0.0, bn.eps, None, cw, ([stride] * 2, [dilation] * 2, [dilation] * 2, groups))

    def plain_fn(x: Tensor, gamma: Tensor, beta: Tensor, cw: Tensor) -> Tensor:
        z = torch.relu(nn.functional.batch_norm(x, bn.running_mean.clone(), bn.running_var.clone(), gamma, beta,
                                                training, 0.0, bn.eps))
        return nn.functional.conv2d(z, cw, None, stride, dilation, dilation, groups)

    inputs = (x, gamma, beta, cw)
    assert torch.autograd.gradcheck(fused_fn, inputs)
    _assert_same_value_and_grads(fused_fn, plain_fn, inputs)


def _assert_same_value_and_grads(fused_fn, plain_fn, inputs) -> None:
    out_f, out_p = fused_fn(*inputs), plain_fn(*inputs)
    assert torch.allclose(out_f, out_p, rtol=1e-12, atol=1e-12)
    probe = torch.randn(out_p.shape, dtype=out_p.dtype, generator=torch.Generator().manual_seed(2))
    grads_f = torch.autograd.grad((out_f * probe).sum(), inputs)
    grads_p = torch.autograd.grad((out_p * probe).sum(), inputs)
    for gf, gp in zip(grads_f, grads_p):
        assert torch.allclose(gf, gp, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("project", ["sum", "sum-conv-bn-gram", "sum-conv-bn-recompute"])
@pytest.mark.parametrize("shared", [True, False], ids=["recomputed-once", "recomputed-twice"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("radix", [1, 2, 4])
def test_bn_relu_combine_gradcheck(training: bool, radix: int, shared: bool, project: str,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The split-attention ops: the weighted sum alone, or followed by a 1x1 convolution and batch norm (a
    bottleneck's ``bn3(conv3(...))``, whose input and inner map are not kept), through either backward route
    (without the inner map / recomputing it; the op picks by map size)."""
    monkeypatch.setattr(ops, "GRAM_MIN_POSITIONS_PER_CHANNEL", 0 if project.endswith("gram") else 10**9)
    channels = 3
    bn = _random_bn(radix * channels, training)
    bn3 = _random_bn(5, training)
    x = _gradcheck_inputs(radix * channels)
    gamma, beta = bn.weight.detach().clone().requires_grad_(), bn.bias.detach().clone().requires_grad_()
    mix = torch.randn(radix, channels, dtype=torch.double, generator=torch.Generator().manual_seed(3),
                      requires_grad=True)
    conv_weight = torch.randn(5, channels, 1, 1, dtype=torch.double, generator=torch.Generator().manual_seed(4),
                              requires_grad=True)
    gamma3, beta3 = bn3.weight.detach().clone().requires_grad_(), bn3.bias.detach().clone().requires_grad_()

    def weights_of(means: Tensor, mix: Tensor) -> Tensor:
        # Weights that depend on z through its spatial means, like split attention's (pooled -> MLP -> softmax).
        pooled = means.view(means.shape[0], radix, channels).sum(1)
        return torch.softmax(pooled.unsqueeze(1) * mix, dim=1).view(means.shape[0], radix, channels, 1, 1)

    def fused_fn(x: Tensor, gamma: Tensor, beta: Tensor, mix: Tensor, *projection: Tensor) -> Tensor:
        cache = ops.RecomputeCache()  # shared: the combine's backward hands its recomputed z to _BNReLU's
        z, means, scale, shift = ops._BNReLU.apply(x, gamma, beta, bn.running_mean.clone(),
                                                   bn.running_var.clone(), training, 0.0, bn.eps, None, cache)
        # The op's means (their gradient joins z's inside its backward) and, unshared, z's own (autograd adds it).
        weights = weights_of(means if shared else z.mean((2, 3)), mix)
        cache = cache if shared else None
        if not projection:
            return ops.combine_splits_recompute(z, weights, x, scale, shift, cache)
        cw, g3, b3 = projection
        return ops._CombineConvBN.apply(z, weights, x, scale, shift, cache, cw, g3, b3, bn3.running_mean.clone(),
                                        bn3.running_var.clone(), training, 0.0, bn3.eps, None)

    def plain_fn(x: Tensor, gamma: Tensor, beta: Tensor, mix: Tensor, *projection: Tensor) -> Tensor:
        z = torch.relu(nn.functional.batch_norm(x, bn.running_mean.clone(), bn.running_var.clone(), gamma, beta,
                                                training, 0.0, bn.eps))
        combined = combine_splits(z, weights_of(z.mean((2, 3)), mix))
        if not projection:
            return combined
        cw, g3, b3 = projection
        return nn.functional.batch_norm(nn.functional.conv2d(combined, cw), bn3.running_mean.clone(),
                                        bn3.running_var.clone(), g3, b3, training, 0.0, bn3.eps)

    inputs = (x, gamma, beta, mix, *([conv_weight, gamma3, beta3] if project != "sum" else []))
    assert torch.autograd.gradcheck(fused_fn, inputs)
    _assert_same_value_and_grads(fused_fn, plain_fn, inputs)


# ------------------------------------------------------------------------- the modules, swapped explicitly
@pytest.mark.parametrize("name, kwargs, fmt", [
    ("resnest14d", {"num_classes": 10}, torch.contiguous_format),
    ("resnest14d", {"num_classes": 10}, CL),
    ("resnest50_fast_4s2x40d", {"out_features": ["res2", "res3"]}, torch.contiguous_format),
    ("resnest50_fast_1s1x64d", {"out_features": ["res2"]}, torch.contiguous_format),
    ("resnest14d", {"norm_eval": True, "output_stride": 16}, torch.contiguous_format),
    ("resnest14d", {"freeze_at": 2}, torch.contiguous_format),
    ("resnest14d", {"with_cp": True}, torch.contiguous_format),
])
def test_memory_efficient_training_matches_reference(name: str, kwargs: dict, fmt: torch.memory_format) -> None:
    torch.manual_seed(0)
    plain = rb.create_model(name, memory_efficient=False, **kwargs)
    plain = randomize_norms(plain).double().train().to(memory_format=fmt)
    for module in plain.modules():  # exercise the cumulative-average branch too
        if isinstance(module, nn.BatchNorm2d) and module.num_features % 2:
            module.momentum = None
    fast = memory_efficient_training(copy.deepcopy(plain))
    assert not any(isinstance(m, _ACCELERATED) for m in plain.modules())
    x = random_image(64).double().contiguous(memory_format=fmt).requires_grad_(kwargs.get("with_cp", False))
    assert train_like_reference(fast, plain, x) > 0, "the memory-saving path was not taken"


def test_ops_only_where_they_apply() -> None:
    bn = nn.BatchNorm2d(4)
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    assert ops.supports(bn, x)
    with torch.no_grad():
        assert not ops.supports(bn, x)
    assert ops.supports(nn.GroupNorm(2, 4), x)
    assert not ops.supports(nn.LayerNorm([4, 3, 3]), x)
    assert ops.supports(nn.SyncBatchNorm(4), x)  # one process: plain batch norm (tests/test_accel_norms.py)
    assert ops.supports(nn.BatchNorm2d(4, affine=False), x)
    assert ops.supports(nn.BatchNorm2d(4, track_running_stats=False), x)
    frozen = nn.BatchNorm2d(4).requires_grad_(False)
    assert not ops.supports(frozen, x.detach())  # nothing needs a gradient
    assert ops.supports(frozen, x.detach(), torch.ones(1, requires_grad=True))  # a source (a conv weight) does
    assert ops.supports_conv(nn.Conv2d(4, 4, 3, padding=1, bias=False))
    assert not ops.supports_conv(nn.Conv2d(4, 4, 3, padding=1))
    assert not ops.supports_conv(nn.Conv2d(4, 4, 3, padding="same", bias=False))
    assert ops.supports_projection(nn.Conv2d(4, 8, 1, bias=False))
    assert not ops.supports_projection(nn.Conv2d(4, 8, 1, stride=2, bias=False))
    assert not ops.supports_projection(nn.Conv2d(4, 8, 3, padding=1, bias=False))
    assert not ops.supports_projection(nn.Conv2d(4, 8, 1, groups=2, bias=False))


def test_default_model_saves_activation_memory() -> None:
    torch.manual_seed(0)
    model = rb.create_model("resnest14d", num_classes=10).train()  # the default: memory-saving modules
    x = random_image(96, batch=4)
    fast = saved_bytes(model, x)
    plain = saved_bytes(reference_modules(model), x)
    # The split convs' inputs, the activated radix splits and two stem maps are no longer kept.
    assert fast <= 0.85 * plain, (fast, plain)
    assert saved_bytes(memory_efficient_training(model), x) == fast


def test_swap_keeps_parameters_and_keys() -> None:
    reference = rb.ResNeSt([1, 1, 1, 1], num_classes=10)  # a plain ResNeSt(...) is the reference
    assert not any(isinstance(m, _ACCELERATED) for m in reference.modules())
    params = {k: v for k, v in reference.named_parameters()}
    keys = list(reference.state_dict())
    model = memory_efficient_training(reference)
    assert model is reference and type(model) is rb.ResNeSt  # in place; the root keeps its class
    assert {type(m) for m in model.modules()} >= set(_ACCELERATED)
    assert list(model.state_dict()) == keys
    assert all(p is params[k] for k, p in model.named_parameters())
    assert reference_modules(model) is model
    assert not any(isinstance(m, _ACCELERATED) for m in model.modules())
    assert rb.create_model("resnest14d", memory_efficient=False).conv1.__class__ is DeepStem


def test_stem_keeps_the_official_keys() -> None:
    stem = DeepStem(3, 8, 16)
    assert [k for k in stem.state_dict() if k.endswith("weight")] == [f"{i}.weight" for i in STEM_INDICES]
    model = rb.create_model("resnest14d")
    assert {stem_key(i) for i in STEM_INDICES} == {k[:len("conv1.0.")] for k in model.state_dict()
                                                   if k.startswith("conv1.")}
    assert model.conv1.norm_b is model.conv1[NORM_B] and model.conv1.conv_c.out_channels == model.bn1.num_features


def test_script_of_accelerated_model() -> None:
    torch.manual_seed(0)
    model = randomize_norms(rb.create_model("resnest14d", num_classes=10)).eval()
    x = random_image(64)
    with torch.no_grad():
        expected = model(x)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        assert max_rel_diff(scripted(x), expected) == 0.0
    # The scripted training graph runs the reference forward, with gradients.
    scripted.train()
    scripted(random_image(64, batch=2)).sum().backward()
    assert model.fc.weight.grad is not None
    # torch wrote the reference twins into the eager model; the swap brings the memory-saving modules back.
    assert isinstance(memory_efficient_training(model).layer1[0], MemoryEfficientBottleneck)


def test_fused_copy_keeps_adapter_class_and_refuses_training() -> None:
    class Adapter(rb.ResNeSt):
        def describe(self) -> str:
            return "adapter"

    model = memory_efficient_training(Adapter([1, 1, 1, 1]))
    fast = fuse_for_inference(model)
    assert isinstance(fast, Adapter) and isinstance(fast, InferenceOnly) and fast.describe() == "adapter"
    assert type(fuse_for_inference(model)) is type(fast)  # one class per model class
    with pytest.raises(RuntimeError, match="inference only"):
        fast.train()
    assert fast.eval() is fast and not fast.training
    assert type(model) is Adapter and model.train().training  # the original is untouched


def _adapter_model(adapter: str) -> nn.Module:
    if adapter.startswith("detectron2"):
        require("detectron2")
        from resnest_backbones.detectron2 import backbone

        if adapter == "detectron2":
            return backbone.ResNeStBackbone([1, 1, 1, 1], freeze_at=1)  # built directly, not via create_model
        return backbone.build_resnest("resnest14d")
    if adapter == "torchvision":
        tv = pytest.importorskip("resnest_backbones.torchvision", reason="torchvision is not installed")
        return tv.resnest_fpn_backbone("resnest14d").body
    require("mmseg")
    from resnest_backbones.openmmlab import OpenMMLabResNeSt

    return OpenMMLabResNeSt("resnest14d")


@pytest.mark.parametrize("adapter", ["detectron2", "detectron2-build", "torchvision", "mmseg"])
def test_adapters_build_the_memory_saving_modules(adapter: str) -> None:
    model = _adapter_model(adapter)
    kinds = {type(m) for m in model.modules()}
    assert set(_ACCELERATED) <= kinds
    assert not kinds & {DeepStem, rb.models.Bottleneck, rb.layers.SplitAttention}


def test_memory_saving_path_under_autocast_is_as_accurate_as_the_reference() -> None:
    """Mixed precision (CPU autocast, bfloat16; CUDA AMP takes the same route): the ops cast as autocast does and
    return float32 gradients, as far from the float32 gradients as the reference modules' under the same
    autocast (the two bfloat16 paths round differently, so they are compared through their error)."""
    torch.manual_seed(0)
    plain = randomize_norms(rb.create_model("resnest14d", num_classes=10, memory_efficient=False)).train()
    fast, exact = memory_efficient_training(copy.deepcopy(plain)), copy.deepcopy(plain)
    x = random_image(64)

    def gradients(model: nn.Module, autocast: bool) -> Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model(x)
        out.float().pow(2).mean().backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    truth = gradients(exact, autocast=False)
    errors = {}
    for name, model in (("fast", fast), ("plain", plain)):
        grads = gradients(model, autocast=True)
        assert grads.dtype == torch.float32
        errors[name] = float((grads - truth).norm() / truth.norm())
    assert errors["fast"] <= 1.1 * errors["plain"], errors
