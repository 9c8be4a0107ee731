"""Loading ResNeSt (Zhang et al., 2020) ImageNet weights into detectron2 models through ``MODEL.WEIGHTS``.

:class:`ResNeStCheckpointer` is a ``DetectionCheckpointer`` that recognises a checkpoint holding only a ResNeSt
backbone -- the official/timm ImageNet file (``resnest50-528c19ca.pth``), the official detectron2 wrapper's
pre-converted file (``resnest50_detectron-255b5649.pth``) or an OpenMMLab one -- and loads it strictly into
the model's ResNeSt with the core's :func:`~resnest_backbones.load_checkpoint`: any missing, unexpected or
mis-shaped backbone tensor is an error, and the report is logged. Every other checkpoint (detectron2's own
full-model files, for resuming or fine-tuning) goes through ``DetectionCheckpointer`` unchanged.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Tuple

from detectron2.checkpoint import DetectionCheckpointer
from torch import nn

from ..models import ResNeSt, convert_state_dict, load_checkpoint, read_checkpoint
from ..models.checkpoint import detect_format, verify_sha256

__all__ = ["ResNeStCheckpointer"]

logger = logging.getLogger(__name__)


def _find_resnest(model: nn.Module) -> Optional[Tuple[str, ResNeSt]]:
    """``(prefix, module)`` of the one ResNeSt inside ``model``, or None when there is none."""
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, ResNeSt)]
    return (found[0][0] + "." if found[0][0] else "", found[0][1]) if len(found) == 1 else None


class ResNeStCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` that also initialises a ResNeSt backbone from an ImageNet checkpoint.

    A checkpoint counts as a backbone checkpoint when it shares no key with the model outside its ResNeSt
    (a detectron2 checkpoint of the whole model shares the FPN/head keys) and its keys are in a ResNeSt format.
    A full-model checkpoint of the official detectron2 wrapper gets its backbone keys renamed, then loads as
    detectron2 does.
    """

    def _load_file(self, filename: str) -> Dict[str, Any]:
        verify_sha256(filename)  # no-op unless the name carries a hash (name-<sha256 prefix>.pth)
        return super()._load_file(filename)

    def _load_model(self, checkpoint: Dict[str, Any]) -> Any:
        found = _find_resnest(self.model)
        if found is None or not isinstance(checkpoint.get("model"), dict):
            return super()._load_model(checkpoint)
        prefix, backbone = found
        state = read_checkpoint(checkpoint["model"])
        outside = {k for k in self.model.state_dict() if not k.startswith(prefix)}
        if not outside.intersection(state):
            report = load_checkpoint(backbone, state)  # strict: raises CheckpointError with the report
            logger.info("ResNeSt backbone (%s) initialised from a %s checkpoint with 0 missing keys:\n%s",
                        type(backbone).__name__, report.source_format, report.summary())
            return None
        wrapper_keys = [k for k in state if k.startswith(prefix)]
        if prefix and wrapper_keys and detect_format([k[len(prefix):] for k in wrapper_keys]) == "detectron2":
            converted, _, _ = convert_state_dict({k[len(prefix):]: state[k] for k in wrapper_keys})
            checkpoint["model"] = {k: v for k, v in checkpoint["model"].items() if not k.startswith(prefix)}
            checkpoint["model"].update({prefix + k: v for k, v in converted.items()})
            logger.info("renamed %d backbone tensors of a detectron2-wrapper ResNeSt model to this package's names",
                        len(converted))
        return super()._load_model(checkpoint)
