"""Fine-tuning OpenMMLab models on other classes, shared by the mmseg and mmdet tools: the class count of a model
config, its class layers (for the fit-or-reset decision of :mod:`resnest_backbones.models.checkpoint.fit`), and
the data sets of a config that the tools' ``--train-data`` / ``--val-data`` replace.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

import torch
from mmengine.registry import MODELS, DefaultScope

from ..models.checkpoint.fit import ClassLayers

__all__ = ["base_datasets", "class_layers", "get_num_classes", "replace_datasets", "set_num_classes"]

#: Heads whose ``num_classes`` is not the data's (mmdet's RPN head proposes one "object" class).
_NOT_CLASS_HEADS = ("rpn_head",)


def _class_nodes(node: Any, path: str = "model") -> Iterator[Tuple[Dict[str, Any], str]]:
    """``(dict, path)`` of every entry of a model config that has ``num_classes``: every head's (each cascade stage,
    mask heads, the auxiliary head), not the RPN's."""
    if isinstance(node, Mapping):
        if "num_classes" in node:
            yield node, f"{path}.num_classes"
        for key, value in node.items():
            if key not in _NOT_CLASS_HEADS:
                yield from _class_nodes(value, f"{path}.{key}")
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _class_nodes(value, f"{path}[{i}]")


def get_num_classes(model_cfg: Mapping[str, Any]) -> int:
    """The class count of a model config (its first head's)."""
    for node, _ in _class_nodes(model_cfg):
        return int(node["num_classes"])
    raise ValueError("the model config has no num_classes entry (no decode/bbox head?)")


def set_num_classes(model_cfg: Mapping[str, Any], num_classes: int) -> List[str]:
    """Set every head's class count in a model config, in place; returns the keys set."""
    paths = []
    for node, path in _class_nodes(model_cfg):
        node["num_classes"] = num_classes
        paths.append(path)
    return paths


def class_layers(model_cfg: Mapping[str, Any], scope: Optional[str]) -> ClassLayers:
    """The class layers of the model a config builds (in registry scope ``scope``), learnt from it built on the meta
    device at its class count and at one more (nothing allocated, no weights loaded: mmengine initialises weights
    only in ``init_weights``)."""
    def shapes_at(num_classes: int) -> Dict[str, torch.Size]:
        other = copy.deepcopy(model_cfg)
        set_num_classes(other, num_classes)
        with DefaultScope.overwrite_default_scope(scope), torch.device("meta"):
            model = MODELS.build(other)
        return {k: v.shape for k, v in model.state_dict().items()}

    return ClassLayers.from_builder(shapes_at, get_num_classes(model_cfg))


def base_datasets(cfg: Mapping[str, Any], loader: str) -> List[Dict[str, Any]]:
    """The data sets ``cfg[loader]`` reads, through dataset wrappers (``RepeatDataset``'s ``dataset``,
    ``ConcatDataset``'s ``datasets``)."""
    found: List[Dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, Mapping) and "dataset" in node:
            walk(node["dataset"])
        elif isinstance(node, Mapping) and "datasets" in node:
            for child in node["datasets"]:
                walk(child)
        elif isinstance(node, Mapping):
            found.append(node)  # type: ignore[arg-type]

    if cfg.get(loader):
        walk(cfg[loader]["dataset"])
    return found


def replace_datasets(cfg: Any, loaders: Tuple[str, ...], make: Callable[[Dict[str, Any]], Dict[str, Any]]) -> None:
    """Replace the data set of each of ``loaders`` (wrappers dropped) by ``make(old)``, which keeps what it needs
    of the old one (its pipeline)."""
    for loader in loaders:
        if cfg.get(loader):
            old = base_datasets(cfg, loader)[0]
            cfg[loader]["dataset"] = make(old)
