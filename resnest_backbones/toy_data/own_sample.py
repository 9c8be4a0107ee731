"""A small data set that looks like a user's own, not like the toy sets: what docs/own_data.md runs on.

Two classes with COCO ids 3 and 9 (``kettle``, ``teapot``: not contiguous, not the toy shapes' names, listed out of
id order as exports often list them), images of mixed sizes and formats (RGB JPEG, one grayscale JPEG, one RGBA
PNG, one JPEG stored sideways with an EXIF orientation, as cameras write them), one image per split without
objects, and both annotation kinds a user brings:

    <root>/train/*.jpg|png, <root>/val/...            the images
    <root>/annotations/train.json, val.json           COCO instances (boxes and polygons), categories 9 and 3
    <root>/labels/train/*.png, labels/val/*.png       label PNGs: 0 background, 1 kettle, 2 teapot, 255 ignored
                                                      (a thin band around each object)
    <root>/classes.txt                                the segmentation classes, one per line

Deterministic (numpy and Pillow only); made again only when its parameters change.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw

from ..types import PathLike
from .coco import _background, _shape_polygon

__all__ = ["OWN_CATEGORIES", "OWN_SEGMENTATION_CLASSES", "make_own_sample"]

#: COCO categories of the sample: ids 3 and 9, drawn as circles and triangles.
OWN_CATEGORIES: Tuple[Dict[str, Any], ...] = ({"id": 3, "name": "kettle"}, {"id": 9, "name": "teapot"})
#: Label-PNG classes: pixel value i is class i.
OWN_SEGMENTATION_CLASSES: Tuple[str, ...] = ("background", "kettle", "teapot")
_SHAPE = {3: 0, 9: 2}  # category id -> the toy generator's shape (circle, triangle)
_COLOUR = {3: (200, 120, 30), 9: (60, 160, 200)}
_VERSION = 2
#: EXIF orientation 6: the stored pixels are the upright picture turned a quarter anticlockwise; viewers (and the
#: frameworks' image readers) turn them back. Annotations and sizes are the upright picture's.
_SIDEWAYS = 6
_EXIF_ORIENTATION = 0x0112
_META = "own_sample_meta.json"


def _image(rng: np.random.Generator, index: int) -> Tuple[Image.Image, str, List[Tuple[int, List[float]]]]:
    """Image ``index`` of a split: (picture in its file's mode, file name, [(category id, polygon)])."""
    width, height = int(rng.integers(80, 161)), int(rng.integers(72, 151))
    picture = Image.fromarray(_background(rng, width, height))
    draw = ImageDraw.Draw(picture)
    objects: List[Tuple[int, List[float]]] = []
    count = 0 if index == 2 else int(rng.integers(1, 4))  # image 2 of each split shows nothing
    for k in range(count):
        category = OWN_CATEGORIES[int(rng.integers(0, 2))]["id"]
        radius = float(rng.uniform(10, 22))
        cx = (k + 0.5) * width / count  # side by side: objects never overlap
        cy = float(rng.uniform(radius + 2, height - radius - 2))
        polygon = _shape_polygon(_SHAPE[category], cx, cy, min(radius, width / count / 2 - 2), rng.uniform(0, math.pi))
        colour = tuple(int(c + rng.integers(-20, 21)) for c in _COLOUR[category])
        draw.polygon(polygon, fill=colour)
        objects.append((category, [v for point in polygon for v in point]))
    if index == 0:
        return picture.convert("L"), f"img_{index:03d}_gray.jpg", objects
    if index == 1:
        picture = picture.convert("RGBA")
        picture.putalpha(Image.fromarray(np.full((height, width), 230, np.uint8)))
        return picture, f"img_{index:03d}_rgba.png", objects
    if index == 3:
        return picture, f"img_{index:03d}_sideways.jpg", objects
    return picture, f"img_{index:03d}.jpg", objects


def _save(picture: Image.Image, path: Path) -> None:
    """Write a picture; ``*_sideways.jpg`` stored turned, with the EXIF orientation that turns it upright."""
    if path.name.endswith("_sideways.jpg"):
        exif = Image.Exif()
        exif[_EXIF_ORIENTATION] = _SIDEWAYS
        picture.transpose(Image.Transpose.ROTATE_90).save(path, quality=92, exif=exif)
    elif path.suffix == ".jpg":
        picture.save(path, quality=92)
    else:
        picture.save(path)


def _labels(size: Tuple[int, int], objects: List[Tuple[int, List[float]]]) -> Image.Image:
    label = Image.new("L", size, 0)
    draw = ImageDraw.Draw(label)
    for category, flat in objects:
        polygon = list(zip(flat[0::2], flat[1::2]))
        draw.polygon(polygon, fill=255, outline=255, width=3)  # the band around the object: ignored
        draw.polygon(polygon, fill=1 + [c["id"] for c in OWN_CATEGORIES].index(category))
    return label


def make_own_sample(root: PathLike, num_train: int = 24, num_val: int = 8, seed: int = 0) -> Dict[str, Path]:
    """Write the sample under ``root`` (see the module's docstring); returns its paths."""
    root = Path(root)
    params = {"num_train": num_train, "num_val": num_val, "seed": seed, "version": _VERSION}
    paths = {"root": root, "classes": root / "classes.txt"}
    for split in ("train", "val"):
        paths[f"{split}_images"] = root / split
        paths[f"{split}_json"] = root / "annotations" / f"{split}.json"
        paths[f"{split}_labels"] = root / "labels" / split
    meta = root / _META
    if meta.is_file() and json.loads(meta.read_text()) == params:
        return paths
    for split, count, split_id in (("train", num_train, 0), ("val", num_val, 1)):
        paths[f"{split}_images"].mkdir(parents=True, exist_ok=True)
        paths[f"{split}_labels"].mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for index in range(count):
            picture, name, objects = _image(np.random.default_rng([seed, split_id, index]), index)
            _save(picture, paths[f"{split}_images"] / name)
            _labels(picture.size, objects).save(paths[f"{split}_labels"] / (Path(name).stem + ".png"))
            image_id = 100 + index  # ids of a user's export: not 0-based, not the annotation ids
            images.append({"id": image_id, "file_name": name, "width": picture.size[0], "height": picture.size[1]})
            for category, flat in objects:
                xs, ys = flat[0::2], flat[1::2]
                box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
                area = 0.5 * abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs))))
                annotations.append({"id": 1 + len(annotations), "image_id": image_id, "category_id": category,
                                    "bbox": box, "area": area, "segmentation": [flat], "iscrowd": 0})
        paths[f"{split}_json"].parent.mkdir(parents=True, exist_ok=True)
        paths[f"{split}_json"].write_text(json.dumps({"images": images, "annotations": annotations,
                                                      "categories": list(reversed(OWN_CATEGORIES))}))
    paths["classes"].write_text("\n".join(OWN_SEGMENTATION_CLASSES) + "\n")
    meta.write_text(json.dumps(params))
    return paths
