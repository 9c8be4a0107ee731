"""detectron2 configs of the ResNeSt backbones (Zhang et al., 2020, "ResNeSt: Split-Attention Networks").

:func:`add_resnest_config` adds ``MODEL.RESNEST`` and touches no existing key, so every detectron2 default
stays what it was. :func:`load_config` reads either kind of config (yacs ``.yaml`` with ``MODEL.RESNEST``, or a
LazyConfig ``.py``) with its overrides, and :func:`imagenet_weights` finds where either names the backbone's
ImageNet weights: the one place the tools tell the two kinds apart for these. :func:`replace_norm` rewrites norm
names in either (used to turn "SyncBN" into "BN" for single-process runs).
"""
from __future__ import annotations

import os
from collections.abc import Mapping, MutableSequence
from typing import Any, List, MutableMapping, Optional, Sequence, Tuple, Union

from detectron2.config import CfgNode, LazyConfig, get_cfg
from omegaconf import OmegaConf

from ..config_files import resolve_config

__all__ = ["add_resnest_config", "get_num_classes", "imagenet_weights", "is_lazy_config", "load_config", "replace_norm",
           "set_num_classes"]

#: The yacs keys of the class count (the RoI heads' and RetinaNet's; the proposal generator has none).
_YACS_CLASS_KEYS = (("ROI_HEADS", "NUM_CLASSES"), ("RETINANET", "NUM_CLASSES"))


def add_resnest_config(cfg: CfgNode) -> CfgNode:
    """Add the ``MODEL.RESNEST`` node (with its defaults) to ``cfg``; call it before ``merge_from_file``.

    Freezing is read from detectron2's own ``MODEL.BACKBONE.FREEZE_AT`` (same meaning as for its ResNet).

    Returns:
        ``cfg`` itself.
    """
    node = CfgNode()
    # Variant name from resnest_backbones.list_variants() (timm names; official aliases such as
    # "resnest50" are accepted).
    node.NAME = "resnest50d"
    # ImageNet weights of the backbone, loaded strictly when the model is built, so that any trainer built on
    # detectron2's build_model (tools/train_net.py, a DefaultTrainer of your own) starts from them: a path or an
    # http(s)/file URL (downloaded once into torch hub's checkpoint directory; a sha256 prefix in the file name
    # is checked). "" = random initialisation. MODEL.WEIGHTS stays for whole-model files (fine-tuning, zoo models).
    node.WEIGHTS = ""
    # Backbone outputs, among "stem", "res2".."res5"; stages after the last one listed are not built.
    node.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    # Normalisation, as detectron2's get_norm names it: "BN", "SyncBN", "FrozenBN", "GN", "naiveSyncBN".
    # Whatever it is, the parts frozen by MODEL.BACKBONE.FREEZE_AT become FrozenBN (as in detectron2's ResNet).
    node.NORM = "FrozenBN"
    # Output stride of res5: 32 (detection), 16 or 8 (dilated res4/res5, for dense prediction; FPN needs 32).
    node.OUTPUT_STRIDE = 32
    # Per stage (res2, res3, res4, res5): use a deformable conv inside split attention.
    node.DEFORM_ON_PER_STAGE = [False, False, False, False]
    # Modulated deformable conv (DCNv2) rather than DCNv1.
    node.DEFORM_MODULATED = False
    # Number of deformable (offset) groups.
    node.DEFORM_NUM_GROUPS = 1
    # DropBlock probability (0 disables it) in the stages selected by DROPBLOCK_ON_PER_STAGE.
    node.DROPBLOCK_PROB = 0.0
    # Per stage (res2, res3, res4, res5): apply DropBlock; the paper regularises res4 and res5.
    node.DROPBLOCK_ON_PER_STAGE = [False, False, True, True]
    # Train with the memory-saving modules (same function and parameters, less activation memory); False: the
    # reference modules (to rule the fast path out when chasing a problem).
    node.MEMORY_EFFICIENT = True
    cfg.MODEL.RESNEST = node
    return cfg


def is_lazy_config(path: Union[str, os.PathLike]) -> bool:
    """Whether ``path`` is a LazyConfig (``.py``) rather than a yacs config (``.yaml``)."""
    return str(path).endswith(".py")


def load_config(path: Union[str, os.PathLike], opts: Sequence[str] = ()) -> Any:
    """The config at ``path`` (a file, or a packaged config's name: :func:`~resnest_backbones.config_file`) with
    ``opts`` applied: a yacs ``CfgNode`` with ``MODEL.RESNEST`` (``opts`` as ``KEY VALUE`` pairs) or, for a ``.py``
    file, a LazyConfig (``opts`` as ``key=value``)."""
    path = resolve_config(path)
    if is_lazy_config(path):
        return LazyConfig.apply_overrides(LazyConfig.load(str(path)), list(opts))
    cfg = add_resnest_config(get_cfg())
    cfg.merge_from_file(str(path))
    cfg.merge_from_list(list(opts))
    return cfg


def imagenet_weights(cfg: Any) -> Tuple[Optional[Any], str]:
    """``(node, key)`` such that ``node[key]`` names the backbone's ImageNet weights (``MODEL.RESNEST.WEIGHTS``, or
    a LazyConfig's ``model.backbone.bottom_up.weights``); ``node`` is None for a LazyConfig without that entry."""
    if isinstance(cfg, CfgNode):
        return cfg.MODEL.RESNEST, "WEIGHTS"
    bottom_up = OmegaConf.select(cfg, "model.backbone.bottom_up")
    return (bottom_up if bottom_up is not None and "weights" in bottom_up else None), "weights"


def replace_norm(cfg: MutableMapping[str, Any], old: str = "SyncBN", new: str = "BN") -> List[str]:
    """Replace the norm name ``old`` by ``new`` everywhere in a yacs ``CfgNode`` or a LazyConfig.

    A value is a norm name when its key contains "norm" (``MODEL.FPN.NORM``, ``conv_norm``, ``norm``...).

    Returns:
        The dotted keys that were changed (for the log).
    """
    changed: List[str] = []

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping):
            items = list(node.items())
        elif isinstance(node, MutableSequence):
            items = list(enumerate(node))
        else:
            return
        for key, value in items:
            path = f"{prefix}{key}"
            if isinstance(value, str) and value == old and "norm" in str(key).lower():
                node[key] = new
                changed.append(path)
            else:
                walk(value, path + ".")

    walk(cfg, "")
    return changed


def _lazy_class_nodes(node: Any, path: str = "model") -> List[Tuple[Any, str]]:
    """``(node, path)`` of every ``num_classes`` entry of a LazyConfig model outside its proposal generator."""
    found = []
    if isinstance(node, Mapping) or OmegaConf.is_dict(node):
        if "num_classes" in node:
            found.append((node, f"{path}.num_classes"))
        children = [(k, v) for k, v in node.items() if k != "proposal_generator"]
    elif isinstance(node, MutableSequence) or OmegaConf.is_list(node):
        children = list(enumerate(node))
    else:
        return found
    for key, value in children:
        found += _lazy_class_nodes(value, f"{path}.{key}")
    return found


def get_num_classes(cfg: Any) -> int:
    """The class count of either config kind's model (RetinaNet's for a RetinaNet, else the RoI heads')."""
    if isinstance(cfg, CfgNode):
        return cfg.MODEL.RETINANET.NUM_CLASSES if cfg.MODEL.META_ARCHITECTURE == "RetinaNet" else \
            cfg.MODEL.ROI_HEADS.NUM_CLASSES
    nodes = _lazy_class_nodes(cfg.model)
    if not nodes:
        raise ValueError("this LazyConfig's model has no num_classes entry")
    return int(nodes[0][0]["num_classes"])


def set_num_classes(cfg: Any, num_classes: int) -> List[str]:
    """Set the class count of either config kind's model, in place (every head's: the cascade's stages, the mask
    head); returns the keys set."""
    if isinstance(cfg, CfgNode):
        for node, key in _YACS_CLASS_KEYS:
            cfg.MODEL[node][key] = num_classes
        return [f"MODEL.{node}.{key}" for node, key in _YACS_CLASS_KEYS]
    nodes = _lazy_class_nodes(cfg.model)
    for node, _ in nodes:
        node["num_classes"] = num_classes
    return [path for _, path in nodes]
