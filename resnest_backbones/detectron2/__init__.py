"""detectron2 adapter of resnest_backbones (ResNeSt, Zhang et al., 2020, "ResNeSt: Split-Attention Networks").

Importing this package registers, in detectron2's ``BACKBONE_REGISTRY``, ``build_resnest_backbone``,
``build_resnest_fpn_backbone`` and ``build_retinanet_resnest_fpn_backbone``, and in its dataset catalogs the
toy COCO data sets ``toy_coco_train`` / ``toy_coco_val`` (generated on first use). Training and evaluation
(``tools/train_net.py``: ``Trainer``, CPU processes, the yacs and LazyConfig routes) are in the submodule
:mod:`resnest_backbones.detectron2.engine`, imported on demand (it pulls in detectron2's engine and evaluation).

Example:
    >>> from detectron2.config import get_cfg
    >>> from resnest_backbones.detectron2 import add_resnest_config
    >>> cfg = add_resnest_config(get_cfg())
    >>> cfg.merge_from_file("configs/detectron2/COCO-Detection/faster_rcnn_S50_FPN_1x.yaml")  # doctest: +SKIP
"""
from . import accel  # noqa: F401 - registers NaiveSyncBatchNorm with the memory-saving training ops
from .backbone import (
    ResNeStBackbone,
    build_resnest,
    build_resnest_backbone,
    build_resnest_fpn_backbone,
    build_retinanet_resnest_fpn_backbone,
)
from .checkpoint import ResNeStCheckpointer
from .config import add_resnest_config, replace_norm
from .data import register_toy_coco

register_toy_coco()

__all__ = [
    "ResNeStBackbone", "ResNeStCheckpointer", "add_resnest_config", "build_resnest", "build_resnest_backbone",
    "build_resnest_fpn_backbone", "build_retinanet_resnest_fpn_backbone", "register_toy_coco", "replace_norm",
]
