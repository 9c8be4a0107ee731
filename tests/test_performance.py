"""Performance features keep ResNeSt's numbers (Zhang et al., 2020): fused inference mode, channels_last,
memory-saving training ops (gradcheck + equality with the plain path), torch.compile. No timings here:
speed is measured by tools/benchmark.py, never asserted in tests.
"""
from __future__ import annotations

import copy
from typing import Dict, List

import pytest
import torch
from torch import Tensor, nn

import resnest_backbones as rb
from helpers import max_rel_diff, randomize_norms
from resnest_backbones.layers import fused
from resnest_backbones.layers.split_attention import combine_splits
from resnest_backbones.models.fuse import fuse_for_inference, fusable_pairs

CL = torch.channels_last


def _image(size: int = 64, batch: int = 2, seed: int = 1) -> Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _outputs(out) -> Dict[str, Tensor]:
    return out if isinstance(out, dict) else {"logits": out}


def _max_diff(a, b) -> float:
    a, b = _outputs(a), _outputs(b)
    assert a.keys() == b.keys()
    return max(max_rel_diff(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------------------- inference mode
@pytest.mark.parametrize("name, kwargs", [
    ("resnest14d", {"num_classes": 10}),
    ("resnest14d", {"output_stride": 8}),
    ("resnest50_fast_4s2x40d", {"output_stride": 16, "out_features": ["stem", "res2", "res3", "res4"]}),
    ("resnest50_fast_1s1x64d", {}),  # radix 1: sigmoid gate
    ("resnest26d", {"output_stride": 16, "avd_dilated": False}),
])
def test_fused_inference_matches_eval(name: str, kwargs: dict) -> None:
    torch.manual_seed(0)
    model = randomize_norms(rb.create_model(name, **kwargs)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = fuse_for_inference(model)
    x = _image(96)
    with torch.no_grad():
        expected, got = model(x), fast(x)
    assert _max_diff(got, expected) <= 1e-4
    # Every batch norm is folded, and the original model is untouched (the copy is the only change).
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert len(fusable_pairs(model)) == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_fused_inference_is_inference_only() -> None:
    fast = fuse_for_inference(rb.create_model("resnest14d"))
    assert not fast.training and not any(p.requires_grad for p in fast.parameters())
    with pytest.raises(RuntimeError, match="inference only"):
        fast.train()
    fast.eval()  # allowed
    with pytest.raises(TypeError, match="ResNeSt"):
        fuse_for_inference(nn.Conv2d(3, 3, 1))


def test_fused_inference_channels_last() -> None:
    torch.manual_seed(0)
    model = randomize_norms(rb.create_model("resnest14d")).eval().to(memory_format=CL)
    fast = fuse_for_inference(model)
    x = _image(96).contiguous(memory_format=CL)
    with torch.no_grad():
        expected, got = model(x), fast(x)
    assert _max_diff(got, expected) <= 1e-4
    assert all(v.is_contiguous(memory_format=CL) for v in got.values())


def test_fold_keeps_groupnorm() -> None:
    model = rb.create_model("resnest14d", norm_layer=lambda c: nn.GroupNorm(8 if c % 8 == 0 else 1, c)).eval()
    fast = fuse_for_inference(model)
    assert fusable_pairs(model) == []
    x = _image()
    with torch.no_grad():
        assert _max_diff(fast(x), model(x)) == 0.0


# -------------------------------------------------------------------------------------- channels_last
@pytest.mark.parametrize("name", ["resnest14d", "resnest50_fast_4s2x40d"])
def test_channels_last_matches_contiguous(name: str) -> None:
    torch.manual_seed(0)
    model = randomize_norms(rb.create_model(name, out_features=["stem", "res2", "res3", "res4", "res5"])).eval()
    model_cl = copy.deepcopy(model).to(memory_format=CL)
    x = _image(96)
    with torch.no_grad():
        expected, got = model(x), model_cl(x.contiguous(memory_format=CL))
    assert _max_diff(got, expected) <= 1e-5
    # channels_last survives the whole network (split attention used to fall back to NCHW).
    assert all(v.is_contiguous(memory_format=CL) for v in got.values())


def test_combine_splits_matches_reference_and_keeps_format() -> None:
    gen = torch.Generator().manual_seed(0)
    for radix in (1, 2, 4):
        x = torch.randn(2, radix * 6, 5, 7, generator=gen)
        w = torch.rand(2, radix, 6, 1, 1, generator=gen)
        reference = (x.view(2, radix, 6, 5, 7) * w).sum(1)
        for fmt in (torch.contiguous_format, CL):
            out = combine_splits(x.contiguous(memory_format=fmt), w)
            assert torch.allclose(out, reference, rtol=1e-6, atol=1e-6)
            assert out.is_contiguous(memory_format=fmt)


# ------------------------------------------------------------------- memory-saving training ops (fused.py)
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
        return fused._BNReLUConv.apply(x, gamma, beta, bn.running_mean.clone(), bn.running_var.clone(), training,
                                       0.0, bn.eps, cw, [stride] * 2, [dilation] * 2, [dilation] * 2, groups)

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


@pytest.mark.parametrize("shared", [True, False], ids=["recomputed-once", "recomputed-twice"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("radix", [1, 2, 4])
def test_bn_relu_combine_gradcheck(training: bool, radix: int, shared: bool) -> None:
    channels = 3
    bn = _random_bn(radix * channels, training)
    x = _gradcheck_inputs(radix * channels)
    gamma, beta = bn.weight.detach().clone().requires_grad_(), bn.bias.detach().clone().requires_grad_()
    mix = torch.randn(radix, channels, dtype=torch.double, generator=torch.Generator().manual_seed(3),
                      requires_grad=True)

    def weights_of(z: Tensor, mix: Tensor) -> Tensor:
        # Weights that depend on z, like split attention's (pooled -> MLP -> softmax).
        pooled = z.mean((2, 3)).view(z.shape[0], radix, channels).sum(1)
        return torch.softmax(pooled.unsqueeze(1) * mix, dim=1).view(z.shape[0], radix, channels, 1, 1)

    def fused_fn(x: Tensor, gamma: Tensor, beta: Tensor, mix: Tensor) -> Tensor:
        cache = fused.RecomputeCache()  # shared: the combine's backward hands its recomputed z to _BNReLU's
        z, scale, shift = fused._BNReLU.apply(x, gamma, beta, bn.running_mean.clone(), bn.running_var.clone(),
                                              training, 0.0, bn.eps, cache)
        return fused.combine_splits_recompute(z, weights_of(z, mix), x, scale, shift, cache if shared else None)

    def plain_fn(x: Tensor, gamma: Tensor, beta: Tensor, mix: Tensor) -> Tensor:
        z = torch.relu(nn.functional.batch_norm(x, bn.running_mean.clone(), bn.running_var.clone(), gamma, beta,
                                                training, 0.0, bn.eps))
        return combine_splits(z, weights_of(z, mix))

    inputs = (x, gamma, beta, mix)
    assert torch.autograd.gradcheck(fused_fn, inputs)
    _assert_same_value_and_grads(fused_fn, plain_fn, inputs)


def _train_step(model: nn.Module, x: Tensor, use_fused: bool) -> List[Tensor]:
    with fused.memory_efficient(use_fused):
        out = _outputs(model(x))
        sum((v.double() ** 2).mean() for v in out.values()).backward()
    return [p.grad for p in model.parameters()]


@pytest.mark.parametrize("name, kwargs, fmt", [
    ("resnest14d", {"num_classes": 10}, torch.contiguous_format),
    ("resnest14d", {"num_classes": 10}, CL),
    ("resnest50_fast_4s2x40d", {"out_features": ["res2", "res3"]}, torch.contiguous_format),
    ("resnest50_fast_1s1x64d", {"out_features": ["res2"]}, torch.contiguous_format),
    ("resnest14d", {"norm_eval": True, "output_stride": 16}, torch.contiguous_format),
    ("resnest14d", {"freeze_at": 2}, torch.contiguous_format),
])
def test_fused_training_matches_plain(name: str, kwargs: dict, fmt: torch.memory_format) -> None:
    torch.manual_seed(0)
    plain = randomize_norms(rb.create_model(name, **kwargs)).double().train().to(memory_format=fmt)
    for module in plain.modules():  # exercise the cumulative-average branch too
        if isinstance(module, nn.BatchNorm2d) and module.num_features % 2:
            module.momentum = None
    fast = copy.deepcopy(plain)
    x = _image(64).double().contiguous(memory_format=fmt)
    calls = {"n": 0}
    original = fused._BNReLUConv.apply

    def counting(*args):
        calls["n"] += 1
        return original(*args)

    fused._BNReLUConv.apply = counting
    try:
        grads_fast = _train_step(fast, x, True)
    finally:
        fused._BNReLUConv.apply = original
    grads_plain = _train_step(plain, x, False)
    assert calls["n"] > 0, "the fused path was not taken"
    for (name_p, p), gf, gp in zip(plain.named_parameters(), grads_fast, grads_plain):
        assert (gf is None) == (gp is None), name_p
        if gp is not None:
            assert torch.allclose(gf, gp, rtol=1e-9, atol=1e-12), name_p
    for (name_b, bp), bf in zip(plain.named_buffers(), fast.buffers()):
        assert torch.equal(bp, bf), name_b  # running statistics and num_batches_tracked updated identically


def test_fused_ops_only_where_they_apply() -> None:
    bn = nn.BatchNorm2d(4)
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    assert fused.supports(bn, x)
    with torch.no_grad():
        assert not fused.supports(bn, x)
    assert not fused.supports(nn.GroupNorm(2, 4), x)
    assert not fused.supports(nn.SyncBatchNorm(4), x)
    assert not fused.supports(nn.BatchNorm2d(4, affine=False), x)
    assert not fused.supports(nn.BatchNorm2d(4, track_running_stats=False), x)
    with fused.memory_efficient(False):
        assert not fused.supports(bn, x)
    assert fused.enabled()


def _saved_bytes(model: nn.Module, x: Tensor, use_fused: bool) -> int:
    """Bytes of distinct non-parameter tensor storages autograd keeps for backward (deterministic, no timing)."""
    storages: Dict[int, int] = {}
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with fused.memory_efficient(use_fused), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    del out
    return sum(storages.values())


def test_fused_training_saves_activation_memory() -> None:
    torch.manual_seed(0)
    model = rb.create_model("resnest14d", num_classes=10).train()
    x = _image(96, batch=4)
    plain, fast = _saved_bytes(model, x, False), _saved_bytes(model, x, True)
    # The split convs' inputs, the activated radix splits and two stem maps are no longer kept.
    assert fast <= 0.85 * plain, (fast, plain)


# ------------------------------------------------------------------------------------------ torch.compile
@pytest.mark.slow
def test_torch_compile_matches_eager() -> None:
    torch.manual_seed(0)
    model = randomize_norms(rb.create_model("resnest14d", num_classes=10)).eval()
    compiled = torch.compile(model)
    x = _image(64)
    with torch.no_grad():
        assert _max_diff(compiled(x), model(x)) <= 1e-4
        fast = torch.compile(fuse_for_inference(model))
        assert _max_diff(fast(x), model(x)) <= 1e-4
