"""User configs that inherit ours by name, ``_base_ = 'resnest_backbones::mmdet/...py'`` (as OpenMMLab configs
inherit ``mmdet::``'s): the project's one OpenMMLab reader (resnest_backbones.config_files.load_openmmlab_config,
behind the tools and the predictors) reads them as the named config with only the user's change, no ``_scope_``
added; tools/mmdet_train.py trains from one; predict's framework detection tells mmdet from mmseg by the base; an
unknown name fails naming the closest configs; the forms for OpenMMLab's own tools (docs/frameworks.md) load too."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Dict

import pytest
from support.processes import run_tool

import resnest_backbones as rb
from resnest_backbones import frameworks
from resnest_backbones.config_files import config_dir, load_openmmlab_config
from resnest_backbones.predict import detect_framework

TOY_MMDET = "mmdet/toy/faster-rcnn_resnest14d_fpn_toy-coco.py"
MMDET = "mmdet/faster-rcnn_resnest50d_fpn_syncbn-backbone+head_ms-range-1x_coco.py"
TOY_ADE = "mmseg/toy/deeplabv3_resnest14d-d8_toy-ade.py"
DET_CHANGE = "model = dict(roi_head=dict(bbox_head=dict(num_classes=2)))\n"
SEG_CHANGE = "model = dict(decode_head=dict(num_classes=7), auxiliary_head=dict(num_classes=7))\n"


def _user_config(folder: Path, base: Any, change: str, name: str = "user.py") -> Path:
    path = folder / name
    path.write_text(f"_base_ = {base!r}\n{change}")
    return path


def _leaves(node: Any, path: str = "") -> Dict[str, Any]:
    """A config as ``{dotted.path: leaf}``, ``_scope_`` marks included (they must be the same as the base's)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, (list, tuple)) else None
    if items is None:
        return {path: node}
    flat: Dict[str, Any] = {}
    for key, value in items:
        flat.update(_leaves(value, f"{path}.{key}" if path else str(key)))
    return flat or {path: node}


def _differences(user: Any, base: Any) -> Dict[str, Any]:
    ours, theirs = _leaves(user.to_dict()), _leaves(base.to_dict())
    return {key: (ours.get(key), theirs.get(key)) for key in ours.keys() | theirs.keys()
            if ours.get(key) != theirs.get(key)}


def _load(path: Path) -> Any:
    return load_openmmlab_config(path, import_custom_modules=False)


def _pretty_diff(user: Any, base: Any) -> list:
    return [(a, b) for a, b in zip(user.pretty_text.splitlines(), base.pretty_text.splitlines()) if a != b]


@pytest.mark.mmdet
@pytest.mark.parametrize("name", [TOY_MMDET, MMDET])
def test_mmdet_config_by_name_equals_the_base_but_for_the_change(name: str, tmp_path: Path) -> None:
    from mmengine.config import Config

    base = Config.fromfile(rb.config_file(name), import_custom_modules=False)
    user = _load(_user_config(tmp_path, f"resnest_backbones::{name}", DET_CHANGE))
    assert _differences(user, base) == {"model.roi_head.bbox_head.num_classes": (2, base.model.roi_head.bbox_head
                                                                                 .num_classes)}
    assert len(_pretty_diff(user, base)) == 1 and "resnest_backbones'" not in user.pretty_text  # no _scope_ stamped
    assert Config.__dict__["_get_cfg_path"].__func__.__module__ == "mmengine.config.config"  # mmengine's, restored


@pytest.mark.mmseg
def test_mmseg_config_by_name_in_a_list_with_a_relative_base(tmp_path: Path) -> None:
    """A list of bases: ours by name beside the user's own relative one (still read from the user's folder)."""
    from mmengine.config import Config

    base = Config.fromfile(rb.config_file(TOY_ADE), import_custom_modules=False)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "extra.py").write_text("my_note = 'kept'\n")
    user = _load(_user_config(tmp_path, ["resnest_backbones::" + TOY_ADE, "./mine/extra.py"], SEG_CHANGE))
    assert _differences(user, base) == {"model.decode_head.num_classes": (7, base.model.decode_head.num_classes),
                                        "model.auxiliary_head.num_classes": (7, base.model.auxiliary_head.num_classes),
                                        "my_note": ("kept", None)}
    # the project's tools read it the same way (a name of ours on the command line too)
    from resnest_backbones.openmmlab.cli import load_config

    args = argparse.Namespace(config=str(tmp_path / "user.py"), cfg_options=None, work_dir=None, launcher="none",
                              local_rank=0)
    assert load_config(args, "test").model.decode_head.num_classes == 7
    args.config = f"resnest_backbones::{TOY_ADE}"
    assert load_config(args, "test").model.decode_head.num_classes == base.model.decode_head.num_classes


@pytest.mark.mmdet
def test_mmdet_train_trains_a_user_config_that_names_ours(tmp_path: Path) -> None:
    from support.detection_models import small

    data, work = tmp_path / "toy_coco", tmp_path / "work"
    user = _user_config(tmp_path, f"resnest_backbones::{TOY_MMDET}",
                        "model = dict(roi_head=dict(bbox_head=dict(fc_out_channels=128)))\n")
    output = run_tool(["tools/mmdet_train.py", str(user), "--work-dir", str(work), *small(1, data)], timeout=600)
    assert (work / "iter_1.pth").is_file(), output[-3000:]
    dumped = (work / "user.py").read_text()  # the config the run used, as mmengine dumps it
    assert "fc_out_channels=128" in dumped and "_scope_='resnest_backbones'" not in dumped


@pytest.mark.mmdet
@pytest.mark.mmseg
def test_predict_tells_the_framework_by_the_named_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    det = _user_config(tmp_path, f"resnest_backbones::{TOY_MMDET}", DET_CHANGE, "det.py")
    seg = _user_config(tmp_path, [f"resnest_backbones::{TOY_ADE}"], SEG_CHANGE, "seg.py")
    assert detect_framework(det) == "mmdet" and detect_framework(seg) == "mmseg"
    # from the files alone too (the loaded config's rule fails, e.g. without mmengine): the named base's folder
    monkeypatch.setattr(frameworks, "_load_openmmlab", lambda path: None)
    assert detect_framework(det) == "mmdet" and detect_framework(seg) == "mmseg"


@pytest.mark.mmdet
def test_unknown_name_says_the_closest(tmp_path: Path) -> None:
    typo = _user_config(tmp_path, "resnest_backbones::mmdet/toy/faster-rcnn_resnest14d_fpn_toy_coco.py", "")
    with pytest.raises(FileNotFoundError, match=r"of .*user\.py: .*did you mean mmdet/toy/faster-rcnn_resnest14d_fpn"
                                                r"_toy-coco\.py"):
        _load(typo)
    nope = _user_config(tmp_path, "resnest_backbones::nope.py", "", "nope.py")
    with pytest.raises(FileNotFoundError, match=r"_base_ 'resnest_backbones::nope\.py' of .*nope\.py: no config named"):
        _load(nope)
    with pytest.raises(FileNotFoundError, match="did you mean mmdet/toy/faster-rcnn_resnest14d_fpn_toy-coco"):
        detect_framework(typo)  # tools/predict.py prints it as its error


@pytest.mark.mmdet
def test_forms_for_openmmlab_own_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What docs/frameworks.md tells users of mmdet's own tools/train.py (plain mmengine, no name of ours): the
    printed absolute path (or one relative to the config), and mmengine's ``{{$NAME:}}`` with the configs' folder
    in the environment."""
    from mmengine.config import Config

    expected = _load(_user_config(tmp_path, f"resnest_backbones::{TOY_MMDET}", DET_CHANGE)).pretty_text
    absolute = _user_config(tmp_path, rb.config_file(TOY_MMDET), DET_CHANGE, "absolute.py")
    relative = _user_config(tmp_path, os.path.relpath(rb.config_file(TOY_MMDET), tmp_path), DET_CHANGE, "rel.py")
    for form in (absolute, relative):
        assert Config.fromfile(str(form), import_custom_modules=False).pretty_text == expected
    monkeypatch.setenv("RESNEST_CONFIGS", str(config_dir()))
    by_env = _user_config(tmp_path, "{{$RESNEST_CONFIGS:}}/" + TOY_MMDET, DET_CHANGE, "by_env.py")
    assert Config.fromfile(str(by_env), import_custom_modules=False).pretty_text == expected
    with pytest.raises(AssertionError, match="does not support to load resnest_backbones"):  # mmengine alone
        Config.fromfile(str(tmp_path / "user.py"), import_custom_modules=False)
