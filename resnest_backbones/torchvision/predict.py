"""Run the toy Faster R-CNN of ``tools/torchvision_train.py`` (a ResNeSt-FPN backbone, Zhang et al., 2020) on an
image and draw its detections with torchvision's ``draw_bounding_boxes`` (used by ``tools/predict.py`` through
:mod:`resnest_backbones.predict`).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
from torchvision.utils import draw_bounding_boxes

from ..accel import fuse_resnest_modules
from ..models.checkpoint import CheckpointError, LoadReport, read_checkpoint
from ..models.checkpoint.report import is_counter
from ..models.hub import local_weights
from ..toy_data import COCO_CATEGORIES
from ..types import PathLike, Predictor
from .toy import toy_faster_rcnn

__all__ = ["load_torchvision_model", "torchvision_predictor"]


def load_torchvision_model(weights: PathLike, *, variant: str = "resnest14d", image_size: int = 128,
                           score_threshold: float = 0.5, device: Union[str, torch.device] = "cpu",
                           fused: bool = True) -> torch.nn.Module:
    """The toy Faster R-CNN of ``tools/torchvision_train.py`` loaded from its ``--output`` file, in eval mode.

    Args:
        weights: the file (path or URL) ``torchvision_train.py --output`` wrote.
        variant, image_size: as given to ``torchvision_train.py`` (its defaults here too).
        score_threshold: the heads keep detections scoring at least this (lowered from the model's only).
        device: where the model runs.
        fused: run with the ResNeSt fused for inference (:func:`~resnest_backbones.fuse_resnest_modules`: batch
            norms folded, faster, same outputs to ~1e-6); ``False`` runs the model as built.

    Raises:
        CheckpointError: the file is missing, unreadable, or not a model of this variant.
    """
    path = local_weights(weights)
    state = read_checkpoint(path)  # a state dict, or one under model/state_dict
    key = "roi_heads.box_predictor.cls_score.weight"
    if key not in state:
        raise CheckpointError(f"{path} is not a torchvision Faster R-CNN saved by tools/torchvision_train.py "
                              f"--output (no {key})")
    model = toy_faster_rcnn(variant, state[key].shape[0], image_size,
                            frozen_norm=not any(is_counter(k) for k in state))
    problem = f"{path} does not fit the toy Faster R-CNN with a {variant} backbone (give the --variant it was " \
              f"trained with)"
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # torch raises on mis-shaped tensors whatever ``strict`` says
        raise CheckpointError(f"{problem}: {str(error)[:2000]}") from None
    report = LoadReport.from_incompatible("torchvision Faster R-CNN", model.state_dict(), result.missing_keys,
                                          result.unexpected_keys)
    if not report.ok:
        raise report.error(problem, "The file holds another model, or only part of one.")
    model.roi_heads.score_thresh = min(model.roi_heads.score_thresh, score_threshold)
    model.to(device).eval()
    if fused:
        fuse_resnest_modules(model)
    return model


def torchvision_predictor(weights: PathLike, *, variant: str = "resnest14d", image_size: int = 128,
                          class_names: Optional[Sequence[str]] = None, score_threshold: float = 0.5,
                          max_detections: Optional[int] = None, device: Union[str, torch.device] = "cpu",
                          fused: bool = True) -> Predictor:
    """A predictor (RGB image -> the image with the detections drawn) of the toy Faster R-CNN of
    ``tools/torchvision_train.py``; see :func:`load_torchvision_model` for the arguments it passes on.

    Args:
        class_names: names of the classes 1..N (default: the toy COCO categories when their number fits).
        score_threshold: boxes scoring below are not drawn.
        max_detections: draw at most this many (the best-scoring) boxes per image; default: all.
    """
    model = load_torchvision_model(weights, variant=variant, image_size=image_size, score_threshold=score_threshold,
                                   device=device, fused=fused)
    num_classes = model.roi_heads.box_predictor.cls_score.out_features
    if class_names is None:
        class_names = COCO_CATEGORIES if len(COCO_CATEGORIES) == num_classes - 1 else \
            [str(i) for i in range(1, num_classes)]
    names = ["background", *class_names]

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

    return predict
