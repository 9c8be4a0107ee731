"""Where ResNeSt (Zhang et al., 2020, "ResNeSt: Split-Attention Networks") weights come from: a path, a URL or a
Hugging Face hub repository.

:func:`local_weights` is the one place that turns a checkpoint name into a local file. ``create_model(pretrained=)``,
the torchvision adapter, ``hubconf.py``, the detectron2 builders and checkpointer and the mmseg backbone's
``init_cfg`` all use it, so every entry point shares torch hub's cache, downloader and the hash check:

* an ``http(s)://`` or ``file://`` URL is downloaded once, with ``torch.hub.download_url_to_file`` (progress bar on
  stderr), to ``<torch.hub.get_dir()>/checkpoints/<file name>`` -- the cache ``torch.hub.load_state_dict_from_url``
  and timm use, so a file already there is not fetched again;
* a file whose name carries a hash prefix (``resnest50-528c19ca.pth``) is checked against it
  (:func:`~resnest_backbones.models.file_hash.verify_hash`); a download that fails the check never enters the cache;
* ``hf-hub:<owner>/<repo>`` (timm's files, e.g. ``hf-hub:timm/resnest14d.gluon_in1k``) is the repository's
  ``model.safetensors``, downloaded once by ``huggingface_hub`` into the Hugging Face cache
  (:func:`~resnest_backbones.models.hf_hub.hf_hub_weights`; an optional dependency).

Nothing is unpickled here; the loaders read the file with the one reader,
:func:`~resnest_backbones.models.checkpoint.io.read_file` (``torch.load(weights_only=True)``, detectron2's numpy-only
``.pkl``, ``safetensors``).
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Union
from urllib.parse import urlparse

import torch.hub

from .checkpoint import CheckpointError
from .file_hash import verify_hash
from .hf_hub import hf_hub_weights, is_hf_hub

__all__ = ["OFFICIAL_RELEASE", "URL_SCHEMES", "cache_dir", "is_url", "local_weights"]

#: The official ResNeSt GitHub release holding the ImageNet files (docs/reference.md section 1).
OFFICIAL_RELEASE = "https://github.com/zhanghang1989/ResNeSt/releases/download/weights_step1/"
#: URL schemes :func:`local_weights` downloads; other names are local paths.
URL_SCHEMES = ("http", "https", "file")


def cache_dir() -> Path:
    """torch hub's checkpoint cache, ``<torch.hub.get_dir()>/checkpoints`` (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def is_url(name: Union[str, os.PathLike]) -> bool:
    """Whether ``name`` is an ``http(s)://`` or ``file://`` URL (as opposed to a local path)."""
    return isinstance(name, str) and urlparse(name).scheme in URL_SCHEMES


def local_weights(source: Union[str, os.PathLike]) -> str:
    """Local path of the checkpoint named by a path, an ``http(s)://``/``file://`` URL or ``hf-hub:<owner>/<repo>``.

    Args:
        source: a local path; a URL whose last path component is the file name (any query string is kept for
            the request, not for the name); or a Hugging Face hub repository, ``hf-hub:<owner>/<repo>``.

    Returns:
        The path of the (now local) file: a URL's file is ``cache_dir() / <file name>``, hash-checked; a hub
        repository's is its ``model.safetensors`` in the Hugging Face cache.

    Raises:
        CheckpointError: the file is missing; the download failed (the message names the URL or repository and
            where the file can be put by hand); or the file does not match the hash prefix in its name.
    """
    if is_hf_hub(source):
        return hf_hub_weights(str(source))
    if not is_url(source):
        path = Path(source).expanduser()
        if not path.is_file():
            raise CheckpointError(f"checkpoint file {path} does not exist")
        verify_hash(path)
        return str(path)
    url = str(source)
    name = os.path.basename(urlparse(url).path)
    if not name:
        raise CheckpointError(f"{url} does not end in a file name; give the URL of the checkpoint file itself")
    path = cache_dir() / name
    if path.is_file():
        try:
            verify_hash(path)
        except CheckpointError as error:
            raise CheckpointError(f"{error}. It is the cached download of {url}: delete {path} and it will be "
                                  f"downloaded again") from None
        return str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Download beside the cache, under the file's own name (which carries the hash to check), and move it in only
    # once it is complete and verified: an interrupted or corrupt download never becomes a cached file.
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".download-") as staging:
        staged = Path(staging) / name
        sys.stderr.write(f'Downloading: "{url}" to {path}\n')
        try:
            torch.hub.download_url_to_file(url, str(staged), progress=True)
        except Exception as error:  # noqa: BLE001 - urllib/HTTP/socket errors all mean "could not fetch it"
            raise CheckpointError(
                f"could not download {url} ({type(error).__name__}: {error}). If this machine is offline, fetch "
                f"the file elsewhere and put it at {path} (torch hub's cache; TORCH_HOME moves it), or pass a "
                f"local path instead of the URL") from error
        try:
            verify_hash(staged)
        except CheckpointError as error:
            raise CheckpointError(f"the download of {url} does not match the hash in its name ({error}); nothing "
                                  f"was saved in {path.parent}. Try again; if it persists, the URL serves another "
                                  f"file") from None
        os.replace(staged, path)
    return str(path)
