"""tools/train_net.py end to end on the toy COCO data (ResNeSt, Zhang et al., 2020, as a detectron2 backbone):
a few iterations plus COCO evaluation, evaluation-only resume of the result, and (``slow``) two CPU processes
(gloo, SyncBN), resuming after a SIGKILL, and training the toy Faster R-CNN to box AP50 >= 0.5 on a CPU within
15 minutes. Skipped, visibly, without detectron2."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest
import torch
from helpers import file_digests, kill_when

pytest.importorskip("detectron2.modeling", exc_type=ImportError,
                    reason="detectron2 is not installed or does not import (build it from source, see README)")

pytestmark = pytest.mark.detectron2
REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "configs" / "detectron2" / "toy"


def tool_env(data_root: Path) -> Dict[str, str]:
    env = dict(os.environ, RESNEST_TOY_COCO=str(data_root), CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    # One thread: on a shared 2-core machine, OpenMP barriers over oversubscribed cores made 2 threads 3-10x slower.
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


TRAIN_NET = [sys.executable, str(REPO / "tools" / "train_net.py")]


def run_train_net(args: List[str], data_root: Path, timeout: int) -> str:
    proc = subprocess.run([*TRAIN_NET, *args], cwd=REPO, env=tool_env(data_root), capture_output=True, text=True,
                          timeout=timeout)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    return log


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by the tests of this module: the toy set is made once, by the first run."""
    return tmp_path_factory.mktemp("toy_coco")


def coco_results(log: str) -> Dict[str, Dict[str, float]]:
    """{task: {metric: value}} from detectron2's 'copypaste' lines (values in percent)."""
    lines = [line.split("copypaste: ", 1)[1] for line in log.splitlines() if "copypaste: " in line]
    results = {}
    for i, line in enumerate(lines):
        if line.startswith("Task: "):
            names, values = lines[i + 1].split(","), lines[i + 2].split(",")
            results[line[len("Task: "):]] = {n: float(v) for n, v in zip(names, values)}
    return results


def test_train_net_trains_and_evaluates_toy(tmp_path: Path, data_root: Path) -> None:
    out = tmp_path / "out"
    log = run_train_net(["--config-file", str(TOY / "mask_rcnn_toy.yaml"), "OUTPUT_DIR", str(out),
                         "SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH", "2", "TEST.PRECISE_BN.NUM_ITER", "2"],
                        data_root, timeout=600)
    assert "CUDA is not available: device set to 'cpu'" in log
    assert re.search(r"single process: SyncBN -> BN .*MODEL\.RESNEST\.NORM", log)
    results = coco_results(log)
    assert set(results) == {"bbox", "segm"} and "AP50" in results["bbox"]
    assert (out / "model_final.pth").is_file()
    assert (out / "inference" / "toy_coco_val" / "coco_instances_results.json").is_file()
    # evaluation only, from the saved full-model checkpoint: it resumes through detectron2's own path
    log = run_train_net(["--config-file", str(TOY / "mask_rcnn_toy.yaml"), "--eval-only", "OUTPUT_DIR", str(out),
                         "MODEL.WEIGHTS", str(out / "model_final.pth")], data_root, timeout=600)
    assert "ResNeSt backbone" not in log  # not mistaken for an ImageNet backbone file
    assert coco_results(log)["bbox"] == pytest.approx(results["bbox"], nan_ok=True)


@pytest.mark.parametrize("processes", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_train_net_lazy_config_eval_only_runs(tmp_path: Path, data_root: Path, processes: int) -> None:
    """The LazyConfig path parses overrides, builds and evaluates (toy set, tiny inputs, few proposals), in one
    process or in two CPU processes (SyncBN swapped, DDP without device ids)."""
    config = REPO / "configs" / "detectron2" / "COCO-Detection" / "faster_rcnn_S50_FPN_1x.py"
    log = run_train_net(["--config-file", str(config), "--num-gpus", str(processes), "--eval-only",
                         "train.init_checkpoint=", "model.backbone.bottom_up.weights=",
                         f"train.output_dir={tmp_path / 'out'}", "dataloader.test.dataset.names=toy_coco_val",
                         "dataloader.test.mapper.augmentations.0.short_edge_length=96",
                         "dataloader.test.mapper.augmentations.0.max_size=96", "dataloader.test.num_workers=0",
                         "model.roi_heads.num_classes=3", "model.proposal_generator.pre_nms_topk=[200,100]",
                         "model.proposal_generator.post_nms_topk=[64,32]"], data_root, timeout=600)
    assert "CUDA is not available: device set to 'cpu'" in log
    assert ("SyncBN -> BN" in log) == (processes == 1)
    assert (re.search(r"2 CPU processes: \d+ SyncBN layers run as", log) is not None) == (processes == 2)
    assert "bbox" in coco_results(log)


def iterations(out: Path) -> List[int]:
    """The iterations detectron2's JSON writer logged to metrics.json (appended to by every run)."""
    lines = (out / "metrics.json").read_text().splitlines()
    return [json.loads(line)["iteration"] for line in lines if '"total_loss"' in line]


@pytest.mark.slow
def test_two_cpu_processes_train_checkpoint_and_evaluate(tmp_path: Path, data_root: Path) -> None:
    """--num-gpus 2 without CUDA: 2 CPU processes under gloo, the config's SyncBN as the project's CPU
    SyncBatchNorm; the distributed COCO evaluation equals a one-process evaluation of the saved model."""
    out = tmp_path / "out"
    toy = ["--config-file", str(TOY / "faster_rcnn_toy.yaml")]
    log = run_train_net([*toy, "--num-gpus", "2", "OUTPUT_DIR", str(out), "SOLVER.MAX_ITER", "6",
                         "SOLVER.CHECKPOINT_PERIOD", "3", "TEST.PRECISE_BN.NUM_ITER", "2"], data_root, timeout=900)
    layers = re.search(r"2 CPU processes: (\d+) SyncBN layers run as resnest_backbones\.layers\.SyncBatchNorm", log)
    assert layers, log[-3000:]
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from resnest_backbones.detectron2 import add_resnest_config

    cfg = add_resnest_config(get_cfg())
    cfg.merge_from_file(str(TOY / "faster_rcnn_toy.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    expected = sum(isinstance(m, torch.nn.SyncBatchNorm) for m in build_model(cfg).modules())
    assert int(layers.group(1)) == expected > 0  # backbone, FPN and box head: every SyncBN of the config
    assert "SyncBN -> BN" not in log
    assert torch.load(out / "model_0000002.pth", map_location="cpu", weights_only=True)["iteration"] == 2
    assert iterations(out)[-1] == 5 and (out / "model_final.pth").is_file()
    distributed = coco_results(log)["bbox"]
    log = run_train_net([*toy, "--eval-only", "OUTPUT_DIR", str(tmp_path / "eval"), "MODEL.WEIGHTS",
                         str(out / "model_final.pth")], data_root, timeout=600)
    assert coco_results(log)["bbox"] == pytest.approx(distributed, nan_ok=True)


@pytest.mark.slow
def test_resume_after_sigkill_finishes_the_schedule(tmp_path: Path, data_root: Path) -> None:
    """Killed (SIGKILL) after its checkpoint at iteration 30, the run resumes there with --resume and ends at
    MAX_ITER; checkpoints and metrics written before the kill are all still there, unchanged. (detectron2's
    DefaultTrainer writes metrics every 20 iterations.)"""
    out = tmp_path / "out"
    args = ["--config-file", str(TOY / "faster_rcnn_toy.yaml"), "OUTPUT_DIR", str(out), "SOLVER.MAX_ITER", "50",
            "SOLVER.CHECKPOINT_PERIOD", "10", "TEST.PRECISE_BN.NUM_ITER", "2"]
    last = out / "last_checkpoint"
    kill_when([*TRAIN_NET, *args], lambda: last.is_file() and last.read_text().strip() == "model_0000029.pth",
              cwd=REPO, env=tool_env(data_root), log=tmp_path / "killed.log", timeout=600)
    assert not (out / "model_final.pth").exists()
    assert iterations(out) == [19]
    before = file_digests([out / f"model_{i:07d}.pth" for i in (9, 19, 29)])
    log = run_train_net(["--resume", *args], data_root, timeout=600)
    assert "Starting training from iteration 30" in log, log[-3000:]
    assert iterations(out) == [19, 39, 49]  # appended to what the killed run wrote, up to MAX_ITER
    assert torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)["iteration"] == 49
    assert file_digests(list(before)) == before
    assert "AP50" in coco_results(log)["bbox"]


@pytest.mark.slow
def test_toy_faster_rcnn_reaches_ap50(tmp_path: Path, data_root: Path) -> None:
    start = time.time()
    log = run_train_net(["--config-file", str(TOY / "faster_rcnn_toy.yaml"), "OUTPUT_DIR", str(tmp_path / "out")],
                        data_root, timeout=15 * 60)
    minutes = (time.time() - start) / 60
    ap50 = coco_results(log)["bbox"]["AP50"]
    print(f"toy Faster R-CNN ResNeSt-14 FPN: box AP50 {ap50:.1f} after {minutes:.1f} min")
    assert ap50 >= 50.0 and minutes <= 15
