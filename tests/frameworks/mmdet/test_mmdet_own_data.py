"""The OpenMMLab tools' fine-tuning rules beyond docs/own_data.md's run (tests/test_own_data_docs.py): ``--resume``
continues from the work directory's last checkpoint exactly, never from ``load_from``; a ``load_from`` whose
backbone does not fit is still an error naming the keys; a file whose class names differ from the data set's (same
count) draws its own names, with a warning naming both. Shared by mmseg's tools (one main: openmmlab.cli)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from support.detection_models import small
from support.frameworks import require
from support.processes import run_python, run_tool

pytestmark = require("mmdet")

TOY = "configs/mmdet/toy/faster-rcnn_resnest14d_fpn_toy-coco.py"


def own(sample: dict) -> list:
    return ["--train-data", str(sample["train_json"]), str(sample["train_images"]),
            "--val-data", str(sample["val_json"]), str(sample["val_images"])]


@pytest.fixture(scope="module")
def shapes_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A detector of the 3 toy classes, trained 2 iterations: the stand-in of a served COCO model."""
    tmp = tmp_path_factory.mktemp("mmdet_shapes")
    run_tool(["tools/mmdet_train.py", TOY, "--work-dir", str(tmp / "work"), *small(2, tmp / "toy")], timeout=600)
    return tmp / "work" / "iter_2.pth"


def test_resume_continues_from_the_work_dir_never_from_load_from(shapes_model: Path, own_sample: dict,
                                                                   tmp_path: Path) -> None:
    work = tmp_path / "work"
    start = ["tools/mmdet_train.py", TOY, "--work-dir", str(work), *own(own_sample), "--cfg-options",
             f"load_from={shapes_model}", "default_hooks.checkpoint.interval=1"]
    first = run_tool([*start, "train_cfg.max_iters=2", "train_cfg.val_interval=2"], timeout=600)
    assert re.search(r"fine-tuning from .*iter_2\.pth: 4 class layers start fresh \(checkpoint: 3 classes, "
                     r"model: 2\)", first)
    resumed = run_tool([*start, "train_cfg.max_iters=3", "train_cfg.val_interval=3", "--resume"], timeout=600)
    assert f"--resume: continuing from {work / 'iter_2.pth'}; load_from={shapes_model} is not used" in resumed
    assert "fine-tuning from" not in resumed  # the run's own checkpoint: loaded exactly
    assert re.search(r"resumed epoch: \d+, iter: 2", resumed)
    assert (work / "iter_3.pth").is_file()


def test_a_backbone_misfit_in_load_from_is_an_error(own_sample: dict, tmp_path: Path) -> None:
    other = tmp_path / "other"
    run_tool(["tools/mmdet_train.py", TOY, "--work-dir", str(other), *small(1, tmp_path / "toy"),
              "model.backbone.variant=resnest26d"], timeout=600)
    proc = run_python(["tools/mmdet_train.py", TOY, "--work-dir", str(tmp_path / "work"), *own(own_sample),
                       "--cfg-options", f"load_from={other / 'iter_1.pth'}", "train_cfg.max_iters=1"],
                      timeout=600, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in output
    assert re.search(r"\[mmdet_train\] error: .*iter_1\.pth does not fit the model of this config outside its class "
                     r"layers\n.*\n.*unexpected in checkpoint: backbone\.layer", output), output[-3000:]


def test_saved_names_win_over_the_configs_with_a_warning(shapes_model: Path) -> None:
    from mmdet.registry import DATASETS
    from mmengine.config import Config

    from resnest_backbones.openmmlab.checkpoint import dataset_meta, read_checkpoint
    from resnest_backbones.predict import load_predictor

    checkpoint = read_checkpoint(str(shapes_model))  # the tools' safe reader (mmengine's message hub allow-listed)
    assert checkpoint["meta"]["dataset_meta"]["classes"] == ("circle", "square", "triangle")  # mmengine saved them
    checkpoint["meta"]["dataset_meta"] = {"classes": ("cup", "plate", "fork")}
    renamed = shapes_model.parent / "renamed.pth"
    torch.save(checkpoint, renamed)
    assert load_predictor("mmdet", TOY, renamed).class_names == ["cup", "plate", "fork"]
    cfg = Config.fromfile(TOY)
    cfg.test_dataloader.dataset.metainfo = dict(classes=("circle", "square", "triangle"))
    with pytest.warns(UserWarning, match=r"\['cup', 'plate', 'fork'\] differ from .*\['circle', 'square', "
                                         r"'triangle'\]"):
        assert dataset_meta(cfg, checkpoint, 3, DATASETS)["classes"] == ("cup", "plate", "fork")


def test_every_label_names_its_annotations_category(own_sample: dict) -> None:
    """The sample lists category 9 (teapot) before 3 (kettle). mmdet's CocoDataset numbers the classes in the file's
    order, so the names the tool gives it (which the metric's table and the checkpoints carry) follow that order:
    each instance's label names the category of its annotation, in both splits."""
    import argparse
    import json
    from collections import Counter

    from mmdet.registry import DATASETS
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from resnest_backbones.mmdet.own_data import use_own_data

    cfg = Config.fromfile(TOY)
    notes = use_own_data(cfg, argparse.Namespace(**{f"{split}_data": [str(own_sample[f"{split}_json"]),
                                                                      str(own_sample[f"{split}_images"])]
                                                    for split in ("train", "val")}))
    assert "2 classes ['teapot', 'kettle']" in notes[0]
    for loader, split in (("train_dataloader", "train"), ("val_dataloader", "val")):
        with DefaultScope.overwrite_default_scope("mmdet"):
            dataset = DATASETS.build(cfg[loader].dataset)
        classes = dataset.metainfo["classes"]
        data = json.loads(Path(own_sample[f"{split}_json"]).read_text())
        name_of = {c["id"]: c["name"] for c in data["categories"]}
        checked = 0
        for index in range(len(dataset)):
            info = dataset.get_data_info(index)
            truth = Counter(name_of[a["category_id"]] for a in data["annotations"] if a["image_id"] == info["img_id"])
            assert Counter(classes[i["bbox_label"]] for i in info["instances"]) == truth, info["img_path"]
            checked += sum(truth.values())
        assert checked > 10


def test_a_file_of_the_same_class_count_and_other_names_says_so(shapes_model: Path, tmp_path: Path, capsys) -> None:
    """load_from of a 3-class detector whose classes are named otherwise (cup, plate, fork) onto the toy shapes:
    every tensor loads (mmengine's own rule for fitting shapes), and one line says that the class layers were
    trained on other classes; an exact load (evaluation, resuming) says nothing."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from resnest_backbones.openmmlab.checkpoint import load_whole_model, read_checkpoint

    checkpoint = read_checkpoint(str(shapes_model))  # the tools' safe reader
    checkpoint["meta"]["dataset_meta"] = {"classes": ("cup", "plate", "fork")}
    cups = tmp_path / "cups.pth"
    torch.save(checkpoint, cups)
    out = run_tool(["tools/mmdet_train.py", TOY, "--work-dir", str(tmp_path / "work"), *small(1, tmp_path / "toy"),
                    f"load_from={cups}"], timeout=600)
    assert (f"starting from {cups}: the same class count, every tensor loaded; its classes ['cup', 'plate', "
            f"'fork'] are not the data's ['circle', 'square', 'triangle']") in out, out[-3000:]
    with DefaultScope.overwrite_default_scope("mmdet"):
        model = MODELS.build(Config.fromfile(TOY).model)
    for mode, expected in (("finetune", True), ("exact", False)):
        decision = load_whole_model(model, checkpoint, str(cups), mode=mode, classes=("circle", "square", "triangle"))
        assert decision is not None and not decision.fresh
        said = f"starting from {cups}: the same class count" in capsys.readouterr().out
        assert said == expected, mode
