"""tools/train_net.py end to end on the toy COCO data (ResNeSt, Zhang et al., 2020, as a detectron2 backbone):
a few iterations plus COCO evaluation, evaluation-only resume of the result, and (``slow``) training the toy
Faster R-CNN to box AP50 >= 0.5 on a CPU within 15 minutes. Skipped, visibly, without detectron2."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest

pytest.importorskip("detectron2.modeling", exc_type=ImportError,
                    reason="detectron2 is not installed or does not import (build it from source, see README)")

pytestmark = pytest.mark.detectron2
REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "configs" / "detectron2" / "toy"


def run_train_net(args: List[str], data_root: Path, timeout: int) -> str:
    env = dict(os.environ, RESNEST_TOY_COCO=str(data_root), CUDA_VISIBLE_DEVICES="")
    # One thread: on a shared 2-core machine, OpenMP barriers over oversubscribed cores made 2 threads 3-10x slower.
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "train_net.py"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
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


def test_train_net_lazy_config_eval_only_runs(tmp_path: Path, data_root: Path) -> None:
    """The LazyConfig path parses overrides, builds and evaluates (toy set, tiny inputs, few proposals)."""
    config = REPO / "configs" / "detectron2" / "COCO-Detection" / "faster_rcnn_S50_FPN_1x.py"
    log = run_train_net(["--config-file", str(config), "--eval-only", "train.init_checkpoint=",
                         f"train.output_dir={tmp_path / 'out'}", "dataloader.test.dataset.names=toy_coco_val",
                         "dataloader.test.mapper.augmentations.0.short_edge_length=96",
                         "dataloader.test.mapper.augmentations.0.max_size=96", "dataloader.test.num_workers=0",
                         "model.roi_heads.num_classes=3", "model.proposal_generator.pre_nms_topk=[200,100]",
                         "model.proposal_generator.post_nms_topk=[64,32]"], data_root, timeout=600)
    assert "CUDA is not available: device set to 'cpu'" in log
    assert "SyncBN -> BN" in log
    assert "bbox" in coco_results(log)


@pytest.mark.slow
def test_toy_faster_rcnn_reaches_ap50(tmp_path: Path, data_root: Path) -> None:
    start = time.time()
    log = run_train_net(["--config-file", str(TOY / "faster_rcnn_toy.yaml"), "OUTPUT_DIR", str(tmp_path / "out")],
                        data_root, timeout=15 * 60)
    minutes = (time.time() - start) / 60
    ap50 = coco_results(log)["bbox"]["AP50"]
    print(f"toy Faster R-CNN ResNeSt-14 FPN: box AP50 {ap50:.1f} after {minutes:.1f} min")
    assert ap50 >= 50.0 and minutes <= 15
