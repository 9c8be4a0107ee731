"""The demo's pictures (``tools/demo.py``): a trained toy model's predictions on the first toy val images, tiled
under a caption into ``work_dirs/demo_pictures/`` of the checkout. The frameworks' ``toy_target`` modules draw with
these, passing their predictor in; this module imports no framework.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, List

import numpy as np

__all__ = ["BOXES", "PICTURES", "SHOWN", "detections", "last_checkpoint", "save"]

PICTURES = Path("work_dirs") / "demo_pictures"  # under the checkout root
SHOWN = 4  # val images per picture
BOXES = "predicted boxes, class and score"


def save(rows: List[List[np.ndarray]], root: Path, name: str, caption: str) -> Path:
    """Tile drawn images (rows of equal-height images, 4 px gaps) under a caption into ``root/PICTURES/name``."""
    from PIL import Image, ImageDraw

    if not rows or not all(rows):
        raise FileNotFoundError("no toy val images to draw on (data/ was not made?)")
    gap = 4
    lines = [np.concatenate([np.pad(im, ((0, 0), (0, gap), (0, 0)), constant_values=255) for im in row], axis=1)
             for row in rows]
    width = max(line.shape[1] for line in lines)
    lines = [np.pad(line, ((0, gap), (0, width - line.shape[1]), (0, 0)), constant_values=255) for line in lines]
    body = Image.fromarray(np.concatenate(lines, axis=0))
    picture = Image.new("RGB", (body.width, body.height + 16), "white")
    picture.paste(body, (0, 16))
    ImageDraw.Draw(picture).text((2, 2), caption, fill="black")
    folder = root / PICTURES
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    picture.save(path)
    return path


def detections(predictor: Callable[[np.ndarray], np.ndarray], root: Path, data: str, name: str,
               caption: str) -> Path:
    """The first images of the toy COCO set ``root/data/<data>`` with ``predictor``'s detections drawn, in a row."""
    from .predict import read_image

    images = sorted((root / "data" / data / "val").glob("*.png"))[:SHOWN]
    return save([[predictor(read_image(path)) for path in images]], root, name, caption)


def last_checkpoint(root: Path, work: str) -> Path:
    """The checkpoint an OpenMMLab tool's run in ``root/work`` saved last (its path is relative to the run's
    directory, ``root``)."""
    return root / (root / work / "last_checkpoint").read_text().strip()
