"""torch.hub entry points of resnest_backbones: ResNeSt (Zhang et al., 2020, "ResNeSt: Split-Attention
Networks") classifiers/backbones under timm's names, and a ResNeSt-FPN backbone for torchvision detection.

Example (from a local checkout)::

    import torch
    classifier = torch.hub.load("path/to/resnest_backbones", "resnest50d", source="local",
                                pretrained=True)           # official ImageNet file, downloaded once; 1000 classes
    backbone = torch.hub.load("path/to/resnest_backbones", "resnest50d", source="local", num_classes=0,
                              out_features=["res3", "res4", "res5"])            # dict of stage features
    fpn = torch.hub.load("path/to/resnest_backbones", "resnest_fpn_backbone", source="local",
                         variant="resnest50d", trainable_layers=3)

``pretrained`` is ``None`` (random weights), ``True`` for the variant's ImageNet weights (the official file,
downloaded once into torch hub's checkpoint directory, sha256-checked; for ResNeSt-14/26, which have none, timm's
file on the Hugging Face hub, which needs ``pip install huggingface_hub safetensors``), or a checkpoint path,
``http(s)://``/``file://`` URL or ``hf-hub:<owner>/<repo>`` (official, timm, detectron2 or OpenMMLab format, loaded
strictly).
"""
import typing as _typing  # underscored: torch.hub.list() lists every public callable of this module

from resnest_backbones import ResNeSt as _ResNeSt
from resnest_backbones import create_model as _create_model
from resnest_backbones import list_variants as _list_variants
from resnest_backbones.torchvision import resnest_fpn_backbone  # noqa: F401  (an entry point)

dependencies = ["torch", "torchvision"]


def _entry_point(name: str) -> _typing.Callable[..., _ResNeSt]:
    def entry(pretrained: _typing.Any = None, num_classes: int = 1000, **kwargs: _typing.Any) -> _ResNeSt:
        return _create_model(name, pretrained=pretrained, num_classes=num_classes, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = f"""ResNeSt variant {name!r} (the core model, resnest_backbones.ResNeSt).

    Args:
        pretrained: None, True (the official ImageNet file, downloaded once into torch hub's checkpoint
            directory; timm's Hugging Face hub file where there is none), or a checkpoint path, URL or
            hf-hub:<owner>/<repo> (any supported format, loaded strictly).
        num_classes: size of the ImageNet head: 1000 by default, as the official and timm hub models; 0 for a
            backbone whose forward returns the stage features.
        **kwargs: other ResNeSt arguments (output_stride, out_features, norm_layer, freeze_at, ...).
    """
    return entry


# One entry point per variant, generated from the variant table so the two can never disagree.
for _name in _list_variants():
    globals()[_name] = _entry_point(_name)
