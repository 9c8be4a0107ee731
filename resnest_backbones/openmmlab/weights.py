"""A pretrained ``init_cfg`` entry of the OpenMMLab backbone -> a strict load through the core's loader.

mmengine's own ``Pretrained`` init loads with ``strict=False`` and only logs what did not match; here the file is
fetched by the core's :func:`~resnest_backbones.models.hub.local_weights` (torch hub's cache, hash checked, the same
path as ``create_model(pretrained=...)``) and loaded by :func:`resnest_backbones.load_checkpoint`, which fails
naming every missing, unexpected or mis-shaped tensor. Only schemes that mmengine alone knows (``open-mmlab://``,
``s3://``...) are fetched by mmengine.
"""
from __future__ import annotations

import copy
import os
from typing import Any, List, Optional, Tuple, Union

from mmengine.logging import print_log
from torch import nn

from ..models import VARIANTS, load_checkpoint, read_checkpoint, resolve_variant
from ..models.checkpoint.io import safe_unpickling
from ..models.hub import OFFICIAL_RELEASE, is_url, local_weights
from ..types import ConfigDict

__all__ = ["load_pretrained", "split_init_cfg"]


def split_init_cfg(init_cfg: Union[ConfigDict, List[ConfigDict], None], pretrained: Optional[str] = None
                   ) -> Tuple[Optional[List[ConfigDict]], Optional[ConfigDict]]:
    """``init_cfg`` (and the deprecated ``pretrained=``) -> (the entries for mmengine, the one Pretrained entry).

    Kept apart at construction so that ``init_weights`` hands mmengine only the other entries without ever
    rewriting ``init_cfg``.
    """
    if pretrained is not None:
        if init_cfg is not None:
            raise ValueError("give the checkpoint either as pretrained=... or in init_cfg, not both")
        init_cfg = dict(type="Pretrained", checkpoint=pretrained)
    entries = init_cfg if isinstance(init_cfg, list) else [init_cfg] if init_cfg else []
    configs = [copy.deepcopy(dict(c)) for c in entries]
    found = [c for c in configs if c.get("type") == "Pretrained"]
    if len(found) > 1:
        raise ValueError(f"init_cfg has {len(found)} Pretrained entries; give one checkpoint")
    return [c for c in configs if c.get("type") != "Pretrained"] or None, (found[0] if found else None)


def _source(checkpoint: str, variant: str, map_location: str) -> Any:
    """A local file name (or, for mmengine-only schemes, the loaded checkpoint) for ``checkpoint``."""
    if is_url(checkpoint) or os.path.isfile(checkpoint):
        return local_weights(checkpoint)
    if "://" in checkpoint:  # open-mmlab://, s3://...: only mmengine knows how to fetch them
        from mmengine.runner import CheckpointLoader

        with safe_unpickling(checkpoint):  # a refused global is a CheckpointError naming it
            return CheckpointLoader.load_checkpoint(checkpoint, map_location=map_location)
    url = VARIANTS[resolve_variant(variant)].url or OFFICIAL_RELEASE + "<file name>"
    raise FileNotFoundError(
        f"pretrained checkpoint {checkpoint} not found (relative paths start at the working directory); "
        f"give the URL of the official file instead ({url}, GitHub release weights_step1), which is "
        f"downloaded once into torch hub's cache, or put the file at that path; or set "
        f"model.backbone.init_cfg=None to train from scratch")


def load_pretrained(model: nn.Module, cfg: ConfigDict, variant: str) -> None:
    """Load ``dict(type='Pretrained', checkpoint=..., prefix=None, map_location='cpu')`` into ``model`` strictly.

    ``variant`` names the official file to suggest when ``checkpoint`` is neither a URL nor an existing path.
    """
    unknown = sorted(set(cfg) - {"type", "checkpoint", "prefix", "map_location"})
    if unknown or not cfg.get("checkpoint"):
        raise ValueError(f"Pretrained init_cfg takes checkpoint (required), prefix and map_location; got {dict(cfg)}")
    checkpoint = str(cfg["checkpoint"])
    source = _source(checkpoint, variant, cfg.get("map_location", "cpu"))
    prefix = cfg.get("prefix")
    if prefix:
        state = read_checkpoint(source)
        prefix = prefix if prefix.endswith(".") else prefix + "."
        source = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not source:
            raise ValueError(f"no key of {checkpoint} starts with prefix {prefix!r} (first keys: {list(state)[:3]})")
    report = load_checkpoint(model, source)  # strict: raises CheckpointError naming the keys
    print_log(f"resnest_backbones.ResNeSt({variant!r}) loaded {checkpoint}: {report.summary()}", logger="current")
