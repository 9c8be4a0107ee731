"""The type aliases the package shares (one definition each)."""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, Union

import numpy as np
from torch import Tensor, nn

__all__ = ["ConfigDict", "NormLayer", "PathLike", "Predictor", "StateDict"]

#: A file path as the user gives it.
PathLike = Union[str, os.PathLike]
#: A module's tensors by key (``state_dict()``).
StateDict = Dict[str, Tensor]
#: An OpenMMLab config entry (``dict(type=..., ...)``).
ConfigDict = Dict[str, Any]
#: Builds a norm layer for a channel count.
NormLayer = Callable[[int], nn.Module]
#: An RGB ``uint8`` image ``(H, W, 3)`` -> the same-sized RGB image with the predictions drawn. Every predictor of
#: this package also has ``class_names``: what it labels its predictions with (the model file's names, if it has any).
Predictor = Callable[[np.ndarray], np.ndarray]
