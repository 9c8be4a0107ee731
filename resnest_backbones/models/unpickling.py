"""Reading pickled checkpoints without running code from them (for the ResNeSt loaders of this package).

A pickle can name any importable callable and have the unpickler call it, so ``pickle.load`` or
``torch.load(weights_only=False)`` on a downloaded file runs whatever the file asks for. This package reads
``.pth`` files with ``torch.load(weights_only=True)`` (tensors and plain values only, plus the types a caller
allow-lists with ``torch.serialization.safe_globals``) and detectron2's ``.pkl`` files with
:func:`load_numpy_pickle`, which builds numpy arrays and refuses every other global before importing it.
:func:`refusal_message` turns either refusal into a message that names what the file asked for.
"""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import IO, Any, List, Optional, Sequence, Union

import torch

__all__ = ["PKL_GLOBALS", "load_numpy_pickle", "refusal_message"]

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


def refusal_message(path: Union[str, os.PathLike], error: BaseException, allowed: Sequence[Any] = ()) -> Optional[str]:
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
        names = names or re.findall(r"GLOBAL (\S+) was not an allowed global", str(error)) or ["an unknown global"]
    else:
        return None
    return (f"refused to load {Path(path)}: its pickle calls {', '.join(names)}, which a checkpoint of tensors and "
            f"plain values never needs; unpickling it unsafely (pickle.load, torch.load(weights_only=False)) would "
            f"call them, and a crafted file runs any code that way. Do not load this file unless you trust where "
            f"it came from; if you wrote it yourself, save the weights again as a plain state dict "
            f"(torch.save(model.state_dict(), path))")
