"""ResNeSt weights on the Hugging Face hub: ``hf-hub:<owner>/<repo>`` names, read as safetensors.

timm publishes ImageNet weights for eight variants, two of them (ResNeSt-14 and -26) with no official file
(``timm/resnest14d.gluon_in1k``, ...; docs/reference.md section 1). Each repository holds a ``model.safetensors`` in
timm's layout, which is the official one, so the core's loader takes it as it is.

* :func:`hf_hub_weights` turns ``hf-hub:timm/resnest14d.gluon_in1k`` into a local file with
  ``huggingface_hub.hf_hub_download``: downloaded once into the Hugging Face cache (``~/.cache/huggingface/hub``;
  ``HF_HUB_CACHE`` or ``HF_HOME`` move it), found there afterwards, offline too (``HF_HUB_OFFLINE=1``);
* :func:`read_weights` reads a ``.safetensors`` file with the core's reader
  (:func:`~resnest_backbones.models.checkpoint.io.read_file`: ``safetensors``, a header and raw tensors, nothing is
  unpickled) and hands any other file on to the core's loader unchanged.

``huggingface_hub`` and ``safetensors`` are optional (``pip install huggingface_hub safetensors``, the ``hub``
extra) and imported only when such a source is used.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import Dict, Union

from torch import Tensor

from .checkpoint import CheckpointError, read_file
from .checkpoint.io import optional_module

__all__ = ["HF_HUB_PREFIX", "HF_WEIGHTS_FILE", "hf_hub_weights", "is_hf_hub", "read_weights"]

#: Prefix of the names that :func:`hf_hub_weights` resolves (timm's spelling): ``hf-hub:<owner>/<repo>``.
HF_HUB_PREFIX = "hf-hub:"
#: The file of a repository that holds the weights.
HF_WEIGHTS_FILE = "model.safetensors"


def is_hf_hub(source: Union[str, os.PathLike]) -> bool:
    """Whether ``source`` names a Hugging Face hub repository (``hf-hub:<owner>/<repo>``)."""
    return isinstance(source, str) and source.startswith(HF_HUB_PREFIX)


def _offline_help(hub: ModuleType, repo_id: str) -> str:
    """Where the file of ``repo_id`` can be put by hand: the cache layout huggingface_hub reads, or a local path."""
    cache = importlib.import_module("huggingface_hub.constants").HF_HUB_CACHE
    repo = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    return (f"If this machine is offline, download {hub.hf_hub_url(repo_id, HF_WEIGHTS_FILE)} elsewhere and either "
            f"pass its local path instead (pretrained=\"/path/to/{HF_WEIGHTS_FILE}\") or put it in this machine's "
            f"Hugging Face cache as {repo / 'snapshots' / '<commit>' / HF_WEIGHTS_FILE}, with <commit> (the "
            f"repository's commit id) written in {repo / 'refs' / 'main'}: the layout huggingface_hub writes, so a "
            f"copy of that folder from an online machine's cache works too (HF_HUB_CACHE or HF_HOME move the cache)")


def hf_hub_weights(source: str) -> str:
    """Local path of the weights file of the hub repository named by ``source``, downloaded once.

    Args:
        source: ``hf-hub:<owner>/<repo>`` (e.g. ``hf-hub:timm/resnest50d.in1k``); its ``model.safetensors`` is
            fetched from the ``main`` revision.

    Returns:
        The path of the file in the Hugging Face cache.

    Raises:
        CheckpointError: huggingface_hub is not installed (the message gives the ``pip install`` line); the name is
            not ``hf-hub:<owner>/<repo>``; or the file cannot be fetched (the message names the repository, the
            error, and where to put the file by hand).
    """
    repo_id = source[len(HF_HUB_PREFIX):]
    owner, _, name = repo_id.partition("/")
    if not owner or not name or "/" in name:
        raise CheckpointError(f"{source!r} is not a Hugging Face hub name: write {HF_HUB_PREFIX}<owner>/<repo>, "
                              f"e.g. {HF_HUB_PREFIX}timm/resnest50d.in1k")
    hub = optional_module("huggingface_hub", f"{source!r} (a Hugging Face hub repository)")
    try:
        return str(hub.hf_hub_download(repo_id, HF_WEIGHTS_FILE))
    except Exception as error:  # noqa: BLE001 - offline, not found, HTTP errors all mean "could not fetch it"
        raise CheckpointError(f"could not fetch {HF_WEIGHTS_FILE} of the Hugging Face hub repository {repo_id} "
                              f"({type(error).__name__}: {error}). {_offline_help(hub, repo_id)}") from error


def read_weights(path: Union[str, os.PathLike]) -> Union[str, os.PathLike, Dict[str, Tensor]]:
    """The tensors of a ``.safetensors`` file; any other path unchanged, for the core's reader.

    Raises:
        CheckpointError: safetensors is not installed, or the file is not a complete safetensors file.
    """
    return read_file(path) if Path(path).suffix == ".safetensors" else path
