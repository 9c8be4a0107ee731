"""Your own data in detectron2 without writing code, and fine-tuning on it.

* :func:`use_own_data`: ``tools/train_net.py --train-data INSTANCES.json IMAGES/ --val-data ...`` registers COCO
  instance files (boxes; polygon/RLE masks for mask configs) as ``own_train`` / ``own_val``, points the config at
  them and sets its class count from the data (category ids need not be contiguous: detectron2 maps them).
* :func:`class_layers`: which tensors of the config's model follow its class count (the model built at N and N+1
  classes on the meta device), for the checkpointer's fine-tuning decision.
* :func:`training_classes`: the class names a training run writes into its checkpoints.
"""
from __future__ import annotations

import copy
from typing import Any, List, Optional, Sequence

import torch
from detectron2.config import CfgNode, instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.modeling import build_model
from omegaconf import OmegaConf

from ..models.checkpoint.fit import ClassLayers
from ..own_data import coco_files
from .config import get_num_classes, imagenet_weights, set_num_classes

__all__ = ["OWN_TRAIN", "OWN_VAL", "class_layers", "register_coco_files", "training_classes",
           "use_own_data"]

OWN_TRAIN, OWN_VAL = "own_train", "own_val"


def register_coco_files(name: str, json_file: str, image_root: str) -> List[str]:
    """Register a COCO instances file and its image folder as ``name`` (replacing an earlier registration), with
    the class names and what COCOEvaluator needs; returns the class names."""
    classes = coco_files(json_file, image_root)
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: load_coco_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="coco",
                                  thing_classes=classes)
    return classes


def use_own_data(cfg: Any, train: Optional[Sequence[str]], val: Optional[Sequence[str]]) -> List[str]:
    """Point ``cfg`` (either config kind) at COCO files given as ``(instances.json, image folder)`` pairs for
    training and/or evaluation, and give its model their class count, in place. Returns the lines to log."""
    notes, names = [], {}
    for split, name, given in (("train", OWN_TRAIN, train), ("val", OWN_VAL, val)):
        if given:
            names[split] = (name, register_coco_files(name, *given))
            notes.append(f"--{split}-data: {given[0]} ({given[1]}) registered as {name}: "
                         f"{len(names[split][1])} classes {names[split][1]}")
    if not names:
        return notes
    classes = [c for _, c in names.values()]
    if len(classes) == 2 and classes[0] != classes[1]:
        raise SystemExit(f"--train-data and --val-data name other classes ({classes[0]} vs {classes[1]}): "
                         f"give both files the same categories")
    if isinstance(cfg, CfgNode):
        if "train" in names:
            cfg.DATASETS.TRAIN = (names["train"][0],)
        if "val" in names:
            cfg.DATASETS.TEST = (names["val"][0],)
    else:
        if "train" in names:
            cfg.dataloader.train.dataset.names = names["train"][0]
        if "val" in names:
            cfg.dataloader.test.dataset.names = names["val"][0]
            cfg.dataloader.evaluator.dataset_name = names["val"][0]
    if get_num_classes(cfg) != len(classes[0]):
        keys = set_num_classes(cfg, len(classes[0]))
        notes.append(f"the model's class count set to {len(classes[0])} from the data ({', '.join(keys)})")
    return notes


def class_layers(cfg: Any) -> ClassLayers:
    """The class layers of ``cfg``'s model (:class:`~resnest_backbones.models.checkpoint.fit.ClassLayers`), learnt
    from the model built on the meta device at its class count and one more (no weights fetched or allocated)."""
    def shapes_at(num_classes: int) -> Any:
        other = cfg.clone() if isinstance(cfg, CfgNode) else copy.deepcopy(cfg)
        if isinstance(other, CfgNode):
            other.defrost()
            other.MODEL.DEVICE = "meta"
        set_num_classes(other, num_classes)
        node, key = imagenet_weights(other)
        if node is not None:
            node[key] = ""
        with torch.device("meta"):
            model = build_model(other) if isinstance(other, CfgNode) else instantiate(other.model)
        return {k: v.shape for k, v in model.state_dict().items()}

    return ClassLayers.from_builder(shapes_at, get_num_classes(cfg))


def training_classes(cfg: Any) -> Optional[List[str]]:
    """The class names of the config's (first) training set, as its catalog metadata has them, or None."""
    if isinstance(cfg, CfgNode):
        names = list(cfg.DATASETS.TRAIN)
    else:
        names = OmegaConf.select(cfg, "dataloader.train.dataset.names", default=None) or []
        names = [names] if isinstance(names, str) else list(names)
    if not names:
        return None
    classes = MetadataCatalog.get(names[0]).get("thing_classes", None)
    return list(classes) if classes else None
