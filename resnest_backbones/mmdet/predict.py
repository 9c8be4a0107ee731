"""Draw an mmdet model's detections (boxes, labels, scores; masks for the mask models) on images
(``tools/predict.py``, ``make demo``).

The model is built by ``mmdet.apis.init_detector`` (which does not initialise it from ImageNet files) and its
weights are read and loaded as the project's OpenMMLab tools read them: torch's weights-only unpickler with only the
training-checkpoint allow-list, strictly (:mod:`resnest_backbones.openmmlab.checkpoint`); mmdet's released detectors
load as downloaded, with no converter (the backbone's key-layout pre-hook renames them), after the SHA-256 prefix in
their name is checked.
"""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import torch
from mmdet.apis import inference_detector, init_detector
from mmdet.registry import DATASETS
from mmdet.visualization import DetLocalVisualizer
from mmengine.registry import init_default_scope

from ..config_files import load_openmmlab_config, resolve_config
from ..models.hub import local_weights
from ..openmmlab.checkpoint import dataset_meta, load_for_inference, read_for_inference
from ..types import PathLike
from .cli import check_released_name

__all__ = ["MMDetPredictor"]

_names = itertools.count()  # mmengine visualisers are named instances: one fresh name each


def _num_classes(model: torch.nn.Module) -> int:
    """The classes of a two-stage detector's box head (a cascade's last stage)."""
    head = model.roi_head.bbox_head
    return (head[-1] if isinstance(head, torch.nn.ModuleList) else head).num_classes


class MMDetPredictor:
    """A detector of an mmdet config with its trained weights; calling it on an RGB image returns the image with
    the detections scoring at least ``score_threshold`` drawn (same size).

    Args:
        config: an mmdet config file (``configs/mmdet/...py``).
        weights: a whole-detector checkpoint (path or URL): ``mmdet_train.py``'s, or mmdet's released ResNeSt file
            of the config's model as downloaded.
        device: where the model runs.
        score_threshold: detections scoring below are not drawn.
        fused: run with the ResNeSt fused for inference (:func:`~resnest_backbones.fuse_resnest_modules`: batch
            norms folded, faster, same outputs to ~1e-6); ``False`` runs the model as built.

    Raises:
        CheckpointError: the weights are missing, corrupt (SHA-256 name prefix), would run code when unpickled, or
            do not fit the config.
    """

    def __init__(self, config: PathLike, weights: PathLike, *, device: str = "cpu",
                 score_threshold: float = 0.5, fused: bool = True) -> None:
        path = local_weights(weights)
        check_released_name(path, "predict")
        cfg = load_openmmlab_config(resolve_config(config))  # imports custom_imports (our registry scope)
        init_default_scope(cfg.get("default_scope", "mmdet"))
        checkpoint = read_for_inference(cfg, path)  # a model fine-tuned on other classes: their count
        with warnings.catch_warnings(record=True) as caught:  # it resets the filters to say "use COCO classes"
            self.model = init_detector(cfg, checkpoint=None, device="cpu")
        for warning in caught:  # all but that one: the file's classes are set below
            if "use COCO classes" not in str(warning.message):
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        load_for_inference(self.model, path, device, fused, checkpoint=checkpoint)
        self.model.dataset_meta = dataset_meta(cfg, checkpoint, _num_classes(self.model), DATASETS)
        self.visualizer = DetLocalVisualizer.get_instance(f"resnest_predict_{next(_names)}")
        self.visualizer.dataset_meta = self.model.dataset_meta
        self.score_threshold = score_threshold

    @property
    def class_names(self) -> list:
        """What the boxes are labelled with."""
        return list(self.model.dataset_meta["classes"])

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """``image`` (RGB) with the detections drawn."""
        with torch.no_grad():
            result = inference_detector(self.model, np.ascontiguousarray(image[:, :, ::-1]))  # mmdet reads BGR
        self.visualizer.add_datasample("prediction", image, result, draw_gt=False, show=False,
                                       pred_score_thr=self.score_threshold)
        return self.visualizer.get_image()
