"""Run a detectron2 model with a ResNeSt backbone (Zhang et al., 2020) on an image and draw its predictions with
detectron2's ``Visualizer`` (used by ``tools/predict.py`` through :mod:`resnest_backbones.predict`).

The config is set up as ``tools/train_net.py`` does (the ResNeSt config node; SyncBN runs as BN in one process;
CPU without CUDA), the whole-model checkpoint is read by :class:`ResNeStCheckpointer` (safe, and refusing a
partial backbone), and inference follows detectron2's ``DefaultPredictor``: the test-time resize, the config's
input format, outputs at the input's size.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence, Tuple

import numpy as np
import torch
from detectron2.config import instantiate
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.utils.visualizer import ColorMode, Visualizer
from omegaconf import OmegaConf
from torch import nn

from ..accel import fuse_resnest_modules
from ..models.checkpoint import CheckpointError, read_file
from ..models.checkpoint.fit import class_names
from ..models.hub import local_weights
from ..types import PathLike
from .checkpoint import ResNeStCheckpointer
from .config import get_num_classes, imagenet_weights, is_lazy_config, load_config, replace_norm, set_num_classes
from .own_data import class_layers

__all__ = ["detectron2_predictor", "load_model"]


class _WholeModelCheckpointer(ResNeStCheckpointer):
    """Refuses what cannot predict: a backbone-only file (its heads would stay random); whole-model files load
    exactly (ResNeStCheckpointer: every misfit an error naming the keys)."""

    def _load_model(self, checkpoint: Any) -> Any:
        incompatible = super()._load_model(checkpoint)
        if incompatible is None:
            raise CheckpointError("the weights hold only a backbone (ImageNet weights?); predicting needs a whole "
                                  "trained model, e.g. the model_final.pth that tools/train_net.py writes")
        return incompatible


def _set_score_threshold(predictor_node: Any, threshold: float) -> None:
    if predictor_node is not None and "test_score_thresh" in predictor_node:
        predictor_node.test_score_thresh = min(predictor_node.test_score_thresh, threshold)


def load_model(config: PathLike, weights: PathLike, *, score_threshold: float = 0.5, device: str = "cpu",
               opts: Sequence[str] = (), fused: bool = True) -> Tuple[nn.Module, T.AugmentationList, str, Any]:
    """The model of ``config`` with ``weights`` loaded, in eval mode.

    Args:
        config: a yacs ``.yaml`` or LazyConfig ``.py`` file.
        weights: a whole-model checkpoint (path or URL) in any layout ResNeStCheckpointer reads.
        score_threshold: the heads keep detections scoring at least this (lowered from the config's only).
        device: where the model runs.
        opts: config overrides (``KEY VALUE`` pairs for yacs, ``key=value`` for LazyConfig).
        fused: run with the ResNeSt fused for inference (:func:`~resnest_backbones.fuse_resnest_modules`: batch
            norms folded, faster, same outputs to ~1e-6); ``False`` runs the model as built.

    Returns:
        ``(model, test-time resize, input format "RGB"/"BGR", metadata with the class names)``.
    """
    path = local_weights(weights) if weights else ""  # a missing file or failed download is an error here
    if not path:
        raise CheckpointError("give the weights of a trained model")
    cfg = load_config(config, opts)
    saved = read_file(path).get("classes") if path.endswith(".pth") else None  # what tools/train_net.py wrote
    if saved and len(saved) != get_num_classes(cfg):
        set_num_classes(cfg, len(saved))  # the file's model, whatever data set the config names
    node, key = imagenet_weights(cfg)
    if node is not None:
        node[key] = ""  # the whole-model file replaces the ImageNet weights: do not fetch them
    replace_norm(cfg, "SyncBN", "BN")
    if not is_lazy_config(config):
        cfg.MODEL.DEVICE = device
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = min(cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST, score_threshold)
        cfg.MODEL.RETINANET.SCORE_THRESH_TEST = min(cfg.MODEL.RETINANET.SCORE_THRESH_TEST, score_threshold)
        combine = cfg.MODEL.PANOPTIC_FPN.COMBINE
        combine.INSTANCES_CONFIDENCE_THRESH = min(combine.INSTANCES_CONFIDENCE_THRESH, score_threshold)
        model = build_model(cfg)
        resize = T.AugmentationList([T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)])
        input_format, datasets = cfg.INPUT.FORMAT, list(cfg.DATASETS.TEST)
    else:
        heads = cfg.model.get("roi_heads", {})
        for predictor in [heads.get("box_predictor"), *(heads.get("box_predictors", None) or [])]:  # cascade: 3
            _set_score_threshold(predictor, score_threshold)
        model = instantiate(cfg.model).to(device)
        resize = T.AugmentationList(instantiate(cfg.dataloader.test.mapper.augmentations))
        input_format = cfg.model.get("input_format", "BGR")
        datasets = list(OmegaConf.select(cfg, "dataloader.test.dataset.names", default=()) or ())
        datasets = [datasets] if isinstance(datasets, str) else datasets
    model.eval()
    _WholeModelCheckpointer(model, class_layers=lambda: class_layers(cfg)).load(path)
    if fused:
        fuse_resnest_modules(model)
    configured = MetadataCatalog.get(datasets[0]) if datasets else MetadataCatalog.get("__unused")
    names = class_names(saved, configured.get("thing_classes", None), get_num_classes(cfg),
                        lambda message: warnings.warn(message, stacklevel=2))
    metadata = MetadataCatalog.get(f"__resnest_predict_{abs(hash(tuple(names)))}")
    metadata.set(thing_classes=names, **{k: v for k, v in configured.as_dict().items()
                                         if k not in ("name", "thing_classes")})
    return model, resize, input_format, metadata


def detectron2_predictor(config: PathLike, weights: PathLike, *, score_threshold: float = 0.5, device: str = "cpu",
                         opts: Sequence[str] = (), fused: bool = True) -> Callable[[np.ndarray], np.ndarray]:
    """A predictor (RGB image -> same-sized RGB image with the predictions drawn) for ``config`` and ``weights``;
    see :func:`load_model`. Panoptic segments are drawn when the model predicts them, otherwise instances (boxes,
    masks) and a semantic segmentation if present."""
    model, resize, input_format, metadata = load_model(config, weights, score_threshold=score_threshold,
                                                       device=device, opts=opts, fused=fused)

    def predict(image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        pixels = image[:, :, ::-1] if input_format == "BGR" else image
        resized = T.AugInput(np.ascontiguousarray(pixels))
        resize(resized)
        pixels = resized.image
        tensor = torch.as_tensor(np.ascontiguousarray(pixels).transpose(2, 0, 1).astype("float32"))
        with torch.no_grad():
            output = model([{"image": tensor.to(device), "height": height, "width": width}])[0]
        visualizer = Visualizer(image, metadata, instance_mode=ColorMode.IMAGE)
        if "panoptic_seg" in output:
            segments, info = output["panoptic_seg"]
            drawn = visualizer.draw_panoptic_seg(segments.cpu(), info)
        else:
            if "sem_seg" in output:
                visualizer.draw_sem_seg(output["sem_seg"].argmax(dim=0).cpu())
            instances = output.get("instances")
            if instances is not None:
                instances = instances.to("cpu")
                drawn = visualizer.draw_instance_predictions(instances[instances.scores >= score_threshold])
            else:
                drawn = visualizer.output
        return drawn.get_image()

    predict.class_names = list(metadata.thing_classes)  # type: ignore[attr-defined]  (what is drawn)
    return predict
