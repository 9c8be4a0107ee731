"""detectron2 config node of the ResNeSt backbones (Zhang et al., 2020, "ResNeSt: Split-Attention Networks").

:func:`add_resnest_config` adds ``MODEL.RESNEST`` and touches no existing key, so every detectron2 default
stays what it was. :func:`replace_norm` rewrites norm names in a yacs or LazyConfig config (used to turn
"SyncBN" into "BN" for single-process runs).
"""
from __future__ import annotations

from collections.abc import Mapping, MutableSequence
from typing import Any, List, MutableMapping

from detectron2.config import CfgNode

__all__ = ["add_resnest_config", "replace_norm"]


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
