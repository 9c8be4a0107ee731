"""The one reader of checkpoint files: nothing in a file can run code.

A pickle can name any importable callable and have the unpickler call it, so ``pickle.load`` or
``torch.load(weights_only=False)`` on a downloaded file runs whatever the file asks for. :func:`read_file` reads

* ``.pth``/``.pt``/... with ``torch.load(weights_only=True)``: tensors and plain values only, plus the types a caller
  allow-lists (the mmseg tools' training checkpoints; :func:`safe_unpickling`);
* detectron2's ``.pkl`` with :func:`load_numpy_pickle`, which builds numpy arrays and refuses every other global
  before importing it;
* ``.safetensors`` with ``safetensors`` (a header and raw tensors; an optional dependency).

A refusal is a :class:`CheckpointError` naming everything the file asked for (:func:`refusal_message`); any other
failure one that says the file is corrupt, incomplete or of a kind this reader cannot read.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import re
from pathlib import Path
from types import ModuleType
from typing import IO, Any, Callable, Iterator, List, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

from ...types import PathLike, StateDict
from .report import CheckpointError

__all__ = ["HUB_EXTRA", "PKL_GLOBALS", "Source", "StateDict", "load_numpy_pickle", "optional_module",
           "read_checkpoint", "read_file", "refusal_message", "safe_unpickling"]

Source = Union[PathLike, Mapping[str, Any]]
#: How to install the optional packages of the Hugging Face hub sources and ``.safetensors`` files.
HUB_EXTRA = "pip install huggingface_hub safetensors"

#: Every global that detectron2's pickled checkpoints (``.pkl``: ``{"model": {name: numpy array}, "__author__":
#: ..., "matching_heuristics": ...}``, protocol 2 from Python 2 or any protocol from Python 3) name, and nothing
#: else. Each builds an array, a dtype, bytes or a dict from plain values; none can reach other code.
PKL_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),   # ndarray.__reduce__: an empty array of a given subtype...
    ("numpy._core.multiarray", "_reconstruct"),  # ... (numpy >= 2 writes the module as numpy._core)
    ("numpy", "ndarray"),                        # ... the subtype it is given; the data arrives as plain state
    ("numpy.core.numeric", "_frombuffer"),       # ndarray.__reduce_ex__(5): an array over the pickled bytes
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "dtype"),                          # dtype.__reduce__: a type code such as "f4" and two flags
    ("_codecs", "encode"),                       # how protocol 2 writes ``bytes`` from Python 3 (the arrays' data)
    ("collections", "OrderedDict"),              # state dicts kept as OrderedDict
})


class _RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, name: str) -> None:
        super().__init__(f"refused global {name}")
        self.name = name


class _NumpyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in PKL_GLOBALS:
            raise _RefusedGlobal(f"{module}.{name}")
        return super().find_class(module, name)


def load_numpy_pickle(handle: IO[bytes]) -> Any:
    """Unpickle a detectron2 ``.pkl`` checkpoint; any global outside :data:`PKL_GLOBALS` is refused, unimported."""
    return _NumpyUnpickler(handle, encoding="latin1").load()  # latin1: numpy data pickled by Python 2


def _global_name(entry: Any) -> str:
    """The name torch's allow-list gives an entry of ``torch.serialization.safe_globals``."""
    return entry[1] if isinstance(entry, tuple) else f"{entry.__module__}.{entry.__qualname__}"


def refusal_message(path: PathLike, error: BaseException, allowed: Sequence[Any] = ()) -> Optional[str]:
    """What to tell the user when ``error`` is an unpickler refusing a global of ``path``; ``None`` otherwise.

    The refusal comes from :func:`load_numpy_pickle` or from ``torch.load(weights_only=True)``; torch names only
    the first refused global, so the message lists all of them (read from the file without running anything),
    leaving out those the caller had ``allowed`` (its ``safe_globals`` entries) unless nothing else is left.
    """
    if isinstance(error, _RefusedGlobal):
        names: List[str] = [error.name]
    elif isinstance(error, pickle.UnpicklingError) and "Weights only load failed" in str(error):
        try:
            names = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
            names = [n for n in names if n not in {_global_name(g) for g in allowed}] or names
        except Exception:  # noqa: BLE001 - not a zip checkpoint: fall back to torch's message
            names = []
        names = names or re.findall(r"GLOBAL (\S+) was not an allowed global", str(error))
    else:
        names = []
    if not names:  # torch says "Weights only load failed" for a file that is no pickle at all, too
        return None
    return (f"refused to load {Path(path)}: its pickle calls {', '.join(names)}, which a checkpoint of tensors and "
            f"plain values never needs; unpickling it unsafely (pickle.load, torch.load(weights_only=False)) would "
            f"call them, and a crafted file runs any code that way. Do not load this file unless you trust where "
            f"it came from; if you wrote it yourself, save the weights again as a plain state dict "
            f"(torch.save(model.state_dict(), path))")


@contextlib.contextmanager
def safe_unpickling(path: PathLike, allowed: Sequence[Any] = ()) -> Iterator[None]:
    """torch's weights-only unpickler admits ``allowed`` too (``torch.serialization.safe_globals`` entries) inside;
    a refused global of ``path`` leaves as a :class:`CheckpointError` naming what the file asked for.

    For loaders that call ``torch.load`` themselves (mmengine's, for URLs); files go to :func:`read_file`.
    """
    try:
        with torch.serialization.safe_globals(list(allowed)):
            yield
    except pickle.UnpicklingError as error:
        message = refusal_message(path, error, allowed)
        if message is None:
            raise
        raise CheckpointError(message) from None  # torch's own message suggests weights_only=False


def optional_module(module: str, purpose: str) -> ModuleType:
    """``import module``, or a :class:`CheckpointError` that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise CheckpointError(f"{purpose} needs the optional package {module.partition('.')[0]}, which is not "
                              f"installed: {HUB_EXTRA}") from error


def _kind(path: Path) -> str:
    return {".pkl": "a detectron2 .pkl checkpoint", ".safetensors": "a safetensors file"}.get(
        path.suffix, "a PyTorch checkpoint")


def read_file(path: PathLike, *, allowed: Sequence[Any] = (), map_location: Union[str, Callable] = "cpu") -> Any:
    """The content of a checkpoint file, read without running code from it (see the module's notes).

    Args:
        path: the file; its suffix picks the reader (``.pkl``: detectron2's; ``.safetensors``; else torch's).
        allowed: types torch's weights-only unpickler admits besides tensors and plain values.
        map_location: as for ``torch.load``.

    Raises:
        CheckpointError: the file does not exist, asks the unpickler to run code (naming what), or cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    try:
        with safe_unpickling(path, allowed):
            if path.suffix == ".safetensors":
                return optional_module("safetensors.torch", f"reading {path}").load_file(str(path), device="cpu")
            if path.suffix == ".pkl":
                with open(path, "rb") as handle:
                    return load_numpy_pickle(handle)
            # weights_only given explicitly: no environment variable can turn it off
            return torch.load(path, map_location=map_location, weights_only=True)
    except CheckpointError:
        raise
    except Exception as error:  # noqa: BLE001 - every other reader failure means the same thing to the user
        raise CheckpointError(
            f"could not read {path} as {_kind(path)} ({type(error).__name__}: {error}); the file is corrupt, "
            f"incomplete, or of a kind this reader cannot read. Download it again (a hash in its name, "
            f"name-<hex>.pth, is checked)") from error


def read_checkpoint(source: Source) -> StateDict:
    """The tensors of a checkpoint file (:func:`read_file`) or object, unwrapped from ``state_dict``/``model``/
    ``module`` containers; numpy arrays (detectron2's ``.pkl``) become tensors."""
    obj: Any = read_file(source) if isinstance(source, (str, os.PathLike)) else source
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
