"""tools/predict.py and resnest_backbones.predict: ResNeSt (Zhang et al., 2020) models trained a few iterations on
the toy data by the project's own tools, run on toy images and drawn. Checked: one output per input, of the
input's size, with pixels changed where the model predicted something (on a predicted box's edge; over the
predicted segmentation), and clear errors for a missing input, an unknown config type and wrong weights.
The detectron2, mmseg and mmdet parts are skipped, visibly, without their framework."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from support import REPO_ROOT
from support.numerics import match_detections, max_rel_diff
from support.processes import run_python

import resnest_backbones as rb
from resnest_backbones import create_model
from resnest_backbones.accel import InferenceOnly
from resnest_backbones.models.checkpoint import CheckpointError
from resnest_backbones.predict import detect_framework, list_images, load_predictor, predict_images, read_image
from resnest_backbones.torchvision.predict import load_torchvision_model, torchvision_predictor
from resnest_backbones.toy_data import COCO_CATEGORIES

REPO = REPO_ROOT
TOY_D2 = REPO / "configs" / "detectron2" / "toy" / "mask_rcnn_toy.yaml"
TOY_ADE = REPO / "configs" / "mmseg" / "toy" / "deeplabv3_resnest14d-d8_toy-ade.py"
TOY_MMDET = REPO / "configs" / "mmdet" / "toy" / "faster-rcnn_resnest14d_fpn_toy-coco.py"
ENV = dict(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")  # added to the environment of every tool run


def _changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.any(before != after, axis=-1)


def _box_edge_changed(before: np.ndarray, after: np.ndarray, box: List[float]) -> bool:
    """Whether pixels on the outline of ``box`` (x0, y0, x1, y1) changed (a drawn rectangle)."""
    height, width = before.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, x1 = np.clip([x0, x1], 0, width - 1)
    y0, y1 = np.clip([y0, y1], 0, height - 1)
    changed = _changed(before, after)
    band = 2  # drawing libraries put the line on, just inside or just outside the edge
    edges = [changed[max(0, y0 - band):y0 + band + 1, x0:x1 + 1], changed[max(0, y1 - band):y1 + band + 1, x0:x1 + 1],
             changed[y0:y1 + 1, max(0, x0 - band):x0 + band + 1], changed[y0:y1 + 1, max(0, x1 - band):x1 + band + 1]]
    return all(e.size and e.mean() > 0.5 for e in edges)


@pytest.fixture(scope="module")
def toy_coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small toy COCO set with a torchvision Faster R-CNN trained 2 steps on it (``root/tv.pth``)."""
    root = tmp_path_factory.mktemp("toy_coco")
    run_python(["tools/torchvision_train.py", "--iters", "2", "--batch-size", "2", "--data-root", root,
                "--num-train", "8", "--num-val", "4", "--threads", "1", "--output", root / "tv.pth"],
               env=ENV, timeout=120)
    return root


@pytest.fixture(scope="module")
def val_images(toy_coco: Path) -> List[Path]:
    return sorted((toy_coco / "val").glob("*.png"))[:2]


def test_torchvision_draws_predicted_boxes(toy_coco: Path, val_images: List[Path], tmp_path: Path) -> None:
    predictor = torchvision_predictor(toy_coco / "tv.pth", score_threshold=0.0)
    written = predict_images(predictor, val_images, tmp_path / "out", progress=False)
    assert [p.name for p in written] == [p.name for p in val_images]
    assert predictor.class_names == list(COCO_CATEGORIES)  # from the model file
    model = load_torchvision_model(toy_coco / "tv.pth", score_threshold=0.0)  # what the predictor runs
    for source, output in zip(val_images, written):
        before, after = read_image(source), read_image(output)
        assert after.shape == before.shape
        with torch.no_grad():
            boxes = model([torch.from_numpy(before.copy()).permute(2, 0, 1).float() / 255])[0]["boxes"]
        assert len(boxes), "the barely trained model predicted nothing even at threshold 0"
        assert _box_edge_changed(before, after, boxes[0].tolist()), "the top box is not drawn"


def test_torchvision_bare_state_dict_still_loads_with_variant(toy_coco: Path, tmp_path: Path) -> None:
    """A file of the tool before model files (a bare state dict): the variant and image size are given, the
    classes fall back to the toy names when their count fits."""
    from resnest_backbones.torchvision.model_file import read_model_file

    bare = tmp_path / "bare.pth"
    torch.save(read_model_file(toy_coco / "tv.pth").state_dict, bare)
    predictor = torchvision_predictor(bare, variant="resnest14d", image_size=128)
    assert predictor.class_names == list(COCO_CATEGORIES)


def test_cli_torchvision_and_errors(toy_coco: Path, val_images: List[Path], tmp_path: Path) -> None:
    out = run_python(["tools/predict.py", "--framework", "torchvision", "--weights", toy_coco / "tv.pth",
                      "--input", val_images[0].parent, "--output", tmp_path, "--score-threshold", "0"],
                     env=ENV, timeout=120).stdout
    assert "torchvision model, classes: circle, square, triangle" in out
    printed = [Path(line) for line in out.split("\n") if line.endswith(".png")]
    assert len(printed) == len(list((toy_coco / "val").glob("*.png"))) and all(p.is_file() for p in printed)
    proc = run_python(["tools/predict.py", "--framework", "torchvision", "--weights", toy_coco / "tv.pth",
                       "--input", tmp_path / "absent.jpg"], env=ENV, timeout=60, check=False)
    assert proc.returncode != 0 and "absent.jpg does not exist" in proc.stderr, proc.stderr[-2000:]


def test_errors(toy_coco: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_images([tmp_path / "nothing.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image found"):
        list_images([tmp_path / "empty"])
    odd = tmp_path / "model.cfg"
    odd.write_text("x = 1\n")
    with pytest.raises(ValueError, match="unknown config type"):
        detect_framework(odd)
    with pytest.raises(ValueError, match="unknown framework"):
        detect_framework(odd, "keras")
    assert detect_framework(TOY_D2) == "detectron2" and detect_framework(TOY_ADE) == "mmseg"
    assert detect_framework(REPO / "configs" / "detectron2" / "COCO-Detection" / "faster_rcnn_S50_FPN_1x.py") == \
        "detectron2"
    with pytest.raises(CheckpointError, match="does not exist"):
        torchvision_predictor(tmp_path / "missing.pth")
    backbone = tmp_path / "backbone.pth"
    torch.save(create_model("resnest14d").state_dict(), backbone)
    with pytest.raises(CheckpointError, match="not a torchvision Faster R-CNN"):
        torchvision_predictor(backbone)
    with pytest.raises(CheckpointError, match="does not cover the model of this config exactly"):
        torchvision_predictor(toy_coco / "tv.pth", variant="resnest26d")
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        torchvision_predictor(text)


@pytest.fixture(scope="module")
def d2_model(toy_coco: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A toy Mask R-CNN trained 2 iterations by tools/train_net.py."""
    out = tmp_path_factory.mktemp("d2")
    run_python(["tools/train_net.py", "--config-file", TOY_D2, "OUTPUT_DIR", out, "SOLVER.MAX_ITER", "2",
                "SOLVER.IMS_PER_BATCH", "2", "TEST.PRECISE_BN.ENABLED", "False", "DATASETS.TEST", "()"],
               env=dict(ENV, RESNEST_TOY_COCO=str(toy_coco)), timeout=300)
    return out / "model_final.pth"


@pytest.mark.detectron2
def test_detectron2_draws_boxes_and_masks(d2_model: Path, val_images: List[Path], tmp_path: Path) -> None:
    from resnest_backbones.detectron2.predict import load_model

    predictor = load_predictor("detectron2", TOY_D2, d2_model, score_threshold=0.0, device="cpu")
    written = predict_images(predictor, val_images, tmp_path, progress=False)
    model, _, _, metadata = load_model(TOY_D2, d2_model, score_threshold=0.0)
    assert list(metadata.thing_classes) == ["circle", "square", "triangle"]
    for source, output in zip(val_images, written):
        before, after = read_image(source), read_image(output)
        assert after.shape == before.shape
        with torch.no_grad():
            tensor = torch.as_tensor(before[:, :, ::-1].copy()).permute(2, 0, 1).float()  # BGR, already 128 px
            instances = model([{"image": tensor, "height": 128, "width": 128}])[0]["instances"]
        assert len(instances), "the barely trained model predicted nothing even at threshold 0"
        top = instances[int(instances.scores.argmax())]
        assert _box_edge_changed(before, after, top.pred_boxes.tensor[0].tolist()), "the top box is not drawn"
        mask = top.pred_masks[0].numpy()
        if mask.any():  # mask pixels are tinted
            assert _changed(before, after)[mask].mean() > 0.5


@pytest.mark.detectron2
def test_detectron2_refuses_wrong_weights(toy_coco: Path, tmp_path: Path) -> None:
    backbone = tmp_path / "backbone.pth"
    torch.save(create_model("resnest14d").state_dict(), backbone)
    with pytest.raises(CheckpointError, match="only a backbone"):
        load_predictor("detectron2", TOY_D2, backbone)
    with pytest.raises(CheckpointError):
        load_predictor("detectron2", TOY_D2, toy_coco / "tv.pth")  # torchvision's model
    with pytest.raises(CheckpointError, match="does not exist"):
        load_predictor("detectron2", TOY_D2, tmp_path / "missing.pth")


@pytest.fixture(scope="module")
def mmseg_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A toy DeepLabV3 trained 2 iterations by tools/mmseg_train.py (its toy data made under a temporary root)."""
    work = tmp_path_factory.mktemp("mmseg")
    data = ["--cfg-options", *(f"{loader}.dataset.data_root={work / 'data'}"
                               for loader in ("train_dataloader", "val_dataloader", "test_dataloader")),
            "train_cfg.max_iters=2", "train_cfg.val_interval=2", "param_scheduler.0.end=2",
            "default_hooks.checkpoint.interval=2"]
    run_python(["tools/mmseg_train.py", TOY_ADE, "--work-dir", work, *data], env=ENV, timeout=300)
    return work / "iter_2.pth"


@pytest.mark.mmseg
def test_mmseg_overlays_prediction(mmseg_model: Path, tmp_path: Path) -> None:
    from mmseg.apis import inference_model

    from resnest_backbones.mmseg.predict import MMSegPredictor

    images = sorted((mmseg_model.parent / "data" / "images" / "validation").glob("*.jpg"))[:2]
    predictor = MMSegPredictor(TOY_ADE, mmseg_model)
    assert list(predictor.model.dataset_meta["classes"]) == ["wall", "building", "sky", "floor", "tree"]
    written = predict_images(predictor, images, tmp_path, progress=False)
    for source, output in zip(images, written):
        before, after = read_image(source), read_image(output)
        assert after.shape == before.shape
        labels = inference_model(predictor.model, before[:, :, ::-1].copy()).pred_sem_seg.data[0].numpy()
        assert _changed(before, after)[labels < 5].mean() > 0.9  # every predicted class is tinted
    truth = np.zeros(before.shape[:2], dtype=np.int64)
    side_by_side = predictor(before, ground_truth=truth)
    assert side_by_side.shape == (before.shape[0], 2 * before.shape[1], 3)
    assert np.array_equal(side_by_side[:, before.shape[1]:], after)


def _fused(model: torch.nn.Module) -> bool:
    """Whether every ResNeSt in ``model`` is a fused inference copy (and there is one)."""
    found = [m for m in model.modules() if isinstance(m, rb.ResNeSt)]
    return bool(found) and all(isinstance(m, InferenceOnly) for m in found)


# Fused by default, and the same outputs as the model as built (fused=False) for every framework: detections to
# 1e-4 in score and 1e-2 px in box (1e-4 of the 128-px images), mmseg logits to 1e-4 relative.
FUSED = dict(box_px=1e-2, score=1e-4)
def test_torchvision_fused_inference_matches_unfused(toy_coco: Path, val_images: List[Path]) -> None:
    fused = load_torchvision_model(toy_coco / "tv.pth", score_threshold=0.0)
    plain = load_torchvision_model(toy_coco / "tv.pth", score_threshold=0.0, fused=False)
    assert _fused(fused) and not _fused(plain)
    image = torch.from_numpy(read_image(val_images[0]).copy()).permute(2, 0, 1).float() / 255
    with torch.no_grad():
        match_detections(*(model([image])[0] for model in (fused, plain)), **FUSED)


@pytest.mark.detectron2
def test_detectron2_fused_inference_matches_unfused(d2_model: Path, val_images: List[Path]) -> None:
    from resnest_backbones.detectron2.predict import load_model

    (fused, *_), (plain, *_) = (load_model(TOY_D2, d2_model, score_threshold=0.0, fused=f) for f in (True, False))
    assert _fused(fused) and not _fused(plain)
    image = torch.as_tensor(read_image(val_images[0])[:, :, ::-1].copy()).permute(2, 0, 1).float()
    found = []
    for model in (fused, plain):
        with torch.no_grad():
            instances = model([{"image": image, "height": 128, "width": 128}])[0]["instances"]
        found.append(dict(boxes=instances.pred_boxes.tensor, scores=instances.scores, labels=instances.pred_classes,
                          masks=instances.pred_masks))
    match_detections(*found, **FUSED)


@pytest.mark.mmseg
def test_mmseg_fused_inference_matches_unfused(mmseg_model: Path) -> None:
    from mmseg.apis import inference_model

    from resnest_backbones.mmseg.predict import MMSegPredictor

    image = read_image(sorted((mmseg_model.parent / "data" / "images" / "validation").glob("*.jpg"))[0])
    fused, plain = (MMSegPredictor(TOY_ADE, mmseg_model, fused=f).model for f in (True, False))
    assert _fused(fused) and not _fused(plain)
    logits = [inference_model(model, image[:, :, ::-1].copy()).seg_logits.data for model in (fused, plain)]
    assert max_rel_diff(*logits) <= 1e-4


@pytest.mark.mmdet
def test_mmdet_fused_inference_matches_unfused(mmdet_model: Path) -> None:
    from mmdet.apis import inference_detector

    image = read_image(sorted((mmdet_model.parent / "data" / "val").glob("*.png"))[0])
    fused, plain = (load_predictor("mmdet", TOY_MMDET, mmdet_model, score_threshold=0.0, fused=f).model
                    for f in (True, False))
    assert _fused(fused) and not _fused(plain)
    found = [inference_detector(model, image[:, :, ::-1].copy()).pred_instances for model in (fused, plain)]
    match_detections(*(dict(boxes=f.bboxes, scores=f.scores, labels=f.labels) for f in found), **FUSED)


@pytest.fixture(scope="module")
def mmdet_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A toy Faster R-CNN trained 2 iterations by tools/mmdet_train.py (a small toy set under a temporary root)."""
    work = tmp_path_factory.mktemp("mmdet")
    loaders = ("train_dataloader", "val_dataloader", "test_dataloader")
    data = ["--cfg-options", "train_cfg.max_iters=2", "train_cfg.val_interval=2", "param_scheduler.0.end=2",
            "param_scheduler.1.end=2", "default_hooks.checkpoint.interval=2",
            *(f"{loader}.dataset.data_root={work / 'data'}" for loader in loaders),
            *(f"{loader}.dataset.toy.{key}={value}" for loader in loaders for key, value in (("num_train", 8),
                                                                                             ("num_val", 4))),
            *(f"{e}.ann_file={work / 'data'}/annotations/instances_val.json" for e in ("val_evaluator",
                                                                                      "test_evaluator"))]
    run_python(["tools/mmdet_train.py", TOY_MMDET, "--work-dir", work, *data], env=ENV, timeout=600)
    return work / "iter_2.pth"


@pytest.mark.mmdet
def test_mmdet_draws_boxes(mmdet_model: Path, tmp_path: Path) -> None:
    from mmdet.apis import inference_detector

    assert detect_framework(TOY_MMDET) == "mmdet"
    images = sorted((mmdet_model.parent / "data" / "val").glob("*.png"))[:2]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictor = load_predictor("mmdet", TOY_MMDET, mmdet_model, score_threshold=0.0)
    assert list(predictor.model.dataset_meta["classes"]) == ["circle", "square", "triangle"]
    assert not [w for w in caught if "COCO classes" in str(w.message)]  # mmdet's warning before the file's are set
    written = predict_images(predictor, images, tmp_path, progress=False)
    for source, output in zip(images, written):
        before, after = read_image(source), read_image(output)
        assert after.shape == before.shape
        boxes = inference_detector(predictor.model, before[:, :, ::-1].copy()).pred_instances.bboxes
        assert len(boxes) > 0  # 2 iterations: low scores, but boxes (threshold 0 draws them all)
        assert _box_edge_changed(before, after, boxes[0].tolist())
    run_python(["tools/predict.py", TOY_MMDET, "--weights", mmdet_model, "--input", images[0], "--output",
                tmp_path / "cli", "--score-threshold", "0"], env=ENV, timeout=300)
    assert read_image(tmp_path / "cli" / f"{images[0].stem}.png").shape == read_image(images[0]).shape


@pytest.mark.parametrize("framework, config", [pytest.param("mmseg", TOY_ADE, marks=pytest.mark.mmseg),
                                               pytest.param("mmdet", TOY_MMDET, marks=pytest.mark.mmdet)])
def test_openmmlab_predictors_refuse_wrong_weights(framework: str, config: Path, toy_coco: Path,
                                                   tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not cover the model"):
        load_predictor(framework, config, toy_coco / "tv.pth")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_predictor(framework, config, tmp_path / "missing.pth")


@pytest.mark.mmdet
def test_mmdet_predictor_checks_a_released_name(toy_coco: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "faster_rcnn_toy_20200926_125502-20289c16.pth"  # a released-style name, wrong content
    renamed.write_bytes((toy_coco / "tv.pth").read_bytes())
    with pytest.raises(CheckpointError, match="20289c16"):
        load_predictor("mmdet", TOY_MMDET, renamed)
