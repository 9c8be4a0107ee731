"""The model files of ``tools/torchvision_train.py``: the weights with what rebuilds the model (variant, image size,
class names), read without running code; and starting a training from one, fine-tuning when the class count
differs (:mod:`resnest_backbones.models.checkpoint.fit`: the class layers start fresh, anything else must fit).

A bare state dict (what the tool saved before) still loads where the variant and image size are given.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
from torch import Tensor, nn

from ..models.checkpoint import CheckpointError, read_file
from ..models.checkpoint.fit import ClassLayers, load_fitting
from ..models.checkpoint.report import is_counter
from ..types import PathLike
from .toy import toy_faster_rcnn

__all__ = ["FORMAT", "ModelFile", "class_layers", "fine_tune_from", "read_model_file", "save_model_file"]

#: The ``format`` entry of a model file.
FORMAT = "resnest_backbones.torchvision.faster_rcnn/1"


@dataclass
class ModelFile:
    """A model file's weights and, where it carries them, what rebuilds the model."""

    path: str
    state_dict: Dict[str, Tensor]
    variant: Optional[str] = None
    image_size: Optional[int] = None
    #: The class names, label 1 first (label 0 is the background).
    classes: Optional[List[str]] = None

    def build(self, variant: Optional[str] = None, image_size: Optional[int] = None) -> nn.Module:
        """The toy Faster R-CNN this file's weights belong to (the file's variant, size and classes, or the ones
        given for a bare state dict)."""
        variant, image_size = variant or self.variant, image_size or self.image_size
        if variant is None or image_size is None:
            raise CheckpointError(f"{self.path} is a bare state dict: give the variant and image size it was trained "
                                  f"with (--variant, --image-size)")
        frozen = not any(is_counter(k) for k in self.state_dict)  # FrozenBatchNorm2d has no counters
        return toy_faster_rcnn(variant, self.num_classes + 1, image_size, frozen_norm=frozen)

    @property
    def num_classes(self) -> int:
        """The class count (without the background), from the names or from the classifier's shape."""
        if self.classes:
            return len(self.classes)
        scores = self.state_dict.get("roi_heads.box_predictor.cls_score.weight")
        if scores is None:
            raise CheckpointError(f"{self.path} holds no Faster R-CNN box predictor "
                                  f"(roi_heads.box_predictor.cls_score.weight): not a whole torchvision model")
        return scores.shape[0] - 1


def save_model_file(path: PathLike, model: nn.Module, *, variant: str, image_size: int, classes: List[str]) -> None:
    """Write ``model``'s weights with its variant, image size and class names."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "variant": variant, "image_size": image_size, "classes": list(classes),
                "state_dict": model.state_dict()}, path)


def read_model_file(path: PathLike) -> ModelFile:
    """A model file (or a bare state dict), read without running code."""
    data = read_file(str(path))
    if isinstance(data, dict) and data.get("format") == FORMAT:
        return ModelFile(str(path), data["state_dict"], data["variant"], int(data["image_size"]),
                         list(data["classes"]))
    if isinstance(data, dict) and all(isinstance(v, Tensor) for v in data.values()):
        return ModelFile(str(path), data)
    raise CheckpointError(f"{path} is neither a model file of tools/torchvision_train.py nor a state dict")


def class_layers(variant: str, image_size: int, num_classes: int) -> ClassLayers:
    """The class layers of the toy Faster R-CNN for ``num_classes`` classes (built on the meta device)."""
    def shapes_at(n: int) -> Dict[str, torch.Size]:
        with torch.device("meta"):
            return {k: v.shape for k, v in toy_faster_rcnn(variant, n + 1, image_size).state_dict().items()}

    return ClassLayers.from_builder(shapes_at, num_classes)


@dataclass
class FineTuneStart:
    """Where a training starts: a model file, its variant and image size (or those given)."""

    file: ModelFile
    variant: str
    image_size: int
    #: The data's class names.
    classes: List[str]
    log: Callable[[str], None]

    def load_into(self, model: nn.Module) -> None:
        """Load the file into ``model`` (built for the data's classes): everything must fit but the class layers,
        which start fresh when the class count differs (one line says so)."""
        layers = class_layers(self.variant, self.image_size, model.roi_heads.box_predictor.cls_score.out_features - 1)
        decision = load_fitting(model, self.file.state_dict, mode="finetune", source=self.file.path,
                                class_layers=layers, remedy="Start from a model of the same --variant.",
                                saved_classes=self.file.classes, classes=self.classes)
        self.log(decision.line or f"starting from {self.file.path} (the same class count: every tensor loaded)")


def fine_tune_from(path: PathLike, variant: Optional[str], image_size: Optional[int], classes: List[str],
                   log: Callable[[str], None] = print) -> FineTuneStart:
    """Read ``path`` to start a training on ``classes`` from it; the variant and image size default to the
    file's."""
    file = read_model_file(path)
    if variant is None and file.variant is None:
        raise CheckpointError(f"{path} is a bare state dict: give --variant (the one it was trained with)")
    return FineTuneStart(file, variant or file.variant, image_size or file.image_size or 128, list(classes), log)
