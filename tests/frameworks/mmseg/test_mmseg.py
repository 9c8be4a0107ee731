"""The MMSegmentation/MMDetection adapter of the ResNeSt backbone: registry, arguments, weights, parity.

Parity reference: mmseg's own ``ResNeSt`` (random init, norms randomised), converted by the core loader.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Optional

import pytest
import torch
from support.frameworks import require
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

pytestmark = require("mmseg")  # a visible skip without mmseg, before its imports below

from mmengine.config import ConfigDict  # noqa: E402
from mmengine.registry import MODELS as ROOT_MODELS  # noqa: E402
from mmseg.registry import MODELS as SEG_MODELS  # noqa: E402
from support.checkpoints import to_openmmlab  # noqa: E402
from support.numerics import max_rel_diff, randomize_norms, saved_bytes  # noqa: E402

import resnest_backbones as rb  # noqa: E402
from resnest_backbones.mmseg import OpenMMLabResNeSt  # noqa: E402

CHANNELS = (256, 512, 1024, 2048)
STRIDES = {8: (4, 8, 8, 8), 16: (4, 8, 16, 16), 32: (4, 8, 16, 32)}
EXPLICIT = {8: dict(strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4)), 16: dict(strides=(1, 2, 2, 1),
                                                                              dilations=(1, 1, 1, 2))}


# ------------------------------------------------------------------------------------------ registry
def test_registered_in_own_scope_and_found_from_mmseg() -> None:
    cfg = dict(type="resnest_backbones.ResNeSt", variant="resnest14d")
    assert isinstance(SEG_MODELS.build(cfg), OpenMMLabResNeSt)
    assert isinstance(ROOT_MODELS.build(cfg), OpenMMLabResNeSt)
    # mmseg's own ResNeSt keeps its name
    assert SEG_MODELS.get("ResNeSt") is not OpenMMLabResNeSt
    assert SEG_MODELS.get("ResNeSt").__module__.startswith("mmseg.")


@pytest.mark.mmdet
def test_builds_from_mmdet_config() -> None:
    from mmdet.registry import MODELS as DET_MODELS
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=False)  # leaves the default scope (mmseg) to the other tests
    backbone = DET_MODELS.build(dict(type="resnest_backbones.ResNeSt", variant="resnest14d", out_indices=(0, 1, 2, 3),
                                     frozen_stages=1, norm_cfg=dict(type="BN", requires_grad=True), norm_eval=True))
    assert isinstance(backbone, OpenMMLabResNeSt)
    outs = backbone.eval()(torch.zeros(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == list(CHANNELS)


# ------------------------------------------------------------------------------- outputs and shapes
@pytest.mark.parametrize("os_", [8, 16])
@pytest.mark.parametrize("explicit", [False, True], ids=["output_stride", "strides+dilations"])
@pytest.mark.parametrize("out_indices", [(0, 1, 2, 3), (3, 1), (2,)])
def test_out_indices_channels_and_strides(os_: int, explicit: bool, out_indices: tuple) -> None:
    kwargs = EXPLICIT[os_] if explicit else dict(output_stride=os_)
    model = OpenMMLabResNeSt("resnest14d", out_indices=out_indices, **kwargs).eval()
    size = 64
    with torch.no_grad():
        outs = model(torch.randn(1, 3, size, size))
    assert isinstance(outs, tuple) and len(outs) == len(out_indices)
    for out, index in zip(outs, out_indices):
        stride = STRIDES[os_][index]
        assert tuple(out.shape) == (1, CHANNELS[index], size // stride, size // stride), (index, out.shape)
        info = model.feature_info[rb.models.STAGE_NAMES[index]]
        assert (info.channels, info.stride) == (CHANNELS[index], stride)
    # stages after the last requested one are not built (no unused parameters under DDP)
    for later in range(max(out_indices) + 1, 4):
        assert isinstance(getattr(model, f"layer{later + 1}"), nn.Identity)


def test_bad_arguments_say_what_to_do() -> None:
    with pytest.raises(TypeError, match="variant="):
        OpenMMLabResNeSt("resnest14d", depth=50)
    with pytest.raises(ValueError, match="out_indices"):
        OpenMMLabResNeSt("resnest14d", out_indices=(0, 4))
    with pytest.raises(ValueError, match="frozen_stages"):
        OpenMMLabResNeSt("resnest14d", frozen_stages=5)
    with pytest.raises(ValueError, match="dcn"):
        OpenMMLabResNeSt("resnest14d", stage_with_dcn=(False, True, True, True))
    with pytest.raises(ValueError, match="unknown ResNeSt variant"):
        OpenMMLabResNeSt("resnest42")


# ------------------------------------------------------------------------------- norms and freezing
def test_frozen_stages_and_norm_eval_survive_train() -> None:
    model = OpenMMLabResNeSt("resnest14d", frozen_stages=1, norm_eval=True)
    model.train()
    frozen = [model.conv1, model.bn1, model.layer1]
    for module in frozen:
        assert all(not p.requires_grad for p in module.parameters())
        assert all(not m.training for m in module.modules())
    assert all(p.requires_grad for p in model.layer2.parameters())
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not m.training for m in bns)  # norm_eval
    assert model.layer2.training  # the rest trains
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    model(torch.randn(2, 3, 64, 64))[-1].sum().backward()
    after = model.state_dict()
    assert all(torch.equal(stats[k], after[k]) for k in stats)
    assert model.conv1[0].weight.grad is None and model.layer2[0].conv1.weight.grad is not None


def test_frozen_stages_without_norm_eval() -> None:
    model = OpenMMLabResNeSt("resnest14d", frozen_stages=0).train()
    assert not model.bn1.training and model.layer1[0].bn1.training
    assert not any(p.requires_grad for p in model.conv1.parameters())
    assert all(p.requires_grad for p in model.layer1.parameters())


@pytest.mark.parametrize("norm_cfg, expected", [
    (dict(type="SyncBN", requires_grad=True), nn.SyncBatchNorm),
    (dict(type="BN", requires_grad=True), nn.BatchNorm2d),
    (dict(type="GN", num_groups=16, requires_grad=True), nn.GroupNorm),
])
def test_norm_cfg(norm_cfg: dict, expected: type) -> None:
    model = OpenMMLabResNeSt("resnest14d", norm_cfg=norm_cfg)
    norms = [m for m in model.modules() if isinstance(m, (_BatchNorm, nn.GroupNorm))]
    assert norms and all(isinstance(m, expected) for m in norms)
    outs = model.train()(torch.randn(2, 3, 32, 32))  # SyncBN runs as BN in a single process
    assert outs[-1].shape == (2, 2048, 1, 1)


def test_norm_cfg_requires_grad_false() -> None:
    model = OpenMMLabResNeSt("resnest14d", norm_cfg=dict(type="BN", requires_grad=False))
    assert not model.bn1.weight.requires_grad and model.conv1[0].weight.requires_grad


def test_dcn_stages_multi_grid_and_with_cp() -> None:
    from resnest_backbones.layers import DeformConv2d

    model = OpenMMLabResNeSt("resnest14d", dcn=dict(type="DCNv2", deform_groups=2),
                             stage_with_dcn=(False, True, True, True), output_stride=16, multi_grid=(2,), with_cp=True)
    deform = [name for name, m in model.named_modules() if isinstance(m, DeformConv2d)]
    assert deform and not any(name.startswith("layer1.") for name in deform)
    assert {name.split(".")[0] for name in deform} == {"layer2", "layer3", "layer4"}
    assert model.layer4[0].conv2.conv.dilation == (4, 4)  # multi_grid (2,) x stage dilation 2
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    model.train()(x)[-1].sum().backward()
    assert x.grad is not None


# ---------------------------------------------------------------------------------------- weights
def _official_state(name: str) -> Dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return randomize_norms(rb.create_model(name, num_classes=10)).state_dict()


def _assert_loaded(model: nn.Module, expected: Dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    keys = [k for k in expected if not k.startswith("fc.")]
    assert set(keys) == set(state)
    for key in keys:
        assert torch.equal(state[key], expected[key]), key


@pytest.mark.parametrize("fmt", ["official", "openmmlab"])
def test_pretrained_init_cfg_loads_strictly(tmp_path: Path, fmt: str, caplog: pytest.LogCaptureFixture) -> None:
    state = _official_state("resnest14d")
    path = tmp_path / f"{fmt}.pth"
    torch.save(state if fmt == "official" else {"state_dict": to_openmmlab(state), "meta": {}}, path)
    model = SEG_MODELS.build(dict(type="resnest_backbones.ResNeSt", variant="resnest14d",
                                  init_cfg=dict(type="Pretrained", checkpoint=str(path))))
    with caplog.at_level(logging.INFO):
        model.init_weights()
    _assert_loaded(model, state)
    report = [r.getMessage() for r in caplog.records if "tensors loaded" in r.getMessage()]
    assert report and "0 missing, 0 unexpected, 0 mis-shaped" in report[-1], report


def test_pretrained_through_segmentor_pretrained_argument(tmp_path: Path) -> None:
    state = _official_state("resnest14d")
    torch.save(state, tmp_path / "w.pth")
    segmentor = SEG_MODELS.build(ConfigDict(  # as read from a config file
        type="EncoderDecoder", pretrained=str(tmp_path / "w.pth"),
        backbone=dict(type="resnest_backbones.ResNeSt", variant="resnest14d", out_indices=(3,)),
        decode_head=dict(type="FCNHead", in_channels=2048, channels=16, num_convs=1, num_classes=3, in_index=0)))
    segmentor.init_weights()
    _assert_loaded(segmentor.backbone, state)


@pytest.mark.parametrize("saved, dropped, built, error", [
    ("resnest26d", None, "resnest14d", r"unexpected in checkpoint: .*layer1\.1\.conv1\.weight"),
    ("resnest14d", "layer3.0.conv2.fc1.weight", "resnest14d", r"missing in checkpoint: layer3\.0\.conv2\.fc1\.weight"),
    ("resnest50d", None, "resnest50d_1s4x24d", r"mis-shaped .*layer1\.0\.conv1\.weight"),
], ids=["other-variant", "partial", "wider-stem"])
def test_bad_checkpoint_fails_naming_keys(tmp_path: Path, saved: str, dropped: Optional[str], built: str,
                                          error: str) -> None:
    """Another variant's file (unexpected keys), a partial file (missing keys), a wider stem (mis-shaped keys)."""
    state = _official_state(saved)
    if dropped is not None:
        del state[dropped]
    torch.save(state, tmp_path / "w.pth")
    model = OpenMMLabResNeSt(built, init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "w.pth")))
    with pytest.raises(rb.CheckpointError, match=error):
        model.init_weights()


def test_missing_checkpoint_file_says_where_to_get_it(tmp_path: Path) -> None:
    model = OpenMMLabResNeSt("resnest14d", init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "nope.pth")))
    with pytest.raises(FileNotFoundError, match="weights_step1"):
        model.init_weights()


# ----------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("os_", [8, 32])
def test_parity_with_mmseg_resnest(tmp_path: Path, os_: int) -> None:
    """mmseg's ResNeSt-50 and ours with mmseg's dilation semantics compute the same function."""
    from mmseg.models.backbones import ResNeSt as MMSegResNeSt

    torch.manual_seed(0)
    strides, dilations = rb.models.stage_strides_and_dilations(os_)
    ref = MMSegResNeSt(depth=50, stem_channels=64, radix=2, reduction_factor=4, avg_down_stride=True,
                       strides=strides, dilations=dilations, contract_dilation=True)
    randomize_norms(ref).eval()
    torch.save({"state_dict": ref.state_dict()}, tmp_path / "mmseg_resnest50.pth")
    ours = OpenMMLabResNeSt("resnest50d", strides=strides, dilations=dilations, avd_dilated=False,
                   init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "mmseg_resnest50.pth")))
    ours.init_weights()
    ours.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = ref(x), ours(x)
    for index, (a, b) in enumerate(zip(got, expected)):
        assert max_rel_diff(a, b) <= 1e-5, (index, max_rel_diff(a, b))
    if os_ == 8:  # the official semantics (AVD kept in dilated stages) is a different function there
        official = OpenMMLabResNeSt("resnest50d", strides=strides, dilations=dilations, avd_dilated=True)
        official.load_state_dict(ours.state_dict())
        with torch.no_grad():
            assert max_rel_diff(official.eval()(x)[2], expected[2]) > 1e-3


def test_training_keeps_less_than_mmseg_resnest() -> None:
    """The same function as mmseg's ResNeSt-50 (output stride 8, as the segmentation configs): in training it keeps
    for backward about half of what mmseg's keeps; its plain reference path no more than mmseg's."""
    from mmseg.models.backbones import ResNeSt as MMSegResNeSt

    from resnest_backbones.accel import reference_modules

    strides, dilations = rb.models.stage_strides_and_dilations(8)
    ref = MMSegResNeSt(depth=50, stem_channels=64, radix=2, reduction_factor=4, avg_down_stride=True,
                       strides=strides, dilations=dilations, contract_dilation=True)
    ours = OpenMMLabResNeSt("resnest50d", strides=strides, dilations=dilations, avd_dilated=False)
    ref.train()  # (mmseg's ResNet.train returns None)
    ours.train()

    class Summed(nn.Module):
        def __init__(self, backbone: nn.Module) -> None:
            super().__init__()
            self.backbone = backbone

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return sum(out.mean() for out in self.backbone(x))

    x = torch.randn(2, 3, 96, 96)
    theirs = saved_bytes(Summed(ref), x)
    fast = saved_bytes(Summed(ours), x)
    plain = saved_bytes(Summed(reference_modules(ours)), x)
    assert plain <= theirs, (plain, theirs)  # measured: 0.978x
    assert fast <= 0.6 * theirs, (fast, theirs)  # measured: 0.522x (2x3x96x96)


def test_misspelled_config_key_names_the_fix() -> None:
    cfg = dict(type="resnest_backbones.ResNeSt", variant="resnest14d", out_indicez=(0, 1))
    with pytest.raises(TypeError, match=r"unknown argument\(s\) 'out_indicez' \(did you mean 'out_indices'\?\)"):
        ROOT_MODELS.build(cfg)
