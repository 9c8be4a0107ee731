"""What the tools read of a user's own data, framework-free: their ``--train-data`` / ``--val-data`` options, the
class names of a COCO instances file and of a segmentation class list (docs/own_data.md)."""
from __future__ import annotations

import argparse
import json
import os
from typing import Dict, List, Sequence, Tuple

from .types import PathLike

__all__ = ["COCO_FILES", "LABEL_FOLDERS", "add_data_arguments", "coco_category_names", "coco_files", "given_data",
           "segmentation_class_names"]

#: What the detection tools take: ``(metavar, help)``.
COCO_FILES = (("INSTANCES_JSON", "IMAGE_DIR"), "your own COCO-format data (instances file, image folder) instead of "
              "the config's data set; the class count is set from its categories (docs/own_data.md)")
#: What the segmentation tools take: ``(metavar, help)``.
LABEL_FOLDERS = (("IMAGE_DIR", "LABEL_DIR"), "your own images and label PNGs (same names, pixel value i = class i, "
                 "255 ignored) instead of the config's data set (docs/own_data.md)")


def add_data_arguments(parser: argparse.ArgumentParser, kind: Tuple[Tuple[str, str], str],
                       training: bool = True) -> None:
    """``--train-data`` (training tools only) and ``--val-data``, each a pair of paths described by ``kind``
    (:data:`COCO_FILES` or :data:`LABEL_FOLDERS`)."""
    metavar, what = kind
    for split, purpose in ((("train", "train on"),) if training else ()) + (("val", "evaluate on"),):
        parser.add_argument(f"--{split}-data", nargs=2, metavar=metavar, help=f"{purpose} {what}")


def given_data(args: argparse.Namespace) -> Dict[str, List[str]]:
    """``{"train": [a, b], "val": [a, b]}``: the data options given on the command line."""
    return {split: getattr(args, f"{split}_data") for split in ("train", "val") if getattr(args, f"{split}_data", None)}


def coco_category_names(json_file: PathLike) -> List[str]:
    """The category names of a COCO instances file in id order (the contiguous class indices the frameworks give
    them; ids need not be contiguous).

    Raises:
        SystemExit: the file is missing, not COCO JSON, or has no categories; the message says what to give.
    """
    try:
        with open(json_file, encoding="utf-8") as f:
            categories = json.load(f).get("categories")
    except (OSError, ValueError, AttributeError) as error:
        raise SystemExit(f"cannot read {json_file} as a COCO instances file: {error}") from None
    if not categories or not all(isinstance(c, dict) and "id" in c and "name" in c for c in categories):
        raise SystemExit(f"{json_file} has no 'categories' with ids and names: a COCO instances file lists its "
                         f"classes as \"categories\": [{{\"id\": 1, \"name\": \"cat\"}}, ...]")
    return [c["name"] for c in sorted(categories, key=lambda c: c["id"])]


def coco_files(json_file: PathLike, image_dir: PathLike) -> List[str]:
    """The class names of a COCO instances file given with its image folder (see :func:`coco_category_names`).

    Raises:
        SystemExit: as :func:`coco_category_names`, or the image folder does not exist.
    """
    if not os.path.isdir(image_dir):
        raise SystemExit(f"image folder {image_dir} does not exist (give the folder the file_name entries of "
                         f"{json_file} are relative to)")
    return coco_category_names(json_file)


def segmentation_class_names(given: Sequence[str]) -> List[str]:
    """Class names for label PNGs (pixel value i is class i): the names given, or one file of them (one per line).

    Raises:
        SystemExit: fewer than two names (a segmentation needs at least two classes) or an unreadable file.
    """
    names = list(given)
    if len(names) == 1 and os.path.isfile(names[0]):
        with open(names[0], encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
    if len(names) < 2:
        raise SystemExit(f"--classes {' '.join(given)}: give the class names in pixel-value order (value i is "
                         f"class i), at least two, or a text file with one name per line")
    return names
