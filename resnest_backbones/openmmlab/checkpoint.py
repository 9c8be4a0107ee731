"""Whole-model checkpoints of the OpenMMLab tools (``load_from``, ``--resume``, ``mmseg_test.py``/``mmdet_test.py``'s
checkpoint, the predictors): read without running code, loaded strictly.

Files are read by torch's weights-only unpickler with only :data:`TRAINING_CHECKPOINT_GLOBALS` added, so a file
cannot run code; and they must cover the model exactly (mmengine's own loader only logs a partial load). A framework
whose released files need their keys converted passes its :data:`Converter` (mmseg's tools and predictor pass
:func:`resnest_backbones.mmseg.convert.convert_if_released`); by default a state dict loads as it is.
"""
from __future__ import annotations

import logging
import os.path as osp
import pickle
import re
import warnings
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.logging import HistoryBuffer, print_log
from mmengine.runner import CheckpointLoader
from torch import Tensor, nn

from ..accel import fuse_resnest_modules
from ..models.checkpoint import CheckpointError, read_file
from ..models.checkpoint.fit import ClassLayers, FitDecision, class_names, load_fitting
from ..models.checkpoint.io import safe_unpickling
from .own_data import get_num_classes, set_num_classes

__all__ = ["TRAINING_CHECKPOINT_GLOBALS", "Converter", "dataset_meta", "load_for_inference", "load_whole_model",
           "read_checkpoint", "read_for_inference"]

#: ``convert(state_dict, filename) -> (state_dict, released)``: a framework's released files in this project's keys;
#: ``released`` names the format converted from, ``None`` when the state dict came back as it was.
Converter = Callable[[Mapping[str, Tensor], str], Tuple[Mapping[str, Tensor], Optional[str]]]


def _history_buffer_statistic(owner: Any, name: str) -> Any:
    """Stands in for ``getattr`` while a training checkpoint is unpickled, resolving only what mmengine writes.

    A ``HistoryBuffer`` pickles its statistics methods (``HistoryBuffer.min``...); pickle protocol 2, torch's,
    cannot name a method, so it writes ``getattr(HistoryBuffer, "min")``. A real ``getattr`` would let a file
    walk from any allowed type to any object (and run it), so only these four are resolved.
    """
    if owner is HistoryBuffer and name in ("min", "max", "mean", "current"):
        return getattr(owner, name)
    raise pickle.UnpicklingError(f"getattr({owner!r}, {name!r}) refused: a training checkpoint only needs "
                                 f"HistoryBuffer's min/max/mean/current")


def _numpy_global(obj: Any) -> List[Any]:
    """``obj`` under its own name and under the other numpy generation's (numpy 2 moved ``numpy.core`` to
    ``numpy._core``; a checkpoint names the module of the numpy that wrote it)."""
    own = f"{obj.__module__}.{obj.__name__}"
    other = own.replace("numpy._core.", "numpy.core.", 1) if own.startswith("numpy._core.") else \
        own.replace("numpy.core.", "numpy._core.", 1)
    return [obj, (obj, other)]


_multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray  # numpy 2 / numpy 1

#: What mmengine's training checkpoints hold beyond tensors and plain values, for torch's weights-only unpickler
#: (found by training the toy config and listing what torch refuses; tests/test_safe_loading.py checks that the
#: list suffices and that each entry is needed). Everything else in a checkpoint is refused.
TRAINING_CHECKPOINT_GLOBALS: List[Any] = [
    HistoryBuffer,                                    # message_hub.log_scalars: the history of each logged value,
    np.ndarray, np.dtype,                             # ... kept as two numpy arrays (values, counts)
    type(np.dtype(np.float64)),                       # ... the dtype objects' own classes (numpy.dtypes.*):
    type(np.dtype(np.int64)),                         # ... float64 values, int64 counts
    *_numpy_global(_multiarray._reconstruct),         # ... (how numpy pickles an array)
    *_numpy_global(_multiarray.scalar),               # message_hub.runtime_info: numpy scalars (the ETA)
    (_history_buffer_statistic, "builtins.getattr"),  # HistoryBuffer's statistics methods (see the function)
]

_WHOLE_MODEL_HINT = ("load_from / --resume / mmseg_test.py take a checkpoint of this config's whole model, as "
                     "mmseg_train.py writes it; to start from ImageNet backbone weights, set "
                     "model.backbone.init_cfg=dict(type='Pretrained', checkpoint=...) instead")


def read_checkpoint(filename: str, map_location: Union[str, Callable] = "cpu", logger: Any = None) -> Dict[str, Any]:
    """Read an mmengine checkpoint without running code: torch's weights-only unpickler with only
    :data:`TRAINING_CHECKPOINT_GLOBALS` added (local files), or mmengine's loader for URLs and ``open-mmlab://``.

    Raises:
        CheckpointError: the file asks the unpickler to run code (the message names what was refused).
    """
    if osp.isfile(filename):
        return read_file(filename, allowed=TRAINING_CHECKPOINT_GLOBALS, map_location=map_location)
    # URLs, open-mmlab://...: mmengine fetches them and reads them with torch.load's default (weights_only=True)
    with safe_unpickling(filename, TRAINING_CHECKPOINT_GLOBALS):
        return CheckpointLoader.load_checkpoint(filename, map_location=map_location, logger=logger)


def load_whole_model(model: nn.Module, checkpoint: Dict[str, Any], filename: str, strict: bool = True,
                     revise_keys: Sequence[Tuple[str, str]] = ((r"^module\.", ""),), logger: Any = None,
                     convert: Optional[Converter] = None, mode: str = "exact",
                     class_layers: Optional[Callable[[], ClassLayers]] = None,
                     classes: Optional[Sequence[str]] = None) -> Optional[FitDecision]:
    """Load ``checkpoint`` (read from ``filename``) into the whole model ``model`` (a segmentor, a detector).

    With ``convert``, a released file it knows is converted to this project's keys first (mmseg's converter: the
    released mmseg and PyTorch-Encoding ResNeSt segmentors); without, the state dict loads as it is. Then the one
    fit-or-reset decision (:func:`~resnest_backbones.models.checkpoint.fit.load_fitting`) in ``mode``: ``"exact"``
    (evaluation, ``--resume``, predictors) or ``"finetune"`` (``load_from`` at the start of a training: a file of
    another class count resets the class layers, made by ``class_layers``, and says so in one line; one of the same
    count whose saved names are not the data's ``classes`` loads whole, said in one line too). Without ``strict``
    (mmengine's default), a misfit is logged instead of raised.

    Returns:
        The decision (None when a misfit was only logged).

    Raises:
        CheckpointError: the checkpoint does not fit the model (with ``strict``).
    """
    state = checkpoint.get("state_dict", checkpoint)
    released = None
    if convert is not None:
        state, released = convert(state, filename)
    if released:
        print_log(f"{filename}: a released {released} model, converted to this project's keys", logger=logger)
    revised = OrderedDict(state)
    for pattern, replacement in revise_keys:
        revised = OrderedDict((re.sub(pattern, replacement, k), v) for k, v in revised.items())
    revised._metadata = getattr(state, "_metadata", OrderedDict())  # type: ignore[attr-defined]
    try:
        decision = load_fitting(model, revised, mode=mode, source=filename, class_layers=class_layers,
                                remedy=_WHOLE_MODEL_HINT, saved_classes=(_saved_meta(checkpoint) or {}).get("classes"),
                                classes=classes)
    except CheckpointError as error:
        if strict:
            raise
        print_log(str(error), logger=logger, level=logging.WARNING)
        return None
    if decision.line:
        print_log(decision.line, logger=logger)
    return decision


def _saved_meta(checkpoint: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The data set's meta a checkpoint carries: mmengine saves ``dataset_meta``; mmdet 2.x files keep ``CLASSES``."""
    meta = checkpoint.get("meta") or {}
    return meta.get("dataset_meta") or ({"classes": tuple(meta["CLASSES"])} if meta.get("CLASSES") else None)


def read_for_inference(cfg: Any, path: str) -> Dict[str, Any]:
    """Read a whole-model file for a predictor (:func:`read_checkpoint`) and give ``cfg``'s model the class count of
    the classes the file carries, in place, when it differs: a model fine-tuned on other classes predicts with the
    config it was made from, no flag needed."""
    checkpoint = read_checkpoint(path)
    saved = (_saved_meta(checkpoint) or {}).get("classes")
    if saved and len(saved) != get_num_classes(cfg.model):
        set_num_classes(cfg.model, len(saved))
    return checkpoint


def dataset_meta(cfg: Any, checkpoint: Dict[str, Any], num_classes: int, datasets: Any) -> Dict[str, Any]:
    """The class names (and palette) a predictor draws with, for a model of ``num_classes`` classes: the checkpoint's
    (see :func:`_saved_meta`), else the config's test data set's (its ``metainfo``, or the ``METAINFO`` of its
    class, looked up in the framework's ``datasets`` registry), else numbered classes (the visualiser then picks the
    colours). A list whose length is not ``num_classes`` is passed over; saved names that differ from the config's
    win, with a warning naming both (:func:`~resnest_backbones.models.checkpoint.fit.class_names`)."""
    saved = _saved_meta(checkpoint)
    dataset = cfg.get("test_dataloader", {}).get("dataset", {})
    kind = dataset.get("type")
    registered = datasets.get(kind) if isinstance(kind, str) else kind
    configured = next((m for m in (dataset.get("metainfo"), getattr(registered, "METAINFO", None))
                       if m and len(m.get("classes", ())) == num_classes), None)
    names = class_names((saved or {}).get("classes"), (configured or {}).get("classes"), num_classes,
                        lambda message: warnings.warn(message, stacklevel=3))
    for meta in (saved, configured):
        if meta and list(meta.get("classes", ())) == names:
            return dict(meta)
    return {"classes": names, "palette": None}


def load_for_inference(model: nn.Module, path: str, device: str, fused: bool,
                       convert: Optional[Converter] = None,
                       checkpoint: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """What the OpenMMLab predictors do with a whole-model file: read it safely (:func:`read_checkpoint`), load it
    strictly (:func:`load_whole_model`, through ``convert`` where given), move ``model`` to ``device`` in eval mode
    and, with ``fused``, put the fused inference copy of its ResNeSt in place
    (:func:`~resnest_backbones.fuse_resnest_modules`). ``checkpoint``: the file as already read. Returns the
    checkpoint (its metadata names the classes)."""
    checkpoint = read_checkpoint(path) if checkpoint is None else checkpoint
    load_whole_model(model, checkpoint, path, convert=convert)
    model.to(device).eval()
    if fused:
        fuse_resnest_modules(model)
    return checkpoint
