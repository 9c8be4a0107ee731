"""tools/train_net.py end to end on the toy COCO data (ResNeSt, Zhang et al., 2020, as a detectron2 backbone):
a few iterations plus COCO evaluation, evaluation-only resume of the result, and (``slow``) two CPU processes
(gloo, SyncBN), resuming after a SIGKILL, and training the toy Faster R-CNN to box AP50 >= 50 % on a CPU within
15 minutes; and, in this process, the logic of :mod:`resnest_backbones.detectron2.engine` behind it (machine
adaptation, DDP without device ids for CPU processes, the trainer built without replacing any detectron2 name).
Skipped, visibly, without detectron2."""
from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch
from support import REPO_ROOT
from support.frameworks import require
from support.numerics import match_coco_results
from support.processes import kill_when, run_tool
from support.safety import file_digests

pytestmark = require("detectron2")  # a visible skip without detectron2, before its imports below

import detectron2.engine.defaults  # noqa: E402 - after the skip
from detectron2.config import CfgNode, get_cfg  # noqa: E402
from detectron2.engine import DefaultTrainer, SimpleTrainer, default_argument_parser  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from resnest_backbones.detectron2 import (  # noqa: E402
    ResNeStCheckpointer,
    add_resnest_config,
    engine,  # noqa: E402
    register_toy_coco,
)

ORIGINAL_CREATE_DDP_MODEL = detectron2.engine.defaults.create_ddp_model
REPO = REPO_ROOT
TOY = REPO / "configs" / "detectron2" / "toy"


def tool_env(data_root: Path) -> Dict[str, str]:
    env = dict(os.environ, RESNEST_TOY_COCO=str(data_root), CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    # One thread: on a shared 2-core machine, OpenMP barriers over oversubscribed cores made 2 threads 3-10x slower.
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


TRAIN_NET_PY = REPO / "tools" / "train_net.py"
TRAIN_NET = [sys.executable, str(TRAIN_NET_PY)]  # the command line that kill_when runs


def run_train_net(args: List[str], data_root: Path, timeout: int) -> str:
    return run_tool([TRAIN_NET_PY, *args], env=tool_env(data_root), timeout=timeout)


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


def detections(out: Path) -> List[Dict[str, Any]]:
    """The detections detectron2's COCOEvaluator wrote for the toy validation set."""
    return json.loads((out / "inference" / "toy_coco_val" / "coco_instances_results.json").read_text())


def assert_same_detections(found: List[Dict[str, Any]], expected: List[Dict[str, Any]]) -> None:
    """The same detections (image, class, score, box) on both sides, paired one to one in any order (after a few
    iterations many scores tie, and another CPU orders the ties otherwise), and some at all: the AP may be 0 or NaN
    on both sides, but the detections still tell two models apart."""
    match_coco_results(found, expected, box_px=1e-2, score=1e-4)


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
    trained = detections(out)
    # evaluation only, from the saved full-model checkpoint: it resumes through detectron2's own path
    log = run_train_net(["--config-file", str(TOY / "mask_rcnn_toy.yaml"), "--eval-only", "OUTPUT_DIR",
                         str(tmp_path / "eval"), "MODEL.WEIGHTS", str(out / "model_final.pth")], data_root, timeout=600)
    assert "ResNeSt backbone" not in log  # not mistaken for an ImageNet backbone file
    assert set(coco_results(log)) == {"bbox", "segm"}
    assert "Evaluating with 1 ResNeSt fused for inference" in log  # the default: same detections as the model as built
    assert_same_detections(detections(tmp_path / "eval"), trained)


@pytest.mark.parametrize("processes", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_train_net_lazy_config_eval_only_runs(tmp_path: Path, data_root: Path, processes: int) -> None:
    """The LazyConfig path parses overrides, builds and evaluates (toy set, tiny inputs, few proposals), in one
    process or in two CPU processes (SyncBN swapped, DDP without device ids)."""
    config = REPO / "configs" / "detectron2" / "COCO-Detection" / "faster_rcnn_S50_FPN_1x.py"
    fuse = ["--no-fuse"] if processes == 1 else []  # 2 processes: the fused model inside DDP
    log = run_train_net(["--config-file", str(config), "--num-gpus", str(processes), "--eval-only", *fuse,
                         "train.init_checkpoint=", "model.backbone.bottom_up.weights=",
                         f"train.output_dir={tmp_path / 'out'}", "dataloader.test.dataset.names=toy_coco_val",
                         "dataloader.test.mapper.augmentations.0.short_edge_length=96",
                         "dataloader.test.mapper.augmentations.0.max_size=96", "dataloader.test.num_workers=0",
                         "model.roi_heads.num_classes=3", "model.proposal_generator.pre_nms_topk=[200,100]",
                         "model.proposal_generator.post_nms_topk=[64,32]"], data_root, timeout=600)
    assert "CUDA is not available: device set to 'cpu'" in log
    assert ("--no-fuse: evaluating the model as built" in log) == (processes == 1)
    assert ("ResNeSt fused for inference" in log) == (processes == 2)
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
    keep_all = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]  # 6 iterations leave every score under the default 0.05
    log = run_train_net([*toy, "--num-gpus", "2", "OUTPUT_DIR", str(out), "SOLVER.MAX_ITER", "6",
                         "SOLVER.CHECKPOINT_PERIOD", "3", "TEST.PRECISE_BN.NUM_ITER", "2", *keep_all], data_root,
                        timeout=900)
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
    assert "AP50" in coco_results(log)["bbox"]
    log = run_train_net([*toy, "--eval-only", "OUTPUT_DIR", str(tmp_path / "eval"), "MODEL.WEIGHTS",
                         str(out / "model_final.pth"), *keep_all], data_root, timeout=600)
    assert_same_detections(detections(tmp_path / "eval"), detections(out))


def test_one_machine_takes_a_free_port_and_several_need_a_dist_url(data_root: Path) -> None:
    """The processes of one machine meet on a free local port (detectron2's default port is one per user, so two
    runs at once, as the test suite's workers start them, fought over it; the 2-process tests above use it); several
    machines must name their meeting point."""
    from support.processes import run_python

    proc = run_python([TRAIN_NET_PY, "--config-file", str(TOY / "faster_rcnn_toy.yaml"), "--num-machines", "2"],
                      env=tool_env(data_root), timeout=120, check=False)
    assert proc.returncode == 2 and "--num-machines > 1 needs --dist-url tcp://" in proc.stderr


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


def yacs_toy_cfg(*opts: str) -> CfgNode:
    cfg = add_resnest_config(get_cfg())
    cfg.merge_from_file(str(TOY / "faster_rcnn_toy.yaml"))
    cfg.merge_from_list(list(opts))
    return cfg


@pytest.mark.parametrize("cuda", [False, True])
def test_adapt_to_machine_yacs(monkeypatch: pytest.MonkeyPatch, cuda: bool) -> None:
    """One process: SyncBN -> BN everywhere the config names it, with CUDA or without; the device becomes "cpu"
    only without CUDA. Each change is one log line."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    cfg = yacs_toy_cfg("MODEL.DEVICE", "cuda")
    assert cfg.MODEL.RESNEST.NORM == "SyncBN"
    notes = engine.adapt_to_machine(cfg, cfg.MODEL, "DEVICE")
    assert cfg.MODEL.DEVICE == ("cuda" if cuda else "cpu")
    assert cfg.MODEL.RESNEST.NORM == cfg.MODEL.FPN.NORM == cfg.MODEL.ROI_BOX_HEAD.NORM == "BN"
    assert notes[-1].startswith("single process: SyncBN -> BN") and "MODEL.RESNEST.NORM" in notes[-1]
    assert (notes[0] == "CUDA is not available: device set to 'cpu' (DEVICE)") == (not cuda)
    assert len(notes) == (1 if cuda else 2)
    assert engine.adapt_to_machine(cfg, cfg.MODEL, "DEVICE") == []  # nothing left to change


def test_adapt_to_machine_lazy_and_several_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A LazyConfig's ``train.device``; with several processes SyncBN stays (it is synchronised there)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = OmegaConf.create({"train": {"device": "cuda"}, "model": {"backbone": {"norm": "SyncBN"}}})
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    assert engine.adapt_to_machine(cfg, cfg.train, "device") == ["CUDA is not available: device set to 'cpu' (device)"]
    assert cfg.train.device == "cpu" and cfg.model.backbone.norm == "SyncBN"
    monkeypatch.setattr(comm, "get_world_size", lambda: 1)
    assert engine.adapt_to_machine(cfg, cfg.train, "device") == [
        "single process: SyncBN -> BN (the same computation here) for model.backbone.norm"]
    assert cfg.model.backbone.norm == "BN"


def test_skip_imagenet_init_only_for_eval_only_from_a_file() -> None:
    from omegaconf import OmegaConf

    from resnest_backbones.detectron2 import add_resnest_config

    yacs = add_resnest_config(get_cfg())
    yacs.MODEL.RESNEST.WEIGHTS = "imagenet.pth"
    lazy = OmegaConf.create({"model": {"backbone": {"bottom_up": {"weights": "imagenet.pth"}}}})
    readers = [(yacs, lambda: yacs.MODEL.RESNEST.WEIGHTS), (lazy, lambda: lazy.model.backbone.bottom_up.weights)]
    for cfg, read in readers:
        assert engine.skip_imagenet_init(cfg, "model.pth", eval_only=False) == []
        assert engine.skip_imagenet_init(cfg, "", eval_only=True) == []
        assert read() == "imagenet.pth"
        assert engine.skip_imagenet_init(cfg, "model.pth", eval_only=True) == [
            "--eval-only from model.pth: the backbone's ImageNet weights are not loaded first"]
        assert read() == ""
    no_entry = OmegaConf.create({"model": {"backbone": {"bottom_up": {"name": "resnest50d"}}}})
    assert engine.skip_imagenet_init(no_entry, "model.pth", eval_only=True) == []
    assert "weights" not in no_entry.model.backbone.bottom_up


@pytest.mark.parametrize("world_size, cuda, device_ids", [(2, False, None), (2, True, "unset"), (1, False, "unset")])
def test_ddp_gets_no_device_ids_in_cpu_processes(monkeypatch: pytest.MonkeyPatch, world_size: int, cuda: bool,
                                                  device_ids: Any) -> None:
    """Only CPU processes need ``device_ids=None`` (detectron2 would pass the local GPU, which DDP refuses for a
    CPU model); elsewhere detectron2's choice stands, and a caller's explicit device ids always do."""
    calls = []
    monkeypatch.setattr(comm, "get_world_size", lambda: world_size)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(engine, "create_ddp_model", lambda model, **kwargs: calls.append(kwargs) or model)
    model = torch.nn.Linear(2, 2)
    assert engine.cpu_processes() == (world_size > 1 and not cuda)
    assert engine.create_ddp_model_on_any_device(model, broadcast_buffers=False) is model
    assert calls[-1].get("device_ids", "unset") == device_ids and calls[-1]["broadcast_buffers"] is False
    engine.create_ddp_model_on_any_device(model, device_ids=[3])
    assert calls[-1]["device_ids"] == [3]


def test_prepare_model_swaps_syncbn_only_in_cpu_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    from resnest_backbones.layers import SyncBatchNorm

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.SyncBatchNorm(4), torch.nn.BatchNorm2d(4))
    assert engine.prepare_model(model) is model and type(model[1]) is torch.nn.SyncBatchNorm  # one process
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    assert engine.prepare_model(model) is model
    assert isinstance(model[1], SyncBatchNorm) and type(model[2]) is torch.nn.BatchNorm2d


def test_trainer_builds_what_default_trainer_builds_and_replaces_nothing(tmp_path: Path) -> None:
    """Trainer writes DefaultTrainer's construction out (to wrap the model itself): the same attributes and hooks,
    with the ResNeSt checkpointer. A whole run of the tool's function trains and evaluates, and leaves detectron2's
    ``create_ddp_model`` untouched (the tool used to replace it for the whole process)."""
    register_toy_coco(tmp_path / "toy", num_train=4, num_val=2, image_size=96)
    opts = ["MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(tmp_path / "out"), "SOLVER.MAX_ITER", "1",
            "SOLVER.IMS_PER_BATCH", "2", "TEST.PRECISE_BN.ENABLED", "False", "DATALOADER.NUM_WORKERS", "0"]
    cfg = yacs_toy_cfg(*opts)
    engine.adapt_to_machine(cfg, cfg.MODEL, "DEVICE")
    cfg.freeze()
    reference, trainer = DefaultTrainer(cfg), engine.Trainer(cfg)
    assert set(vars(trainer)) == set(vars(reference))
    assert type(trainer._trainer) is SimpleTrainer and trainer.model is trainer.checkpointer.model
    assert isinstance(trainer.checkpointer, ResNeStCheckpointer)
    assert [type(h) for h in trainer._hooks] == [type(h) for h in reference._hooks]
    del reference, trainer
    args = default_argument_parser().parse_args(["--config-file", str(TOY / "faster_rcnn_toy.yaml"), *opts])
    engine.train_or_evaluate(args)
    assert (tmp_path / "out" / "model_final.pth").is_file()
    assert (tmp_path / "out" / "inference" / "toy_coco_val" / "coco_instances_results.json").is_file()
    assert detectron2.engine.defaults.create_ddp_model is ORIGINAL_CREATE_DDP_MODEL
    assert engine.create_ddp_model is ORIGINAL_CREATE_DDP_MODEL
