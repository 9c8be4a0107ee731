"""Loading ResNeSt (Zhang et al., 2020) weights into detectron2 models, safely and never in part.

:func:`local_weights` (the core's :func:`resnest_backbones.models.hub.local_weights`, re-exported) turns a path or
URL into a local file (URLs go to torch hub's checkpoint directory, as ``torch.hub.load_state_dict_from_url`` does)
and checks the hash prefix in its name; the backbone builders use it for their ``weights`` argument.

:class:`ResNeStCheckpointer` is a ``DetectionCheckpointer`` that

* reads every file with the core's one reader, :func:`resnest_backbones.models.checkpoint.read_file`, which runs
  no code from it: ``.pth`` with ``torch.load(weights_only=True)`` (detectron2's training checkpoints hold only
  tensors and plain values), detectron2's ``.pkl`` with a numpy-only unpickler; a file whose pickle names anything
  else is a ``CheckpointError``;
* recognises a checkpoint holding only a ResNeSt backbone -- the official/timm ImageNet file
  (``resnest50-528c19ca.pth``), the official detectron2 wrapper's pre-converted one
  (``resnest50_detectron-255b5649.pth``) or an OpenMMLab one -- and loads it strictly into the model's ResNeSt;
* loads whole-model files (resume, fine-tuning, zoo models; the wrapper's layout is renamed by the backbone's own
  ``load_state_dict`` pre-hook) as detectron2 does (its tolerances for pixel mean/std and old anchor buffers kept),
  except that a tensor that is missing, unexpected or mis-shaped is an error naming it instead of a log line,
  with one exception: at the start of a training (``resume_or_load`` without a checkpoint to resume, when the
  checkpointer was given the model's class layers), a file of another class count fine-tunes -- its class layers
  start fresh, heads the model lacks are dropped, and one line says so
  (:mod:`resnest_backbones.models.checkpoint.fit`);
* writes the class names (``classes``) into every checkpoint it saves, when it was given them, so predictors
  draw them without the data set.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Optional, Sequence, Tuple
from urllib.parse import urlparse

from detectron2.checkpoint import DetectionCheckpointer
from torch import nn

from ..models import ResNeSt
from ..models.checkpoint import CheckpointError, LoadReport, load_checkpoint, read_checkpoint, read_file
from ..models.checkpoint.fit import ClassLayers, decide_fit
from ..models.checkpoint.report import is_counter
from ..models.file_hash import verify_hash
from ..models.hub import is_url, local_weights

__all__ = ["ResNeStCheckpointer", "local_weights"]

logger = logging.getLogger("detectron2.resnest")  # under the logger detectron2's setup_logger prints


def _find_resnest(model: nn.Module) -> Optional[Tuple[str, ResNeSt]]:
    """``(prefix, module)`` of the one ResNeSt inside ``model``, or None when there is none."""
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, ResNeSt)]
    return (found[0][0] + "." if found[0][0] else "", found[0][1]) if len(found) == 1 else None


class ResNeStCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` that reads files safely, initialises a ResNeSt backbone from ImageNet files and
    refuses a checkpoint that covers the backbone only in part.

    A checkpoint counts as a backbone checkpoint when it shares no key with the model outside its ResNeSt (a
    whole-model checkpoint shares the FPN/head keys) and its keys are in a ResNeSt layout.

    Args (besides ``DetectionCheckpointer``'s):
        class_layers: builds the model's :class:`~resnest_backbones.models.checkpoint.fit.ClassLayers` (called
            only when a file's shapes differ); with it, the error for a file of another class count says both
            counts, and ``resume_or_load`` fine-tunes when it starts a training.
        fine_tune: ``resume_or_load`` starts a training (the trainers' checkpointers): a file of another class
            count fine-tunes unless a checkpoint is resumed. Otherwise every load is exact.
        classes: the class names, written into every checkpoint saved.
    """

    def __init__(self, model: nn.Module, save_dir: str = "", *,
                 class_layers: Optional[Callable[[], ClassLayers]] = None, fine_tune: bool = False,
                 classes: Optional[Sequence[str]] = None, **kwargs: Any) -> None:
        super().__init__(model, save_dir, **kwargs)
        self.class_layers = class_layers
        self.fine_tune = fine_tune
        self.classes = list(classes) if classes is not None else None
        self._mode = "exact"
        self._source = ""

    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:
        starts_training = self.fine_tune and not (resume and self.has_checkpoint())
        self._mode = "finetune" if starts_training else "exact"
        try:
            return super().resume_or_load(path, resume=resume)
        finally:
            self._mode = "exact"

    def save(self, name: str, **kwargs: Any) -> None:
        if self.classes is not None:
            kwargs.setdefault("classes", self.classes)
        super().save(name, **kwargs)

    def load(self, path: str, *args: Any, **kwargs: Any) -> Dict[str, Any]:
        """detectron2's ``load``; an ``http(s)://``/``file://`` URL is fetched with :func:`local_weights` first."""
        if path and is_url(path):  # detectron2's "?matching_heuristics=True" options stay on the local name
            parsed = urlparse(path)
            path = local_weights(parsed._replace(query="").geturl()) + (f"?{parsed.query}" if parsed.query else "")
        self._source = path
        return super().load(path, *args, **kwargs)

    def _load_file(self, filename: str) -> Dict[str, Any]:
        verify_hash(filename)  # no-op unless the name carries a hash (name-<hex>.pth; SHA-256 or SHA-1)
        if filename.endswith(".pkl"):
            data = read_file(filename)
            if isinstance(data, dict) and "model" in data and "__author__" in data:
                return data  # detectron2's own model-zoo format
            if isinstance(data, dict) and "blobs" in data:
                data = data["blobs"]  # Caffe2/Detectron1 detection models
            if not isinstance(data, dict):
                raise CheckpointError(f"{filename} holds a {type(data).__name__}, not a detectron2/Caffe2 checkpoint")
            return {"model": {k: v for k, v in data.items() if not k.endswith("_momentum")}, "__author__": "Caffe2",
                    "matching_heuristics": True}
        if filename.endswith(".pyth"):  # pycls
            data = read_file(filename)
            state = data.get("model_state") if isinstance(data, dict) else None
            if not isinstance(state, dict):
                raise CheckpointError(f"cannot load {filename}: pycls checkpoints hold 'model_state'")
            return {"model": {k: v for k, v in state.items() if not is_counter(k)},
                    "__author__": "pycls", "matching_heuristics": True}
        return super()._load_file(filename)

    def _torch_load(self, f: str) -> Dict[str, Any]:
        # fvcore calls torch.load without weights_only, which a process-wide environment variable can turn into a
        # full unpickle; an explicit weights_only=True cannot be overridden that way.
        return read_file(f)

    def _load_model(self, checkpoint: Dict[str, Any]) -> Any:
        found = _find_resnest(self.model)
        if found is None or not isinstance(checkpoint.get("model"), dict):
            return super()._load_model(checkpoint)
        prefix, backbone = found
        keys = {k[len("module."):] if k.startswith("module.") else k for k in checkpoint["model"]}
        outside = {k for k in self.model.state_dict() if not k.startswith(prefix)}
        if not outside.intersection(keys):
            report = load_checkpoint(backbone, read_checkpoint(checkpoint["model"]))  # strict: raises with the report
            logger.info("ResNeSt backbone (%s) initialised from a %s checkpoint with 0 missing keys:\n%s",
                        type(backbone).__name__, report.source_format, report.summary())
            return None
        saved_classes = checkpoint.get("classes")
        try:
            incompatible = super()._load_model(checkpoint)
        except RuntimeError as error:  # e.g. the backbone's pre-hook refusing a partial detectron2-wrapper layout
            raise CheckpointError(f"checkpoint does not fit the model: {error}") from error
        model_state = self.model.state_dict()
        report = LoadReport.from_incompatible("whole-model", model_state, incompatible.missing_keys,
                                              incompatible.unexpected_keys, incompatible.incorrect_shapes, prefix)
        if not report.ok:
            raise CheckpointError(
                f"this whole-model checkpoint covers the ResNeSt backbone ({prefix[:-1]}) only in part: "
                f"{report.brief()}. Use the config the checkpoint was trained with (variant, DCN stages, "
                f"out_features)", report)
        whole = LoadReport.from_incompatible("whole-model", model_state, incompatible.missing_keys,
                                             incompatible.unexpected_keys, incompatible.incorrect_shapes)
        layers = self.class_layers() if whole.mismatched and self.class_layers is not None else None
        decision = decide_fit(whole, list(model_state), mode=self._mode, source=self._source or "the checkpoint",
                              class_layers=layers, remedy="Use the config the checkpoint was trained with.",
                              saved_classes=saved_classes, classes=self.classes)
        if decision.line:
            logger.info(decision.line)
        return incompatible
