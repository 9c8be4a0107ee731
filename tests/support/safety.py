"""Helpers of the unsafe-checkpoint and kill tests: a pickle that runs code, and digests of files that must
survive unchanged."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, List


def file_digests(paths: List[Path]) -> Dict[Path, str]:
    """sha256 of each file, to show files written before a kill are still there, unchanged."""
    return {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}


class RunsCodeWhenUnpickled:
    """Unpickled unsafely (``pickle.load``, ``torch.load(weights_only=False)``), it creates ``marker``: a stand-in
    for whatever code a crafted checkpoint could run. Safe loaders must refuse it, and ``marker`` must never appear.
    """

    def __init__(self, marker: Path) -> None:
        self.marker = Path(marker)

    def __reduce__(self):
        return Path.touch, (self.marker,)
