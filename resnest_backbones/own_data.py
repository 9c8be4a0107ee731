"""What the tools read of a user's own data, framework-free: their ``--train-data`` / ``--val-data`` options, the
class names of a COCO instances file and of a segmentation class list (docs/own_data.md)."""
from __future__ import annotations

import argparse
import json
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .types import PathLike

__all__ = ["COCO_FILES", "LABEL_FOLDERS", "DataError", "add_data_arguments", "category_names", "coco_files",
           "data_error_message", "given_data", "read_coco", "segmentation_class_names"]

#: What the detection tools take: ``(metavar, help)``.
COCO_FILES = (("INSTANCES_JSON", "IMAGE_DIR"), "your own COCO-format data (instances file, image folder) instead of "
              "the config's data set; the class count is set from its categories (docs/own_data.md)")
#: What the segmentation tools take: ``(metavar, help)``.
LABEL_FOLDERS = (("IMAGE_DIR", "LABEL_DIR"), "your own images and label PNGs (same names, pixel value i = class i, "
                 "255 ignored) instead of the config's data set (docs/own_data.md)")
_COCO_LISTS = ("images", "annotations", "categories")
_IMAGE_KEYS = ("id", "file_name", "width", "height")
_ANNOTATION_KEYS = ("id", "image_id", "category_id", "bbox", "area")


class DataError(ValueError):
    """A user's data does not fit what the tools read (found while loading it); the message names the file and says
    what to give."""


def data_error_message(error: BaseException) -> str:
    """A :class:`DataError`'s message, also when a data-loader worker re-raised it with its traceback in front."""
    text, marker = str(error), f"{DataError.__name__}: "
    return text.rsplit(marker, 1)[-1].strip() if marker in text else text


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


def _coco_problem(data: Any, image_dir: Optional[PathLike]) -> Optional[str]:
    """What is wrong with a parsed COCO instances file for training and COCO evaluation (the first problem found),
    or ``None``."""
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in _COCO_LISTS):
        return f"a COCO instances file is a JSON object with the lists {', '.join(map(repr, _COCO_LISTS))}"
    if not data["categories"]:
        return ("no 'categories': a COCO instances file lists its classes as "
                "\"categories\": [{\"id\": 1, \"name\": \"cat\"}, ...]")
    return (_entries_problem(data["categories"], "categories", ("id", "name"), unique=("id", "name"))
            or _entries_problem(data["images"], "images", _IMAGE_KEYS)
            or _entries_problem(data["annotations"], "annotations", _ANNOTATION_KEYS)
            or _annotation_problem(data)
            or (_missing_images(data["images"], image_dir) if image_dir is not None else None))


def _entries_problem(entries: List[Any], kind: str, keys: Tuple[str, ...],
                     unique: Tuple[str, ...] = ("id",)) -> Optional[str]:
    """An entry without one of ``keys``, or two sharing a value of one of ``unique``."""
    for index, entry in enumerate(entries):
        missing = [k for k in keys if not isinstance(entry, dict) or k not in entry]
        if missing:
            why = " (area: the object's area in pixels, which COCO evaluation reads; the box's width * height " \
                  "will do)" if "area" in missing else ""
            return f"{kind}[{index}] has no {', '.join(map(repr, missing))}: each entry needs {', '.join(keys)}{why}"
    for key in unique:
        repeated = _repeated(entry[key] for entry in entries)
        if repeated is not None:
            return f"two {kind} have the {key} {repeated!r}: give each its own"
    return None


def _annotation_problem(data: Dict[str, Any]) -> Optional[str]:
    """An annotation naming a category or image the file does not list, or a box that is not ``[x, y, w, h]``."""
    category_ids, image_ids = {c["id"] for c in data["categories"]}, {i["id"] for i in data["images"]}
    for index, ann in enumerate(data["annotations"]):
        where = f"annotations[{index}] (id {ann['id']!r})"
        if ann["category_id"] not in category_ids:
            return (f"{where} has category_id {ann['category_id']!r}, which 'categories' does not list (ids "
                    f"{', '.join(str(c['id']) for c in data['categories'])}): add the category or fix the annotation")
        if ann["image_id"] not in image_ids:
            return f"{where} has image_id {ann['image_id']!r}, which 'images' does not list"
        box = ann["bbox"]
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)
                and box[2] >= 0 and box[3] >= 0):
            return f"{where} has bbox {box!r}: give [x, y, width, height] in pixels, width and height >= 0"
    return None


def _missing_images(images: List[Dict[str, Any]], image_dir: PathLike) -> Optional[str]:
    absent = [i["file_name"] for i in images if not os.path.isfile(os.path.join(image_dir, i["file_name"]))]
    if not absent:
        return None
    return (f"{len(absent)} of its {len(images)} images are not in {image_dir}, e.g. "
            f"{', '.join(map(repr, absent[:3]))} (file_name is relative to the image folder given with the file)")


def _repeated(values: Iterable[Any]) -> Any:
    """The first value seen twice, or ``None``."""
    seen: set = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    return None


def read_coco(json_file: PathLike, image_dir: Optional[PathLike] = None) -> Dict[str, Any]:
    """A COCO instances file, checked for what the frameworks' training and COCO evaluation read: categories with
    unique ids and names; images with id, file_name, width and height (and, with ``image_dir``, their files);
    annotations with id, image_id, category_id, bbox and area that name listed images and categories.

    Raises:
        SystemExit: the image folder or the file is missing, the file is not JSON, or it fails a check; the message
            names the entry and says what to give.
    """
    if image_dir is not None and os.path.isdir(json_file) and os.path.isfile(image_dir):
        raise SystemExit(f"{json_file} is a folder and {image_dir} a file: give the instances file first, then the "
                         f"image folder")
    if image_dir is not None and not os.path.isdir(image_dir):
        raise SystemExit(f"image folder {image_dir} does not exist (give the folder the file_name entries of "
                         f"{json_file} are relative to)")
    try:
        with open(json_file, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as error:
        raise SystemExit(f"cannot read {json_file} as a COCO instances file: {error}") from None
    problem = _coco_problem(data, image_dir)
    if problem is not None:
        raise SystemExit(f"{json_file}: {problem}")
    return data


def category_names(data: Dict[str, Any], order: str = "id") -> List[str]:
    """The category names of a :func:`read_coco` file: in id order (``"id"``: detectron2's and torchvision's class
    indices; ids need not be contiguous) or in the order the file lists them (``"file"``: MMDetection's)."""
    categories = data["categories"]
    return [c["name"] for c in (sorted(categories, key=lambda c: c["id"]) if order == "id" else categories)]


def coco_files(json_file: PathLike, image_dir: PathLike, order: str = "id") -> List[str]:
    """The class names (:func:`category_names` in ``order``) of a COCO instances file given with its image folder,
    both checked (:func:`read_coco`).

    Raises:
        SystemExit: as :func:`read_coco`.
    """
    return category_names(read_coco(json_file, image_dir), order)


def segmentation_class_names(given: Sequence[str]) -> List[str]:
    """Class names for label PNGs (pixel value i is class i): the names given, or one file of them (one per line).

    Raises:
        SystemExit: fewer than two names (a segmentation needs at least two classes) or an unreadable file.
    """
    names = list(given)
    if len(names) == 1 and not os.path.isfile(names[0]) and (os.sep in names[0] or names[0].endswith(".txt")):
        raise SystemExit(f"--classes {names[0]}: no such file (give a text file with one class name per line, or "
                         f"the names themselves)")
    if len(names) == 1 and os.path.isfile(names[0]):
        with open(names[0], encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
    if len(names) < 2:
        raise SystemExit(f"--classes {' '.join(given)}: give the class names in pixel-value order (value i is "
                         f"class i), at least two, or a text file with one name per line")
    return names
