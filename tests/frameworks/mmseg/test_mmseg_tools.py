"""tools/mmseg_train.py and tools/mmseg_test.py (and mmseg's own tools/train.py) on the toy configs: training,
evaluation, two CPU processes under torchrun (gloo, SyncBN) and resuming after a SIGKILL."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import List

import pytest
import torch
from support import REPO_ROOT
from support.frameworks import require
from support.processes import (
    TORCHRUN_2,
    evaluates_to,
    kill_when,
    reaches_target,
    run_python,
    run_tool,
    train_on_two_processes,
)
from support.safety import file_digests

pytestmark = require("mmseg")  # a visible skip without mmseg, before its imports below

ROOT = REPO_ROOT
TOY_ADE = "configs/mmseg/toy/deeplabv3_resnest14d-d8_toy-ade.py"
TOY_CITY = "configs/mmseg/toy/deeplabv3_resnest14d-d8_toy-cityscapes.py"
MIOU = re.compile(r"\] mIoU = ([0-9.]+) %")


def _data_options(root: Path) -> List[str]:
    return [f"{loader}.dataset.data_root={root}" for loader in ("train_dataloader", "val_dataloader",
                                                                  "test_dataloader")]


ENV = dict(os.environ, PYTHONUNBUFFERED="1")


def _miou(output: str) -> float:
    found = MIOU.findall(output)
    assert found, output[-3000:]
    return float(found[-1])


def test_train_then_test_toy_ade(tmp_path: Path) -> None:
    data = tmp_path / "toy_ade"
    options = ["--cfg-options", "train_cfg.max_iters=12", "train_cfg.val_interval=12", "param_scheduler.0.end=12",
               "default_hooks.checkpoint.interval=12", *_data_options(data)]
    output = run_tool(["tools/mmseg_train.py", TOY_ADE, "--work-dir", str(tmp_path / "work"), *options], timeout=600)
    assert (data / "images" / "training" / "ADE_train_00000001.jpg").is_file()  # made on first use
    assert "SyncBN layers run as plain BatchNorm" in output
    trained = _miou(output)
    checkpoint = tmp_path / "work" / "iter_12.pth"
    assert checkpoint.is_file()
    test = ["tools/mmseg_test.py", TOY_ADE, str(checkpoint), "--cfg-options", *_data_options(data)]
    output = run_tool([*test, "--work-dir", str(tmp_path / "test")], timeout=300)
    # the test tool runs the fused copy by default, the training's evaluation the model as built: logits equal to
    # ~1e-6 relative (tests/test_predict.py), so only a pixel whose two best classes tie that closely can flip
    # (about a thousandth of a point of mIoU each here); the model as built gives the training's figure exactly
    assert "inference with 1 ResNeSt fused" in output
    assert abs(_miou(output) - trained) < 0.05
    output = run_tool([*test[:3], "--no-fuse", *test[3:], "--work-dir", str(tmp_path / "plain")], timeout=300)
    assert "ResNeSt fused" not in output and abs(_miou(output) - trained) < 1e-6  # same computation


def test_tta_option_wraps_the_model_and_swaps_the_test_pipeline() -> None:
    """mmseg_test.py --tta does what mmseg's tools/test.py --tta does; a config without TTA is a clear error."""
    from mmengine.config import Config

    from resnest_backbones.openmmlab.cli import use_tta

    cfg = Config.fromfile(ROOT / "configs/mmseg/paper/deeplabv3_resnest50d-d8_paper_4xb4-180e_ade20k-480x480.py")
    model, tta = cfg.model.copy(), cfg.tta_model.copy()
    use_tta(cfg, "mmseg_test")
    assert cfg.model.type == tta.type and cfg.model.module == model
    assert cfg.test_dataloader.dataset.pipeline == cfg.tta_pipeline
    bare = Config(dict(model=model, test_dataloader=dict(dataset=dict(pipeline=[]))))
    with pytest.raises(SystemExit, match="defines no tta_pipeline and no tta_model"):
        use_tta(bare, "mmseg_test")


def test_mmseg_own_train_tool_runs_toy_cityscapes(tmp_path: Path) -> None:
    """The configs need nothing but custom_imports: mmseg's tools/train.py trains them too."""
    import mmseg

    tool = Path(mmseg.__file__).parent / ".mim" / "tools" / "train.py"
    assert tool.is_file(), f"mmseg {mmseg.__version__} ships no tools/train.py at {tool} (the pinned 1.2.2 does)"
    data = tmp_path / "toy_city"
    run_tool([str(tool), TOY_CITY, "--work-dir", str(tmp_path / "work"), "--cfg-options", "train_cfg.max_iters=4",
          "train_cfg.val_interval=4", "param_scheduler.0.end=4", "default_hooks.checkpoint.interval=4",
          *_data_options(data)], timeout=600)
    assert (data / "gtFine" / "train" / "toycity" / "toycity_000000_000019_gtFine_labelTrainIds.png").is_file()
    assert (tmp_path / "work" / "iter_4.pth").is_file()


def _schedule(iters: int, checkpoint_every: int) -> List[str]:
    return ["--cfg-options", f"train_cfg.max_iters={iters}", f"train_cfg.val_interval={iters}",
            f"param_scheduler.0.end={iters}", f"default_hooks.checkpoint.interval={checkpoint_every}",
            "default_hooks.checkpoint.max_keep_ckpts=-1", "default_hooks.logger.interval=5"]


def _iteration(checkpoint: Path) -> int:
    from resnest_backbones.openmmlab.checkpoint import TRAINING_CHECKPOINT_GLOBALS

    with torch.serialization.safe_globals(TRAINING_CHECKPOINT_GLOBALS):  # what the tools allow, no more
        return torch.load(checkpoint, map_location="cpu")["meta"]["iter"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_cpu_launcher_other_than_pytorch_fails_clearly() -> None:
    from mmengine.config import Config

    from resnest_backbones.openmmlab.engine import build_runner

    cfg = Config.fromfile(ROOT / TOY_ADE)
    cfg.launcher = "slurm"
    with pytest.raises(SystemExit, match="--launcher slurm needs CUDA devices.*torchrun.*--launcher pytorch"):
        build_runner(cfg, "mmseg_train")


@pytest.mark.slow
def test_two_cpu_processes_train_checkpoint_and_evaluate(tmp_path: Path) -> None:
    """torchrun, 2 processes, gloo: SyncBN in backbone and heads runs as the project's CPU SyncBatchNorm; the
    distributed evaluations (each rank half of the images) of mmseg_train.py and mmseg_test.py equal a
    one-process evaluation of the checkpoint."""
    data, work = tmp_path / "toy_ade", tmp_path / "work"
    output, _ = train_on_two_processes("tools/mmseg_train.py", TOY_ADE,
                                       ["--work-dir", str(work), *_schedule(8, 4), *_data_options(data)], "mmseg")
    assert _iteration(work / "iter_8.pth") == 8 and (work / "iter_4.pth").is_file()
    distributed = _miou(output)
    evaluates_to("tools/mmseg_test.py", TOY_ADE, work / "iter_8.pth", _data_options(data), _miou, distributed,
                 tmp_path / "test1")
    output = run_tool([*TORCHRUN_2, "tools/mmseg_test.py", TOY_ADE, str(work / "iter_8.pth"), "--launcher", "pytorch",
                       "--work-dir", str(tmp_path / "test2"), "--cfg-options", *_data_options(data)], timeout=300)
    assert abs(_miou(output) - distributed) < 1e-6


@pytest.mark.slow
def test_resume_after_sigkill_finishes_the_schedule(tmp_path: Path) -> None:
    """Killed (SIGKILL) after its second checkpoint, the run resumes there with --resume and ends at the
    configured iteration; the checkpoints and logs written before the kill are all still there, unchanged."""
    data, work = tmp_path / "toy_ade", tmp_path / "work"
    command = [sys.executable, "tools/mmseg_train.py", TOY_ADE, "--work-dir", str(work), *_schedule(30, 10),
               *_data_options(data)]
    last = work / "last_checkpoint"
    killed = kill_when(command, lambda: last.is_file() and last.read_text().strip().endswith("iter_20.pth"),
                       cwd=ROOT, env=ENV, log=tmp_path / "killed.log", timeout=600)
    assert "Saving checkpoint at 20 iterations" in killed and "Iter(train) [30/30]" not in killed
    before = file_digests([work / "iter_10.pth", work / "iter_20.pth", *work.glob("*/*.log")])
    output = run_tool([*command[1:], "--resume"], timeout=600)
    assert "resumed epoch: 0, iter: 20" in output, output[-3000:]
    assert "Iter(train) [25/30]" in output and "Iter(train) [10/30]" not in output  # it went on from 20
    assert _iteration(work / "iter_30.pth") == 30
    assert file_digests(list(before)) == before
    # the metric the resumed run reports is its final model's: evaluating iter_30.pth on its own gives it again
    evaluates_to("tools/mmseg_test.py", TOY_ADE, work / "iter_30.pth", _data_options(data), _miou, _miou(output),
                 tmp_path / "test")


@pytest.mark.slow
def test_toy_ade_reaches_miou_target(tmp_path: Path) -> None:
    """The README's demo command as it is: mIoU >= 60 % on the toy validation images within 15 minutes."""
    reaches_target(["tools/mmseg_train.py", TOY_ADE, "--work-dir", str(tmp_path / "work"), "--cfg-options",
                    *_data_options(tmp_path / "toy_ade")], _miou, 60.0, "toy ADE20K mIoU (%)")


@pytest.mark.parametrize("problem", ["a label value without a name", "a missing label file"])
def test_own_labels_that_do_not_fit_stop_with_one_line(own_sample: dict, tmp_path: Path, problem: str) -> None:
    """Labels the class names do not cover (the sample's value 2 with two names) would fail deep in the loss, a
    missing label file in the data set's loading: both stop the tool with one line naming the file, also when a
    data-loader worker found it (num_workers=1)."""
    import shutil

    labels, classes = Path(own_sample["train_labels"]), ["background", "kettle", "teapot"]
    if problem == "a missing label file":
        labels = Path(shutil.copytree(labels, tmp_path / "labels"))
        (labels / "img_005.png").unlink()
        expected = (r"img_005\.jpg has no label file .*labels/img_005\.png \(label PNGs are named as their images, "
                    r"with \.png\)")
    else:
        classes = classes[:2]
        expected = (r"labels/train/img_\d+\w*\.png has label value 2, but 2 class names were given \(values 0\.\.1, "
                    r"255 ignored\): name every class in pixel-value order \(--classes\)")
    proc = run_python(["tools/mmseg_train.py", TOY_ADE, "--work-dir", str(tmp_path / "work"),
                       "--train-data", str(own_sample["train_images"]), str(labels), "--classes", *classes,
                       "--cfg-options", "train_cfg.max_iters=2", "train_dataloader.num_workers=1"],
                      timeout=600, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in output, output[-3000:]
    assert re.search(rf"\[mmseg_train\] error: .*{expected}", output), output[-3000:]
