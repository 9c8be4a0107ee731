"""Your own data in detectron2 through tools/train_net.py, with no code: a COCO file of other classes (ids 3 and 9,
mixed image sizes and formats) fine-tunes a model of another class count (its class layers start fresh, one line
says so), evaluates with the user's class names, writes them into its checkpoints, predicts with them, resumes
exactly; a backbone that does not fit is still an error naming the keys."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from support import REPO_ROOT
from support.frameworks import require
from support.processes import run_python, run_tool

pytestmark = require("detectron2")

from detectron2.modeling import build_model  # noqa: E402

from resnest_backbones.detectron2 import add_resnest_config  # noqa: E402
from resnest_backbones.detectron2.predict import load_model  # noqa: E402

TOY = REPO_ROOT / "configs" / "detectron2" / "toy" / "faster_rcnn_toy.yaml"
TRAIN_NET = REPO_ROOT / "tools" / "train_net.py"
ENV = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def served_model(path: Path, num_classes: int, variant: str = "resnest14d") -> Path:
    """A whole-model file as detectron2 saves one, for ``num_classes`` classes (random weights): the stand-in of a
    served COCO model."""
    from detectron2.config import get_cfg

    cfg = add_resnest_config(get_cfg())
    cfg.merge_from_file(str(TOY))
    cfg.MODEL.DEVICE, cfg.MODEL.ROI_HEADS.NUM_CLASSES, cfg.MODEL.RESNEST.NAME = "cpu", num_classes, variant
    cfg.MODEL.RESNEST.NORM = "BN"
    torch.save({"model": build_model(cfg).state_dict()}, path)
    return path


def data_args(sample: dict) -> list:
    return ["--train-data", str(sample["train_json"]), str(sample["train_images"]),
            "--val-data", str(sample["val_json"]), str(sample["val_images"])]


@pytest.fixture(scope="module")
def fine_tuned(own_sample: dict, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    tmp = tmp_path_factory.mktemp("d2_own")
    served = served_model(tmp / "served_5_classes.pth", 5)
    out = tmp / "out"
    log = run_tool([TRAIN_NET, "--config-file", str(TOY), *data_args(own_sample), "MODEL.WEIGHTS", str(served),
                    "SOLVER.MAX_ITER", "3", "SOLVER.CHECKPOINT_PERIOD", "2", "TEST.PRECISE_BN.ENABLED", "False",
                    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "OUTPUT_DIR", str(out)], env=ENV, timeout=900)
    return out, log, served


def test_fine_tunes_from_another_class_count_and_evaluates_with_the_users_classes(fine_tuned: tuple) -> None:
    out, log, served = fine_tuned
    assert "registered as own_train: 2 classes ['kettle', 'teapot']" in log
    assert "the model's class count set to 2 from the data" in log
    assert re.search(rf"fine-tuning from {re.escape(str(served))}: 4 class layers start fresh \(checkpoint: 5 "
                     r"classes, model: 2\): roi_heads\.box_predictor\.bbox_pred\.bias", log), log[-3000:]
    assert re.search(r"category\s*\|\s*AP\s*\|", log) and "kettle" in log and "teapot" in log  # per-class AP
    saved = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    assert saved["classes"] == ["kettle", "teapot"]
    assert torch.load(out / "model_0000001.pth", map_location="cpu", weights_only=True)["classes"] == \
        ["kettle", "teapot"]


def test_predicts_with_the_saved_class_names_and_no_flag(fine_tuned: tuple, own_sample: dict,
                                                          tmp_path: Path) -> None:
    out, _, _ = fine_tuned
    # the config names the toy set (3 classes); the file's 2 classes and their names win
    model, _, _, metadata = load_model(TOY, out / "model_final.pth")
    assert metadata.thing_classes == ["kettle", "teapot"]
    assert model.roi_heads.box_predictor.cls_score.out_features == 3  # 2 classes + background
    log = run_tool([REPO_ROOT / "tools" / "predict.py", str(TOY), "--weights", str(out / "model_final.pth"),
                    "--input", str(own_sample["val_images"]), "--output", str(tmp_path / "drawn")], env=ENV)
    assert len(list((tmp_path / "drawn").iterdir())) == 8, log


def test_resume_is_exact_and_never_fine_tunes(fine_tuned: tuple, own_sample: dict) -> None:
    out, _, served = fine_tuned
    log = run_tool([TRAIN_NET, "--config-file", str(TOY), *data_args(own_sample), "--resume", "MODEL.WEIGHTS",
                    str(served), "SOLVER.MAX_ITER", "4", "TEST.PRECISE_BN.ENABLED", "False", "OUTPUT_DIR", str(out)],
                   env=ENV, timeout=900)
    assert "fine-tuning from" not in log
    assert re.search(r"Loading from .*model_final\.pth", log), log[-2000:]
    assert "Starting training from iteration 3" in log


def test_a_backbone_misfit_is_still_an_error(own_sample: dict, tmp_path: Path) -> None:
    other = served_model(tmp_path / "resnest26d_5_classes.pth", 5, variant="resnest26d")
    proc = run_python([TRAIN_NET, "--config-file", str(TOY), *data_args(own_sample), "MODEL.WEIGHTS", str(other),
                       "SOLVER.MAX_ITER", "1", "OUTPUT_DIR", str(tmp_path / "out")], env=ENV, timeout=600, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert re.search(r"covers the ResNeSt backbone \(backbone\.bottom_up\) only in part: .*unexpected "
                     r"\(backbone\.", proc.stderr)


def test_a_file_of_the_same_class_count_and_other_names_says_so(own_sample: dict, tmp_path: Path) -> None:
    """Two classes named otherwise (cup, fork) onto the sample's two: every tensor loads (detectron2's own rule for
    fitting shapes), and one line says that the class layers were trained on other classes."""
    served = served_model(tmp_path / "cups.pth", 2)
    torch.save(dict(torch.load(served, weights_only=True), classes=["cup", "fork"]), served)
    log = run_tool([TRAIN_NET, "--config-file", str(TOY), *data_args(own_sample), "MODEL.WEIGHTS", str(served),
                    "SOLVER.MAX_ITER", "1", "TEST.EVAL_PERIOD", "0", "TEST.PRECISE_BN.ENABLED", "False",
                    "OUTPUT_DIR", str(tmp_path / "out")], env=ENV, timeout=900)
    assert (f"starting from {served}: the same class count, every tensor loaded; its classes ['cup', 'fork'] are "
            f"not the data's ['kettle', 'teapot'], so its class layers are only the starting point") in log
    assert "class layers start fresh" not in log
