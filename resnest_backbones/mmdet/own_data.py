"""Your own COCO-format data in ``tools/mmdet_train.py`` / ``tools/mmdet_test.py``, without code.

``--train-data INSTANCES.json IMAGE_DIR`` and ``--val-data INSTANCES.json IMAGE_DIR`` replace the config's data
sets by mmdet's ``CocoDataset`` over those files (checked when read: :func:`resnest_backbones.own_data.read_coco`),
with the classes named by the files' categories in the order the files list them (``CocoDataset`` numbers the
classes in that order, whatever their ids), set every head's class count to theirs and evaluate with per-class AP
(``CocoMetric(classwise=True)``) named by them. Masks are read when the config's pipeline loads them (polygons or
RLE). Images without annotations are left out of training, as mmdet's ``filter_cfg`` does by default.
"""
from __future__ import annotations

import argparse
import os
from typing import Any, Dict, List

from mmengine.config import Config

from ..openmmlab.own_data import get_num_classes, replace_datasets, set_num_classes
from ..own_data import COCO_FILES, coco_files, given_data
from ..own_data import add_data_arguments as add_options

__all__ = ["add_data_arguments", "use_own_data"]


def add_data_arguments(parser: argparse.ArgumentParser, training: bool) -> None:
    """``--val-data`` (and ``--train-data`` for the training tool): COCO files."""
    add_options(parser, COCO_FILES, training)


def _coco_dataset(json_file: str, images: str, classes: List[str], test: bool) -> Any:
    def make(old: Dict[str, Any]) -> Dict[str, Any]:
        dataset = dict(type="mmdet.CocoDataset", data_root="", ann_file=os.path.abspath(json_file),
                       data_prefix=dict(img=os.path.join(os.path.abspath(images), "")),
                       metainfo=dict(classes=tuple(classes)), pipeline=old["pipeline"])
        if test:
            dataset["test_mode"] = True
        else:
            dataset["filter_cfg"] = dict(filter_empty_gt=True, min_size=1)
        return dataset

    return make


def use_own_data(cfg: Config, args: argparse.Namespace) -> List[str]:
    """Point ``cfg`` at ``args.train_data`` / ``args.val_data`` (see the module's docstring), in place; the lines
    to print."""
    given = given_data(args)
    if not given:
        return []
    classes = {split: coco_files(json_file, images, order="file") for split, (json_file, images) in given.items()}
    if len({tuple(c) for c in classes.values()}) > 1:
        raise SystemExit(f"--train-data and --val-data name other classes ({classes['train']} vs "
                         f"{classes['val']}): give both files the same categories, listed in the same order "
                         f"(MMDetection numbers the classes in the order a file lists them)")
    names = next(iter(classes.values()))
    notes = [f"--{split}-data: {json_file} ({images}): {len(names)} classes {names}"
             for split, (json_file, images) in given.items()]
    for split, (json_file, images) in given.items():
        test = split == "val"
        replace_datasets(cfg, ("val_dataloader", "test_dataloader") if test else ("train_dataloader",),
                         _coco_dataset(json_file, images, names, test))
        if test:
            for evaluator in ("val_evaluator", "test_evaluator"):
                if cfg.get(evaluator):
                    cfg[evaluator] = dict(cfg[evaluator], ann_file=os.path.abspath(json_file), classwise=True)
    if get_num_classes(cfg.model) != len(names):
        keys = set_num_classes(cfg.model, len(names))
        notes.append(f"the model's class count set to {len(names)} from the data ({', '.join(keys)})")
    return notes
