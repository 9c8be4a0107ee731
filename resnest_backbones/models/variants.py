"""The ResNeSt variant table (``create_model`` builds from it: :mod:`resnest_backbones.factory`).

Variants are data: one row per published architecture (docs/reference.md section 1), under timm's names, with the
official ``resnest`` package's names as aliases, so a name means the same network everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from torch import nn

from .hf_hub import HF_HUB_PREFIX
from .hub import OFFICIAL_RELEASE, cache_dir

__all__ = ["Variant", "VARIANTS", "count_parameters", "list_variants", "official_url", "pretrained_source",
           "resolve_variant", "variant_kwargs"]

@dataclass(frozen=True)
class Variant:
    """One published ResNeSt architecture."""

    layers: Tuple[int, int, int, int]
    stem_width: int
    radix: int
    cardinality: int
    bottleneck_width: int
    avd_first: bool
    aliases: Tuple[str, ...] = ()
    #: URL of the official ImageNet file (sha256 prefix in its name), when one was published.
    url: Optional[str] = None
    #: timm's Hugging Face hub repository of the variant's ImageNet weights (``model.safetensors``, official keys),
    #: when timm publishes one (``timm/models/resnest.py``); ``pretrained=True`` uses it where ``url`` is ``None``.
    hf_hub_id: Optional[str] = None
    # Published figures (tools/flops.py, tests/test_model.py and the README quote them from here; sources as
    # collected in docs/reference.md section 1).
    #: Parameter count in millions with the 1000-class head as timm's model cards print it (two decimals; equal
    #: to ours and the official model's, see tests/test_parity.py); ``None`` where timm has no such model.
    params_m: Optional[float] = None
    #: Parameter count in millions as the ResNeSt paper / official model zoo prints it (one decimal, rounded
    #: there); given only where timm publishes none (the ``resnest50_fast_*`` models).
    paper_params_m: Optional[float] = None
    #: GFLOPs (multiply-adds) at 224x224 as the paper / official model zoo prints them (the fast models only).
    gflops: Optional[float] = None
    #: Side of the square crop the published top-1 was evaluated at (official model zoo; timm's ``input_size``).
    eval_size: int = 224
    #: ImageNet top-1 (%) at ``eval_size``: official model zoo; timm's results for resnest14d/26d (no official
    #: model).
    top1: Optional[float] = None

    def kwargs(self) -> Dict[str, Any]:
        """Constructor arguments of :class:`ResNeSt` for this variant."""
        return dict(layers=self.layers, stem_width=self.stem_width, radix=self.radix,
                    cardinality=self.cardinality, bottleneck_width=self.bottleneck_width,
                    avd=True, avd_first=self.avd_first)

    def published_params_m(self) -> Optional[float]:
        """The published parameter count (millions): timm's exact one, else the paper's rounded one."""
        return self.params_m if self.params_m is not None else self.paper_params_m


_R50 = (3, 4, 6, 3)


def _official(file_name: str) -> str:
    return OFFICIAL_RELEASE + file_name


VARIANTS: Dict[str, Variant] = {
    "resnest14d": Variant(layers=(1, 1, 1, 1), stem_width=32, radix=2, cardinality=1, bottleneck_width=64,
                          avd_first=False, hf_hub_id="timm/resnest14d.gluon_in1k", params_m=10.61, top1=75.52),
    "resnest26d": Variant(layers=(2, 2, 2, 2), stem_width=32, radix=2, cardinality=1, bottleneck_width=64,
                          avd_first=False, hf_hub_id="timm/resnest26d.gluon_in1k", params_m=17.07, top1=78.48),
    "resnest50d": Variant(layers=_R50, stem_width=32, radix=2, cardinality=1, bottleneck_width=64, avd_first=False,
                          aliases=("resnest50",), url=_official("resnest50-528c19ca.pth"),
                          hf_hub_id="timm/resnest50d.in1k", params_m=27.48, top1=81.03),
    "resnest101e": Variant(layers=(3, 4, 23, 3), stem_width=64, radix=2, cardinality=1, bottleneck_width=64,
                           avd_first=False, aliases=("resnest101",), url=_official("resnest101-22405ba7.pth"),
                           hf_hub_id="timm/resnest101e.in1k", params_m=48.28, eval_size=256, top1=82.83),
    "resnest200e": Variant(layers=(3, 24, 36, 3), stem_width=64, radix=2, cardinality=1, bottleneck_width=64,
                           avd_first=False, aliases=("resnest200",), url=_official("resnest200-75117900.pth"),
                           hf_hub_id="timm/resnest200e.in1k", params_m=70.20, eval_size=320, top1=83.84),
    "resnest269e": Variant(layers=(3, 30, 48, 8), stem_width=64, radix=2, cardinality=1, bottleneck_width=64,
                           avd_first=False, aliases=("resnest269",), url=_official("resnest269-0cc87c48.pth"),
                           hf_hub_id="timm/resnest269e.in1k", params_m=110.93, eval_size=416, top1=84.54),
    "resnest50_fast_1s1x64d": Variant(layers=_R50, stem_width=32, radix=1, cardinality=1, bottleneck_width=64,
                                      avd_first=True, url=_official("resnest50_fast_1s1x64d-d8fbf808.pth"),
                                      paper_params_m=26.3, gflops=4.34, top1=80.33),
    "resnest50_fast_2s1x64d": Variant(layers=_R50, stem_width=32, radix=2, cardinality=1, bottleneck_width=64,
                                      avd_first=True, url=_official("resnest50_fast_2s1x64d-44938639.pth"),
                                      paper_params_m=27.5, gflops=4.34, top1=80.53),
    "resnest50_fast_4s1x64d": Variant(layers=_R50, stem_width=32, radix=4, cardinality=1, bottleneck_width=64,
                                      avd_first=True, url=_official("resnest50_fast_4s1x64d-f74f3fc3.pth"),
                                      paper_params_m=31.9, gflops=4.35, top1=80.76),
    "resnest50_fast_1s2x40d": Variant(layers=_R50, stem_width=32, radix=1, cardinality=2, bottleneck_width=40,
                                      avd_first=True, url=_official("resnest50_fast_1s2x40d-32830b84.pth"),
                                      paper_params_m=25.9, gflops=4.38, top1=80.59),
    "resnest50_fast_2s2x40d": Variant(layers=_R50, stem_width=32, radix=2, cardinality=2, bottleneck_width=40,
                                      avd_first=True, url=_official("resnest50_fast_2s2x40d-9d126481.pth"),
                                      paper_params_m=26.9, gflops=4.38, top1=80.61),
    "resnest50d_4s2x40d": Variant(layers=_R50, stem_width=32, radix=4, cardinality=2, bottleneck_width=40,
                                  avd_first=True, aliases=("resnest50_fast_4s2x40d",),
                                  url=_official("resnest50_fast_4s2x40d-41d14ed0.pth"),
                                  hf_hub_id="timm/resnest50d_4s2x40d.in1k", params_m=30.42, gflops=4.41, top1=81.14),
    "resnest50d_1s4x24d": Variant(layers=_R50, stem_width=32, radix=1, cardinality=4, bottleneck_width=24,
                                  avd_first=True, aliases=("resnest50_fast_1s4x24d",),
                                  url=_official("resnest50_fast_1s4x24d-d4a4f76f.pth"),
                                  hf_hub_id="timm/resnest50d_1s4x24d.in1k", params_m=25.68, gflops=4.42, top1=80.99),
}

_ALIASES: Dict[str, str] = {alias: name for name, v in VARIANTS.items() for alias in v.aliases}


def list_variants(include_aliases: bool = False) -> List[str]:
    """Names accepted by :func:`create_model` (timm's names; with the official aliases if asked)."""
    names = list(VARIANTS)
    return names + sorted(_ALIASES) if include_aliases else names


def resolve_variant(name: str) -> str:
    """Canonical (timm) name of ``name``; raises a ``ValueError`` listing the valid names."""
    if name in VARIANTS:
        return name
    if name in _ALIASES:
        return _ALIASES[name]
    raise ValueError(f"unknown ResNeSt variant {name!r}; valid names: {', '.join(list_variants())} "
                     f"(official aliases: {', '.join(sorted(_ALIASES))})")


def variant_kwargs(name: str) -> Dict[str, Any]:
    """Constructor arguments of the variant ``name`` (canonical or alias)."""
    return VARIANTS[resolve_variant(name)].kwargs()


def official_url(name: str) -> str:
    """URL of the official ImageNet file of ``name``; a ``ValueError`` lists the variants that have one."""
    variant = VARIANTS[resolve_variant(name)]
    if variant.url is None:
        raise ValueError(f"no official ImageNet weights were published for {name!r}; variants with weights: "
                         f"{', '.join(n for n, v in VARIANTS.items() if v.url)} (timm's for {name!r}: "
                         f"pretrained={pretrained_source(name)!r})")
    return variant.url


def pretrained_source(name: str) -> str:
    """What ``pretrained=True`` loads for ``name``: the official file's URL where one was published, else timm's
    Hugging Face hub repository, as ``hf-hub:<owner>/<repo>``."""
    variant = VARIANTS[resolve_variant(name)]
    if variant.url:
        return variant.url
    if variant.hf_hub_id:
        return HF_HUB_PREFIX + variant.hf_hub_id
    raise ValueError(f"no ImageNet weights were published for {name!r}")


def default_checkpoint_path(name: str) -> Path:
    """Where ``pretrained=True`` caches the official weights of ``name`` (torch hub's checkpoint dir)."""
    return cache_dir() / official_url(name).rsplit("/", 1)[-1]


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())
