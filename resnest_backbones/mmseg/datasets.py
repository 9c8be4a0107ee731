"""Toy ADE20K- and Cityscapes-layout datasets for mmseg that make their files on first use, and a user's folder of
images and label PNGs (:class:`LabelFolderDataset`, what ``tools/mmseg_train.py --train-data`` reads).

They exist so that the toy configs of the ResNeSt (Zhang et al., 2020) MMSegmentation integration run with
mmseg's own ``tools/train.py`` as well as ours, on a fresh checkout: each is mmseg's own dataset class,
unchanged, preceded by a call to the deterministic generator of :mod:`resnest_backbones.toy_data.segmentation`
(which returns at once when the files already exist). Registered as ``resnest_backbones.ToyADE20KDataset`` and
``resnest_backbones.ToyCityscapesDataset``; needs mmseg (the backbone itself does not).
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from mmseg.datasets import ADE20KDataset, BaseSegDataset, CityscapesDataset

from ..own_data import DataError
from ..toy_data.segmentation import (
    ADE20K_TOY_CLASSES,
    CITYSCAPES_TOY_CLASSES,
    make_toy_ade20k,
    make_toy_cityscapes,
)
from .registry import DATASETS

__all__ = ["LabelFolderDataset", "ToyADE20KDataset", "ToyCityscapesDataset"]

#: Image files a user's folder may mix (read by mmcv: grayscale and RGBA become 3-channel colour).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


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


@DATASETS.register_module()
class LabelFolderDataset(BaseSegDataset):
    """A user's segmentation data: every image of ``data_prefix['img_path']`` (any mix of the formats of
    :data:`IMAGE_SUFFIXES`) with the label PNG of the same stem in ``data_prefix['seg_map_path']`` (pixel value i
    is class i of ``metainfo['classes']``; 255 is ignored; ``reduce_zero_label`` shifts them down by one as mmseg
    does). A missing label file, or a label value without a class name, is a
    :class:`~resnest_backbones.own_data.DataError` naming the file. Registered as
    ``resnest_backbones.LabelFolderDataset``."""

    def load_data_list(self) -> List[dict]:
        img_dir, label_dir = self.data_prefix["img_path"], self.data_prefix.get("seg_map_path")
        if not os.path.isdir(img_dir):
            raise DataError(f"image folder {img_dir} does not exist")
        names = sorted(n for n in os.listdir(img_dir) if os.path.splitext(n)[1].lower() in IMAGE_SUFFIXES)
        if not names:
            raise DataError(f"no image in {img_dir} (image files end in {', '.join(IMAGE_SUFFIXES)})")
        data_list = []
        for name in names:
            info = dict(img_path=os.path.join(img_dir, name), label_map=self.label_map,
                        reduce_zero_label=self.reduce_zero_label, seg_fields=[])
            if label_dir is not None:
                info["seg_map_path"] = os.path.join(label_dir, os.path.splitext(name)[0] + self.seg_map_suffix)
                if not os.path.isfile(info["seg_map_path"]):
                    raise DataError(f"{name} has no label file {info['seg_map_path']} (label PNGs are named as "
                                    f"their images, with {self.seg_map_suffix})")
            data_list.append(info)
        return data_list

    def prepare_data(self, idx: int) -> Any:
        """The pipeline's output for sample ``idx``, its labels checked against the class names: a value that is
        neither a class (0 .. K-1) nor ignored (255) would otherwise fail deep inside the loss."""
        data = super().prepare_data(idx)
        sample = data.get("data_samples") if isinstance(data, dict) else None
        if sample is not None and "gt_sem_seg" in sample:
            labels = sample.gt_sem_seg.data
            count = len(self.metainfo["classes"])
            unnamed = labels[(labels != self.ignore_index) & (labels >= count)]
            if unnamed.numel():
                shift = " after --reduce-zero-label's shift" if self.reduce_zero_label else ""
                raise DataError(f"{self.get_data_info(idx)['seg_map_path']} has label value {int(unnamed.max())}"
                                f"{shift}, but {count} class names were given (values 0..{count - 1}, "
                                f"{self.ignore_index} ignored): name every class in pixel-value order (--classes)")
        return data
