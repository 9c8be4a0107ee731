"""``create_model`` and the one memory-saving switch: a layer above :mod:`.models` and :mod:`.accel`.

:mod:`.models` holds the reference network and its variant table, :mod:`.accel` the memory-saving training
modules; this module builds a variant and decides, from one argument, which modules it trains with. Every entry
point (this ``create_model``, the detectron2 builders, the OpenMMLab backbone, the torchvision adapter) takes
``memory_efficient`` and goes through :func:`set_memory_efficient`.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Type, TypeVar, Union

from torch import nn

from .accel import memory_efficient_training, reference_modules
from .models.checkpoint import load_checkpoint
from .models.hf_hub import read_weights
from .models.hub import local_weights
from .models.resnest import ResNeSt
from .models.variants import pretrained_source, variant_kwargs

__all__ = ["create_model", "set_memory_efficient"]

ModelT = TypeVar("ModelT", bound=ResNeSt)
ModuleT = TypeVar("ModuleT", bound=nn.Module)


def set_memory_efficient(model: ModuleT, enabled: bool) -> ModuleT:
    """Train ``model`` with the memory-saving modules (``enabled``, the default of every entry point: same values
    and parameters, less activation memory) or with the reference modules (``False``: e.g. to rule the fast path
    out when chasing a problem). Works on any module holding ResNeSt parts; returns ``model``."""
    if not isinstance(enabled, bool):
        raise TypeError(f"memory_efficient must be True or False, got {enabled!r}")
    return memory_efficient_training(model) if enabled else reference_modules(model)


def create_model(
    name: str,
    *,
    pretrained: Union[None, bool, str, os.PathLike, Mapping[str, Any]] = None,
    cls: Type[ModelT] = ResNeSt,  # type: ignore[assignment]
    memory_efficient: bool = True,
    **overrides: Any,
) -> ModelT:
    """Build the variant ``name``.

    Args:
        name: a name from :func:`~resnest_backbones.list_variants` (timm's) or an official alias (``resnest50``...).
        pretrained: ``None``/``False`` for random weights; ``True`` for the variant's ImageNet weights
            (:func:`~resnest_backbones.models.variants.pretrained_source`): the official file, downloaded once into
            torch hub's checkpoint directory, else timm's Hugging Face hub file (ResNeSt-14/26), downloaded once into
            the Hugging Face cache; a path or an ``http(s)://``/``file://`` URL of a checkpoint in any supported
            format (official/timm, detectron2 wrapper, OpenMMLab), ``hf-hub:<owner>/<repo>``, or an already loaded
            state dict. A sha256 prefix in the file name is verified
            (:func:`~resnest_backbones.models.hub.local_weights`); ``.pth`` files are read with
            ``weights_only=True``, ``.safetensors`` files with ``safetensors``.
        cls: the class to build (an adapter subclass of :class:`~resnest_backbones.ResNeSt`).
        memory_efficient: train with the memory-saving modules (:func:`set_memory_efficient`); ``False`` builds
            the reference modules.
        **overrides: any :class:`~resnest_backbones.ResNeSt` argument (``num_classes``, ``output_stride``,
            ``out_features``...).

    Returns:
        The model, with the checkpoint loaded strictly when one is given.
    """
    if pretrained is True:
        pretrained = pretrained_source(name)  # before building: an unknown name is an error at once
    model = set_memory_efficient(cls(**{**variant_kwargs(name), **overrides}), memory_efficient)
    if pretrained:
        source = pretrained if isinstance(pretrained, Mapping) else read_weights(local_weights(pretrained))
        load_checkpoint(model, source)
    return model
