"""The Faster R-CNN of the toy detection experiment: a ResNeSt-FPN backbone in torchvision's detector.

Not the adapter itself (:mod:`.backbone` builds backbones for any torchvision detector): this is the one model
``tools/torchvision_train.py`` trains on the toy COCO images (:func:`resnest_backbones.toy_data.make_toy_coco`,
through :mod:`.engine`) and the torchvision predictor rebuilds to run a saved one, sized so that a CPU trains it
in minutes.
"""
from __future__ import annotations

from typing import Optional

from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import FrozenBatchNorm2d

from .backbone import Weights, resnest_fpn_backbone

__all__ = ["toy_faster_rcnn"]


def toy_faster_rcnn(variant: str, num_classes: int, image_size: int, weights: Weights = None,
                    frozen_norm: Optional[bool] = None) -> FasterRCNN:
    """Faster R-CNN with a ResNeSt-FPN backbone sized for the small toy images.

    Args:
        variant: the ResNeSt name.
        num_classes: classes including the background.
        image_size: the side images are resized to (the toy images' side).
        weights: ImageNet backbone weights (see :func:`~resnest_backbones.torchvision.resnest_fpn_backbone`);
            with them the backbone norms are frozen and only 3 stages train, as torchvision does; without,
            everything trains with batch norm.
        frozen_norm: frozen batch norm in the backbone (default: when ``weights`` are given).
    """
    pretrained = weights is not None
    frozen = pretrained if frozen_norm is None else frozen_norm
    norm_layer = FrozenBatchNorm2d if frozen else nn.BatchNorm2d
    backbone = resnest_fpn_backbone(variant, weights=weights, norm_layer=norm_layer,
                                    trainable_layers=3 if pretrained else 5)
    # Sized for 1-4 objects of 25-60 px on 128 px images, so that a CPU trains it in minutes: anchors one
    # octave smaller than COCO's (32..512), fewer proposals and sampled RoIs, and a 256-wide box head
    # (torchvision's 1024-wide one alone costs more than the whole backbone here).
    anchors = AnchorGenerator(sizes=((16,), (32,), (64,), (128,), (256,)), aspect_ratios=((0.5, 1.0, 2.0),) * 5)
    width = 256
    return FasterRCNN(
        backbone, num_classes=None, rpn_anchor_generator=anchors, min_size=image_size,
        max_size=image_size, rpn_pre_nms_top_n_train=500, rpn_post_nms_top_n_train=250,
        rpn_pre_nms_top_n_test=250, rpn_post_nms_top_n_test=100, box_batch_size_per_image=128,
        box_head=TwoMLPHead(backbone.out_channels * 7 * 7, width), box_predictor=FastRCNNPredictor(width, num_classes),
    )
