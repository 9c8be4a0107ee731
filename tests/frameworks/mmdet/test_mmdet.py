"""The MMDetection adapter: the scoped registration beside mmdet's own ``ResNeSt`` and mmseg's registry, and the
``load_state_dict`` pre-hook that reads mmdet's (OpenMMLab) ResNeSt keys."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from support.frameworks import require

pytestmark = require("mmdet")  # a visible skip without mmdet, before its imports below

from mmdet.registry import MODELS as DET_MODELS  # noqa: E402
from mmengine.registry import MODELS as ROOT_MODELS  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.runner import load_checkpoint  # noqa: E402
from support.detection_models import to_mmdet  # noqa: E402
from support.numerics import max_rel_diff, randomize_norms  # noqa: E402

import resnest_backbones.mmdet  # noqa: E402, F401 - registers the backbone
from resnest_backbones.models import CheckpointError  # noqa: E402
from resnest_backbones.openmmlab import OpenMMLabResNeSt  # noqa: E402

CFG = dict(type="resnest_backbones.ResNeSt", variant="resnest14d", out_indices=(0, 1, 2, 3), frozen_stages=1,
           norm_cfg=dict(type="BN", requires_grad=True), norm_eval=False)


def test_scoped_name_builds_ours_and_mmdets_own_name_stays_mmdets() -> None:
    init_default_scope("mmdet")
    backbone = DET_MODELS.build(CFG)
    assert type(backbone) is OpenMMLabResNeSt
    assert DET_MODELS.get("ResNeSt").__module__.startswith("mmdet.")  # mmdet's own implementation keeps its name
    assert [o.shape[1] for o in backbone.eval()(torch.zeros(1, 3, 64, 64))] == [256, 512, 1024, 2048]
    # mmseg's registry of the same scope (a child of mmengine's root) is another node holding the same class
    assert ROOT_MODELS.get("resnest_backbones.ResNeSt") is OpenMMLabResNeSt


def test_builds_from_a_config_through_custom_imports(tmp_path: Path) -> None:
    from mmengine.config import Config

    path = tmp_path / "backbone.py"
    path.write_text("custom_imports = dict(imports=['resnest_backbones.mmdet'], allow_failed_imports=False)\n"
                    f"backbone = {CFG!r}\n")
    init_default_scope("mmdet")
    assert type(DET_MODELS.build(Config.fromfile(str(path)).backbone)) is OpenMMLabResNeSt


def _mmdets_resnest50(seed: int) -> torch.nn.Module:
    """mmdet's own ResNeSt-50 (its detectors' backbone), with random weights and norms."""
    init_default_scope("mmdet")
    torch.manual_seed(seed)
    theirs = DET_MODELS.build(dict(type="ResNeSt", depth=50, stem_channels=64, radix=2, reduction_factor=4,
                                   avg_down_stride=True, out_indices=(0, 1, 2, 3), frozen_stages=1))
    randomize_norms(theirs, seed=seed).eval()  # (mmdet's ResNet.train returns None: no chaining)
    return theirs


def test_pre_hook_loads_mmdets_backbone_keys_and_computes_its_features() -> None:
    theirs = _mmdets_resnest50(seed=0)
    state = {"backbone." + k: v for k, v in theirs.state_dict().items()}
    assert "backbone.stem.0.weight" in state and "backbone.conv1.0.weight" not in state  # their layout
    holder = torch.nn.Module()
    holder.backbone = OpenMMLabResNeSt("resnest50d", frozen_stages=1)
    holder.load_state_dict(state, strict=True)  # plain torch: the hook renames, torch checks strictly
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, out = theirs(x), holder.eval().backbone(x)
    assert len(out) == len(ref) == 4
    assert max(max_rel_diff(o, r) for o, r in zip(out, ref)) <= 1e-5
    # the tests' own table (independent of the package's converter) maps our loaded keys back onto mmdet's
    ours = to_mmdet(holder.state_dict())
    assert sorted(ours) == sorted(state) and all(torch.equal(ours[k], state[k]) for k in state)


def test_pre_hook_rejects_a_partial_or_foreign_backbone_whatever_strict_says(tmp_path: Path) -> None:
    state = {"backbone." + k: v for k, v in _mmdets_resnest50(seed=0).state_dict().items()}
    del state["backbone.layer2.1.conv2.bn0.running_var"]
    path = tmp_path / "partial.pth"
    torch.save({"meta": {}, "state_dict": state}, path)
    holder = torch.nn.Module()
    holder.backbone = OpenMMLabResNeSt("resnest50d")
    for strict in (True, False):  # mmengine's load_from path loads with strict=False: still an error
        with pytest.raises(CheckpointError, match=r"under 'backbone\.'.*\n.*1 missing.*\n.*"
                                                  r"backbone\.layer2\.1\.conv2\.bn0\.running_var"):
            load_checkpoint(holder, str(path), map_location="cpu", strict=strict)
    holder.backbone = OpenMMLabResNeSt("resnest14d")  # another depth: missing and mis-shaped tensors, named
    with pytest.raises(CheckpointError, match=r"resnest14d.*\n.*unexpected.*\n(.*\n)*.*unexpected in checkpoint: "
                                              r"backbone\.layer"):
        holder.load_state_dict({"backbone." + k: v for k, v in _mmdets_resnest50(1).state_dict().items()})


def test_other_layouts_pass_the_hook_untouched() -> None:
    ours = OpenMMLabResNeSt("resnest14d")
    copy = OpenMMLabResNeSt("resnest14d")
    copy.load_state_dict(ours.state_dict(), strict=True)  # our (= official) keys
    assert all(torch.equal(a, b) for a, b in zip(copy.state_dict().values(), ours.state_dict().values()))
