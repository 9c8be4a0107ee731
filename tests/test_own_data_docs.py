"""docs/own_data.md's commands run as written (every ```bash block, in order, from a fresh working directory
with the checkout's tools), so the page cannot rot; and they do what the page says: each framework fine-tunes a
model of another class count on the sample's two classes (ids 3 and 9, listed 9 first; mixed image formats, one
JPEG sideways with an EXIF orientation), evaluates with their names, and tools/predict.py draws them from the
checkpoint with no flag."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
from support import REPO_ROOT

pytestmark = [pytest.mark.detectron2, pytest.mark.mmseg, pytest.mark.mmdet]

PAGE = REPO_ROOT / "docs" / "own_data.md"


def bash_commands(text: str) -> List[str]:
    """The commands of the page's ```bash blocks (```sh blocks are the full-size recipes, not run), continuation
    lines joined."""
    commands, block, inside = [], [], False
    for line in text.splitlines():
        if line.startswith("```"):
            inside = line.strip() == "```bash" and not inside
            continue
        if inside and line.strip() and not line.lstrip().startswith("#"):
            block.append(line.rstrip())
            if not line.rstrip().endswith("\\"):
                commands.append(" ".join(part.rstrip("\\").strip() for part in block))
                block = []
    return commands


def test_the_page_has_a_command_for_every_framework() -> None:
    commands = bash_commands(PAGE.read_text())
    for tool in ("make_toy_data.py own", "train_net.py", "mmdet_train.py", "mmdet_test.py", "mmseg_train.py",
                 "torchvision_train.py", "predict.py"):
        assert any(tool in c for c in commands), tool
    assert not any("http" in c for c in commands)  # what CI runs needs no network


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
    """Every command of the page, run in a fresh directory holding only a link to the checkout's tools/; the
    output of each, by command."""
    work = tmp_path_factory.mktemp("own_data_docs")
    (work / "tools").symlink_to(REPO_ROOT / "tools")
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    outputs = {}
    for command in bash_commands(PAGE.read_text()):
        proc = subprocess.run(["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True,
                              timeout=900)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{command}\nexit {proc.returncode}:\n{output[-4000:]}"
        outputs[command] = output
    return outputs


def output_of(ran: Dict[str, str], *words: str) -> str:
    found = [out for command, out in ran.items() if all(w in command for w in words)]
    assert len(found) == 1, (words, list(ran))
    return found[0]


FINE_TUNING = r"fine-tuning from {}: 4 class layers start fresh \(checkpoint: {} classes, model: {}\)"


@pytest.mark.parametrize("framework, words, served, counts", [
    ("detectron2", ("train_net.py", "--train-data"), "work_dirs/shapes_d2/model_final.pth", (3, 2)),
    ("mmdet", ("mmdet_train.py", "--train-data"), "work_dirs/shapes_mmdet/iter_4.pth", (3, 2)),
    ("mmseg", ("mmseg_train.py", "--train-data"), "work_dirs/shapes_mmseg/iter_4.pth", (5, 3)),
    ("torchvision", ("torchvision_train.py", "--train-data"), "work_dirs/shapes_tv/model.pth", (3, 2)),
])
def test_fine_tunes_and_evaluates_with_the_users_classes(ran: Dict[str, str], framework: str, words: tuple,
                                                         served: str, counts: tuple) -> None:
    output = output_of(ran, *words)
    assert re.search(FINE_TUNING.format(re.escape(served), *counts), output), output[-3000:]
    per_class = {"detectron2": r"\|\s*kettle\s*\|\s*[\d.]+\s*\|\s*teapot\s*\|",   # Per-category bbox AP table
                 "mmdet": r"\|\s*teapot\s*\|\s*[\d.]+",                             # CocoMetric(classwise=True)
                 "mmseg": r"\|\s*teapot\s*\|\s*[\d.]+\s*\|",                        # IoUMetric's table
                 "torchvision": r"AP per class: kettle [\d.]+, teapot [\d.]+"}[framework]
    assert re.search(per_class, output), output[-3000:]


def test_mmdet_test_evaluates_the_users_validation_files(ran: Dict[str, str]) -> None:
    output = output_of(ran, "mmdet_test.py")
    assert "2 classes ['teapot', 'kettle']" in output and re.search(r"\|\s*kettle\s*\|", output)  # the file's order


@pytest.mark.parametrize("framework, name, names", [
    ("detectron2", "my_d2", "kettle, teapot"), ("mmdet", "my_mmdet", "teapot, kettle"),  # mmdet: the file's order
    ("mmseg", "my_mmseg", "background, kettle, teapot"), ("torchvision", "my_tv", "kettle, teapot")])
def test_predict_draws_the_users_class_names_from_the_file(ran: Dict[str, str], framework: str, name: str,
                                                           names: str) -> None:
    output = output_of(ran, "predict.py", f"work_dirs/{name}/")
    assert f"{framework} model, classes: {names}" in output
    assert len(re.findall(rf"{name}_pictures/img_\d+\w*\.png", output)) == 8  # every validation image drawn
