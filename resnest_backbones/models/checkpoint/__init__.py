"""Reading, converting and strictly loading ResNeSt checkpoints: the one home of the package's checkpoint code.

* :mod:`.io` -- the one reader of files (``torch.load(weights_only=True)`` with an explicit allow-list, detectron2's
  numpy-only ``.pkl``, ``.safetensors``): nothing in a file can run code.
* :mod:`.layouts` -- key layouts (official/timm, detectron2 wrapper with its DCN offsets, OpenMMLab) renamed to
  this package's keys, and the ``load_state_dict`` pre-hooks that do so inside any loader.
* :mod:`.report` -- :class:`LoadReport` and :class:`CheckpointError`: the one listing of missing, unexpected and
  mis-shaped keys.
* :mod:`.loading` -- :func:`load_checkpoint` (strict by default; a partial load is an error, never a log line).
"""
from .io import read_checkpoint, read_file
from .layouts import DETECTRON2_WRAPPER_PREFIXES, convert_detectron2_wrapper, convert_state_dict, detect_format
from .loading import load_checkpoint
from .report import CheckpointError, LoadReport

__all__ = [
    "CheckpointError", "DETECTRON2_WRAPPER_PREFIXES", "LoadReport", "convert_detectron2_wrapper",
    "convert_state_dict", "detect_format", "load_checkpoint", "read_checkpoint", "read_file",
]
