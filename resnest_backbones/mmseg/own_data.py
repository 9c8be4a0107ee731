"""Your own segmentation data in ``tools/mmseg_train.py`` / ``tools/mmseg_test.py``, without code.

``--train-data IMAGE_DIR LABEL_DIR`` and ``--val-data IMAGE_DIR LABEL_DIR`` with ``--classes NAME ...`` (or a file
of names, one per line) replace the config's data sets by :class:`~resnest_backbones.mmseg.datasets.LabelFolderDataset`
(label PNGs: pixel value i is class i, 255 ignored; ``--reduce-zero-label`` when 0 means "unlabelled", as in
ADE20K's files), set every head's class count to the number of names and evaluate with per-class IoU named by
them (mmseg's ``IoUMetric`` table). Images without any labelled pixel train as mmseg trains them (every pixel
ignored).
"""
from __future__ import annotations

import argparse
import os
from typing import Any, Dict, List

from mmengine.config import Config

from ..openmmlab.own_data import get_num_classes, replace_datasets, set_num_classes
from ..own_data import LABEL_FOLDERS, given_data, segmentation_class_names
from ..own_data import add_data_arguments as add_options

__all__ = ["add_data_arguments", "use_own_data"]


def add_data_arguments(parser: argparse.ArgumentParser, training: bool) -> None:
    """``--val-data`` (and ``--train-data`` for the training tool), ``--classes``, ``--reduce-zero-label``."""
    add_options(parser, LABEL_FOLDERS, training)
    parser.add_argument("--classes", nargs="+", metavar="NAME",
                        help="with --*-data: the class names in pixel-value order, or a file of names, one per line")
    parser.add_argument("--reduce-zero-label", action="store_true",
                        help="with --*-data: label 0 means unlabelled (ignored) and value i is class i-1")


def _labels_as_given(node: Any, reduce_zero_label: bool) -> Any:
    """A copy of a pipeline whose ``LoadAnnotations`` steps follow the user's ``reduce_zero_label`` (ADE20K's
    configs set it True in the pipeline, which would win over the data set's)."""
    if isinstance(node, dict):
        node = {k: _labels_as_given(v, reduce_zero_label) for k, v in node.items()}
        if str(node.get("type", "")).endswith("LoadAnnotations"):
            node["reduce_zero_label"] = reduce_zero_label
        return node
    if isinstance(node, (list, tuple)):
        return type(node)(_labels_as_given(v, reduce_zero_label) for v in node)
    return node


def _folder_dataset(images: str, labels: str, classes: List[str], reduce_zero_label: bool) -> Any:
    def make(old: Dict[str, Any]) -> Dict[str, Any]:
        return dict(type="resnest_backbones.LabelFolderDataset", data_root="", seg_map_suffix=".png",
                    data_prefix=dict(img_path=os.path.abspath(images), seg_map_path=os.path.abspath(labels)),
                    metainfo=dict(classes=tuple(classes)), reduce_zero_label=reduce_zero_label,
                    pipeline=_labels_as_given(old["pipeline"], reduce_zero_label))

    return make


def use_own_data(cfg: Config, args: argparse.Namespace) -> List[str]:
    """Point ``cfg`` at ``args.train_data`` / ``args.val_data`` (see the module's docstring), in place; the lines
    to print."""
    given = given_data(args)
    if not given:
        if getattr(args, "classes", None) or getattr(args, "reduce_zero_label", False):
            raise SystemExit("--classes and --reduce-zero-label describe --train-data/--val-data: give those too")
        return []
    if not getattr(args, "classes", None):
        raise SystemExit("--train-data/--val-data need --classes: the class names in pixel-value order (value i is "
                         "class i), or a file of names, one per line")
    names = segmentation_class_names(args.classes)
    notes = []
    for split, (images, labels) in given.items():
        for folder in (images, labels):
            if not os.path.isdir(folder):
                raise SystemExit(f"--{split}-data: folder {folder} does not exist")
        loaders = ("val_dataloader", "test_dataloader") if split == "val" else ("train_dataloader",)
        replace_datasets(cfg, loaders, _folder_dataset(images, labels, names, args.reduce_zero_label))
        if split == "val" and cfg.get("tta_pipeline"):
            cfg.tta_pipeline = _labels_as_given(cfg.tta_pipeline, args.reduce_zero_label)
        notes.append(f"--{split}-data: {images} with labels {labels}: {len(names)} classes {names}"
                     + (" (label 0 ignored, value i = class i-1)" if args.reduce_zero_label else ""))
    if get_num_classes(cfg.model) != len(names):
        keys = set_num_classes(cfg.model, len(names))
        notes.append(f"the model's class count set to {len(names)} from --classes ({', '.join(keys)})")
    return notes
