"""ResNeSt-FPN backbones for torchvision's detection models (Faster/Mask/Keypoint R-CNN, RetinaNet, FCOS).

ResNeSt (Zhang et al., 2020, "ResNeSt: Split-Attention Networks", arXiv 2004.08955) with a Feature Pyramid
Network, built the way ``torchvision.models.detection.backbone_utils.resnet_fpn_backbone`` builds a ResNet-FPN:
same arguments (``trainable_layers`` 0..5, ``returned_layers`` 1..4, ``extra_blocks``, ``norm_layer`` defaulting
to :class:`~torchvision.ops.FrozenBatchNorm2d`), an ``out_channels`` attribute and ``OrderedDict`` outputs named
``"0".."3"`` plus ``"pool"`` (or ``"p6", "p7"``). The body is the core :class:`~resnest_backbones.ResNeSt`, so
its parameter names are the official/timm keys and the ImageNet checkpoints load strictly into it.

The subpackage is named after the framework it adapts; it imports the real ``torchvision`` (absolute imports).

Example:
    >>> import torch
    >>> from torchvision.models.detection import FasterRCNN
    >>> from resnest_backbones.torchvision import resnest_fpn_backbone
    >>> backbone = resnest_fpn_backbone("resnest50d", weights=None, trainable_layers=3)
    >>> model = FasterRCNN(backbone, num_classes=91)
    >>> {k: tuple(v.shape) for k, v in backbone(torch.zeros(1, 3, 64, 64)).items()}  # doctest: +NORMALIZE_WHITESPACE
    {'0': (1, 256, 16, 16), '1': (1, 256, 8, 8), '2': (1, 256, 4, 4), '3': (1, 256, 2, 2),
     'pool': (1, 256, 1, 1)}
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from torch import Tensor, nn
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, FeaturePyramidNetwork, LastLevelMaxPool

from ..factory import create_model
from ..models import STAGE_NAMES, ResNeSt

__all__ = ["ResNeStBackboneWithFPN", "Weights", "resnest_fpn_backbone"]

Weights = Union[None, bool, str, os.PathLike, Mapping[str, Any]]
# Arguments the builder sets from torchvision-style ones; passing them too would be ambiguous.
_DERIVED = {"out_features": "returned_layers", "freeze_at": "trainable_layers", "num_classes": "(none: no head)"}


class ResNeStBackboneWithFPN(nn.Module):
    """A :class:`ResNeSt` body and a torchvision :class:`FeaturePyramidNetwork` (like ``BackboneWithFPN``).

    Args:
        body: the ResNeSt, built with ``out_features`` = the returned stages.
        out_channels: channels of every FPN output.
        extra_blocks: extra FPN levels (default: ``LastLevelMaxPool``, the ``"pool"`` level of Faster R-CNN).
        fpn_norm_layer: normalisation inside the FPN (torchvision's ``norm_layer`` of ``BackboneWithFPN``).

    Attributes:
        body: the ResNeSt (its ``state_dict`` keys are the official ones, under ``body.``).
        fpn: the feature pyramid.
        out_channels: what torchvision's detection heads read.
    """

    def __init__(
        self,
        body: ResNeSt,
        out_channels: int = 256,
        extra_blocks: Optional[ExtraFPNBlock] = None,
        fpn_norm_layer: Optional[Callable[..., nn.Module]] = None,
    ) -> None:
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(
            in_channels_list=[info.channels for info in body.out_feature_info.values()],
            out_channels=out_channels,
            extra_blocks=extra_blocks if extra_blocks is not None else LastLevelMaxPool(),
            norm_layer=fpn_norm_layer,
        )
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """Images ``(B, 3, H, W)`` -> ``OrderedDict`` of FPN maps, finest first (``"0"``, ``"1"``, ...)."""
        features = self.body.forward_features(x)
        # torchvision names the returned stages by position, whichever stages they are.
        renamed = OrderedDict((str(i), features[name]) for i, name in enumerate(self.body.out_features))
        return self.fpn(renamed)


def resnest_fpn_backbone(
    variant: str = "resnest50d",
    *,
    weights: Weights = None,
    norm_layer: Callable[[int], nn.Module] = FrozenBatchNorm2d,
    trainable_layers: int = 3,
    returned_layers: Optional[Sequence[int]] = None,
    extra_blocks: Optional[ExtraFPNBlock] = None,
    out_channels: int = 256,
    fpn_norm_layer: Optional[Callable[..., nn.Module]] = None,
    memory_efficient: bool = True,
    **overrides: Any,
) -> ResNeStBackboneWithFPN:
    """Build a ResNeSt-FPN backbone for torchvision's detection models (mirrors ``resnet_fpn_backbone``).

    Args:
        variant: a ResNeSt name (``resnest50d``, ``resnest101e``, ... or an official alias, see
            :func:`resnest_backbones.list_variants`).
        weights: ``None`` (random), ``True`` for the official ImageNet file (downloaded once into torch hub's
            checkpoint directory), or a checkpoint path, ``http(s)://``/``file://`` URL or state dict in any format
            the core reads (official, timm, detectron2, OpenMMLab); see ``create_model(pretrained=...)``.
            Loaded strictly: any missing or mis-shaped backbone tensor is an error.
        norm_layer: ``norm_layer(channels)`` for every backbone norm; torchvision's default, frozen batch norm,
            suits fine-tuning from ImageNet weights with small batches. Use ``nn.BatchNorm2d`` from scratch.
        trainable_layers: torchvision's convention: how many of ``layer4, layer3, layer2, layer1, stem`` are
            trained, counting from ``layer4`` (0: none, 5: all). Frozen parts also keep their norm statistics.
        returned_layers: stages (1..4, increasing) fed to the FPN; default ``[1, 2, 3, 4]``. Stages after the
            last one are not built. RetinaNet uses ``[2, 3, 4]``.
        extra_blocks: extra FPN levels; default ``LastLevelMaxPool()``; ``LastLevelP6P7(c, 256)`` for RetinaNet
            (``c`` = ``out_channels`` to build P6 from P5, or the last stage's channels to build it from C5).
        out_channels: channels of every FPN output.
        fpn_norm_layer: normalisation inside the FPN (none by default, as in torchvision).
        memory_efficient: train the body with the memory-saving modules (default) or, ``False``, the reference
            modules.
        **overrides: other :class:`~resnest_backbones.ResNeSt` arguments (``deform_stages``, ``drop_block_prob``,
            ``with_cp``, ``output_stride``...).

    Returns:
        The backbone, with ``out_channels`` set.
    """
    if isinstance(trainable_layers, bool) or not isinstance(trainable_layers, int) or not 0 <= trainable_layers <= 5:
        raise ValueError(f"trainable_layers must be an int in 0..5 (layers trained, counting from layer4; 5 = "
                         f"all), got {trainable_layers!r}")
    layers: List[int] = [1, 2, 3, 4] if returned_layers is None else list(returned_layers)
    if (not layers or any(isinstance(i, bool) or not isinstance(i, int) or not 1 <= i <= 4 for i in layers)
            or layers != sorted(set(layers))):
        raise ValueError(f"returned_layers must be increasing stage numbers in 1..4 (e.g. [1, 2, 3, 4], or "
                         f"[2, 3, 4] for RetinaNet), got {returned_layers!r}")
    clashes = sorted(set(overrides) & set(_DERIVED))
    if clashes:
        raise TypeError(f"{', '.join(clashes)} cannot be given here: "
                        + "; ".join(f"use {_DERIVED[key]} instead of {key}" for key in clashes))
    if weights is not None and not isinstance(weights, (bool, str, os.PathLike, Mapping)):
        raise TypeError(f"weights must be None, True, a checkpoint path or a state dict, got "
                        f"{type(weights).__name__} (torchvision WeightsEnum values are for torchvision's ResNets)")
    if not callable(norm_layer):
        raise TypeError(f"norm_layer must be callable as norm_layer(channels), got {norm_layer!r}")
    body = create_model(
        variant, pretrained=weights, norm_layer=norm_layer, memory_efficient=memory_efficient,
        out_features=[STAGE_NAMES[i - 1] for i in layers],
        freeze_at=5 - trainable_layers,  # torchvision counts trained parts from the top, the core frozen ones
        **overrides,
    )
    return ResNeStBackboneWithFPN(body, out_channels, extra_blocks, fpn_norm_layer)
