"""Foreign checkpoint layouts (official detectron2 wrapper, OpenMMLab), written from the official keys as
docs/reference.md section 1 (key layouts) has them, independently of the package's converter (so the converter is
tested against them, not against itself)."""
from __future__ import annotations

import re

import torch

from resnest_backbones.layers.stem import CONV_A, CONV_B, CONV_C, NORM_A, NORM_B, STEM_INDICES, stem_key

_D2_STEM = {stem_key(CONV_A): "stem.conv1_1.", stem_key(NORM_A): "stem.conv1_1.norm.",
            stem_key(CONV_B): "stem.conv1_2.", stem_key(NORM_B): "stem.conv1_2.norm.",
            stem_key(CONV_C): "stem.conv1_3.", "bn1.": "stem.conv1_3.norm."}
# OpenMMLab's stem Sequential uses the same child indices and holds the network's bn1 as its 8th layer.
_MMLAB_STEM = {**{stem_key(i): f"stem.{i}." for i in STEM_INDICES}, "bn1.": "stem.7."}


def _rename(state: dict, stem: dict, block_key, skip=lambda key: False) -> dict:
    """Rename stem keys by prefix table and every other key with ``block_key(key)``; drop the classifier."""
    out = {}
    for key, value in state.items():
        if skip(key) or key.startswith("fc."):
            continue
        prefix = next((old for old in stem if key.startswith(old)), None)
        out[stem[prefix] + key[len(prefix):] if prefix else block_key(key)] = value
    return out


def to_detectron2_wrapper(state: dict, deform_groups: int = 1) -> dict:
    """Official keys -> the official detectron2 wrapper's keys (bare; FrozenBN: no num_batches_tracked).

    Only the block's own norms are renamed (``layerN.i.bn1`` -> ``resM.i.conv1.norm``); split attention keeps
    ``conv2.bn0``/``conv2.bn1`` in that format. A deformable block's offset conv moves beside split attention
    (``resM.i.conv2_offset``) and must have the official shape (docs/reference.md section 4): a 3x3 conv grouped
    by ``deform_groups`` (G) from the block's bottleneck width to ``27 * G`` (modulated) or ``18 * G`` channels.
    """
    def block_key(key: str) -> str:
        key = re.sub(r"^layer(\d)\.", lambda m: f"res{int(m.group(1)) + 1}.", key)
        key = re.sub(r"^(res\d\.\d+)\.bn([13])\.", r"\1.conv\2.norm.", key)
        key = key.replace(".conv2.conv.conv_offset.", ".conv2_offset.")
        return key.replace(".downsample.1.", ".shortcut.").replace(".downsample.2.", ".shortcut.norm.")

    out = _rename(state, _D2_STEM, block_key, skip=lambda key: key.endswith("num_batches_tracked"))
    for key, value in out.items():
        if key.endswith(".conv2_offset.weight"):
            width = out[key.replace(".conv2_offset.weight", ".conv1.weight")].shape[0]
            official = [(per_group * deform_groups, width // deform_groups, 3, 3) for per_group in (27, 18)]
            if tuple(value.shape) not in official:
                raise ValueError(f"{key} has shape {list(value.shape)}; the official wrapper's is one of "
                                 f"{[list(s) for s in official]} for {deform_groups} deformable groups")
    return out


def to_openmmlab(state: dict, norm_abbr: str = "bn") -> dict:
    """Official keys -> mmseg/mmdet ResNeSt keys inside a full segmentor (``backbone.`` prefix, a head key)."""
    def block_key(key: str) -> str:
        key = re.sub(r"\.bn([013])\.", rf".{norm_abbr}\1.", key)
        # OpenMMLab's stride-1 shortcut (res2) has no pooling slot: conv and norm are .0 and .1
        return re.sub(r"^layer1\.0\.downsample\.([12])\.",
                      lambda m: f"layer1.0.downsample.{int(m.group(1)) - 1}.", key)

    out = {"backbone." + k: v for k, v in _rename(state, _MMLAB_STEM, block_key).items()}
    out["decode_head.conv_seg.weight"] = torch.zeros(3, 8, 1, 1)
    return out
