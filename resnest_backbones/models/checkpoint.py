"""Reading, converting and strictly loading ResNeSt checkpoints.

Accepted as they are (docs/reference.md section 1, "State-dict key layouts"):

* ``official``   -- the official ``resnest`` package and timm (``conv1.0``, ``bn1``, ``layer1.0.conv2.fc1``...);
  these are also this package's own ``state_dict()`` keys.
* ``detectron2`` -- the official detectron2 wrapper (``stem.conv1_1``, ``res2.0.conv1.norm``, ``shortcut``),
  bare or inside a full model under ``backbone.bottom_up.``.
* ``openmmlab``  -- mmseg/mmdet (``stem.0`` .. ``stem.7``, ``gn*`` norm names), bare or under ``backbone.``.

Loading is strict by default and always produces a :class:`LoadReport`; a partial load is an error that lists
the missing, unexpected and mis-shaped keys, never a log line. Reading never runs code from a file: ``.pth`` files
are read with ``torch.load(weights_only=True)``, detectron2's ``.pkl`` files with an unpickler that builds numpy
arrays and nothing else; a file whose pickle names any other callable is refused, naming it.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from ..layers.stem import CONV_A, CONV_B, CONV_C, NORM_A, NORM_B, STEM_INDICES, stem_key
from .unpickling import load_numpy_pickle, refusal_message

__all__ = [
    "CheckpointError",
    "DETECTRON2_WRAPPER_PREFIXES",
    "LoadReport",
    "convert_detectron2_wrapper",
    "convert_state_dict",
    "detect_format",
    "load_checkpoint",
    "read_checkpoint",
]

logger = logging.getLogger("resnest_backbones")

StateDict = Dict[str, Tensor]
Source = Union[str, os.PathLike, Mapping[str, Any]]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read, or does not match the model; the message says what to do."""

    def __init__(self, message: str, report: Optional["LoadReport"] = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class LoadReport:
    """What a checkpoint load did, key by key (keys in this package's naming)."""

    source_format: str
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)
    #: Checkpoint keys deliberately not used, with the reason (classification head, stages not built...).
    ignored: Dict[str, str] = field(default_factory=dict)
    #: Model keys with no counterpart in any ImageNet checkpoint (deformable-conv offsets), left initialised.
    initialised: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, limit: int = 20) -> str:
        def listing(keys: List[str]) -> str:
            shown = ", ".join(keys[:limit])
            return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")

        lines = [f"{self.source_format} checkpoint: {len(self.loaded)} tensors loaded, "
                 f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, "
                 f"{len(self.mismatched)} mis-shaped"]
        if self.missing:
            lines.append(f"  missing in checkpoint: {listing(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected in checkpoint: {listing(self.unexpected)}")
        if self.mismatched:
            lines.append("  mis-shaped (checkpoint vs model): " + listing(
                [f"{k} {list(c)} vs {list(m)}" for k, c, m in self.mismatched]))
        reasons: Dict[str, int] = {}
        for reason in self.ignored.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        for reason, count in reasons.items():
            lines.append(f"  ignored {count} checkpoint tensors: {reason}")
        if self.initialised:
            lines.append(f"  {len(self.initialised)} tensors kept at initialisation (deformable-conv offsets, "
                         f"not in any ImageNet checkpoint)")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- reading
def read_checkpoint(source: Source) -> StateDict:
    """The tensors of a checkpoint file or object, unwrapped from ``state_dict``/``model`` containers.

    Files are unpickled without running code: ``.pth``/``.pt`` with ``torch.load(weights_only=True)``, detectron2's
    ``.pkl`` with an unpickler that knows numpy arrays and nothing else. A file that names any other callable is
    refused with a :class:`CheckpointError` naming it.
    """
    obj: Any = source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise CheckpointError(f"checkpoint file {path} does not exist")
        try:
            if path.suffix == ".pkl":  # detectron2's pickled numpy format
                with open(path, "rb") as handle:
                    obj = load_numpy_pickle(handle)
            else:
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - every reader failure means the same thing to the user
            refused = refusal_message(path, error)
            if refused is not None:
                raise CheckpointError(refused) from None  # torch's own message suggests weights_only=False
            raise CheckpointError(f"could not read checkpoint {path} ({type(error).__name__}: {error}); "
                                  f"the file is corrupt, incomplete or not a PyTorch/detectron2 checkpoint. "
                                  f"Download it again (its sha256 should start with the hash in its name)") from error
    for container in ("state_dict", "model", "module"):
        if isinstance(obj, Mapping) and isinstance(obj.get(container), Mapping):
            obj = obj[container]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint holds a {type(obj).__name__}, not a state dict")
    tensors: StateDict = {}
    for key, value in obj.items():
        if isinstance(value, Tensor):
            tensors[key] = value
        elif hasattr(value, "__array__") and hasattr(value, "dtype"):
            tensors[key] = torch.as_tensor(value)
    if not tensors:
        raise CheckpointError("checkpoint contains no tensors")
    return tensors


# ------------------------------------------------------------------------------------------ conversions
_D2_RULES: List[Tuple[str, str]] = [
    (r"^stem\.conv1_1\.norm\.", stem_key(NORM_A)), (r"^stem\.conv1_1\.", stem_key(CONV_A)),
    (r"^stem\.conv1_2\.norm\.", stem_key(NORM_B)), (r"^stem\.conv1_2\.", stem_key(CONV_B)),
    (r"^stem\.conv1_3\.norm\.", "bn1."), (r"^stem\.conv1_3\.", stem_key(CONV_C)),
    (r"^res([2-5])\.", lambda m: f"layer{int(m.group(1)) - 1}."),  # type: ignore[list-item]
    (r"\.conv1\.norm\.", ".bn1."), (r"\.conv3\.norm\.", ".bn3."),
    (r"\.shortcut\.norm\.", ".downsample.2."), (r"\.shortcut\.", ".downsample.1."),
    # DCN: the wrapper keeps each block's offset conv beside split attention (resN.i.conv2_offset, DCNv1 or
    # modulated DCNv2, any number of deformable groups); ours sits inside the deformable conv it feeds.
    (r"\.conv2_offset\.", ".conv2.conv.conv_offset."),
]
#: Key prefixes that only the official detectron2 wrapper's layout has (bare, without ``backbone.bottom_up.``).
DETECTRON2_WRAPPER_PREFIXES: Tuple[str, ...] = ("stem.conv1_1.", "res2.", "res3.", "res4.", "res5.")


def convert_detectron2_wrapper(state: Mapping[str, Any]) -> Dict[str, Any]:
    """Rename the official detectron2 wrapper's bare backbone keys to this package's (= official) keys.

    Raises:
        CheckpointError: for the wrapper's radix-1 files, which have a plain 3x3 conv instead of split attention.
    """
    plain = [k for k in state if re.search(r"\.conv2\.(weight|norm\.)", k)]
    if plain:
        raise CheckpointError(f"this detectron2-wrapper checkpoint has a plain 3x3 conv where ResNeSt has split "
                              f"attention ({plain[0]}, ...): the official wrapper dropped split attention for "
                              f"radix 1, so these weights do not map onto ResNeSt; use the official ImageNet file")
    converted: Dict[str, Any] = {}
    for key, value in state.items():
        for pattern, replacement in _D2_RULES:
            key = re.sub(pattern, replacement, key)
        converted[key] = value
    return converted

# OpenMMLab's stem is one Sequential with our indices, plus the network's ``bn1`` as its 8th layer.
_MMLAB_RULES: List[Tuple[str, str]] = [(rf"^stem\.{i}\.", stem_key(i)) for i in STEM_INDICES] + [
    (r"^stem\.7\.", "bn1."), (r"\.gn([0-3])\.", r".bn\1."),
]
# OpenMMLab's ResLayer puts no pooling layer in a stride-1 shortcut (res2, dilated stages), so there the conv and
# norm are ``downsample.0``/``.1`` where ours (official/timm) are ``.1``/``.2`` behind an identity/pool slot.
_MMLAB_POOLLESS_SHORTCUT = re.compile(r"^(layer[1-4]\.0\.downsample\.)([01])\.")


def _shift_poolless_shortcuts(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    poolless = {m.group(1) for m in map(_MMLAB_POOLLESS_SHORTCUT.match, state) if m and m.group(2) == "0"}
    shifted: Dict[str, Tensor] = {}
    for key, value in state.items():
        match = _MMLAB_POOLLESS_SHORTCUT.match(key)
        if match and match.group(1) in poolless:
            key = f"{match.group(1)}{int(match.group(2)) + 1}.{key[match.end():]}"
        shifted[key] = value
    return shifted


# Backbone prefixes inside full-model checkpoints (detectron2 FPN models, then detectron2 C4 / OpenMMLab models);
# the other keys of such checkpoints are not the backbone's.
_PREFIXES = ("backbone.bottom_up.", "backbone.")


def detect_format(keys: List[str]) -> str:
    """``official``, ``detectron2`` or ``openmmlab``, from the key names (prefixes allowed)."""
    bare = [re.sub(r"^(module\.)?(backbone\.(bottom_up\.)?)?", "", k) for k in keys]
    if any(k.startswith(DETECTRON2_WRAPPER_PREFIXES) for k in bare):
        return "detectron2"
    if any(k.startswith("stem.0.") for k in bare):
        return "openmmlab"
    if any(k.startswith((stem_key(CONV_A), "layer1.", "bn1.")) for k in bare):
        return "official"
    raise CheckpointError(f"not a ResNeSt checkpoint in a known format (official/timm, detectron2, OpenMMLab); "
                          f"first keys: {keys[:5]}")


def convert_state_dict(state_dict: Mapping[str, Tensor]) -> Tuple[StateDict, str, Dict[str, str]]:
    """Rename a checkpoint's backbone tensors to this package's (= official) keys.

    Returns:
        ``(converted, source_format, not_backbone)`` where ``not_backbone`` maps the keys of a full-model
        checkpoint that are not backbone tensors to the reason they were left out.
    """
    state = {re.sub(r"^module\.", "", k): v for k, v in state_dict.items()}
    fmt = detect_format(list(state))
    prefix = next((p for p in _PREFIXES if any(k.startswith(p) for k in state)), None)
    not_backbone: Dict[str, str] = {}
    if prefix:
        not_backbone = {k: "not a backbone tensor (full-model checkpoint)" for k in state if not k.startswith(prefix)}
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if fmt == "detectron2":
        return convert_detectron2_wrapper(state), fmt, not_backbone
    rules = {"openmmlab": _MMLAB_RULES}.get(fmt, [])
    converted: StateDict = {}
    for key, value in state.items():
        for pattern, replacement in rules:
            key = re.sub(pattern, replacement, key)
        converted[key] = value
    if fmt == "openmmlab":
        converted = _shift_poolless_shortcuts(converted)
    return converted, fmt, not_backbone


# ---------------------------------------------------------------------------------------------- loading
_STATS = ("running_mean", "running_var", "num_batches_tracked")


def _ignore_reason(key: str, model_keys: Mapping[str, Tensor], model: nn.Module) -> Optional[str]:
    """Why a checkpoint key without a model counterpart is harmless, or None when it is a real mismatch."""
    module_name, _, leaf = key.rpartition(".")
    if key.startswith("fc.") and not isinstance(getattr(model, "fc", None), nn.Linear):
        return "classification head (the model has none)"
    stage = re.match(r"^(layer[1-4])\.", key)
    if stage and isinstance(getattr(model, stage.group(1), None), nn.Identity):
        return f"stage {stage.group(1)} not built (not needed for the requested out_features)"
    if leaf in _STATS and f"{module_name}.weight" in model_keys:
        return "running statistics of norm layers that keep none (e.g. GroupNorm)"
    return None


def load_checkpoint(model: nn.Module, source: Source, strict: bool = True) -> LoadReport:
    """Load a ResNeSt checkpoint (any supported format) into ``model``, a :class:`ResNeSt` or subclass.

    Args:
        model: the model; its ``state_dict()`` keys are the official ones.
        source: a file path or an already loaded checkpoint/state dict.
        strict: raise :class:`CheckpointError` (with the report) when any model tensor is missing, any
            checkpoint tensor is unexpected, or shapes differ. With ``strict=False`` the matching tensors are
            loaded and the report says what was not; nothing is skipped silently either way.

    Returns:
        The :class:`LoadReport` (also logged).
    """
    converted, fmt, not_backbone = convert_state_dict(read_checkpoint(source))
    model_state = model.state_dict()
    report = LoadReport(source_format=fmt, ignored=dict(not_backbone))
    to_load: StateDict = {}
    for key, value in converted.items():
        target = model_state.get(key)
        if target is None:
            reason = _ignore_reason(key, model_state, model)
            if reason is None:
                report.unexpected.append(key)
            else:
                report.ignored[key] = reason
        elif tuple(target.shape) != tuple(value.shape):
            report.mismatched.append((key, tuple(value.shape), tuple(target.shape)))
        else:
            to_load[key] = value
    for key in model_state:
        if key in to_load or any(key == m[0] for m in report.mismatched):
            continue
        if key.endswith("num_batches_tracked"):
            continue  # absent from older torch checkpoints and from detectron2's FrozenBN; a counter, not a weight
        if ".conv_offset." in key:
            report.initialised.append(key)
        else:
            report.missing.append(key)
    report.loaded = sorted(to_load)
    if strict and not report.ok:
        raise CheckpointError(
            "checkpoint does not match the model (wrong variant, or a partial checkpoint?)\n" + report.summary()
            + "\nPick the variant the checkpoint was trained for, or pass strict=False to load the matching part.",
            report)
    model.load_state_dict(to_load, strict=False)
    logger.info(report.summary())
    return report
