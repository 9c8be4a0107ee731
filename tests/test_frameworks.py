"""The framework table (resnest_backbones.frameworks) and which framework a config is for: told from the config as
its framework loads it (mmengine for OpenMMLab configs), so a user's config that inherits ours from anywhere is
told right, and one that cannot be told says to pass --framework. Runs without any framework installed."""
from __future__ import annotations

from pathlib import Path

import pytest
from support import REPO_ROOT
from support.processes import run_python

import resnest_backbones
from resnest_backbones.benchmark.toy_targets import TARGETS
from resnest_backbones.frameworks import FRAMEWORKS, config_format
from resnest_backbones.predict import detect_framework

CONFIGS = REPO_ROOT / "configs"
#: Our configs a user's config inherits by absolute path, and what the user's config changes.
INHERITED = {
    "mmdet": (CONFIGS / "mmdet" / "faster-rcnn_resnest50d_fpn_syncbn-backbone+head_ms-range-1x_coco.py",
              "model = dict(roi_head=dict(bbox_head=dict(num_classes=3)))\n"),
    "mmseg": (CONFIGS / "mmseg" / "deeplabv3_resnest50d-d8_4xb4-160k_ade20k-512x512.py",
              "model = dict(decode_head=dict(num_classes=5), auxiliary_head=dict(num_classes=5))\n"),
}


def _config(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


# (ids other than the frameworks' names, which would be taken for their markers: these tests need no framework)
@pytest.mark.parametrize("framework", sorted(INHERITED), ids=lambda name: f"{name}-config")
def test_a_user_config_inheriting_ours_by_path_is_told(framework: str, tmp_path: Path) -> None:
    base, change = INHERITED[framework]
    mine = _config(tmp_path / "my_configs", "mine.py", f"_base_ = ['{base}']\n{change}")
    assert detect_framework(mine) == framework
    # ... and a config inheriting that one, from another folder, by a relative path
    assert detect_framework(_config(tmp_path / "more", "again.py", "_base_ = '../my_configs/mine.py'\n")) == framework


@pytest.mark.parametrize("framework", sorted(INHERITED), ids=lambda name: f"{name}-config")
def test_the_scope_and_the_bases_folder_tell_too(framework: str, tmp_path: Path) -> None:
    scoped = _config(tmp_path, "scoped.py", f"default_scope = '{framework}'\nmodel = dict(type='EncoderDecoder')\n")
    assert detect_framework(scoped) == framework
    # a base under a framework's folder with no scope and no imports of its own (configs/<framework>/_base_/...)
    fragment = next((CONFIGS / framework / "_base_").glob("*.py"))
    assert detect_framework(_config(tmp_path, "fragment.py", f"_base_ = ['{fragment}']\n")) == framework
    # the loaded config's default_scope wins over the folder of its bases
    other = "mmseg" if framework == "mmdet" else "mmdet"
    assert detect_framework(_config(tmp_path, "both.py", f"_base_ = ['{fragment}']\ndefault_scope = '{other}'\n")) \
        == other


@pytest.mark.mmseg  # mmengine, which comes with it, loads the config
def test_the_config_as_mmengine_loads_it_decides(tmp_path: Path) -> None:
    """Not its text: a scope computed in the file, or one inherited from a base that a base names by a variable."""
    computed = _config(tmp_path, "computed.py", "default_scope = 'mm' + 'det'\nmodel = dict(type='FasterRCNN')\n")
    assert detect_framework(computed) == "mmdet"
    _config(tmp_path / "mine", "scope.py", "scope = 'mmseg'\ndefault_scope = scope\n")
    inheriting = _config(tmp_path / "mmdet", "child.py", "_base_ = ['../mine/scope.py']\nmodel = dict(type='X')\n")
    assert detect_framework(inheriting) == "mmseg"  # the loaded scope, not the folder the files are in


def test_a_lazyconfig_and_a_yaml_are_detectron2s(tmp_path: Path) -> None:
    lazy = _config(tmp_path, "lazy.py", f"""from detectron2.config import LazyConfig

_ours = LazyConfig.load('{CONFIGS / "detectron2" / "toy" / "faster_rcnn_toy.py"}')
model, dataloader, train = _ours.model, _ours.dataloader, _ours.train
model.roi_heads.num_classes = 2
""")
    assert config_format(lazy) == "lazyconfig" and detect_framework(lazy) == "detectron2"
    yaml = _config(tmp_path, "mine.yaml", f"_BASE_: {CONFIGS / 'detectron2' / 'toy' / 'faster_rcnn_toy.yaml'}\n")
    assert detect_framework(yaml) == "detectron2"


def test_a_config_it_cannot_tell_says_to_pass_the_framework(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"neither a detectron2 LazyConfig nor an OpenMMLab config\); pass "
                                         r"--framework detectron2, mmseg or mmdet"):
        detect_framework(_config(tmp_path, "plain.py", "x = 1\n"))
    with pytest.raises(ValueError, match=r"an OpenMMLab config of neither mmseg nor mmdet\); pass --framework"):
        detect_framework(_config(tmp_path, "openmmlab.py", "model = dict(type='Anything')\n"))
    assert detect_framework(tmp_path / "plain.py", "mmseg") == "mmseg"  # given: not guessed


def test_the_table_fits_the_package_and_the_toy_targets() -> None:
    root = Path(resnest_backbones.__file__).parent
    for name, row in FRAMEWORKS.items():
        module, _, factory = row.predictor.partition(":")
        assert module.startswith(row.package + ".") and factory, row
        assert root.joinpath(*module.split(".")[1:]).with_suffix(".py").is_file(), row.predictor
        assert (root / row.subpackage / "__init__.py").is_file()
        assert bool(row.probe) == bool(row.missing), name
        if row.toy:  # its toy training is its subpackage's, and its slow test is its framework's
            assert row.toy == f"{row.package}.toy_target", row.toy
            assert root.joinpath(*row.toy.split(".")[1:]).with_suffix(".py").is_file(), row.toy
            assert row.toy_training().test.startswith(f"tests/frameworks/{name}/"), row.toy_training().test
    assert list(TARGETS) == [name for name, row in FRAMEWORKS.items() if row.toy]
    assert all(TARGETS[name].framework == FRAMEWORKS[name].probe for name in TARGETS)
    assert {target.framework for target in TARGETS.values()} == {row.probe for row in FRAMEWORKS.values()}
    for target in TARGETS.values():
        test_file, _, test = target.test.partition("::")
        assert f"def {test}(" in (REPO_ROOT / test_file).read_text(), target.test


def test_telling_and_the_table_import_no_framework(tmp_path: Path) -> None:
    yaml = _config(tmp_path, "mine.yaml", "MODEL:\n  DEVICE: cpu\n")
    code = ("import sys; import resnest_backbones.predict as p, resnest_backbones.benchmark.toy_targets; "
            f"assert p.detect_framework({str(yaml)!r}) == 'detectron2'; "
            f"assert p.detect_framework({str(CONFIGS / 'detectron2/toy/faster_rcnn_toy.py')!r}) == 'detectron2'; "
            "print(sorted(m for m in ('detectron2', 'mmcv', 'mmseg', 'mmdet', 'mmengine') if m in sys.modules))")
    assert run_python(["-c", code], timeout=300).stdout.strip() == "[]"
