"""tools/mmseg_train.py and tools/mmseg_test.py (and mmseg's own tools/train.py) on the toy configs."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest

pytest.importorskip("mmseg", reason="mmsegmentation is not installed (run tools/setup_env.sh)")
pytest.importorskip("mmcv.ops", reason="mmcv was built without its ops (run tools/setup_env.sh)")

pytestmark = pytest.mark.mmseg

ROOT = Path(__file__).resolve().parents[1]
TOY_ADE = "configs/mmseg/toy/deeplabv3_resnest14d-d8_toy-ade.py"
TOY_CITY = "configs/mmseg/toy/deeplabv3_resnest14d-d8_toy-cityscapes.py"
MIOU = re.compile(r"\] mIoU = ([0-9.]+) %")


def _data_options(root: Path) -> List[str]:
    return [f"{loader}.dataset.data_root={root}" for loader in ("train_dataloader", "val_dataloader",
                                                                  "test_dataloader")]


def _run(args: List[str], timeout: float) -> str:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    return output


def _miou(output: str) -> float:
    found = MIOU.findall(output)
    assert found, output[-3000:]
    return float(found[-1])


def test_train_then_test_toy_ade(tmp_path: Path) -> None:
    data = tmp_path / "toy_ade"
    options = ["--cfg-options", "train_cfg.max_iters=12", "train_cfg.val_interval=12", "param_scheduler.0.end=12",
               "default_hooks.checkpoint.interval=12", *_data_options(data)]
    output = _run(["tools/mmseg_train.py", TOY_ADE, "--work-dir", str(tmp_path / "work"), *options], timeout=600)
    assert (data / "images" / "training" / "ADE_train_00000001.jpg").is_file()  # made on first use
    assert "SyncBN layers run as plain BatchNorm" in output
    trained = _miou(output)
    assert 0.0 <= trained <= 100.0
    checkpoint = tmp_path / "work" / "iter_12.pth"
    assert checkpoint.is_file()
    output = _run(["tools/mmseg_test.py", TOY_ADE, str(checkpoint), "--work-dir", str(tmp_path / "test"),
                   "--cfg-options", *_data_options(data)], timeout=300)
    assert abs(_miou(output) - trained) < 1e-6  # same weights, same data, same metric


def test_mmseg_own_train_tool_runs_toy_cityscapes(tmp_path: Path) -> None:
    """The configs need nothing but custom_imports: mmseg's tools/train.py trains them too."""
    import mmseg

    tool = Path(mmseg.__file__).parent / ".mim" / "tools" / "train.py"
    if not tool.is_file():
        pytest.skip(f"mmseg's tools/train.py is not installed with this mmseg ({tool})")
    data = tmp_path / "toy_city"
    _run([str(tool), TOY_CITY, "--work-dir", str(tmp_path / "work"), "--cfg-options", "train_cfg.max_iters=4",
          "train_cfg.val_interval=4", "param_scheduler.0.end=4", "default_hooks.checkpoint.interval=4",
          *_data_options(data)], timeout=600)
    assert (data / "gtFine" / "train" / "toycity" / "toycity_000000_000019_gtFine_labelTrainIds.png").is_file()
    assert (tmp_path / "work" / "iter_4.pth").is_file()


@pytest.mark.slow
def test_toy_ade_reaches_miou_target(tmp_path: Path) -> None:
    """The README's demo command as it is: mIoU >= 60 % on the toy validation images within 15 minutes."""
    start = time.perf_counter()
    output = _run(["tools/mmseg_train.py", TOY_ADE, "--work-dir", str(tmp_path / "work"), "--cfg-options",
                   *_data_options(tmp_path / "toy_ade")], timeout=900)
    elapsed = time.perf_counter() - start
    miou = _miou(output)
    print(f"toy ADE20K mIoU {miou:.2f} % after {elapsed:.0f} s")
    assert miou >= 60.0 and elapsed <= 900
