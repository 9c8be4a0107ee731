"""Toy ADE20K- and Cityscapes-layout datasets for mmseg that make their files on first use.

They exist so that the toy configs of the ResNeSt (Zhang et al., 2020) MMSegmentation integration run with
mmseg's own ``tools/train.py`` as well as ours, on a fresh checkout: each is mmseg's own dataset class,
unchanged, preceded by a call to the deterministic generator of :mod:`resnest_backbones.toy_data.segmentation`
(which returns at once when the files already exist). Registered as ``resnest_backbones.ToyADE20KDataset`` and
``resnest_backbones.ToyCityscapesDataset``; needs mmseg (the backbone itself does not).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from mmseg.datasets import ADE20KDataset, CityscapesDataset

from ..toy_data.segmentation import (
    ADE20K_TOY_CLASSES,
    CITYSCAPES_TOY_CLASSES,
    make_toy_ade20k,
    make_toy_cityscapes,
)
from .registry import DATASETS

__all__ = ["ToyADE20KDataset", "ToyCityscapesDataset"]


@DATASETS.register_module()
class ToyADE20KDataset(ADE20KDataset):
    """mmseg's ``ADE20KDataset`` over the toy data (five ADE20K classes), generated under ``data_root`` if missing.

    Args:
        data_root: the toy dataset's root.
        toy: arguments of :func:`~resnest_backbones.toy_data.segmentation.make_toy_ade20k` (sizes, seed).
        metainfo: defaults to the toy classes, which mmseg maps onto 0..4 (the other ADE20K classes -> ignore).
        **kwargs: ``ADE20KDataset`` arguments (``data_prefix``, ``pipeline``...).
    """

    def __init__(self, data_root: str, toy: Optional[Dict[str, Any]] = None, metainfo: Optional[dict] = None,
                 **kwargs: Any) -> None:
        make_toy_ade20k(data_root, **(toy or {}))
        super().__init__(data_root=data_root, metainfo=metainfo or dict(classes=ADE20K_TOY_CLASSES), **kwargs)


@DATASETS.register_module()
class ToyCityscapesDataset(CityscapesDataset):
    """mmseg's ``CityscapesDataset`` over the toy data (five Cityscapes classes), generated if missing.

    Args:
        data_root: the toy dataset's root.
        toy: arguments of :func:`~resnest_backbones.toy_data.segmentation.make_toy_cityscapes`.
        metainfo: defaults to the toy classes (their train ids are mapped onto 0..4, the others -> ignore).
        **kwargs: ``CityscapesDataset`` arguments.
    """

    def __init__(self, data_root: str, toy: Optional[Dict[str, Any]] = None, metainfo: Optional[dict] = None,
                 **kwargs: Any) -> None:
        make_toy_cityscapes(data_root, **(toy or {}))
        super().__init__(data_root=data_root, metainfo=metainfo or dict(classes=CITYSCAPES_TOY_CLASSES), **kwargs)
