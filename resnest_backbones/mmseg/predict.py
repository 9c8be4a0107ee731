"""Run an MMSegmentation segmentor with a ResNeSt backbone (Zhang et al., 2020) on an image and draw its
segmentation with mmseg's ``SegLocalVisualizer`` (used by ``tools/predict.py`` through
:mod:`resnest_backbones.predict`, and by ``tools/demo.py`` to show predictions next to the ground truth).

The model is built by ``mmseg.apis.init_model`` (which does not initialise it from ImageNet files) and loaded the
way the project's mmseg tools load checkpoints: torch's weights-only unpickler with only the training-checkpoint
allow-list, released mmseg/PyTorch-Encoding layouts converted (:func:`.convert.convert_if_released`), strictly
(:mod:`resnest_backbones.openmmlab.checkpoint`: ``read_checkpoint`` / ``load_whole_model``).
"""
from __future__ import annotations

import itertools
from typing import Any, Optional

import numpy as np
import torch
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.apis import inference_model, init_model
from mmseg.registry import DATASETS
from mmseg.visualization import SegLocalVisualizer

from ..config_files import load_openmmlab_config, resolve_config
from ..models.hub import local_weights
from ..openmmlab.checkpoint import dataset_meta, load_for_inference, read_for_inference
from ..types import PathLike
from .convert import convert_if_released

__all__ = ["MMSegPredictor"]

_names = itertools.count()  # mmengine visualisers are named instances: one fresh name each


class MMSegPredictor:
    """A segmentor of an mmseg config with its trained weights; calling it on an RGB image returns the image
    with the predicted segmentation overlaid (same size).

    Args:
        config: an mmseg config file (``configs/mmseg/...py``).
        weights: a whole-segmentor checkpoint (path or URL): ``mmseg_train.py``'s, or a released mmseg /
            PyTorch-Encoding ResNeSt model.
        device: where the model runs.
        opacity: of the overlay (0 transparent .. 1 opaque).
        with_labels: write the class names on the regions.
        fused: run with the ResNeSt fused for inference (:func:`~resnest_backbones.fuse_resnest_modules`: batch
            norms folded, faster, same outputs to ~1e-6); ``False`` runs the model as built.

    Raises:
        CheckpointError: the weights are missing, would run code when unpickled, or do not fit the config.
    """

    def __init__(self, config: PathLike, weights: PathLike, *, device: str = "cpu", opacity: float = 0.6,
                 with_labels: bool = True, fused: bool = True) -> None:
        path = local_weights(weights)
        cfg = load_openmmlab_config(resolve_config(config))  # imports custom_imports (our registry scope)
        checkpoint = read_for_inference(cfg, path)  # a model fine-tuned on other classes: their count
        self.model = init_model(cfg, checkpoint=None, device="cpu")
        load_for_inference(self.model, path, device, fused, convert=convert_if_released, checkpoint=checkpoint)
        self.model.dataset_meta = dataset_meta(cfg, checkpoint, self.model.decode_head.num_classes, DATASETS)
        init_default_scope(cfg.get("default_scope", "mmseg"))
        self.visualizer = SegLocalVisualizer.get_instance(f"resnest_predict_{next(_names)}", alpha=opacity)
        self.visualizer.dataset_meta = self.model.dataset_meta
        self.with_labels = with_labels

    @property
    def class_names(self) -> list:
        """What the regions are labelled with."""
        return list(self.model.dataset_meta["classes"])

    def __call__(self, image: np.ndarray, ground_truth: Optional[np.ndarray] = None) -> np.ndarray:
        """``image`` (RGB) with the prediction overlaid; with ``ground_truth`` (class indices, 255 = ignore), the
        ground-truth overlay and the prediction side by side (twice the width)."""
        with torch.no_grad():
            result = inference_model(self.model, np.ascontiguousarray(image[:, :, ::-1]))  # mmseg reads BGR
        drawn = self._draw(image, result, gt=False)
        if ground_truth is None:
            return drawn
        result.gt_sem_seg = PixelData(data=torch.as_tensor(ground_truth, dtype=torch.int64)[None])
        return np.concatenate([self._draw(image, result, gt=True), drawn], axis=1)

    def _draw(self, image: np.ndarray, result: Any, gt: bool) -> np.ndarray:
        # add_datasample hands its side-by-side picture only to files/backends; its last drawing is the image's
        self.visualizer.add_datasample("prediction", image, result, draw_gt=gt, draw_pred=not gt, show=False,
                                       with_labels=self.with_labels)
        return self.visualizer.get_image()
