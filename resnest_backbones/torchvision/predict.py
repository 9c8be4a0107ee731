"""Run the toy Faster R-CNN of ``tools/torchvision_train.py`` (a ResNeSt-FPN backbone, Zhang et al., 2020) on an
image and draw its detections with torchvision's ``draw_bounding_boxes`` (used by ``tools/predict.py`` through
:mod:`resnest_backbones.predict`).
"""
from __future__ import annotations

import warnings
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torchvision.utils import draw_bounding_boxes

from ..accel import fuse_resnest_modules
from ..models.checkpoint import CheckpointError
from ..models.checkpoint.fit import class_names as fit_class_names
from ..models.checkpoint.fit import load_fitting
from ..models.hub import local_weights
from ..toy_data import COCO_CATEGORIES
from ..types import PathLike, Predictor
from .model_file import ModelFile, class_layers, read_model_file


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)

__all__ = ["load_torchvision_model", "torchvision_predictor"]


def _load(file: ModelFile, variant: Optional[str], image_size: Optional[int], score_threshold: float,
          device: Union[str, torch.device], fused: bool) -> torch.nn.Module:
    """The model of a read model file, loaded exactly, in eval mode on ``device``."""
    model = file.build(variant, image_size)
    variant, image_size = variant or file.variant, image_size or file.image_size
    load_fitting(model, file.state_dict, mode="exact", source=file.path,
                 class_layers=lambda: class_layers(variant, image_size, file.num_classes),
                 remedy=f"The file holds another model, or only part of one (give the --variant it was trained with; "
                        f"{variant} here).")
    model.roi_heads.score_thresh = min(model.roi_heads.score_thresh, score_threshold)
    model.to(device).eval()
    if fused:
        fuse_resnest_modules(model)
    return model


def load_torchvision_model(weights: PathLike, *, variant: Optional[str] = None, image_size: Optional[int] = None,
                           score_threshold: float = 0.5, device: Union[str, torch.device] = "cpu",
                           fused: bool = True) -> torch.nn.Module:
    """The toy Faster R-CNN of ``tools/torchvision_train.py`` loaded from its ``--output`` file, in eval mode.

    Args:
        weights: the file (path or URL) ``torchvision_train.py --output`` wrote: a model file rebuilds itself
            (variant, image size, classes); a bare state dict (older files) needs ``variant`` and ``image_size``
            (default: the tool's defaults, resnest14d and 128).
        variant, image_size: override the file's (a different variant is an error naming the keys).
        score_threshold: the heads keep detections scoring at least this (lowered from the model's only).
        device: where the model runs.
        fused: run with the ResNeSt fused for inference (:func:`~resnest_backbones.fuse_resnest_modules`: batch
            norms folded, faster, same outputs to ~1e-6); ``False`` runs the model as built.

    Raises:
        CheckpointError: the file is missing, unreadable, or not a model of this variant.
    """
    return _load(_read(weights), variant, image_size, score_threshold, device, fused)


def _read(weights: PathLike) -> ModelFile:
    file = read_model_file(local_weights(weights))
    if file.variant is None:  # a bare state dict: the tool's defaults unless given
        file.variant, file.image_size = "resnest14d", 128
    if "roi_heads.box_predictor.cls_score.weight" not in file.state_dict:
        raise CheckpointError(f"{file.path} is not a torchvision Faster R-CNN saved by tools/torchvision_train.py "
                              f"--output (no roi_heads.box_predictor.cls_score.weight)")
    return file


def torchvision_predictor(weights: PathLike, *, variant: Optional[str] = None, image_size: Optional[int] = None,
                          class_names: Optional[Sequence[str]] = None, score_threshold: float = 0.5,
                          max_detections: Optional[int] = None, device: Union[str, torch.device] = "cpu",
                          fused: bool = True) -> Predictor:
    """A predictor (RGB image -> the image with the detections drawn) of the toy Faster R-CNN of
    ``tools/torchvision_train.py``; see :func:`load_torchvision_model` for the arguments it passes on.

    Args:
        class_names: names of the classes 1..N (default: the file's; for a bare state dict the toy COCO categories
            when their number fits, else numbers).
        score_threshold: boxes scoring below are not drawn.
        max_detections: draw at most this many (the best-scoring) boxes per image; default: all.
    """
    file = _read(weights)
    model = _load(file, variant, image_size, score_threshold, device, fused)
    toy = COCO_CATEGORIES if len(COCO_CATEGORIES) == file.num_classes else None
    names = ["background", *(class_names or fit_class_names(file.classes, toy, file.num_classes, _warn))]

    def predict(image: np.ndarray) -> np.ndarray:
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)  # a writable copy
        with torch.no_grad():
            output = model([pixels.to(device, torch.float32) / 255.0])[0]
        keep = torch.nonzero(output["scores"] >= score_threshold).flatten()[:max_detections]  # sorted by score
        boxes, labels, scores = output["boxes"][keep].cpu(), output["labels"][keep], output["scores"][keep]
        if not len(boxes):
            return image.copy()
        text = [f"{names[int(c)] if int(c) < len(names) else int(c)} {s:.2f}" for c, s in zip(labels, scores)]
        drawn = draw_bounding_boxes(pixels, boxes, labels=text, width=2)
        return drawn.permute(1, 2, 0).numpy()

    predict.class_names = names[1:]  # type: ignore[attr-defined]  (what the boxes are labelled with)
    return predict
