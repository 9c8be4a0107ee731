"""A small, deterministic COCO-format detection/instance-segmentation data set of coloured shapes.

It lets the detection examples and tests of this package (ResNeSt, Zhang et al., 2020, "ResNeSt:
Split-Attention Networks", used as a detection backbone) train and evaluate end to end in minutes on a CPU,
without downloading anything and without detectron2 or pycocotools (numpy and Pillow only).

Every image shows 1 to 4 non-overlapping shapes (``circle``, ``square``, ``triangle``) on a textured
background (a colour gradient with low-frequency blobs and pixel noise). Each class has its own colour family
(reds, greens, blues, with jitter), shapes are rotated and scaled at random and drawn either solid or with a
contrasting border, so a small detector learns the task quickly without it being trivial. Objects never
overlap, so every polygon is exactly the visible object: the annotations are exact.

Layout under ``root``::

    train/000001.png ...           val/000001.png ...
    annotations/instances_train.json, annotations/instances_val.json   (COCO "instances" format)
    toy_coco_meta.json             (the generation parameters; written last, so its presence means "complete")

Image ``i`` of a split depends only on ``(seed, split, i)``, not on how many images are made.
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["CATEGORIES", "make_toy_coco"]

#: Category names, in id order (ids start at 1, as in COCO).
CATEGORIES: Tuple[str, ...] = ("circle", "square", "triangle")
#: Base RGB colour of each category; instances jitter around it.
_BASE_COLOURS: Tuple[Tuple[int, int, int], ...] = ((220, 50, 40), (40, 190, 60), (40, 80, 230))
#: Bumped whenever the drawing changes, so stale data on disk is regenerated rather than reused.
_GENERATOR_VERSION = 1
_META_NAME = "toy_coco_meta.json"
_SPLIT_IDS = {"train": 0, "val": 1}
_IMAGE_NAME = re.compile(r"^\d{6}\.png$")

Polygon = List[Tuple[float, float]]


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A muted colour gradient, plus a few soft blobs and pixel noise (uint8, H x W x 3)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    t = (xs * math.cos(angle) + ys * math.sin(angle))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    start, end = rng.uniform(60, 200, size=(2, 3)).astype(np.float32)
    image = start + t[..., None] * (end - start)
    for _ in range(int(rng.integers(2, 5))):  # soft blobs: texture the detector has to ignore
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        sigma = rng.uniform(0.1, 0.3) * max(width, height)
        blob = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma ** 2))
        image += blob[..., None] * rng.uniform(-40, 40, size=3).astype(np.float32)
    image += rng.normal(0, 12, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def _shape_polygon(category: int, cx: float, cy: float, radius: float, angle: float) -> Polygon:
    """Vertices of the shape of ``category`` (0-based) centred at (cx, cy), circumradius ``radius``."""
    sides = {0: 32, 1: 4, 2: 3}[category]  # a 32-gon is a circle at these sizes
    offset = angle + (math.pi / 4 if sides == 4 else -math.pi / 2 if sides == 3 else 0.0)
    return [(cx + radius * math.cos(offset + 2 * math.pi * k / sides),
             cy + radius * math.sin(offset + 2 * math.pi * k / sides)) for k in range(sides)]


def _polygon_area(polygon: Polygon) -> float:
    """Shoelace area of a simple polygon."""
    xs, ys = np.array(polygon).T
    return float(abs(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))) / 2)


def _make_image(
    rng: np.random.Generator, width: int, height: int
) -> Tuple[Image.Image, List[Tuple[int, Polygon]]]:
    """Draw one image; returns it with ``(category index, polygon)`` for every object."""
    image = Image.fromarray(_background(rng, width, height))
    draw = ImageDraw.Draw(image)
    side = min(width, height)
    wanted = int(rng.integers(1, 5))
    placed: List[Tuple[float, float, float, float]] = []  # boxes (x0, y0, x1, y1) already used
    objects: List[Tuple[int, Polygon]] = []
    for _ in range(60):  # rejection sampling of non-overlapping positions; few tries are ever needed
        if len(objects) == wanted:
            break
        category = int(rng.integers(len(CATEGORIES)))
        radius = float(rng.uniform(0.10, 0.22) * side)
        cx = float(rng.uniform(radius + 1, width - radius - 1))
        cy = float(rng.uniform(radius + 1, height - radius - 1))
        angle = float(rng.uniform(0, 2 * math.pi))
        polygon = _shape_polygon(category, cx, cy, radius, angle)
        xs, ys = zip(*polygon)
        box = (min(xs) - 2, min(ys) - 2, max(xs) + 2, max(ys) + 2)  # 2 px gap between objects
        if any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
            continue
        colour = np.clip(np.array(_BASE_COLOURS[category]) + rng.integers(-35, 36, size=3), 0, 255)
        fill = tuple(int(c) for c in colour)
        if rng.random() < 0.5:
            draw.polygon(polygon, fill=fill)
        else:  # bordered: a dark or light outline around the same filled region (the mask stays exact)
            border = (20, 20, 20) if rng.random() < 0.5 else (235, 235, 235)
            draw.polygon(polygon, fill=fill, outline=border, width=max(2, int(radius * 0.15)))
        placed.append(box)
        objects.append((category, polygon))
    return image, objects


def _write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file and rename: a reader never sees a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _make_split(root: Path, split: str, count: int, width: int, height: int, seed: int) -> Dict[str, Any]:
    """Write the images of one split and return its COCO dictionary."""
    import io

    image_dir = root / split
    image_dir.mkdir(parents=True, exist_ok=True)
    for stale in image_dir.iterdir():  # images of an earlier, larger generation (only files named by us)
        if _IMAGE_NAME.match(stale.name) and int(stale.name[:6]) > count:
            stale.unlink()
    images: List[Dict[str, Any]] = []
    annotations: List[Dict[str, Any]] = []
    for index in range(1, count + 1):
        rng = np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_IDS[split], index]))
        image, objects = _make_image(rng, width, height)
        name = f"{index:06d}.png"
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        _write_atomic(image_dir / name, buffer.getvalue())
        images.append({"id": index, "file_name": name, "width": width, "height": height})
        for category, polygon in objects:
            xs, ys = zip(*polygon)
            x0, y0 = min(xs), min(ys)
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": index,
                "category_id": category + 1,
                "bbox": [round(x0, 2), round(y0, 2), round(max(xs) - x0, 2), round(max(ys) - y0, 2)],
                "area": round(_polygon_area(polygon), 2),
                "iscrowd": 0,
                "segmentation": [[round(v, 2) for point in polygon for v in point]],
            })
    return {
        "info": {"description": f"resnest_backbones toy shapes ({split})", "version": str(_GENERATOR_VERSION)},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CATEGORIES)],
    }


def make_toy_coco(
    root: Union[str, os.PathLike] = "data/toy_coco",
    num_train: int = 128,
    num_val: int = 32,
    image_size: Union[int, Sequence[int]] = 128,
    seed: int = 0,
) -> Dict[str, Any]:
    """Make the toy COCO data set under ``root``, or reuse it when it was made with the same parameters.

    Args:
        root: output directory (created if needed).
        num_train: number of training images (>= 1).
        num_val: number of validation images (>= 1).
        image_size: side of the square images, or ``(width, height)``; at least 32 pixels.
        seed: random seed; the same parameters always give byte-identical files.

    Returns:
        ``{"root", "train_images", "train_json", "val_images", "val_json"}`` as :class:`pathlib.Path`, and
        ``"categories"``: the category names in id order (ids start at 1).

    Example:
        >>> paths = make_toy_coco("data/toy_coco", num_train=8, num_val=4, image_size=96)  # doctest: +SKIP
        >>> paths["categories"]  # doctest: +SKIP
        ['circle', 'square', 'triangle']
    """
    if isinstance(image_size, int):
        width = height = image_size
    else:
        if len(image_size) != 2:
            raise ValueError(f"image_size must be an int or (width, height), got {image_size!r}")
        width, height = (int(v) for v in image_size)
    if min(width, height) < 32:
        raise ValueError(f"image_size must be at least 32 pixels per side, got {width}x{height}")
    for label, value in (("num_train", num_train), ("num_val", num_val)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be a positive int, got {value!r}")
    root = Path(root)
    paths: Dict[str, Any] = {
        "root": root,
        "train_images": root / "train",
        "train_json": root / "annotations" / "instances_train.json",
        "val_images": root / "val",
        "val_json": root / "annotations" / "instances_val.json",
        "categories": list(CATEGORIES),
    }
    meta = {"generator_version": _GENERATOR_VERSION, "num_train": num_train, "num_val": num_val,
            "image_size": [width, height], "seed": seed}
    meta_path = root / _META_NAME
    if meta_path.is_file() and paths["train_json"].is_file() and paths["val_json"].is_file():
        try:
            if json.loads(meta_path.read_text()) == meta:
                return paths
        except json.JSONDecodeError:
            pass  # damaged metadata: make everything again
    root.mkdir(parents=True, exist_ok=True)
    if meta_path.exists():
        meta_path.unlink()  # the data set is incomplete until the new metadata is written
    (root / "annotations").mkdir(exist_ok=True)
    for split, count in (("train", num_train), ("val", num_val)):
        coco = _make_split(root, split, count, width, height, seed)
        _write_atomic(paths[f"{split}_json"], json.dumps(coco, separators=(",", ":")).encode())
    _write_atomic(meta_path, json.dumps(meta, indent=1).encode())
    return paths
