"""Performance features keep ResNeSt's numbers (Zhang et al., 2020): fused inference mode, channels_last,
torch.compile (the memory-saving training modules are tested in test_accel.py). No timings here: speed is
measured by tools/benchmark.py, never asserted in tests.
"""
from __future__ import annotations

import copy
from typing import Dict

import pytest
import torch
from support.numerics import max_rel_diff, random_image, randomize_norms
from torch import Tensor, nn

import resnest_backbones as rb
from resnest_backbones.accel import fusable_pairs, fuse_for_inference
from resnest_backbones.layers.split_attention import combine_splits

CL = torch.channels_last


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
    x = random_image(96)
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
    x = random_image(96).contiguous(memory_format=CL)
    with torch.no_grad():
        expected, got = model(x), fast(x)
    assert _max_diff(got, expected) <= 1e-4
    assert all(v.is_contiguous(memory_format=CL) for v in got.values())


def test_fold_keeps_groupnorm() -> None:
    model = rb.create_model("resnest14d", norm_layer=lambda c: nn.GroupNorm(8 if c % 8 == 0 else 1, c)).eval()
    fast = fuse_for_inference(model)
    assert fusable_pairs(model) == []
    x = random_image()
    with torch.no_grad():
        assert _max_diff(fast(x), model(x)) == 0.0


# -------------------------------------------------------------------------------------- channels_last
@pytest.mark.parametrize("name", ["resnest14d", "resnest50_fast_4s2x40d"])
def test_channels_last_matches_contiguous(name: str) -> None:
    torch.manual_seed(0)
    model = randomize_norms(rb.create_model(name, out_features=["stem", "res2", "res3", "res4", "res5"])).eval()
    model_cl = copy.deepcopy(model).to(memory_format=CL)
    x = random_image(96)
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


# ------------------------------------------------------------------------------------------ torch.compile
@pytest.mark.slow
def test_torch_compile_matches_eager() -> None:
    torch.manual_seed(0)
    model = randomize_norms(rb.create_model("resnest14d", num_classes=10)).eval()
    compiled = torch.compile(model)
    x = random_image(64)
    with torch.no_grad():
        assert _max_diff(compiled(x), model(x)) <= 1e-4
        fast = torch.compile(fuse_for_inference(model))
        assert _max_diff(fast(x), model(x)) <= 1e-4
