"""The ResNeSt backbone (Zhang et al., 2020, "ResNeSt: Split-Attention Networks") for MMSegmentation/MMDetection.

:class:`OpenMMLabResNeSt` subclasses the core :class:`resnest_backbones.ResNeSt` and mmengine's ``BaseModule`` and only
translates OpenMMLab conventions: ``out_indices`` -> a tuple of stage outputs, ``frozen_stages`` (-1 none, 0
stem, k stem + stages 1..k) -> the core's ``freeze_at = frozen_stages + 1``, ``norm_cfg`` -> mmcv's
``build_norm_layer``, ``dcn``/``stage_with_dcn`` -> the core's deformable stages, and a pretrained ``init_cfg``
-> the core's strict :func:`resnest_backbones.load_checkpoint` (mmengine's own pretrained init loads with
``strict=False`` and only logs what did not match), its file fetched by the core's
:func:`~resnest_backbones.models.hub.local_weights` (URLs cached in torch hub's cache, hash checked). Parameter
names are the core's, i.e. the official ones.
"""
from __future__ import annotations

import copy
import difflib
import functools
import inspect
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from mmcv.cnn import build_norm_layer
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import Tensor, nn

from ..models import STAGE_NAMES, VARIANTS, load_checkpoint, read_checkpoint, resolve_variant, variant_kwargs
from ..models.hub import OFFICIAL_RELEASE, is_url, local_weights
from ..models import ResNeSt as CoreResNeSt
from ..accel import memory_efficient_training
from .registry import MODELS

__all__ = ["OpenMMLabResNeSt"]

ConfigDict = Dict[str, Any]

# Arguments of mmseg's/mmdet's own ResNeSt that mean nothing here: a config ported from them (or missing
# ``_delete_=True``) would otherwise fail with a bare "unexpected keyword argument".
_FOREIGN_ARGS = ("depth", "stem_channels", "base_channels", "reduction_factor", "avg_down_stride", "groups",
                 "base_width", "deep_stem", "avg_down", "style", "num_stages", "conv_cfg", "plugins",
                 "dcn_stages", "norm_layer", "freeze_at", "out_features")
_DCN_TYPES = {"DCN": False, "DCNv2": True}  # mmcv's names -> core's ``deform_modulated``


def _norm(norm_cfg: ConfigDict, channels: int) -> nn.Module:
    return build_norm_layer(norm_cfg, channels)[1]


def _check_known(overrides: Dict[str, Any]) -> None:
    """Name unknown arguments (typos in a config) with the closest valid spelling, instead of a bare TypeError."""
    valid = (set(inspect.signature(OpenMMLabResNeSt.__init__).parameters)
             | set(inspect.signature(CoreResNeSt.__init__).parameters)) - {"self", "layers", "overrides", *_FOREIGN_ARGS}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        hints = {k: difflib.get_close_matches(k, sorted(valid), n=1) for k in unknown}
        described = ", ".join(f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for k, h in hints.items())
        raise TypeError(f"resnest_backbones.ResNeSt got unknown argument(s) {described}; fix model.backbone in "
                        f"the config. Valid arguments: {', '.join(sorted(valid))}")


@MODELS.register_module(name="ResNeSt")
class OpenMMLabResNeSt(CoreResNeSt, BaseModule):
    """ResNeSt backbone with OpenMMLab arguments; ``forward`` returns a tuple of stage outputs.

    Args:
        variant: any name of :func:`resnest_backbones.list_variants` (or an official alias, ``resnest101``).
        out_indices: stages to output (0..3 = strides 4, 8, 16, 32 at output stride 32), in this order.
        frozen_stages: -1 freezes nothing, 0 the stem, ``k`` the stem and stages 1..k.
        norm_cfg: mmcv norm config (``SyncBN``, ``BN``, ``GN`` with ``num_groups``...); ``requires_grad=False``
            freezes the norm parameters.
        norm_eval: keep every batch norm in eval mode during training.
        output_stride: 32, 16 or 8 with the official dilation scheme (ignored when ``strides`` is given).
        strides, dilations, contract_dilation: explicit per-stage control, as in mmseg's ResNets
            (``strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4)`` is output stride 8).
        multi_grid: dilation multipliers of the last stage's blocks (DeepLabV3).
        avd_dilated: where AVD is kept in dilated stages: ``True`` for the official ResNeSt semantics (a
            stride-1 average pool in the first block of every dilated stage), ``False`` for the semantics of
            mmseg's and timm's ResNeSt (AVD only in strided blocks). Identical networks at output stride 32.
        dcn: ``dict(type='DCN'|'DCNv2', deform_groups=1)`` to make split attention deformable.
        stage_with_dcn: per stage, whether ``dcn`` applies.
        with_cp: activation checkpointing of every block.
        pretrained: deprecated spelling of ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``
            (mmseg's ``EncoderDecoder`` passes its ``pretrained`` here).
        init_cfg: ``dict(type='Pretrained', checkpoint=path_or_url, prefix=None)`` loads an official/timm,
            detectron2-wrapper or OpenMMLab checkpoint strictly (any missing or mismatched backbone tensor is
            an error naming the keys) and logs the load report; other mmengine init configs work as usual.
        **overrides: any other argument of the core :class:`resnest_backbones.ResNeSt` (``drop_block_prob``,
            ``zero_init_last``, ``in_channels``, ...).

    Example:
        >>> import torch
        >>> from resnest_backbones.mmseg import OpenMMLabResNeSt
        >>> model = OpenMMLabResNeSt('resnest14d', out_indices=(0, 1, 2, 3), output_stride=8).eval()
        >>> [tuple(o.shape) for o in model(torch.zeros(1, 3, 64, 64))]
        [(1, 256, 16, 16), (1, 512, 8, 8), (1, 1024, 8, 8), (1, 2048, 8, 8)]
    """

    def __init__(
        self,
        variant: str = "resnest50d",
        *,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        frozen_stages: int = -1,
        norm_cfg: Optional[ConfigDict] = None,
        norm_eval: bool = False,
        output_stride: int = 32,
        strides: Optional[Sequence[int]] = None,
        dilations: Optional[Sequence[int]] = None,
        contract_dilation: bool = True,
        multi_grid: Optional[Sequence[int]] = None,
        avd_dilated: bool = True,
        dcn: Optional[ConfigDict] = None,
        stage_with_dcn: Sequence[bool] = (False, False, False, False),
        with_cp: bool = False,
        pretrained: Optional[str] = None,
        init_cfg: Union[ConfigDict, List[ConfigDict], None] = None,
        **overrides: Any,
    ) -> None:
        foreign = sorted(set(overrides) & set(_FOREIGN_ARGS))
        if foreign:
            raise TypeError(f"resnest_backbones.ResNeSt got {foreign}, arguments of mmseg's/mmdet's own ResNeSt or "
                            f"of the core: choose the network with variant=... (e.g. 'resnest101e'), freeze with "
                            f"frozen_stages, and add _delete_=True to a backbone dict that replaces another one")
        _check_known(overrides)
        out_indices = tuple(out_indices)
        if not out_indices or len(set(out_indices)) != len(out_indices) or not set(out_indices) <= {0, 1, 2, 3}:
            raise ValueError(f"out_indices must be distinct stage indices among 0..3, got {list(out_indices)}")
        if not -1 <= frozen_stages <= 3:
            raise ValueError(f"frozen_stages must be in -1..3 (-1: nothing, 0: stem, k: stem + stages 1..k), "
                             f"got {frozen_stages}")
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError("give the checkpoint either as pretrained=... or in init_cfg, not both")
            init_cfg = dict(type="Pretrained", checkpoint=pretrained)
        if len(stage_with_dcn) != 4:
            raise ValueError(f"stage_with_dcn needs one flag per stage (4), got {list(stage_with_dcn)}")
        deform: Dict[str, Any] = {}
        if dcn is not None:
            dcn = dict(dcn)
            kind = dcn.pop("type", None)
            groups = dcn.pop("deform_groups", 1)
            if dcn.pop("fallback_on_stride", False):
                raise ValueError("dcn fallback_on_stride=True is not supported: split attention is never strided "
                                 "here (AVD pools instead), so leave it False")
            if kind not in _DCN_TYPES or dcn:
                raise ValueError(f"dcn must be dict(type='DCN' or 'DCNv2', deform_groups=int), got type={kind!r} "
                                 f"and extra keys {sorted(dcn)}")
            deform = dict(deform_stages=tuple(bool(s) for s in stage_with_dcn), deform_modulated=_DCN_TYPES[kind],
                          deform_groups=groups)
        elif any(stage_with_dcn):
            raise ValueError("stage_with_dcn is set but dcn is None: give dcn=dict(type='DCNv2', deform_groups=1)")
        norm_cfg = dict(norm_cfg) if norm_cfg is not None else dict(type="BN", requires_grad=True)

        kwargs = variant_kwargs(variant)
        kwargs.update(
            out_features=[STAGE_NAMES[i] for i in out_indices], freeze_at=frozen_stages + 1, norm_eval=norm_eval,
            norm_layer=functools.partial(_norm, norm_cfg), output_stride=output_stride, strides=strides,
            dilations=dilations, contract_dilation=contract_dilation, multi_grid=multi_grid,
            avd_dilated=avd_dilated, with_cp=with_cp, **deform)
        kwargs.update(overrides)
        super().__init__(**kwargs)  # the core; its super().__init__() runs BaseModule.__init__
        self.variant = variant
        self.out_indices = out_indices
        self.init_cfg = copy.deepcopy(init_cfg)
        memory_efficient_training(self)  # as create_model does: the memory-saving training modules

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:  # type: ignore[override]
        """The outputs of the stages in ``out_indices``, in that order."""
        features = self.forward_features(x)
        return tuple(features[STAGE_NAMES[i]] for i in self.out_indices)

    def init_weights(self) -> None:
        """Apply ``init_cfg``; a ``Pretrained`` entry loads strictly through the core's loader."""
        configs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg] if self.init_cfg else []
        pretrained = [c for c in configs if c.get("type") == "Pretrained"]
        others = [c for c in configs if c.get("type") != "Pretrained"]
        if len(pretrained) > 1:
            raise ValueError(f"init_cfg has {len(pretrained)} Pretrained entries; give one checkpoint")
        original = self.init_cfg
        self.init_cfg = others or None
        try:
            super().init_weights()  # mmengine: the other init configs (the core already initialised the rest)
        finally:
            self.init_cfg = original
        if pretrained:
            self._load_pretrained(pretrained[0])

    def _load_pretrained(self, cfg: ConfigDict) -> None:
        unknown = sorted(set(cfg) - {"type", "checkpoint", "prefix", "map_location"})
        if unknown or not cfg.get("checkpoint"):
            raise ValueError(f"Pretrained init_cfg takes checkpoint (required), prefix and map_location; "
                             f"got {dict(cfg)}")
        checkpoint = str(cfg["checkpoint"])
        source: Any = checkpoint
        if is_url(checkpoint) or os.path.isfile(checkpoint):
            # http(s)/file URLs and paths: the core's one loader path (torch hub's cache, hash check by file name,
            # then weights_only reading in load_checkpoint), the same as create_model(pretrained=...)
            source = local_weights(checkpoint)
        elif "://" in checkpoint:  # open-mmlab://, s3://...: only mmengine knows how to fetch them
            from mmengine.runner import CheckpointLoader

            source = CheckpointLoader.load_checkpoint(checkpoint, map_location=cfg.get("map_location", "cpu"))
        else:
            url = VARIANTS[resolve_variant(self.variant)].url or OFFICIAL_RELEASE + "<file name>"
            raise FileNotFoundError(
                f"pretrained checkpoint {checkpoint} not found (relative paths start at the working directory); "
                f"give the URL of the official file instead ({url}, GitHub release weights_step1), which is "
                f"downloaded once into torch hub's cache, or put the file at that path; or set "
                f"model.backbone.init_cfg=None to train from scratch")
        prefix = cfg.get("prefix")
        if prefix:
            state = read_checkpoint(source)
            prefix = prefix if prefix.endswith(".") else prefix + "."
            source = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if not source:
                raise ValueError(f"no key of {checkpoint} starts with prefix {prefix!r} (first keys: {list(state)[:3]})")
        report = load_checkpoint(self, source)  # strict: raises CheckpointError naming the keys
        print_log(f"resnest_backbones.ResNeSt({self.variant!r}) loaded {checkpoint}: {report.summary()}",
                  logger="current")
