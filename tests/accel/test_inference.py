"""Fused inference mode (resnest_backbones/accel/inference.py: batch norms folded into the convolutions) and
torch.compile keep ResNeSt's numbers (Zhang et al., 2020). The memory-saving training ops are tested in
test_accel.py and test_accel_norms.py, channels_last in models/test_model.py. No timings here: speed is measured
by tools/benchmark.py, never asserted in tests.
"""
from __future__ import annotations

import pytest
import torch
from support.numerics import max_rel_diff_outputs, random_image, randomize_norms
from torch import nn

import resnest_backbones as rb
from resnest_backbones.accel import InferenceOnly, fusable_pairs, fuse_for_inference, fuse_resnest_modules

CL = torch.channels_last


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
    assert max_rel_diff_outputs(got, expected) <= 1e-4
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


def test_fuse_resnest_modules_in_a_whole_model() -> None:
    """In place, inside a larger model: the backbone becomes its fused copy, the rest stays, outputs equal."""
    torch.manual_seed(0)
    whole = nn.Sequential(randomize_norms(rb.create_model("resnest14d", num_classes=5)), nn.Softmax(dim=1))
    head = whole[1]
    x = random_image(64)
    with torch.no_grad():
        expected = whole.eval()(x)
        assert fuse_resnest_modules(whole.train()) == 1
        got = whole(x)
    assert not whole.training and whole[1] is head and isinstance(whole[0], InferenceOnly)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in whole.modules())
    assert max_rel_diff_outputs(got, expected) <= 1e-4
    assert fuse_resnest_modules(whole) == 0  # already fused
    with pytest.raises(RuntimeError, match="inference only"):
        whole.train()
    assert not any(m.training for m in whole.modules())  # refused before anything switched
    with pytest.raises(ValueError, match="holds no ResNeSt"):
        fuse_resnest_modules(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="use fuse_for_inference"):
        fuse_resnest_modules(rb.create_model("resnest14d"))


def test_fused_inference_channels_last() -> None:
    torch.manual_seed(0)
    model = randomize_norms(rb.create_model("resnest14d")).eval().to(memory_format=CL)
    fast = fuse_for_inference(model)
    x = random_image(96).contiguous(memory_format=CL)
    with torch.no_grad():
        expected, got = model(x), fast(x)
    assert max_rel_diff_outputs(got, expected) <= 1e-4
    assert all(v.is_contiguous(memory_format=CL) for v in got.values())


def test_fold_keeps_groupnorm() -> None:
    model = rb.create_model("resnest14d", norm_layer=lambda c: nn.GroupNorm(8 if c % 8 == 0 else 1, c)).eval()
    fast = fuse_for_inference(model)
    assert fusable_pairs(model) == []
    x = random_image()
    with torch.no_grad():
        assert max_rel_diff_outputs(fast(x), model(x)) == 0.0


# ------------------------------------------------------------------------------------------ torch.compile
@pytest.mark.slow
def test_torch_compile_matches_eager() -> None:
    torch.manual_seed(0)
    model = randomize_norms(rb.create_model("resnest14d", num_classes=10)).eval()
    compiled = torch.compile(model)
    x = random_image(64)
    with torch.no_grad():
        assert max_rel_diff_outputs(compiled(x), model(x)) <= 1e-4
        fast = torch.compile(fuse_for_inference(model))
        assert max_rel_diff_outputs(fast(x), model(x)) <= 1e-4
