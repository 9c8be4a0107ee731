"""Parity of the one ResNeSt definition with the official implementation (resnest==0.0.5) and timm.

Each reference model gets random weights and random norm statistics; its ``state_dict()`` must load into
ours with ``strict=True`` and eval-mode outputs must agree to ``max|diff| <= 1e-5 * max|ref|``.
"""
from __future__ import annotations

import pytest
import torch
from support.numerics import max_rel_diff, random_image, randomize_norms

import resnest_backbones as rb

official = pytest.importorskip("resnest.torch", reason="the official `resnest==0.0.5` package is not installed")
timm = pytest.importorskip("timm", reason="timm is not installed")

TOL = 1e-5
OFFICIAL_MODELS = [
    "resnest50", "resnest101", "resnest200", "resnest269",
    "resnest50_fast_1s1x64d", "resnest50_fast_2s1x64d", "resnest50_fast_4s1x64d", "resnest50_fast_1s2x40d",
    "resnest50_fast_2s2x40d", "resnest50_fast_4s2x40d", "resnest50_fast_1s4x24d",
]
TIMM_MODELS = ["resnest14d", "resnest26d", "resnest50d", "resnest101e", "resnest200e", "resnest269e",
               "resnest50d_4s2x40d", "resnest50d_1s4x24d"]


def _official_features(ref: torch.nn.Module, x: torch.Tensor) -> dict:
    x = ref.maxpool(ref.relu(ref.bn1(ref.conv1(x))))
    feats = {}
    for i in range(1, 5):
        x = getattr(ref, f"layer{i}")(x)
        feats[f"res{i + 1}"] = x
    return feats


def _check_logits(ref: torch.nn.Module, name: str) -> float:
    randomize_norms(ref).eval()
    ours = rb.create_model(name, num_classes=1000).eval()
    report = rb.load_checkpoint(ours, ref.state_dict(), strict=True)
    assert report.ok and not report.ignored
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    x = random_image(224)
    with torch.no_grad():
        diff = max_rel_diff(ours(x), ref(x))
    assert diff <= TOL, f"{name}: max|diff|/max|ref| = {diff:.2e}"
    return diff


@pytest.mark.parametrize("name", OFFICIAL_MODELS)
def test_official_logits(name: str, record_property) -> None:
    torch.manual_seed(0)
    record_property("max_rel_diff", _check_logits(getattr(official, name)(pretrained=False), name))


@pytest.mark.parametrize("name", TIMM_MODELS)
def test_timm_logits(name: str, record_property) -> None:
    torch.manual_seed(0)
    record_property("max_rel_diff", _check_logits(timm.create_model(name, pretrained=False), name))


@pytest.mark.parametrize("output_stride, ref_kwargs", [(8, {"dilated": True}), (16, {"dilation": 2})])
def test_official_dilated_features(output_stride: int, ref_kwargs: dict, record_property) -> None:
    torch.manual_seed(0)
    ref = randomize_norms(official.resnest50(pretrained=False, **ref_kwargs)).eval()
    ours = rb.create_model("resnest50", output_stride=output_stride).eval()
    rb.load_checkpoint(ours, ref.state_dict(), strict=True)
    x = random_image(160, 1)
    with torch.no_grad():
        expected, got = _official_features(ref, x), ours.forward_features(x)
    worst = 0.0
    for key, value in expected.items():
        assert got[key].shape == value.shape
        worst = max(worst, max_rel_diff(got[key], value))
        assert worst <= TOL, key
    record_property("max_rel_diff", worst)
    assert got["res5"].shape[-1] == 160 // output_stride
