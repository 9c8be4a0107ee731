"""Whole-model checkpoints of the OpenMMLab tools (``load_from``, ``--resume``, ``mmseg_test.py``/``mmdet_test.py``'s
checkpoint, the predictors): read without running code, loaded strictly.

Files are read by torch's weights-only unpickler with only :data:`TRAINING_CHECKPOINT_GLOBALS` added, so a file
cannot run code; and they must cover the model exactly (mmengine's own loader only logs a partial load).
"""
from __future__ import annotations

import logging
import os.path as osp
import pickle
import re
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Sequence, Tuple, Union

import numpy as np
from mmengine.logging import HistoryBuffer, print_log
from mmengine.runner import CheckpointLoader
from torch import nn

from ..accel import fuse_resnest_modules
from ..models.checkpoint import CheckpointError, LoadReport, read_file
from ..models.checkpoint.io import safe_unpickling
from .convert import convert_if_released

__all__ = ["TRAINING_CHECKPOINT_GLOBALS", "dataset_meta", "load_for_inference", "load_whole_model", "read_checkpoint"]


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
                     revise_keys: Sequence[Tuple[str, str]] = ((r"^module\.", ""),), logger: Any = None) -> LoadReport:
    """Load ``checkpoint`` (read from ``filename``) into the whole segmentor ``model``.

    A released mmseg or PyTorch-Encoding ResNeSt segmentor is converted to this project's keys first. With
    ``strict``, a checkpoint that leaves a model tensor unset or holds tensors the model lacks is an error naming
    them (without, it is logged); mis-shaped tensors always are.

    Returns:
        The load report.

    Raises:
        CheckpointError: the checkpoint does not fit the model.
    """
    state = checkpoint.get("state_dict", checkpoint)
    state, released = convert_if_released(state, filename)  # mmseg's / PyTorch-Encoding's published files
    if released:
        print_log(f"{filename}: a released {released} model, converted to this project's keys", logger=logger)
    revised = OrderedDict(state)
    for pattern, replacement in revise_keys:
        revised = OrderedDict((re.sub(pattern, replacement, k), v) for k, v in revised.items())
    revised._metadata = getattr(state, "_metadata", OrderedDict())  # type: ignore[attr-defined]
    try:
        result = model.load_state_dict(revised, strict=False)
    except RuntimeError as error:  # torch raises on mis-shaped tensors whatever ``strict`` says
        raise CheckpointError(f"{filename} does not fit the model of this config: {error}\n"
                              f"{_WHOLE_MODEL_HINT}") from None
    report = LoadReport.from_incompatible("whole-model", model.state_dict(), result.missing_keys,
                                          result.unexpected_keys)
    problem = f"{filename} does not cover the model of this config exactly"
    if strict and not report.ok:
        raise report.error(problem, _WHOLE_MODEL_HINT)
    if not report.ok:
        print_log(report.message(problem, _WHOLE_MODEL_HINT), logger=logger, level=logging.WARNING)
    return report


def dataset_meta(cfg: Any, checkpoint: Dict[str, Any], num_classes: int, datasets: Any) -> Dict[str, Any]:
    """The class names (and palette) a predictor draws with, for a model of ``num_classes`` classes: the checkpoint's
    (mmengine saves the data set's ``dataset_meta``; mmdet 2.x files keep ``CLASSES``), else the config's test data
    set's (its ``metainfo``, or the ``METAINFO`` of its class, looked up in the framework's ``datasets`` registry),
    else numbered classes (the visualiser then picks the colours). A list whose length is not ``num_classes`` is
    passed over."""
    def fits(meta: Any) -> bool:
        return bool(meta) and len(meta.get("classes", ())) == num_classes

    meta = checkpoint.get("meta") or {}
    saved = meta.get("dataset_meta") or ({"classes": tuple(meta["CLASSES"])} if meta.get("CLASSES") else None)
    if fits(saved):
        return dict(saved)
    dataset = cfg.get("test_dataloader", {}).get("dataset", {})
    kind = dataset.get("type")
    registered = datasets.get(kind) if isinstance(kind, str) else kind
    for metainfo in (dataset.get("metainfo"), getattr(registered, "METAINFO", None)):
        if fits(metainfo):
            return dict(metainfo)
    return {"classes": [str(i) for i in range(num_classes)], "palette": None}


def load_for_inference(model: nn.Module, path: str, device: str, fused: bool) -> Dict[str, Any]:
    """What the OpenMMLab predictors do with a whole-model file: read it safely (:func:`read_checkpoint`), load it
    strictly (:func:`load_whole_model`), move ``model`` to ``device`` in eval mode and, with ``fused``, put the
    fused inference copy of its ResNeSt in place (:func:`~resnest_backbones.fuse_resnest_modules`). Returns the
    checkpoint (its metadata names the classes)."""
    checkpoint = read_checkpoint(path)
    load_whole_model(model, checkpoint, path)
    model.to(device).eval()
    if fused:
        fuse_resnest_modules(model)
    return checkpoint
