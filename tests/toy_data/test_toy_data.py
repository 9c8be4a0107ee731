"""Tests of the built-in toy COCO data (resnest_backbones.toy_data): determinism, COCO validity, reuse."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from support import REPO_ROOT

from resnest_backbones.toy_data import COCO_CATEGORIES, coco, make_toy_coco

PARAMS = dict(num_train=6, num_val=3, image_size=64, seed=0)


def _files(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _polygon_mask(polygon: list, width: int, height: int) -> np.ndarray:
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).polygon(list(zip(polygon[0::2], polygon[1::2])), fill=1)
    return np.asarray(mask, dtype=bool)


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path: Path) -> None:
    a = make_toy_coco(tmp_path / "a", **PARAMS)
    b = make_toy_coco(tmp_path / "b", **PARAMS)
    files_a, files_b = _files(a["root"]), _files(b["root"])
    assert len(files_a) == 6 + 3 + 2 + 1  # images, two JSON files, metadata
    assert files_a == files_b
    c = make_toy_coco(tmp_path / "c", **{**PARAMS, "seed": 1})
    assert _files(c["root"])["train/000001.png"] != files_a["train/000001.png"]
    assert _files(c["root"])["annotations/instances_train.json"] != files_a["annotations/instances_train.json"]


def test_images_do_not_depend_on_the_split_size(tmp_path: Path) -> None:
    small = make_toy_coco(tmp_path / "small", **PARAMS)
    large = make_toy_coco(tmp_path / "large", **{**PARAMS, "num_train": 8})
    for i in range(1, 7):
        name = f"{i:06d}.png"
        assert (small["train_images"] / name).read_bytes() == (large["train_images"] / name).read_bytes()


def test_coco_json_is_valid_and_matches_the_pixels(tmp_path: Path) -> None:
    paths = make_toy_coco(tmp_path, **PARAMS)
    assert paths["categories"] == list(COCO_CATEGORIES) == ["circle", "square", "triangle"]
    for split, count in (("train", 6), ("val", 3)):
        data = json.loads(paths[f"{split}_json"].read_text())
        assert {"images", "annotations", "categories"} <= set(data)
        assert [c["id"] for c in data["categories"]] == [1, 2, 3]
        assert [c["name"] for c in data["categories"]] == paths["categories"]
        assert [im["id"] for im in data["images"]] == list(range(1, count + 1))
        assert [a["id"] for a in data["annotations"]] == list(range(1, len(data["annotations"]) + 1))
        images = {im["id"]: im for im in data["images"]}
        per_image = {i: [] for i in images}
        for ann in data["annotations"]:
            per_image[ann["image_id"]].append(ann)
        assert all(1 <= len(anns) <= 4 for anns in per_image.values())
        for image_id, anns in per_image.items():
            info = images[image_id]
            pixels = np.asarray(Image.open(paths[f"{split}_images"] / info["file_name"]).convert("RGB"), dtype=float)
            assert pixels.shape == (info["height"], info["width"], 3) == (64, 64, 3)
            union = np.zeros(pixels.shape[:2], dtype=int)
            for ann in anns:
                assert ann["iscrowd"] == 0 and ann["category_id"] in (1, 2, 3)
                x, y, w, h = ann["bbox"]
                assert 0 <= x and 0 <= y and x + w <= 64 and y + h <= 64 and w >= 6 and h >= 6
                (polygon,) = ann["segmentation"]
                xs, ys = polygon[0::2], polygon[1::2]
                assert len(polygon) >= 6 and len(polygon) % 2 == 0
                assert min(xs) == pytest.approx(x, abs=0.01) and max(xs) == pytest.approx(x + w, abs=0.02)
                assert min(ys) == pytest.approx(y, abs=0.01) and max(ys) == pytest.approx(y + h, abs=0.02)
                assert 0.3 * w * h < ann["area"] < w * h
                mask = _polygon_mask(polygon, 64, 64)
                union += mask
                # The annotation lies on the drawn object: its colour family (red circles, green squares,
                # blue triangles) dominates inside the polygon.
                assert int(np.argmax(pixels[mask].mean(0))) == ann["category_id"] - 1
            assert union.max() == 1  # objects never overlap, so every polygon is fully visible


def test_second_call_reuses_and_changed_parameters_regenerate(tmp_path: Path, monkeypatch) -> None:
    first = make_toy_coco(tmp_path, **PARAMS)
    before = _files(tmp_path)

    def fail(*args, **kwargs):
        raise AssertionError("data set was generated again although it exists with the same parameters")

    with monkeypatch.context() as patch:
        patch.setattr(coco, "_make_split", fail)
        assert make_toy_coco(tmp_path, **PARAMS) == first
    assert _files(tmp_path) == before
    smaller = make_toy_coco(tmp_path, **{**PARAMS, "num_train": 4})
    assert sorted(p.name for p in smaller["train_images"].iterdir()) == [f"{i:06d}.png" for i in range(1, 5)]
    assert len(json.loads(smaller["train_json"].read_text())["images"]) == 4
    # An interrupted generation (no metadata) is redone rather than trusted.
    (tmp_path / "toy_coco_meta.json").unlink()
    make_toy_coco(tmp_path, **PARAMS)
    assert _files(tmp_path) == before


@pytest.mark.parametrize("kwargs", [dict(image_size=16), dict(image_size=(64, 64, 3)), dict(num_train=0),
                                    dict(num_val=-1)])
def test_bad_parameters_raise(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError, match="image_size|num_train|num_val"):
        make_toy_coco(tmp_path, **{**PARAMS, **kwargs})


def test_pycocotools_reads_it_and_polygon_masks_agree_with_boxes(tmp_path: Path) -> None:
    pytest.importorskip("pycocotools", reason="pycocotools is not installed (pip install pycocotools)")
    from pycocotools.coco import COCO

    paths = make_toy_coco(tmp_path, **PARAMS)
    api = COCO(str(paths["train_json"]))
    assert sorted(api.getImgIds()) == list(range(1, 7))
    assert [c["name"] for c in api.loadCats(api.getCatIds())] == paths["categories"]
    for ann in api.loadAnns(api.getAnnIds()):
        mask = api.annToMask(ann)
        rows, cols = np.nonzero(mask)
        x, y, w, h = ann["bbox"]
        assert abs(cols.min() - x) <= 1.5 and abs(cols.max() + 1 - (x + w)) <= 1.5
        assert abs(rows.min() - y) <= 1.5 and abs(rows.max() + 1 - (y + h)) <= 1.5
        assert mask.sum() == pytest.approx(ann["area"], rel=0.1)


def _cli():
    import importlib.util

    path = REPO_ROOT / "tools" / "make_toy_data.py"
    spec = importlib.util.spec_from_file_location("make_toy_data_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_command_line_makes_the_same_data(tmp_path: Path, capsys) -> None:
    cli = _cli()
    cli.main(["coco", "--root", str(tmp_path / "cli"), "--num-train", "6", "--num-val", "3", "--image-size", "64"])
    assert "categories: circle, square, triangle" in capsys.readouterr().out
    make_toy_coco(tmp_path / "api", **PARAMS)
    assert _files(tmp_path / "cli") == _files(tmp_path / "api")
    with pytest.raises(SystemExit, match="image_size must be at least 32"):
        cli.main(["coco", "--root", str(tmp_path / "bad"), "--image-size", "8"])
    cli.main(["ade20k", "--root", str(tmp_path / "ade"), "--num-train", "2", "--num-val", "1"])
    assert len(list((tmp_path / "ade" / "images" / "training").iterdir())) == 2
