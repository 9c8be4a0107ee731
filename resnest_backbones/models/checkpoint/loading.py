"""Loading a ResNeSt checkpoint (any layout) strictly, with a report."""
from __future__ import annotations

import logging
import re
from typing import Mapping, Optional

from torch import Tensor, nn

from .io import Source, StateDict, read_checkpoint
from .layouts import convert_state_dict
from .report import LoadReport, is_counter

__all__ = ["load_checkpoint"]

logger = logging.getLogger("resnest_backbones")

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
        source: a file path (read by :func:`~resnest_backbones.models.checkpoint.io.read_checkpoint`) or an
            already loaded checkpoint/state dict.
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
    mismatched = {key for key, _, _ in report.mismatched}
    for key in model_state:
        if key in to_load or key in mismatched or is_counter(key):
            continue  # counters: absent from older torch checkpoints and from detectron2's FrozenBN
        if ".conv_offset." in key:
            report.initialised.append(key)
        else:
            report.missing.append(key)
    report.loaded = sorted(to_load)
    if strict and not report.ok:
        raise report.error("checkpoint does not match the model (wrong variant, or a partial checkpoint?)",
                           "Pick the variant the checkpoint was trained for, or pass strict=False to load the "
                           "matching part.")
    model.load_state_dict(to_load, strict=False)
    logger.info(report.summary())
    return report

