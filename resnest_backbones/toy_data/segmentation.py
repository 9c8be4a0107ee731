"""Tiny synthetic semantic-segmentation datasets in the ADE20K and Cityscapes directory layouts.

They let the MMSegmentation integration of the ResNeSt backbones (Zhang et al., 2020, "ResNeSt:
Split-Attention Networks") train and evaluate end to end on a CPU in minutes, with mmseg's own dataset
classes reading them: nothing here is a stand-in for a real dataset's difficulty.

Every image is a small street/indoor-like scene: an upper background region and a lower ground region split at
a random horizon, with a few rectangles and ellipses in front. Each class has its own colour and texture
(stripes, checkers, gradients, blobs), jittered per image and with pixel noise, so a segmentation network has
to look at neighbourhoods rather than single pixels. A thin outline around every object is left unlabelled
(ADE20K label 0 / Cityscapes train id 255), so the ignore-index code paths run too.

Layouts (what mmseg's ``ADE20KDataset`` and ``CityscapesDataset`` expect):

* ADE20K: ``images/{training,validation}/ADE_{train,val}_%08d.jpg`` and
  ``annotations/{training,validation}/...png``; label 0 = "other" (ignored through ``reduce_zero_label``),
  class ``k`` (0-based) is stored as ``k + 1``.
* Cityscapes: ``leftImg8bit/{train,val}/<city>/<city>_%06d_000019_leftImg8bit.png`` and
  ``gtFine/{train,val}/<city>/..._gtFine_labelTrainIds.png`` holding Cityscapes train ids (255 = ignore).

Generation is deterministic (a seed), numpy + PIL only, and happens on first use: a ``toy_dataset.json``
stamp records the parameters, and a later call with the same parameters returns at once. Files are written to
a temporary directory first and moved into place, so an interrupted run never leaves a half dataset behind.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image

from ..types import PathLike

__all__ = [
    "ADE20K_TOY_CLASSES",
    "CITYSCAPES_TOY_CLASSES",
    "CITYSCAPES_TOY_TRAIN_IDS",
    "make_toy_ade20k",
    "make_toy_cityscapes",
]

#: Class names of the toy ADE20K data: the first five ADE20K classes, in ADE20K's order, so that mmseg's
#: ``ADE20KDataset(metainfo=dict(classes=ADE20K_TOY_CLASSES))`` maps them onto 0..4 unchanged.
ADE20K_TOY_CLASSES: Tuple[str, ...] = ("wall", "building", "sky", "floor", "tree")
#: Cityscapes classes present in the toy Cityscapes data, and their Cityscapes train ids.
CITYSCAPES_TOY_CLASSES: Tuple[str, ...] = ("road", "building", "vegetation", "sky", "car")
CITYSCAPES_TOY_TRAIN_IDS: Tuple[int, ...] = (0, 2, 8, 10, 13)

_STAMP = "toy_dataset.json"
_FORMAT_VERSION = 1

# Per class (index into the toy class tuples above): base RGB colour and texture name. The two layouts share
# the table: ADE (wall, building, sky, floor, tree) and Cityscapes (road, building, vegetation, sky, car) use
# the same five looks in different roles.
_LOOKS: Tuple[Tuple[Tuple[int, int, int], str], ...] = (
    ((150, 120, 90), "hstripes"),
    ((170, 60, 50), "grid"),
    ((110, 160, 230), "vgradient"),
    ((90, 90, 100), "checker"),
    ((40, 140, 50), "blobs"),
)


def _texture(kind: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A ``(H, W)`` float pattern in [-1, 1] with a random phase/scale, one family per class."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    period = rng.uniform(5.0, 9.0)
    phase = rng.uniform(0.0, 2 * np.pi)
    if kind == "hstripes":
        return np.sin(2 * np.pi * yy / period + phase)
    if kind == "grid":
        return np.where((np.mod(yy + phase, period) < 2) | (np.mod(xx + phase, period) < 2), 1.0, -0.4)
    if kind == "vgradient":
        return (yy / max(height - 1, 1)) * 2 - 1
    if kind == "checker":
        return np.where((np.floor((yy + phase) / period) + np.floor((xx + phase) / period)) % 2 == 0, 1.0, -1.0)
    if kind == "blobs":
        coarse = rng.standard_normal((height // 6 + 2, width // 6 + 2)).astype(np.float32)
        big = np.kron(coarse, np.ones((6, 6), dtype=np.float32))[:height, :width]
        return np.clip(big, -1.0, 1.0)
    raise ValueError(f"unknown texture {kind!r}")


def _paint(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Render an RGB image for a ``(H, W)`` map of toy class indices (values outside 0..4 are unlabelled)."""
    height, width = labels.shape
    image = np.zeros((height, width, 3), dtype=np.float32)
    for index, (colour, kind) in enumerate(_LOOKS):
        mask = labels == index
        if not mask.any():
            continue
        base = np.array(colour, dtype=np.float32) + rng.uniform(-20, 20, size=3)
        pattern = _texture(kind, height, width, rng)[..., None] * rng.uniform(18, 30)
        image[mask] = (base + pattern)[mask]
    unlabelled = (labels < 0) | (labels >= len(_LOOKS))
    image[unlabelled] = rng.uniform(0, 255, size=3)  # outlines: a random colour, neither class's look
    image += rng.normal(0.0, 6.0, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _scene(height: int, width: int, rng: np.random.Generator, upper: Sequence[int], ground: int,
           objects: Sequence[int]) -> np.ndarray:
    """A map of toy class indices: background above a random horizon, ground below, 1-3 objects in front.

    Object outlines get the value -1 ("unlabelled").
    """
    labels = np.full((height, width), int(rng.choice(upper)), dtype=np.int64)
    horizon = int(rng.uniform(0.45, 0.7) * height)
    labels[horizon:] = ground
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.choice(objects))
        cy, cx = rng.uniform(0.25, 0.8) * height, rng.uniform(0.1, 0.9) * width
        ry, rx = rng.uniform(0.12, 0.3) * height, rng.uniform(0.08, 0.25) * width
        if rng.random() < 0.5:
            inside = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
            ring = (np.abs(yy - cy) <= ry + 1.5) & (np.abs(xx - cx) <= rx + 1.5) & ~inside
        else:
            dist = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
            inside = dist <= 1.0
            ring = (dist <= (1.0 + 2.0 / min(ry, rx)) ** 2) & ~inside
        labels[ring] = -1
        labels[inside] = cls
    return labels


def _up_to_date(root: Path, params: Dict[str, object]) -> bool:
    stamp = root / _STAMP
    if not stamp.is_file():
        return False
    try:
        return json.loads(stamp.read_text()) == params
    except (OSError, ValueError):
        return False


def _generate(root: Path, params: Dict[str, object], write: Callable[[Path], int]) -> Path:
    """Write a dataset with ``write(tmp_root) -> number of files`` and move it to ``root`` atomically."""
    if _up_to_date(root, params):
        return root
    if root.exists() and any(root.iterdir()) and not (root / _STAMP).is_file():
        raise FileExistsError(f"{root} exists and is not a toy dataset made by resnest_backbones (no {_STAMP}); "
                              f"choose another root or remove that directory")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        count = write(tmp)
        (tmp / _STAMP).write_text(json.dumps(params, indent=1, sort_keys=True))
        if _up_to_date(root, params):
            return root  # another process (the other ranks of a distributed run) made the same files meanwhile
        if root.exists():
            shutil.rmtree(root)  # an older toy dataset with other parameters (it has our stamp)
        try:
            os.replace(tmp, root)
        except OSError:
            if not _up_to_date(root, params):  # not a rank that won the same race
                raise
            return root
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"[toy_data] wrote {count} images to {root} ({params['layout']}, seed {params['seed']})", flush=True)
    return root


def make_toy_ade20k(root: PathLike = "data/toy_ade", *, num_train: int = 64, num_val: int = 16,
                    image_size: Tuple[int, int] = (128, 128), seed: int = 0) -> Path:
    """Make (once) a toy dataset in the ADE20K layout; returns its root (``data_root`` in mmseg configs).

    Args:
        root: dataset directory (``images/`` and ``annotations/`` go below it).
        num_train, num_val: numbers of training and validation images.
        image_size: ``(height, width)`` of every image.
        seed: random seed; the same arguments always give the same files.

    Returns:
        ``Path(root)``. The classes are :data:`ADE20K_TOY_CLASSES`, stored as 1..5 with 0 = unlabelled.
    """
    height, width = image_size
    params = dict(layout="ade20k", version=_FORMAT_VERSION, num_train=num_train, num_val=num_val,
                  image_size=[height, width], seed=seed)

    def write(tmp: Path) -> int:
        count = 0
        for split, prefix, number, split_id in (("training", "ADE_train", num_train, 0),
                                                ("validation", "ADE_val", num_val, 1)):
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "annotations" / split).mkdir(parents=True)
            for i in range(number):
                rng = np.random.default_rng([seed, split_id, i])
                # wall or sky above, floor below, buildings and trees in front
                labels = _scene(height, width, rng, upper=(0, 2), ground=3, objects=(1, 4))
                name = f"{prefix}_{i + 1:08d}"
                Image.fromarray(_paint(labels, rng)).save(tmp / "images" / split / f"{name}.jpg", quality=95)
                stored = np.where(labels >= 0, labels + 1, 0).astype(np.uint8)  # ADE20K: 0 = other
                Image.fromarray(stored).save(tmp / "annotations" / split / f"{name}.png")
                count += 1
        return count

    return _generate(Path(root), params, write)


def make_toy_cityscapes(root: PathLike = "data/toy_cityscapes", *, num_train: int = 32, num_val: int = 8,
                        image_size: Tuple[int, int] = (64, 128), seed: int = 0, city: str = "toycity") -> Path:
    """Make (once) a toy dataset in the Cityscapes layout; returns its root.

    Args:
        root: dataset directory (``leftImg8bit/`` and ``gtFine/`` go below it).
        num_train, num_val: numbers of training and validation images.
        image_size: ``(height, width)``; Cityscapes' aspect ratio is 1:2.
        seed: random seed; the same arguments always give the same files.
        city: the city sub-directory name.

    Returns:
        ``Path(root)``. Labels are Cityscapes train ids (:data:`CITYSCAPES_TOY_TRAIN_IDS`), 255 = ignore.
    """
    height, width = image_size
    params = dict(layout="cityscapes", version=_FORMAT_VERSION, num_train=num_train, num_val=num_val,
                  image_size=[height, width], seed=seed, city=city)
    train_ids = np.array(CITYSCAPES_TOY_TRAIN_IDS, dtype=np.uint8)

    def write(tmp: Path) -> int:
        count = 0
        for split, number, split_id in (("train", num_train, 0), ("val", num_val, 1)):
            image_dir = tmp / "leftImg8bit" / split / city
            label_dir = tmp / "gtFine" / split / city
            image_dir.mkdir(parents=True)
            label_dir.mkdir(parents=True)
            for i in range(number):
                rng = np.random.default_rng([seed, 100 + split_id, i])
                # sky (or buildings) above, road below, buildings, vegetation and cars in front
                labels = _scene(height, width, rng, upper=(3, 1), ground=0, objects=(1, 2, 4))
                stem = f"{city}_{i:06d}_000019"
                Image.fromarray(_paint(labels, rng)).save(image_dir / f"{stem}_leftImg8bit.png")
                stored = np.where(labels >= 0, train_ids[np.clip(labels, 0, None)], 255).astype(np.uint8)
                Image.fromarray(stored).save(label_dir / f"{stem}_gtFine_labelTrainIds.png")
                count += 1
        return count

    return _generate(Path(root), params, write)


def list_files(root: PathLike) -> List[str]:
    """Relative paths of every file under ``root`` (sorted), for determinism checks."""
    root = Path(root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
