"""Released ResNeSt segmentation models (Zhang et al., 2020) -> this project's mmseg model state dicts.

Two families of released files are read as they are (no mmseg import is needed here):

* **PyTorch-Encoding** (the paper's ADE20K models, ``deeplab_resnest{50,101,200,269}_ade-<sha1[:8]>.pth``): a plain
  state dict with the backbone under ``pretrained.`` in the official ResNeSt keys, the DeepLabV3 head under
  ``head.`` and the auxiliary FCN head under ``auxlayer.``. Mapped onto the paper configs
  (``configs/mmseg/paper/``: :class:`~resnest_backbones.mmseg.heads.DeepLabV3Head` + mmseg's ``FCNHead``) by::

      pretrained.*          -> backbone.*                  (the official keys are ours)
      head.block.4.*        -> decode_head.conv_seg.*      (the classifier; mmseg's slot for it)
      head.*                -> decode_head.*               (same submodule names)
      auxlayer.conv5.0.*    -> auxiliary_head.convs.0.conv.*
      auxlayer.conv5.1.*    -> auxiliary_head.convs.0.bn.*
      auxlayer.conv5.4.*    -> auxiliary_head.conv_seg.*

* **mmseg's released ResNeSt models** (``deeplabv3_s101-d8_..._20200807_144503-17ecabe5.pth``):
  ``{"meta", "state_dict"}`` with the OpenMMLab backbone keys under ``backbone.`` (renamed to the official ones by
  :func:`resnest_backbones.convert_state_dict`) and mmseg's own heads, whose keys are unchanged (our mmseg-family
  configs use the same ``ASPPHead``/``FCNHead``).

A state dict already in this project's layout (``backbone.conv1.0.weight`` ...) passes through unchanged.
:func:`check_state_dict` compares a converted state dict with a model's and names every missing, unexpected and
mis-shaped key, with what they mean (wrong depth, head or class count).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor

from ..models.checkpoint import CheckpointError, LoadReport, convert_state_dict, read_file
from ..models.file_hash import verify_hash

__all__ = ["SegmentorCheckpoint", "check_state_dict", "convert_if_released", "convert_segmentor_state_dict",
           "detect_segmentor_format", "maybe_convert_released", "read_released_segmentor", "save_mmseg_checkpoint"]

StateDict = Dict[str, Tensor]
PathLike = Union[str, os.PathLike]

PYTORCH_ENCODING = "pytorch-encoding"
MMSEG = "mmseg"
OURS = "resnest_backbones"

# PyTorch-Encoding's FCNHead (``auxlayer.conv5`` = conv, norm, ReLU, Dropout, classifier) -> mmseg's FCNHead with
# one conv (``convs.0`` = ConvModule with ``conv``/``bn``) and its ``conv_seg``.
_PE_RULES: List[Tuple[str, str]] = [
    (r"^pretrained\.", "backbone."),
    (r"^head\.block\.4\.", "decode_head.conv_seg."),
    (r"^head\.", "decode_head."),
    (r"^auxlayer\.conv5\.0\.", "auxiliary_head.convs.0.conv."),
    (r"^auxlayer\.conv5\.1\.", "auxiliary_head.convs.0.bn."),
    (r"^auxlayer\.conv5\.4\.", "auxiliary_head.conv_seg."),
]
_HEAD_PREFIXES = ("decode_head.", "auxiliary_head.")


@dataclass
class SegmentorCheckpoint:
    """A released file converted to this project's keys: what mmengine's ``load_checkpoint`` reads."""

    state_dict: StateDict
    source_format: str
    meta: Dict[str, Any] = field(default_factory=dict)

    def to_mmengine(self) -> Dict[str, Any]:
        """``{"state_dict", "meta"}``, the layout of mmengine checkpoints (readable with ``weights_only=True``)."""
        return {"state_dict": self.state_dict, "meta": self.meta}


def _strip_module(state: Mapping[str, Tensor]) -> StateDict:
    return {re.sub(r"^module\.", "", key): value for key, value in state.items()}


def detect_segmentor_format(keys: List[str]) -> str:
    """``pytorch-encoding``, ``mmseg`` or ``resnest_backbones`` (already ours), from the key names."""
    if any(k.startswith("pretrained.") for k in keys) and any(k.startswith("head.") for k in keys):
        return PYTORCH_ENCODING
    if any(k.startswith("decode_head.") for k in keys):
        if any(k.startswith("backbone.stem.0.") for k in keys):
            return MMSEG
        if any(k.startswith("backbone.conv1.0.") for k in keys):
            return OURS
    raise CheckpointError(
        f"not a ResNeSt segmentation model in a known layout: PyTorch-Encoding (pretrained.*, head.*, auxlayer.*), "
        f"mmseg's ResNeSt (backbone.stem.0.*, decode_head.*) or this project's (backbone.conv1.0.*, "
        f"decode_head.*); first keys: {keys[:5]}. An ImageNet backbone file goes into model.backbone.init_cfg "
        f"instead")


def _add_missing_counters(state: StateDict) -> StateDict:
    """Give every batch norm a ``num_batches_tracked`` (older files lack it; it is a counter, not a weight), so
    the file loads with ``strict=True``."""
    for key in [k for k in state if k.endswith(".running_mean")]:
        counter = key[: -len("running_mean")] + "num_batches_tracked"
        state.setdefault(counter, torch.tensor(0, dtype=torch.long))
    return state


def convert_segmentor_state_dict(state_dict: Mapping[str, Tensor]) -> Tuple[StateDict, str]:
    """Rename a released segmentor's tensors to this project's mmseg model keys.

    Returns:
        ``(converted, source_format)``.
    """
    state = _strip_module(state_dict)
    fmt = detect_segmentor_format(list(state))
    if fmt == PYTORCH_ENCODING:
        unknown = [k for k in state if not k.startswith(("pretrained.", "head.", "auxlayer."))]
        if unknown:
            raise CheckpointError(f"PyTorch-Encoding file with keys outside pretrained./head./auxlayer.: "
                                  f"{unknown[:5]} (a model other than DeepLabV3, e.g. EncNet?); only the DeepLabV3 "
                                  f"models map onto configs/mmseg/paper")
        converted: StateDict = {}
        for key, value in state.items():
            for pattern, replacement in _PE_RULES:
                new_key = re.sub(pattern, replacement, key)
                if new_key != key:
                    key = new_key
                    break
            converted[key] = value
    elif fmt == MMSEG:
        backbone, _, _ = convert_state_dict({k: v for k, v in state.items() if k.startswith("backbone.")})
        converted = {"backbone." + k: v for k, v in backbone.items()}
        converted.update({k: v for k, v in state.items() if k.startswith(_HEAD_PREFIXES)})
        rest = sorted(set(state) - {k for k in state if k.startswith(("backbone.", *_HEAD_PREFIXES))})
        if rest:
            raise CheckpointError(f"mmseg file with keys outside backbone./decode_head./auxiliary_head.: {rest[:5]}")
    else:
        converted = dict(state)
    return _add_missing_counters(converted), fmt


def read_released_segmentor(path: PathLike, verify: bool = True, loaded: Any = None) -> SegmentorCheckpoint:
    """Read a released PyTorch-Encoding or mmseg ResNeSt file and convert it to this project's keys.

    Args:
        path: the ``.pth`` file (its name's hash prefix is checked: SHA-1 for PyTorch-Encoding, SHA-256 for mmseg).
        verify: check the hash in the name.
        loaded: the file's content when the caller has already read it (``weights_only=True``).
    """
    checked = verify_hash(path) if verify else None
    obj = read_file(path) if loaded is None else loaded
    source_meta = obj.get("meta", {}) if isinstance(obj, Mapping) else {}
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else obj
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors")
    converted, fmt = convert_segmentor_state_dict(state)
    meta: Dict[str, Any] = {"converted_by": "resnest_backbones.mmseg.convert", "source": Path(path).name,
                            "source_format": fmt}
    if checked:
        meta["source_hash"] = f"{checked[1]}:{checked[0]}"
    for key in ("CLASSES", "PALETTE", "dataset_meta", "mmseg_version"):
        if isinstance(source_meta, Mapping) and key in source_meta:
            meta[f"source_{key.lower()}"] = source_meta[key]
    return SegmentorCheckpoint(converted, fmt, meta)


def _explain(expected: Mapping[str, Tensor], converted: Mapping[str, Tensor]) -> List[str]:
    """Plain-language reasons for a mismatch: depth, head type, class count."""
    hints = []

    def blocks(state: Mapping[str, Tensor], stage: int) -> int:
        return len({k.split(".")[2] for k in state if k.startswith(f"backbone.layer{stage}.")})

    depth_model = [blocks(expected, s) for s in (1, 2, 3, 4)]
    depth_file = [blocks(converted, s) for s in (1, 2, 3, 4)]
    if depth_model != depth_file:
        hints.append(f"blocks per stage differ (file {depth_file}, config {depth_model}): a different depth")
    head_of = {"decode_head.aspp.project.0.weight": "the paper's DeepLabV3Head (configs/mmseg/paper)",
               "decode_head.bottleneck.conv.weight": "mmseg's ASPPHead (configs/mmseg/deeplabv3_*)"}
    file_head = next((v for k, v in head_of.items() if k in converted), None)
    model_head = next((v for k, v in head_of.items() if k in expected), None)
    if file_head != model_head:
        hints.append(f"the file has {file_head or 'another head'}, the config {model_head or 'another head'}")
    key = "decode_head.conv_seg.weight"
    if key in converted and key in expected and converted[key].shape[0] != expected[key].shape[0]:
        hints.append(f"{converted[key].shape[0]} classes in the file, {expected[key].shape[0]} in the config "
                     f"(ADE20K 150, Cityscapes 19)")
    return hints


def check_state_dict(converted: Mapping[str, Tensor], expected: Mapping[str, Tensor]) -> None:
    """Raise :class:`CheckpointError` unless ``converted`` has exactly ``expected``'s keys and shapes.

    ``expected`` is the target model's ``state_dict()``. The error lists missing, unexpected and mis-shaped keys
    and says what they mean (depth, head, classes).
    """
    report = LoadReport.compare(converted, expected, "converted", where="the file")
    if not report.ok:
        raise report.error("the converted checkpoint does not match the config's model",
                           "Use the config that matches the file (docs/model_zoo.md lists file -> config).",
                           reasons=_explain(expected, converted))


def save_mmseg_checkpoint(checkpoint: SegmentorCheckpoint, dst: PathLike) -> None:
    """Write ``{"state_dict", "meta"}`` atomically (concurrent ranks writing the same file are safe)."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    torch.save(checkpoint.to_mmengine(), tmp)
    os.replace(tmp, dst)


def convert_if_released(state_dict: Mapping[str, Tensor],
                        filename: Optional[PathLike] = None) -> Tuple[Mapping[str, Tensor], Optional[str]]:
    """An already loaded checkpoint's state dict in this project's keys, converted if it is a released file.

    For a loader that has read the file itself (``AnyDeviceRunner.load_checkpoint``): a PyTorch-Encoding or mmseg
    ResNeSt layout is converted (and ``filename``'s hash prefix checked, when given); anything else (this
    project's own checkpoints, other models) comes back unchanged.

    Returns:
        ``(state_dict, source_format)``; ``source_format`` is ``None`` when nothing was converted.

    Raises:
        CheckpointError: the file's hash does not match its name.
    """
    keys = [re.sub(r"^module\.", "", k) for k in state_dict]
    try:
        fmt = detect_segmentor_format(keys)
    except CheckpointError:
        return state_dict, None
    if fmt == OURS:
        return state_dict, None
    if filename is not None and Path(filename).is_file():
        verify_hash(filename)
    converted, fmt = convert_segmentor_state_dict(state_dict)
    return converted, fmt


def maybe_convert_released(checkpoint: PathLike, work_dir: PathLike,
                           expected: Optional[Mapping[str, Tensor]] = None) -> str:
    """The path mmengine should load for ``checkpoint``: a released file converted on the fly, else itself.

    A released PyTorch-Encoding or mmseg ResNeSt file is hash-checked, converted and written to
    ``<work_dir>/converted/<name>`` (the path is returned); a file already in this project's layout (a training
    checkpoint of ours, or a converted file) is returned unchanged, as is anything that is not a readable
    ``weights_only`` file (mmengine's training checkpoints hold other objects; mmengine reads those itself).

    Args:
        checkpoint: the path given on the command line.
        work_dir: the run's work directory.
        expected: the built model's ``state_dict()``, to fail before evaluating when the file does not match
            (naming the keys); optional.
    """
    path = Path(checkpoint)
    if not path.is_file():
        return str(checkpoint)
    try:
        obj = read_file(path)
    except CheckpointError:  # not a plain released file (e.g. mmengine's own training checkpoint)
        return str(checkpoint)
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping):
        return str(checkpoint)
    try:
        fmt = detect_segmentor_format([re.sub(r"^module\.", "", k) for k in state])
    except CheckpointError:
        return str(checkpoint)
    if fmt == OURS:
        return str(checkpoint)
    converted = read_released_segmentor(path, loaded=obj)
    if expected is not None:
        check_state_dict(converted.state_dict, expected)
    dst = Path(work_dir) / "converted" / path.name
    save_mmseg_checkpoint(converted, dst)
    print(f"[resnest_backbones] converted the released {fmt} file {path.name} to this project's keys: {dst}",
          flush=True)
    return str(dst)
