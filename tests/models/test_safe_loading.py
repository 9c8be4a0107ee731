"""No checkpoint runs code, and no load is partial in silence, through every entry point but detectron2's (its
checkpointer is tested in test_detectron2*.py): ``read_checkpoint``/``load_checkpoint``, ``create_model``, the
torchvision adapter, the torch.hub entries, the mmseg backbone's ``init_cfg``, ``tools/convert_weights.py``,
``tools/mmseg_test.py`` and ``tools/mmseg_train.py --resume``.

A crafted checkpoint holds an object whose unpickling creates a marker file (``helpers.RunsCodeWhenUnpickled``;
a control test shows that an unsafe load really creates it): every loader must refuse the file with a message
naming what the pickle asks for, and the marker must never appear. mmengine's training checkpoints must still
load with torch's weights-only unpickler, through an allow-list that suffices and whose every entry is needed.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
import torch
from support import REPO_ROOT
from support.checkpoints import to_openmmlab
from support.frameworks import require
from support.processes import run_python
from support.safety import RunsCodeWhenUnpickled

import resnest_backbones as rb

ROOT = REPO_ROOT
SMALL = "resnest14d"
REFUSED = "refused to load"
MISSING = "layer1.0.conv1.weight"  # the backbone tensor left out of the partial checkpoints


@pytest.fixture(scope="module")
def state() -> Dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return rb.create_model(SMALL, num_classes=0).state_dict()


def _crafted_pth(tmp_path: Path, state: Dict[str, torch.Tensor]) -> Path:
    """A real ResNeSt state dict with the code-running object beside it."""
    path = tmp_path / "crafted.pth"
    torch.save({"state_dict": state, "meta": {"note": RunsCodeWhenUnpickled(tmp_path / "marker")}}, path)
    return path


def _crafted_pkl(tmp_path: Path, state: Dict[str, torch.Tensor]) -> Path:
    """detectron2's numpy layout, with the code-running object as its ``__author__``."""
    path = tmp_path / "crafted.pkl"
    payload = {"model": {k: v.numpy() for k, v in state.items()}, "__author__": RunsCodeWhenUnpickled(
        tmp_path / "marker"), "matching_heuristics": True}
    with open(path, "wb") as handle:
        pickle.dump(payload, handle, protocol=2)
    return path


def _partial_pth(tmp_path: Path, state: Dict[str, torch.Tensor]) -> Path:
    path = tmp_path / "partial.pth"
    torch.save({k: v for k, v in state.items() if k != MISSING}, path)
    return path


def test_the_crafted_files_do_run_code_when_unpickled_unsafely(tmp_path: Path, state) -> None:
    """The control: without it, "the marker never appears" could pass because the payload is dead."""
    for make, unsafe_load in [(_crafted_pth, lambda p: torch.load(p, weights_only=False)),
                              (_crafted_pkl, lambda p: pickle.loads(p.read_bytes(), encoding="latin1"))]:
        path = make(tmp_path, state)
        assert not (tmp_path / "marker").exists()
        unsafe_load(path)
        assert (tmp_path / "marker").exists()
        (tmp_path / "marker").unlink()


@pytest.mark.parametrize("protocol", [2, 4, pickle.HIGHEST_PROTOCOL])
def test_detectron2_pkl_files_still_load(tmp_path: Path, state, protocol: int) -> None:
    """detectron2's pickled numpy format (as its model zoo and conversion scripts write it) reads as before."""
    model = rb.create_model(SMALL, num_classes=0)
    path = tmp_path / "weights.pkl"
    with open(path, "wb") as handle:
        pickle.dump({"model": {k: v.numpy() for k, v in state.items()}, "__author__": "resnest_backbones tests",
                     "matching_heuristics": True}, handle, protocol=protocol)
    report = rb.load_checkpoint(model, path)
    assert report.ok and all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


# Every project entry point that reads a ResNeSt backbone checkpoint from a path (detectron2's aside).
def _hub(**kwargs: Any) -> Any:
    return torch.hub.load(str(ROOT), source="local", **kwargs)


def _resnest_fpn_backbone(**kwargs: Any) -> Any:
    from resnest_backbones.torchvision import resnest_fpn_backbone

    return resnest_fpn_backbone(SMALL, **kwargs)


LOADERS: Dict[str, Callable[[Path], Any]] = {
    "load_checkpoint": lambda p: rb.load_checkpoint(rb.create_model(SMALL, num_classes=0), p),
    "create_model": lambda p: rb.create_model(SMALL, num_classes=0, pretrained=p),
    "torchvision": lambda p: _resnest_fpn_backbone(weights=p),
    "hub": lambda p: _hub(model=SMALL, num_classes=0, pretrained=str(p)),
    "hub_fpn": lambda p: _hub(model="resnest_fpn_backbone", variant=SMALL, weights=str(p)),
}


@pytest.mark.parametrize("fmt", ["pth", "pkl"])
@pytest.mark.parametrize("loader", list(LOADERS))
def test_loaders_refuse_a_checkpoint_that_runs_code(tmp_path: Path, state, loader: str, fmt: str) -> None:
    path = (_crafted_pth if fmt == "pth" else _crafted_pkl)(tmp_path, state)
    # torch.save (protocol 2) writes Path.touch as getattr(Path, "touch"); detectron2's reader names the first refusal
    named = "builtins.getattr, pathlib.Path, pathlib.PosixPath" if fmt == "pth" else "__builtin__.getattr"
    with pytest.raises(rb.CheckpointError, match=f"{REFUSED} .*crafted.{fmt}: its pickle calls {named}, .*"
                                                 f"Do not load this file unless you trust"):
        LOADERS[loader](path)
    assert not (tmp_path / "marker").exists()


@pytest.mark.parametrize("loader", list(LOADERS))
def test_loaders_refuse_a_partial_checkpoint(tmp_path: Path, state, loader: str) -> None:
    with pytest.raises(rb.CheckpointError, match=f"1 missing.*\n.*missing in checkpoint: {MISSING}"):
        LOADERS[loader](_partial_pth(tmp_path, state))


@pytest.mark.parametrize("fmt", ["pth", "pkl"])
def test_convert_tool_refuses_a_checkpoint_that_runs_code(tmp_path: Path, state, fmt: str) -> None:
    path = (_crafted_pth if fmt == "pth" else _crafted_pkl)(tmp_path, state)
    result = run_python([ROOT / "tools/convert_weights.py", path, tmp_path / "out.pth", "--variant", SMALL],
                        check=False)
    assert result.returncode != 0 and f"[convert] error: {REFUSED} {path}: its pickle calls" in result.stderr, \
        result.stderr[-3000:]
    assert not (tmp_path / "marker").exists() and not (tmp_path / "out.pth").exists()


# ----------------------------------------------------------------------------------------------------- mmseg
TOY_ADE = "configs/mmseg/toy/deeplabv3_resnest14d-d8_toy-ade.py"


@pytest.mark.mmseg
@pytest.mark.parametrize("kind", ["crafted", "partial"])
def test_mmseg_backbone_init_cfg_refuses(tmp_path: Path, state, kind: str) -> None:
    require("mmseg")
    from resnest_backbones.openmmlab import OpenMMLabResNeSt

    path = _crafted_pth(tmp_path, state) if kind == "crafted" else _partial_pth(tmp_path, state)
    backbone = OpenMMLabResNeSt(SMALL, init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    expected = f"{REFUSED} {path}" if kind == "crafted" else f"missing in checkpoint: {MISSING}"
    with pytest.raises(rb.CheckpointError, match=expected):
        backbone.init_weights()
    assert not (tmp_path / "marker").exists()


def _data_options(root: Path) -> List[str]:
    return [f"{loader}.dataset.data_root={root}" for loader in ("train_dataloader", "val_dataloader",
                                                                  "test_dataloader")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """A real mmengine training checkpoint: the toy config trained 2 iterations by tools/mmseg_train.py."""
    require("mmseg")
    root = tmp_path_factory.mktemp("trained")
    data = _data_options(root / "toy_ade")
    result = run_python(["tools/mmseg_train.py", TOY_ADE, "--work-dir", str(root / "work"), "--cfg-options",
                         "train_cfg.max_iters=2", "train_cfg.val_interval=2", "param_scheduler.0.end=2",
                         "default_hooks.checkpoint.interval=2", *data])
    miou = re.findall(r"\] mIoU = ([0-9.]+) %", result.stdout + result.stderr)
    return dict(checkpoint=root / "work" / "iter_2.pth", data=data, miou=float(miou[-1]))


def _load_training_checkpoint(path: Path) -> Dict[str, Any]:
    from resnest_backbones.openmmlab.checkpoint import TRAINING_CHECKPOINT_GLOBALS

    with torch.serialization.safe_globals(TRAINING_CHECKPOINT_GLOBALS):
        return torch.load(path, map_location="cpu")


@pytest.mark.mmseg
def test_training_checkpoints_load_with_exactly_the_allow_list(trained) -> None:
    from resnest_backbones.openmmlab.checkpoint import TRAINING_CHECKPOINT_GLOBALS

    path = trained["checkpoint"]
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        torch.load(path, map_location="cpu")  # torch's default alone refuses mmengine's message hub
    checkpoint = _load_training_checkpoint(path)
    losses, _ = checkpoint["message_hub"]["log_scalars"]["train/loss"].data
    assert checkpoint["meta"]["iter"] == 2 and len(losses) == 2
    # Each entry is needed, except the aliases naming numpy's functions as the other numpy generation (numpy 1
    # vs 2) spells their module: those serve checkpoints written with that numpy.
    allowed = TRAINING_CHECKPOINT_GLOBALS
    needed = [g for g in allowed if not (isinstance(g, tuple) and g[0] in allowed)]
    assert len(needed) >= 8
    for entry in needed:
        rest = [g for g in allowed if g is not entry]
        with pytest.raises(pickle.UnpicklingError), torch.serialization.safe_globals(rest):
            torch.load(path, map_location="cpu")


@pytest.mark.mmseg
def test_training_checkpoints_of_the_other_numpy_generation_load(trained, tmp_path: Path) -> None:
    """numpy 2 moved numpy.core to numpy._core, and a pickle names the module of the numpy that wrote it."""
    path = tmp_path / "legacy.pth"
    torch.save(_load_training_checkpoint(trained["checkpoint"]), path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()  # the legacy format keeps the pickle as it is: rename the module in place
    ours, other = (b"numpy._core.multiarray", b"numpy.core.multiarray")
    if ours not in data:
        ours, other = other, ours
    path.write_bytes(data.replace(ours, other))
    assert _load_training_checkpoint(path)["meta"]["iter"] == 2


@pytest.mark.mmseg
def test_the_allow_lists_getattr_resolves_only_history_buffer_statistics(tmp_path: Path) -> None:
    """Protocol 2 writes HistoryBuffer.min as getattr(HistoryBuffer, "min"); any other getattr stays refused."""
    from mmengine.logging import HistoryBuffer

    class Reaches:
        def __reduce__(self):
            return getattr, (HistoryBuffer, "__init__")  # a first step towards HistoryBuffer.__init__.__globals__

    path = tmp_path / "reaches.pth"
    torch.save({"x": Reaches()}, path)
    with pytest.raises(pickle.UnpicklingError, match=r"getattr\(.*HistoryBuffer.*'__init__'\) refused"):
        _load_training_checkpoint(path)


def _with_payload(trained, tmp_path: Path, name: str) -> Path:
    """The training checkpoint with the code-running object added to its meta data."""
    checkpoint = _load_training_checkpoint(trained["checkpoint"])
    checkpoint["meta"]["note"] = RunsCodeWhenUnpickled(tmp_path / "marker")
    path = tmp_path / name
    torch.save(checkpoint, path)
    return path


@pytest.mark.mmseg
def test_mmseg_test_refuses_a_checkpoint_that_runs_code(trained, tmp_path: Path) -> None:
    path = _with_payload(trained, tmp_path, "crafted.pth")
    result = run_python(["tools/mmseg_test.py", TOY_ADE, str(path), "--work-dir", str(tmp_path / "test"),
                         "--cfg-options", *trained["data"]], check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and f"[mmseg_test] error: {REFUSED} {path}: its pickle calls" in output, \
        output[-3000:]
    # what the allow-list admits (HistoryBuffer, numpy...) is not named; getattr(Path, "touch") is refused too
    assert "its pickle calls pathlib.Path, pathlib.PosixPath, which" in output and "Traceback" not in output
    assert not (tmp_path / "marker").exists()


@pytest.mark.mmseg
def test_mmseg_train_resume_refuses_a_checkpoint_that_runs_code(trained, tmp_path: Path) -> None:
    """The work dir's latest checkpoint (``last_checkpoint`` names it) is the crafted file."""
    work = tmp_path / "work"
    work.mkdir()
    path = _with_payload(trained, work, "iter_2.pth")
    (work / "last_checkpoint").write_text(str(path))
    result = run_python(["tools/mmseg_train.py", TOY_ADE, "--work-dir", str(work), "--resume", "--cfg-options",
                         "train_cfg.max_iters=4", *trained["data"]], check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and f"[mmseg_train] error: {REFUSED} {path}: its pickle calls" in output, \
        output[-3000:]
    assert not (work / "marker").exists() and not (work / "iter_4.pth").exists()


@pytest.mark.mmseg
def test_mmseg_test_refuses_a_checkpoint_covering_the_model_in_part(trained, tmp_path: Path) -> None:
    """mmengine's Runner would load it with strict=False and only log; our tools name the keys and stop."""
    checkpoint = _load_training_checkpoint(trained["checkpoint"])
    del checkpoint["state_dict"][f"backbone.{MISSING}"]
    checkpoint["state_dict"]["backbone.extra.weight"] = torch.zeros(1)
    path = tmp_path / "partial.pth"
    torch.save(checkpoint, path)
    result = run_python(["tools/mmseg_test.py", TOY_ADE, str(path), "--work-dir", str(tmp_path / "test"),
                         "--cfg-options", *trained["data"]], check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert f"[mmseg_test] error: {path} does not cover the model of this config exactly" in output
    assert "1 missing, 1 unexpected" in output and f"missing in checkpoint: backbone.{MISSING}" in output
    assert "unexpected in checkpoint: backbone.extra.weight" in output
    assert "model.backbone.init_cfg=dict(type='Pretrained'" in output and "[mmseg_test] metrics" not in output


@pytest.mark.mmseg
def test_mmseg_test_takes_a_released_mmseg_layout_file(trained, tmp_path: Path) -> None:
    """The strict loader converts a whole segmentor in mmseg's own ResNeSt layout (as mmseg releases them) first:
    the same weights in that layout evaluate to the same mIoU."""
    state = _load_training_checkpoint(trained["checkpoint"])["state_dict"]
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    released = {**to_openmmlab(backbone), **{k: v for k, v in state.items() if not k.startswith("backbone.")}}
    assert "backbone.stem.0.weight" in released and "backbone.conv1.0.weight" not in released
    path = tmp_path / "released.pth"
    torch.save({"state_dict": released, "meta": {"CLASSES": ["a", "b"]}}, path)
    result = run_python(["tools/mmseg_test.py", TOY_ADE, str(path), "--no-fuse", "--work-dir", str(tmp_path / "test"),
                         "--cfg-options", *trained["data"]])  # --no-fuse: the training's computation, tie for tie
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "a released mmseg model, converted" in output
    assert abs(float(re.findall(r"\] mIoU = ([0-9.]+) %", output)[-1]) - trained["miou"]) < 1e-6
