"""ResNeSt (Zhang et al., 2020, "ResNeSt: Split-Attention Networks") as a detectron2 backbone.

:class:`ResNeStBackbone` *is* the core :class:`~resnest_backbones.ResNeSt` (subclass, same parameter names,
so the official ImageNet checkpoints load as they are) and a detectron2 ``Backbone``: ``forward`` returns the
``{"res2": ..., ...}`` dict and ``output_shape()`` is derived from the core's ``feature_info``. The builders
below are registered in detectron2's ``BACKBONE_REGISTRY`` when this package is imported.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Optional, Union

from detectron2.config import CfgNode
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool, LastLevelP6P7
from torch import nn

from ..factory import create_model, set_memory_efficient
from ..models import ResNeSt, load_checkpoint
from ..models.hub import local_weights

__all__ = [
    "ResNeStBackbone", "build_resnest", "build_resnest_backbone", "build_resnest_fpn_backbone",
    "build_retinanet_resnest_fpn_backbone",
]

logger = logging.getLogger(__name__)

#: Norm names detectron2's get_norm understands and that fit every ResNeSt layer.
NORMS = ("BN", "SyncBN", "FrozenBN", "GN", "naiveSyncBN", "nnSyncBN", "naiveSyncBN_N")
#: build_resnest argument <- its MODEL.RESNEST key (declared, with defaults, by config.add_resnest_config).
CONFIG_KEYS = {"norm": "NORM", "out_features": "OUT_FEATURES", "output_stride": "OUTPUT_STRIDE",
               "deform_stages": "DEFORM_ON_PER_STAGE", "deform_modulated": "DEFORM_MODULATED",
               "deform_groups": "DEFORM_NUM_GROUPS", "drop_block_prob": "DROPBLOCK_PROB",
               "drop_block_stages": "DROPBLOCK_ON_PER_STAGE", "weights": "WEIGHTS",
               "memory_efficient": "MEMORY_EFFICIENT"}


def _norm_layer(norm: Union[str, Callable[[int], nn.Module]]) -> Callable[[int], nn.Module]:
    """detectron2's norm name (or a callable) as the core's ``norm_layer(channels)``."""
    if callable(norm):
        return norm
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r} for the ResNeSt backbone; use one of {', '.join(NORMS)} "
                         f"(ResNeSt needs a normalisation, so '' is not allowed)")
    return lambda channels: get_norm(norm, channels)


class ResNeStBackbone(ResNeSt, Backbone):
    """The core ResNeSt as a detectron2 ``Backbone``.

    Args:
        layers: blocks per stage (see :class:`~resnest_backbones.ResNeSt`, whose other arguments are accepted).
        norm: a detectron2 norm name ("BN", "SyncBN", "FrozenBN", "GN", "naiveSyncBN") or a callable.
        freeze_at: detectron2's ``MODEL.BACKBONE.FREEZE_AT``: 0 nothing, 1 the stem, ``k`` the stem and
            ``res2..res{k}``. As in detectron2's ResNet, frozen parts get no gradient and their batch norms
            become ``FrozenBatchNorm2d``.
        memory_efficient: train with the memory-saving modules (the default; ``False``: the reference modules).
        **kwargs: any other :class:`~resnest_backbones.ResNeSt` argument.
    """

    def __init__(self, layers: Any, *, norm: Union[str, Callable[[int], nn.Module]] = "BN", freeze_at: int = 0,
                 memory_efficient: bool = True, **kwargs: Any) -> None:
        super().__init__(layers, norm_layer=_norm_layer(norm), freeze_at=freeze_at, **kwargs)
        frozen = self.frozen_modules()
        for name, child in list(self.named_children()):
            if any(child is part for part in frozen):
                setattr(self, name, FrozenBatchNorm2d.convert_frozen_batchnorm(child))
        set_memory_efficient(self, memory_efficient)

    def output_shape(self) -> Dict[str, ShapeSpec]:
        """Channels and stride of every output, from the core's ``feature_info``."""
        return {name: ShapeSpec(channels=info.channels, stride=info.stride)
                for name, info in self.out_feature_info.items()}


def build_resnest(name: str = "resnest50d", *, weights: Optional[str] = None, memory_efficient: bool = True,
                  **kwargs: Any) -> ResNeStBackbone:
    """Build the variant ``name`` as a :class:`ResNeStBackbone` (for LazyConfig: ``L(build_resnest)(...)``).

    Args:
        name: a name from ``resnest_backbones.list_variants()`` (or an official alias).
        weights: ImageNet weights loaded, strictly, as the model is built (like timm's ``pretrained`` or mmseg's
            ``init_cfg``): a path or an ``http(s)://``/``file://`` URL (downloaded once into torch hub's checkpoint
            directory), in any layout :func:`~resnest_backbones.load_checkpoint` reads; a sha256 prefix in the
            file name is verified. So every trainer (detectron2's ``lazyconfig_train_net.py``, ``tools/train_net.py``,
            your own) starts from them; ``train.init_checkpoint`` stays for whole-model files. ``None``/``""``:
            random initialisation.
        memory_efficient: train with the memory-saving modules (default) or, ``False``, the reference modules.
        **kwargs: :class:`ResNeStBackbone` arguments (``norm``, ``freeze_at``, ``out_features``...).

    Raises:
        CheckpointError: the weights do not cover the backbone exactly (missing, unexpected or mis-shaped tensors).
    """
    model = create_model(name, cls=ResNeStBackbone, memory_efficient=memory_efficient, **kwargs)
    if weights:
        report = load_checkpoint(model, local_weights(weights))  # strict: raises with the report
        logger.info("ResNeSt backbone %s initialised from %s (%s layout): %d tensors", name, weights,
                    report.source_format, len(report.loaded))
    return model


@BACKBONE_REGISTRY.register()
def build_resnest_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> ResNeStBackbone:
    """``MODEL.BACKBONE.NAME: "build_resnest_backbone"``: the ResNeSt alone (``MODEL.RESNEST``).

    ``MODEL.RESNEST.WEIGHTS`` (ImageNet) is loaded here, strictly, so any trainer starts from it.
    """
    if "RESNEST" not in cfg.MODEL:
        raise KeyError("cfg.MODEL.RESNEST is missing: call resnest_backbones.detectron2.add_resnest_config(cfg) "
                       "before merging a ResNeSt config file (tools/train_net.py of resnest_backbones does; "
                       "detectron2's own tools/train_net.py cannot read these configs)")
    c = cfg.MODEL.RESNEST
    return build_resnest(c.NAME, in_channels=input_shape.channels, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
                         **{arg: c[key] for arg, key in CONFIG_KEYS.items()})


def _fpn(cfg: CfgNode, input_shape: ShapeSpec, top_block: Optional[Callable[[ResNeStBackbone], nn.Module]]) -> FPN:
    bottom_up = build_resnest_backbone(cfg, input_shape)
    missing = [f for f in cfg.MODEL.FPN.IN_FEATURES if f not in bottom_up.out_features]
    if missing:
        raise ValueError(f"MODEL.FPN.IN_FEATURES {list(cfg.MODEL.FPN.IN_FEATURES)} asks for {missing}, which "
                         f"MODEL.RESNEST.OUT_FEATURES {list(bottom_up.out_features)} does not produce; add them there")
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=top_block(bottom_up) if top_block else None,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


@BACKBONE_REGISTRY.register()
def build_resnest_fpn_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> FPN:
    """ResNeSt + FPN with a max-pooled P6 (``p2``..``p6``), as detectron2's ``build_resnet_fpn_backbone``."""
    return _fpn(cfg, input_shape, lambda bottom_up: LastLevelMaxPool())


@BACKBONE_REGISTRY.register()
def build_retinanet_resnest_fpn_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> FPN:
    """ResNeSt + FPN with convolutional P6/P7 computed from ``res5`` (RetinaNet style)."""
    def p6p7(bottom_up: ResNeStBackbone) -> nn.Module:
        if "res5" not in bottom_up.out_features:
            raise ValueError("build_retinanet_resnest_fpn_backbone computes P6/P7 from res5: add 'res5' to "
                             "MODEL.RESNEST.OUT_FEATURES")
        return LastLevelP6P7(bottom_up.feature_info["res5"].channels, cfg.MODEL.FPN.OUT_CHANNELS)

    return _fpn(cfg, input_shape, p6p7)
