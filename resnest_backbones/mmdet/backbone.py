"""The ResNeSt backbone (Zhang et al., 2020, "ResNeSt: Split-Attention Networks") for MMDetection.

:class:`MMDetResNeSt` is the mmseg adapter's :class:`~resnest_backbones.mmseg.OpenMMLabResNeSt` (OpenMMLab
arguments, strict pretrained ``init_cfg``, the core's = official parameter names) with one addition for mmdet's
released detectors: :func:`accept_openmmlab_layout`, a ``load_state_dict`` pre-hook that renames the OpenMMLab
ResNeSt keys (``stem.0`` .. ``stem.7``, ``gn*`` norms, pool-less stride-1 shortcuts) under the backbone's prefix
to ours. So a whole mmdet checkpoint (``backbone.stem.0.weight``, ``neck.*``, ``rpn_head.*``, ``roi_head.*``)
loads as it is through every loader that ends in ``load_state_dict``: mmengine's ``load_checkpoint``, ``load_from``,
mmdet's ``tools/test.py CONFIG FILE``, ``torch.load`` + ``model.load_state_dict``.
"""
from __future__ import annotations

from typing import Any, Dict, List

from torch import Tensor, nn

from ..mmseg.backbone import OpenMMLabResNeSt
from ..models import CheckpointError, LoadReport, convert_state_dict
from .registry import MODELS

__all__ = ["MMDetResNeSt", "accept_openmmlab_layout"]

_OPENMMLAB_STEM = "stem.0."  # only the OpenMMLab layout has it (ours and the official one: conv1.0)


def _not_built(module: nn.Module, key: str) -> bool:
    """Whether ``key`` belongs to a stage this backbone does not build (outputs end before it)."""
    return isinstance(getattr(module, key.split(".")[0], None), nn.Identity)


def accept_openmmlab_layout(
    module: nn.Module, state_dict: Dict[str, Tensor], prefix: str, local_metadata: Dict, strict: bool,
    missing_keys: List[str], unexpected_keys: List[str], error_msgs: List[str],
) -> None:
    """``load_state_dict`` pre-hook: rename mmdet's/mmseg's ResNeSt keys under ``prefix`` to this module's.

    An OpenMMLab-layout backbone that does not cover this module exactly (missing, unexpected or mis-shaped
    tensors) raises :class:`~resnest_backbones.CheckpointError` naming the keys, whatever ``strict`` says:
    mmengine's loaders (``load_from``, mmdet's ``tools/test.py``) load with ``strict=False`` and would only log
    it. Tensors of stages the backbone does not build are dropped; a file without ``num_batches_tracked``
    counters keeps the module's. Other layouts pass through untouched.
    """
    keys = [k for k in state_dict if k.startswith(prefix)]
    if not any(k.startswith(prefix + _OPENMMLAB_STEM) for k in keys):
        return
    converted, _, _ = convert_state_dict({k[len(prefix):]: state_dict[k] for k in keys})
    own = {k: v.detach() for k, v in module.state_dict(keep_vars=True).items()}
    built = {k: v for k, v in converted.items() if k in own or not _not_built(module, k)}
    built.update({k: v for k, v in own.items() if k.endswith("num_batches_tracked") and k not in built})
    report = LoadReport(
        source_format="OpenMMLab ResNeSt", loaded=sorted(set(built) & set(own)),
        missing=sorted(prefix + k for k in set(own) - set(built)),
        unexpected=sorted(prefix + k for k in set(built) - set(own)),
        mismatched=sorted((prefix + k, tuple(v.shape), tuple(own[k].shape))
                          for k, v in built.items() if k in own and v.shape != own[k].shape))
    if not report.ok:
        raise CheckpointError(
            f"the OpenMMLab-layout ResNeSt backbone under '{prefix}' does not fit this "
            f"resnest_backbones.ResNeSt({getattr(module, 'variant', '?')!r}) (an S-50 file in an S-101 config, or a "
            f"partial file?)\n{report.summary()}\nUse the config the file was trained with (docs/model_zoo.md).",
            report)
    for key in keys:
        del state_dict[key]
    state_dict.update({prefix + k: v for k, v in built.items()})


@MODELS.register_module(name="ResNeSt")
class MMDetResNeSt(OpenMMLabResNeSt):
    """:class:`~resnest_backbones.mmseg.OpenMMLabResNeSt` (same arguments) that also loads mmdet's released
    detectors: OpenMMLab-layout keys under its prefix are renamed by :func:`accept_openmmlab_layout`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register_load_state_dict_pre_hook(accept_openmmlab_layout)
