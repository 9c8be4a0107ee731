"""The ResNeSt backbone (Zhang et al., 2020, "ResNeSt: Split-Attention Networks") for MMSegmentation and MMDetection.

:class:`OpenMMLabResNeSt` subclasses the core :class:`resnest_backbones.ResNeSt` and mmengine's ``BaseModule`` and
only translates OpenMMLab conventions: ``out_indices`` -> the core's ``out_features``, ``frozen_stages`` (-1 none,
0 stem, k stem + stages 1..k) -> ``freeze_at = frozen_stages + 1``, ``norm_cfg`` -> mmcv's ``build_norm_layer``,
``dcn``/``stage_with_dcn`` -> the core's ``deform_*`` arguments, and a pretrained ``init_cfg`` -> the strict load
of :mod:`resnest_backbones.openmmlab.weights`. The core validates what it receives (its errors are re-raised with the
OpenMMLab names); the adapter's one check names unknown and foreign keyword arguments. Parameter names are the
core's, i.e. the official ones.
"""
from __future__ import annotations

import difflib
import functools
import inspect
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from torch import Tensor, nn

from ..factory import set_memory_efficient
from ..models import STAGE_NAMES, variant_kwargs
from ..models import ResNeSt as CoreResNeSt
from ..types import ConfigDict
from .registry import MODELS
from .weights import load_pretrained, split_init_cfg

__all__ = ["OpenMMLabResNeSt"]

# Keyword arguments of mmseg's/mmdet's own ResNeSt, or core arguments the adapter sets itself, -> what to use here.
# A config ported from mmseg/mmdet (or missing ``_delete_=True``) would otherwise fail with a bare TypeError.
_FOREIGN_ARGS = {**dict.fromkeys(("depth", "stem_channels", "base_channels", "reduction_factor", "avg_down_stride",
                                  "groups", "base_width", "deep_stem", "avg_down", "num_stages"), "variant"),
                 **dict.fromkeys(("style", "conv_cfg", "plugins"), None), "dcn_stages": "stage_with_dcn",
                 "norm_layer": "norm_cfg", "freeze_at": "frozen_stages", "out_features": "out_indices"}
_DCN_TYPES = {"DCN": False, "DCNv2": True}  # mmcv's names -> core's ``deform_modulated``
_CORE_NAMES = ("core argument <- OpenMMLab argument: out_features res2..res5 <- out_indices 0..3, freeze_at <- "
               "frozen_stages + 1, deform_stages <- stage_with_dcn")


def _norm(norm_cfg: ConfigDict, channels: int) -> nn.Module:
    return build_norm_layer(norm_cfg, channels)[1]


def _hint(key: str, valid: Sequence[str]) -> str:
    """Why ``key`` is not taken: what replaces a foreign argument, or the closest valid spelling of a typo."""
    if key in _FOREIGN_ARGS:
        instead = _FOREIGN_ARGS[key]
        return f" (mmseg's/mmdet's own ResNeSt or the core: {f'use {instead}' if instead else 'not used here'})"
    close = difflib.get_close_matches(key, valid, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_known(overrides: Dict[str, Any]) -> None:
    """The adapter's one argument check: unknown and foreign keywords fail with what to write instead."""
    core = set(inspect.signature(CoreResNeSt.__init__).parameters) - {"self", "layers", *_FOREIGN_ARGS}
    unknown = sorted(set(overrides) - core)
    if unknown:
        valid = sorted(core | set(inspect.signature(OpenMMLabResNeSt.__init__).parameters) - {"self", "overrides"})
        raise TypeError(f"resnest_backbones.ResNeSt got unknown argument(s) "
                        f"{', '.join(repr(k) + _hint(k, valid) for k in unknown)}; fix model.backbone in the config: "
                        f"choose the network with variant=... (e.g. 'resnest101e'), freeze with frozen_stages, and "
                        f"add _delete_=True to a backbone dict that replaces another one. Valid arguments: "
                        f"{', '.join(valid)}")


def _deform_args(dcn: Optional[ConfigDict], stage_with_dcn: Sequence[bool]) -> Dict[str, Any]:
    """mmcv's ``dcn`` dict and per-stage flags -> the core's ``deform_stages``, ``deform_modulated`` and groups."""
    if dcn is None:
        if any(stage_with_dcn):
            raise ValueError("stage_with_dcn is set but dcn is None: give dcn=dict(type='DCNv2', deform_groups=1)")
        return {}
    dcn = dict(dcn)
    kind, groups = dcn.pop("type", None), dcn.pop("deform_groups", 1)
    if dcn.pop("fallback_on_stride", False):
        raise ValueError("dcn fallback_on_stride=True is not supported: split attention is never strided here (AVD "
                         "pools instead), so leave it False")
    if kind not in _DCN_TYPES or dcn:
        raise ValueError(f"dcn must be dict(type='DCN' or 'DCNv2', deform_groups=int), got type={kind!r} and extra "
                         f"keys {sorted(dcn)}")
    return dict(deform_stages=tuple(bool(s) for s in stage_with_dcn), deform_modulated=_DCN_TYPES[kind],
                deform_groups=groups)


@MODELS.register_module(name="ResNeSt")
class OpenMMLabResNeSt(CoreResNeSt, BaseModule):
    """ResNeSt backbone with OpenMMLab arguments; ``forward`` returns a tuple of stage outputs.

    Args:
        variant: any name of :func:`resnest_backbones.list_variants` (or an official alias, ``resnest101``).
        out_indices: stages to output (0..3 = strides 4, 8, 16, 32 at output stride 32), in this order.
        frozen_stages: -1 freezes nothing, 0 the stem, ``k`` (up to 4) the stem and stages 1..k.
        norm_cfg: mmcv norm config (``SyncBN``, ``BN``, ``GN`` with ``num_groups``...); ``requires_grad=False``
            freezes the norm parameters.
        dcn: ``dict(type='DCN'|'DCNv2', deform_groups=1)`` to make split attention deformable in the stages
            where ``stage_with_dcn`` is true.
        pretrained: deprecated spelling of ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``
            (mmseg's ``EncoderDecoder`` passes its ``pretrained`` here).
        init_cfg: ``dict(type='Pretrained', checkpoint=path_or_url, prefix=None)`` loads an official/timm,
            detectron2-wrapper or OpenMMLab checkpoint strictly (any missing or mismatched backbone tensor is
            an error naming the keys) and logs the load report; other mmengine init configs work as usual.
        memory_efficient: train with the memory-saving modules (the default, as every entry point) or, ``False``,
            the reference modules.
        **overrides: any other argument of the core :class:`resnest_backbones.ResNeSt`: ``norm_eval``,
            ``output_stride``, ``strides``/``dilations``/``contract_dilation`` (mmseg style: ``strides=(1, 2, 1,
            1), dilations=(1, 1, 2, 4)`` is output stride 8), ``multi_grid``, ``avd_dilated`` (``True``: the
            official semantics, ``False``: mmseg's and timm's), ``with_cp``, ``drop_block_prob``...

    Example:
        >>> import torch
        >>> from resnest_backbones.openmmlab import OpenMMLabResNeSt
        >>> model = OpenMMLabResNeSt('resnest14d', out_indices=(0, 1, 2, 3), output_stride=8).eval()
        >>> [tuple(o.shape) for o in model(torch.zeros(1, 3, 64, 64))]
        [(1, 256, 16, 16), (1, 512, 8, 8), (1, 1024, 8, 8), (1, 2048, 8, 8)]
    """

    def __init__(self, variant: str = "resnest50d", *, out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1, norm_cfg: Optional[ConfigDict] = None, dcn: Optional[ConfigDict] = None,
                 stage_with_dcn: Sequence[bool] = (False, False, False, False), pretrained: Optional[str] = None,
                 init_cfg: Union[ConfigDict, List[ConfigDict], None] = None, memory_efficient: bool = True,
                 **overrides: Any) -> None:
        _check_known(overrides)
        others, pretrained_cfg = split_init_cfg(init_cfg, pretrained)
        stage_names = dict(enumerate(STAGE_NAMES))  # an index outside 0..3 reaches the core as an unknown name
        kwargs = dict(variant_kwargs(variant), out_features=[stage_names.get(i, str(i)) for i in out_indices],
                      freeze_at=frozen_stages + 1, **_deform_args(dcn, stage_with_dcn),
                      norm_layer=functools.partial(_norm, dict(norm_cfg or dict(type="BN", requires_grad=True))))
        try:
            super().__init__(**{**kwargs, **overrides})  # the core; its super().__init__() runs BaseModule's
        except ValueError as error:
            raise ValueError(f"{error} ({_CORE_NAMES})") from error
        self.variant = variant
        self.out_indices = tuple(out_indices)
        self.init_cfg = others  # applied by mmengine; the Pretrained entry is loaded strictly by init_weights
        self.pretrained_cfg = pretrained_cfg
        set_memory_efficient(self, memory_efficient)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:  # type: ignore[override]
        """The outputs of the stages in ``out_indices``, in that order."""
        features = self.forward_features(x)
        return tuple(features[STAGE_NAMES[i]] for i in self.out_indices)

    def init_weights(self) -> None:
        """Apply mmengine's ``init_cfg`` entries, then load the ``Pretrained`` checkpoint strictly (it wins)."""
        super().init_weights()  # mmengine: the other init configs (the core already initialised the rest)
        if self.pretrained_cfg is not None:
            load_pretrained(self, self.pretrained_cfg, self.variant)
