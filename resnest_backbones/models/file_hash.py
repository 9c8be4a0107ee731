"""The hash in a released checkpoint's file name, checked with the algorithm of the file's family.

Released ResNeSt files carry a hash prefix in their names (``name-<hex>.pth``), but not all the same hash:

* PyTorch-Encoding (the ResNeSt paper's segmentation models, ``deeplab_resnest101_ade-06ca799c.pth``, and its own
  ImageNet backbones) uses the first 8 hex of the file's **SHA-1** (``encoding/models/model_store.py``);
* the official ResNeSt ImageNet files (``resnest50-528c19ca.pth``), OpenMMLab's conversions
  (``resnest101_d2-f3b931b2.pth``) and mmseg's released models (``..._20200807_144503-17ecabe5.pth``) use a
  **SHA-256** prefix.

Checking a SHA-1 name with SHA-256 (or the reverse) would reject every intact file, so the family is read from
the name first.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Dict, Optional, Tuple

from ..types import PathLike
from .checkpoint import CheckpointError

__all__ = ["hash_algorithm", "verify_hash"]

# PyTorch-Encoding's model-store names: <model>_<backbone>_<dataset>-<sha1[:8]>.pth
_PYTORCH_ENCODING_NAME = re.compile(
    r"^(deeplab|fcn|encnet|psp|deepten)_[a-z0-9]+_(ade|pcontext|citys|coco|minc)-[0-9a-f]{8}\.pth$")
# mmseg's released models: <config>_<yyyymmdd>_<hhmmss>-<sha256[:8]>.pth (mmseg also has fcn_* names)
_MMSEG_NAME = re.compile(r"_\d{8}_\d{6}-[0-9a-f]{8}\.pth$")
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.(pth|pt|pkl)$")
# Files that passed, keyed by what changes when a file is rewritten: one load path may meet the same file more than
# once (a URL is checked when downloaded or found in the cache, then again by the loader it is handed to), and
# hashing a ResNeSt-200 file takes about a second.
_VERIFIED: Dict[Tuple[str, int, int, int], Tuple[str, str]] = {}


def hash_algorithm(path: PathLike) -> str:
    """``"sha1"`` for PyTorch-Encoding's file names, ``"sha256"`` for every other family."""
    name = Path(path).name
    if _PYTORCH_ENCODING_NAME.match(name) and not _MMSEG_NAME.search(name):
        return "sha1"
    return "sha256"


def _digest(path: PathLike, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_hash(path: PathLike) -> Optional[Tuple[str, str]]:
    """Check ``path`` against the hash prefix in its name with its family's algorithm.

    A file is hashed once: it is not hashed again while its inode, size and modification time stay the same.
    A file whose prefix is instead the other algorithm's is accepted as well (it is intact; PyTorch-Encoding's
    ImageNet backbones, e.g. ``resnest50-fb9de5b3.pth``, are named like the official ones but by SHA-1).

    Returns:
        ``(prefix, algorithm)``, or ``None`` when the name carries no hash.

    Raises:
        CheckpointError: neither algorithm gives the prefix: the file is corrupt, truncated or renamed.
    """
    match = _HASH_IN_NAME.search(Path(path).name)
    if not match:
        return None
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key in _VERIFIED:
        return _VERIFIED[key]
    prefix = match.group(1)
    expected = hash_algorithm(path)
    digests = {expected: _digest(path, expected)}
    if digests[expected].startswith(prefix):
        _VERIFIED[key] = (prefix, expected)
        return prefix, expected
    other = "sha256" if expected == "sha1" else "sha1"
    if len(prefix) <= 40:  # longer prefixes cannot be a SHA-1
        digests[other] = _digest(path, other)
        if digests[other].startswith(prefix):
            _VERIFIED[key] = (prefix, other)
            return prefix, other
    family = ("a PyTorch-Encoding file, named by the first 8 hex of its SHA-1" if expected == "sha1" else
              "named by a SHA-256 prefix, as official ResNeSt, OpenMMLab and mmseg files are")
    found = ", ".join(f"{algorithm} {value[:16]}..." for algorithm, value in digests.items())
    raise CheckpointError(f"{path}: its name says the hash starts with {prefix} ({family}), but the file has "
                          f"{found}; the file is corrupt, incomplete or renamed: download it again")
