"""The toy COCO data set for mmdet, made on first use (so the toy configs run on a fresh checkout, with mmdet's own
``tools/train.py`` as well as ours).

:class:`ToyCocoDataset` is mmdet's ``CocoDataset``, unchanged, preceded by a call to the deterministic generator
:func:`resnest_backbones.toy_data.make_toy_coco` (which returns at once when the files already match).
Registered as ``resnest_backbones.ToyCocoDataset``.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from mmdet.datasets import CocoDataset

from ..toy_data import COCO_CATEGORIES, make_toy_coco
from .registry import DATASETS

__all__ = ["ToyCocoDataset"]


@DATASETS.register_module()
class ToyCocoDataset(CocoDataset):
    """mmdet's ``CocoDataset`` over the toy shapes (circle, square, triangle), generated under ``data_root``.

    Args:
        data_root: the toy data set's root (``train/``, ``val/``, ``annotations/instances_{train,val}.json``).
        toy: arguments of :func:`~resnest_backbones.toy_data.make_toy_coco` (sizes, seed).
        metainfo: defaults to the toy categories.
        **kwargs: ``CocoDataset`` arguments (``ann_file``, ``data_prefix``, ``pipeline``...).
    """

    def __init__(self, data_root: str, toy: Optional[Dict[str, Any]] = None, metainfo: Optional[dict] = None,
                 **kwargs: Any) -> None:
        make_toy_coco(data_root, **(toy or {}))
        super().__init__(data_root=data_root, metainfo=metainfo or dict(classes=tuple(COCO_CATEGORIES)), **kwargs)
