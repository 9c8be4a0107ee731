"""The toy ADE20K-/Cityscapes-layout generators (framework-free: numpy + PIL only, so no mmseg marker)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnest_backbones.toy_data.segmentation import (
    CITYSCAPES_TOY_TRAIN_IDS,
    list_files,
    make_toy_ade20k,
    make_toy_cityscapes,
)


def _digest(root: Path) -> str:
    sha = hashlib.sha256()
    for name in list_files(root):
        sha.update(name.encode())
        sha.update((root / name).read_bytes())
    return sha.hexdigest()


def test_ade20k_layout_and_labels(tmp_path: Path) -> None:
    root = make_toy_ade20k(tmp_path / "ade", num_train=4, num_val=2, image_size=(48, 64), seed=3)
    files = list_files(root)
    assert "images/training/ADE_train_00000001.jpg" in files and "images/validation/ADE_val_00000002.jpg" in files
    assert "annotations/training/ADE_train_00000004.png" in files
    assert len([f for f in files if f.startswith("annotations/")]) == 6
    labels = np.concatenate([np.array(Image.open(root / f)).ravel() for f in files if f.startswith("annotations/")])
    image = Image.open(root / "images/training/ADE_train_00000001.jpg")
    assert image.size == (64, 48) and image.mode == "RGB"
    values = set(np.unique(labels).tolist())
    assert 0 in values  # unlabelled outlines: ignored by reduce_zero_label
    assert values <= {0, 1, 2, 3, 4, 5} and len(values) >= 4


def test_cityscapes_layout_and_train_ids(tmp_path: Path) -> None:
    root = make_toy_cityscapes(tmp_path / "city", num_train=3, num_val=1, image_size=(32, 64), seed=1)
    files = list_files(root)
    assert "leftImg8bit/train/toycity/toycity_000002_000019_leftImg8bit.png" in files
    assert "gtFine/val/toycity/toycity_000000_000019_gtFine_labelTrainIds.png" in files
    labels = np.concatenate([np.array(Image.open(root / f)).ravel() for f in files if f.startswith("gtFine/")])
    values = set(np.unique(labels).tolist())
    assert 255 in values and values <= set(CITYSCAPES_TOY_TRAIN_IDS) | {255}


def test_deterministic_and_made_once(tmp_path: Path) -> None:
    a = make_toy_ade20k(tmp_path / "a", num_train=3, num_val=1, image_size=(32, 32), seed=0)
    b = make_toy_ade20k(tmp_path / "b", num_train=3, num_val=1, image_size=(32, 32), seed=0)
    assert _digest(a) == _digest(b)
    c = make_toy_ade20k(tmp_path / "c", num_train=3, num_val=1, image_size=(32, 32), seed=1)
    assert _digest(a) != _digest(c)
    stamp = (a / "toy_dataset.json").stat().st_mtime_ns
    make_toy_ade20k(tmp_path / "a", num_train=3, num_val=1, image_size=(32, 32), seed=0)
    assert (a / "toy_dataset.json").stat().st_mtime_ns == stamp  # up to date: not rewritten
    make_toy_ade20k(tmp_path / "a", num_train=2, num_val=1, image_size=(32, 32), seed=0)  # other parameters
    assert len(list_files(a / "images")) == 3


def test_refuses_to_overwrite_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not a toy dataset"):
        make_toy_cityscapes(tmp_path / "mine", num_train=1, num_val=1)
    assert (tmp_path / "mine" / "keep.txt").read_text() == "user data"
