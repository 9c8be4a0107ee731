"""tools/mmdet_train.py and tools/mmdet_test.py on the toy Faster R-CNN: training and evaluation on the toy COCO
data (made on first use), mmdet's released layout and a file's hash through mmdet_test.py, two CPU processes
under torchrun (gloo: SyncBN synchronised, memory-saving modules training), and the toy box AP50 target."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from support import REPO_ROOT
from support.detection_models import data_options, small, small_data
from support.frameworks import require
from support.processes import evaluates_to, reaches_target, run_tool, train_on_two_processes

pytestmark = require("mmdet")  # a visible skip without mmdet, before its imports below

ROOT = REPO_ROOT
TOY = "configs/mmdet/toy/faster-rcnn_resnest14d_fpn_toy-coco.py"
AP50 = re.compile(r"\] box AP50 = ([0-9.]+) %")
#: The toy target (box AP50 in %, toy COCO val): tools/toy_margins.py --targets mmdet measures its margin.
TOY_AP50_TARGET = 50.0


def _ap50(output: str) -> float:
    found = AP50.findall(output)
    assert found, output[-3000:]
    return float(found[-1])


def test_train_then_test_toy_faster_rcnn(tmp_path: Path) -> None:
    data, work = tmp_path / "toy_coco", tmp_path / "work"
    output = run_tool(["tools/mmdet_train.py", TOY, "--work-dir", str(work), *small(6, data)], timeout=600)
    assert (data / "annotations" / "instances_train.json").is_file()  # made on first use
    assert "SyncBN layers run as plain BatchNorm" in output
    trained = _ap50(output)
    checkpoint = work / "iter_6.pth"
    # --no-fuse: the computation the training's evaluation ran, so even tied scores rank the same (the fused
    # default's detections are compared with these one to one in tests/test_predict.py)
    output = run_tool(["tools/mmdet_test.py", TOY, str(checkpoint), "--no-fuse", "--work-dir", str(tmp_path / "test"),
                       "--cfg-options", *small_data(data)], timeout=300)
    assert "ResNeSt fused" not in output
    assert abs(_ap50(output) - trained) < 1e-6  # same weights, same data, same metric


def test_released_layout_and_its_hash_through_mmdet_test(tmp_path: Path) -> None:
    """mmdet's released layout (OpenMMLab backbone keys), named with its SHA-256 prefix as released, evaluates
    through mmdet_test.py as the same file in our layout does; a renamed (wrong-hash) copy is refused."""
    import hashlib

    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from support.checkpoints import to_openmmlab
    from support.detection_models import single_process

    data = tmp_path / "toy_coco"
    init_default_scope("mmdet")
    torch.manual_seed(0)
    model = MODELS.build(single_process(Config.fromfile(str(ROOT / TOY)).model))
    state = model.state_dict()
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    released = {k: v for k, v in to_openmmlab(backbone).items() if k.startswith("backbone.")}
    released.update({k: v for k, v in state.items() if not k.startswith("backbone.")})
    ours_file = tmp_path / "ours.pth"
    torch.save({"meta": {}, "state_dict": state}, ours_file)
    plain = tmp_path / "released.pth"
    torch.save({"meta": {"mmdet_version": "3.3.0"}, "state_dict": released}, plain)
    digest = hashlib.sha256(plain.read_bytes()).hexdigest()
    named = plain.rename(tmp_path / f"faster_rcnn_toy_20200926_125502-{digest[:8]}.pth")
    test = ["tools/mmdet_test.py", TOY, "--cfg-options", *small_data(data)]
    ours_ap = _ap50(run_tool([*test[:2], str(ours_file), "--work-dir", str(tmp_path / "a"), *test[2:]], timeout=300))
    output = run_tool([*test[:2], str(named), "--work-dir", str(tmp_path / "b"), *test[2:]], timeout=300)
    assert f"sha256 starts with {digest[:8]}" in output
    assert _ap50(output) == ours_ap
    wrong = named.rename(tmp_path / "faster_rcnn_toy_20200926_125502-00000000.pth")
    from support.processes import run_python

    proc = run_python([*test[:2], str(wrong), "--work-dir", str(tmp_path / "c"), *test[2:]], timeout=300,
                      check=False)
    assert proc.returncode != 0 and "its name says the hash starts with 00000000" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_two_cpu_processes_sync_batch_norm_and_memory_saving_training(tmp_path: Path) -> None:
    """torchrun, 2 processes, gloo: every SyncBN (backbone and heads) runs as the project's CPU SyncBatchNorm,
    the backbone trains with its memory-saving modules, and the distributed evaluation equals a one-process
    evaluation of the checkpoint."""
    data, work = tmp_path / "toy_coco", tmp_path / "work"
    output, model = train_on_two_processes("tools/mmdet_train.py", TOY, ["--work-dir", str(work), *small(4, data)],
                                           "mmdet")
    from resnest_backbones.accel import MemoryEfficientBottleneck

    assert sum(isinstance(m, torch.nn.SyncBatchNorm) for m in model.roi_head.modules()) > 0  # heads too
    assert any(isinstance(m, MemoryEfficientBottleneck) for m in model.backbone.modules())
    evaluates_to("tools/mmdet_test.py", TOY, work / "iter_4.pth", small_data(data), _ap50, _ap50(output),
                 tmp_path / "t")


@pytest.mark.slow
def test_toy_faster_rcnn_reaches_ap50_target(tmp_path: Path) -> None:
    """The demo command as it is: box AP50 >= TOY_AP50_TARGET on the toy validation images within 15 minutes."""
    reaches_target(["tools/mmdet_train.py", TOY, "--work-dir", str(tmp_path / "work"), "--cfg-options",
                    *data_options(tmp_path / "toy_coco")], _ap50, TOY_AP50_TARGET, "toy COCO box AP50 (%), mmdet")
