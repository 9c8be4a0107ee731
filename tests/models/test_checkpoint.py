"""Checkpoint loading: every supported key format, strictness, reports, bad files, and the conversion tool.

The detectron2-wrapper and OpenMMLab formats are produced here from an official-format state dict by renaming
keys as docs/reference.md section 1 (key layouts) describes them, written independently of the package's converter.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from support import REPO_ROOT
from support.checkpoints import to_detectron2_wrapper, to_openmmlab
from support.numerics import randomize_norms
from support.processes import run_python
from torch import nn

import resnest_backbones as rb

ROOT = REPO_ROOT
SMALL = "resnest14d"


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    model = randomize_norms(rb.create_model(SMALL, num_classes=10)).eval()
    return model, torch.randn(2, 3, 64, 64)


def _features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval().forward_features(x)["res5"]


def test_official_file_round_trip(tmp_path, reference) -> None:
    model, x = reference
    path = tmp_path / "resnest14d.pth"
    torch.save(model.state_dict(), path)
    copy = rb.create_model(SMALL, num_classes=10, pretrained=path).eval()
    with torch.no_grad():
        assert torch.equal(copy(x), model(x))


@pytest.mark.parametrize("wrap", ["bare", "full_model"])
def test_detectron2_wrapper_format(tmp_path, reference, wrap: str) -> None:
    model, x = reference
    state = to_detectron2_wrapper(model.state_dict())
    assert {"res2.0.conv1.norm.weight", "res2.0.conv2.bn1.weight", "res2.0.shortcut.norm.weight"} <= set(state)
    if wrap == "full_model":
        state = {"model": {**{"backbone.bottom_up." + k: v for k, v in state.items()},
                           "roi_heads.box_predictor.cls_score.weight": torch.zeros(2, 2)}}
    path = tmp_path / "d2.pth"
    torch.save(state, path)
    backbone = rb.create_model(SMALL)
    report = rb.load_checkpoint(backbone, path)
    assert report.source_format == "detectron2" and report.ok and not report.missing
    assert set(report.ignored) == ({"roi_heads.box_predictor.cls_score.weight"} if wrap == "full_model" else set())
    assert torch.equal(_features(backbone, x), _features(model, x))


@pytest.mark.parametrize("norm", ["bn", "gn"])
def test_openmmlab_format(reference, norm: str) -> None:
    model, x = reference
    if norm == "bn":
        state, target = to_openmmlab(model.state_dict()), rb.create_model(SMALL)
    else:
        gn_model = rb.create_model(SMALL, norm_layer=lambda c: nn.GroupNorm(8, c))
        state, target = to_openmmlab(gn_model.state_dict(), "gn"), rb.create_model(
            SMALL, norm_layer=lambda c: nn.GroupNorm(8, c))
        model = gn_model
    report = rb.load_checkpoint(target, state)
    assert report.source_format == "openmmlab" and report.ok
    assert report.ignored == {"decode_head.conv_seg.weight": "not a backbone tensor (full-model checkpoint)"}
    assert torch.equal(_features(target, x), _features(model, x))


def test_head_and_unbuilt_stages_are_reported_not_loaded(reference) -> None:
    model, _ = reference
    backbone = rb.create_model(SMALL, out_features=["res3"])
    report = rb.load_checkpoint(backbone, model.state_dict())
    reasons = set(report.ignored.values())
    assert any("classification head" in r for r in reasons)
    assert any("layer3 not built" in r for r in reasons) and any("layer4 not built" in r for r in reasons)
    assert "ignored" in report.summary()


def test_batchnorm_statistics_into_groupnorm_model(reference) -> None:
    model, _ = reference
    gn = rb.create_model(SMALL, norm_layer=lambda c: nn.GroupNorm(8, c))
    report = rb.load_checkpoint(gn, model.state_dict())
    assert report.ok and any("GroupNorm" in r for r in report.ignored.values())


def test_other_variant_fails_listing_mis_shaped_keys(reference) -> None:
    model, _ = reference
    other = rb.create_model("resnest26d")
    with pytest.raises(rb.CheckpointError, match="missing in checkpoint: layer1.1") as info:
        rb.load_checkpoint(other, model.state_dict())
    wide = rb.create_model("resnest50_fast_2s2x40d", layers=(1, 1, 1, 1))
    with pytest.raises(rb.CheckpointError, match=r"mis-shaped .*conv1.weight"):
        rb.load_checkpoint(wide, model.state_dict())
    assert info.value.report is not None and info.value.report.missing


def test_partial_checkpoint_fails_unless_allowed(reference) -> None:
    model, x = reference
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("layer4.")}
    target = rb.create_model(SMALL, num_classes=10)
    with pytest.raises(rb.CheckpointError, match="missing in checkpoint: layer4.0"):
        rb.load_checkpoint(target, state)
    report = rb.load_checkpoint(target, state, strict=False)
    assert not report.ok and all(k.startswith("layer4.") for k in report.missing)
    assert torch.equal(target.layer1[0].conv1.weight, model.layer1[0].conv1.weight)


def test_unexpected_keys_are_an_error(reference) -> None:
    model, _ = reference
    state = dict(model.state_dict(), **{"layer1.0.extra.weight": torch.zeros(1)})
    with pytest.raises(rb.CheckpointError, match="unexpected in checkpoint: layer1.0.extra.weight"):
        rb.load_checkpoint(rb.create_model(SMALL, num_classes=10), state)


def test_corrupt_and_foreign_files(tmp_path) -> None:
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"PK\x03\x04 not really a checkpoint")
    with pytest.raises(rb.CheckpointError, match="corrupt, incomplete"):
        rb.load_checkpoint(rb.create_model(SMALL), corrupt)
    with pytest.raises(rb.CheckpointError, match="does not exist"):
        rb.load_checkpoint(rb.create_model(SMALL), tmp_path / "missing.pth")
    with pytest.raises(rb.CheckpointError, match="not a ResNeSt checkpoint"):
        rb.load_checkpoint(rb.create_model(SMALL), {"encoder.weight": torch.zeros(1)})


def test_detectron2_radix1_plain_conv_is_explained() -> None:
    state = {"stem.conv1_1.weight": torch.zeros(1), "res2.0.conv2.weight": torch.zeros(1)}
    with pytest.raises(rb.CheckpointError, match="plain 3x3 conv"):
        rb.load_checkpoint(rb.create_model(SMALL), state)


def test_pretrained_true_reads_torch_hub_dir(tmp_path, monkeypatch) -> None:
    """pretrained=True: the official file in torch hub's cache, hash-checked (downloads: test_weights_download.py)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def offline(url: str, *args, **kwargs) -> None:
        raise OSError(f"tests never use the network ({url})")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    target = tmp_path / "hub" / "checkpoints" / "resnest50-528c19ca.pth"
    with pytest.raises(rb.CheckpointError, match="weights_step1/resnest50-528c19ca.pth") as error:
        rb.create_model("resnest50d", pretrained=True)
    assert str(target) in str(error.value)
    # A file under the official name whose content does not match the name's hash (a broken download)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(rb.create_model("resnest50d", out_features=["stem"]).state_dict(), target)
    with pytest.raises(rb.CheckpointError, match="hash starts with 528c19ca.*delete"):
        rb.create_model("resnest50d", pretrained=True)


def _named_with_hash(tmp_path: Path, payload, name: str) -> Path:
    raw = tmp_path / "raw.pth"
    torch.save(payload, raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    path = tmp_path / f"{name}-{digest[:8]}.pth"
    raw.rename(path)
    return path


def test_convert_tool(tmp_path, reference) -> None:
    model, x = reference
    src = _named_with_hash(tmp_path, to_detectron2_wrapper(model.state_dict()), "resnest14d_detectron")
    out = tmp_path / "ours.pth"
    result = run_python([ROOT / "tools/convert_weights.py", src, out, "--variant", SMALL])
    assert "detectron2 checkpoint" in result.stdout and "verified" in result.stdout
    converted = torch.load(out, weights_only=True)
    assert set(converted) == {k for k in model.state_dict() if not k.startswith("fc.")
                              and not k.endswith("num_batches_tracked")}
    d2_out = tmp_path / "d2_layout.pth"
    run_python([ROOT / "tools/convert_weights.py", out, d2_out, "--to", "detectron2"])
    d2 = torch.load(d2_out, weights_only=True)
    assert all(k.startswith("backbone.bottom_up.") for k in d2["model"])
    backbone = rb.create_model(SMALL)
    rb.load_checkpoint(backbone, d2)
    assert torch.equal(_features(backbone, x), _features(model, x))


def test_convert_tool_rejects_a_wrong_hash(tmp_path, reference) -> None:
    model, _ = reference
    bad = tmp_path / "resnest14d-00000000.pth"
    torch.save(model.state_dict(), bad)
    result = run_python([ROOT / "tools/convert_weights.py", bad, tmp_path / "o.pth"], check=False)
    assert result.returncode != 0 and "download it again" in result.stderr
