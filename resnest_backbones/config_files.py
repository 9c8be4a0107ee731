"""The project's configs by name, wherever the package is: inside an installed wheel (package data under
``resnest_backbones/configs/``) or in a checkout (``configs/`` beside the package, editable installs included).

A name is a path relative to the configs directory, as in the repository: ``detectron2/COCO-Detection/
faster_rcnn_S50_FPN_1x.yaml``, ``mmseg/deeplabv3_resnest101e-d8_4xb4-160k_ade20k-512x512.py``,
``mmdet/toy/faster-rcnn_resnest14d_fpn_toy-coco.py`` (a leading ``configs/`` is accepted too). Every tool that takes a
config path also takes such a name (:func:`resolve_config`), and the files keep their relative ``_base_``/``_BASE_``
links, so detectron2's, mmseg's and mmdet's own tools read them from their installed place::

    python -c "import resnest_backbones as rb; print(rb.config_file('mmseg/toy/deeplabv3_resnest14d-d8_toy-ade.py'))"

An OpenMMLab config of the user's inherits ours by name, as OpenMMLab configs inherit ``mmdet::``'s::

    _base_ = 'resnest_backbones::mmdet/faster-rcnn_resnest50d_fpn_syncbn-backbone+head_ms-range-1x_coco.py'

mmengine knows only the packages of its fixed table (``MODULE2PACKAGE``) before a ``package::`` and would refuse
ours; :func:`load_openmmlab_config`, the one reader of OpenMMLab configs in the project's tools and predictors, reads
``resnest_backbones::NAME`` as the file :func:`config_file` finds, with no ``_scope_`` (so the user's config builds
exactly as the named one does when read directly).
"""
from __future__ import annotations

import contextlib
import difflib
import os
import threading
from pathlib import Path
from typing import Any, Iterator, List, Union

__all__ = ["BASE_PREFIX", "base_file", "config_dir", "config_file", "list_configs", "load_openmmlab_config",
           "resolve_config"]

#: What names one of our configs in an OpenMMLab ``_base_``: ``resnest_backbones::mmdet/...py``.
BASE_PREFIX = f"{__name__.rsplit('.', 1)[0]}::"

_PACKAGED = Path(__file__).resolve().parent / "configs"  # a wheel install
_CHECKOUT = Path(__file__).resolve().parents[1] / "configs"  # a checkout (also an editable install)
_SUFFIXES = (".py", ".yaml")


def config_dir() -> Path:
    """The directory holding the configs: the installed package's copy, else the checkout's ``configs/``.

    Raises:
        FileNotFoundError: neither is there (a package built without its configs).
    """
    for candidate in (_PACKAGED, _CHECKOUT):
        if (candidate / "detectron2").is_dir():
            return candidate
    raise FileNotFoundError(f"no configs next to the package (looked in {_PACKAGED} and {_CHECKOUT}); reinstall "
                            f"resnest_backbones from its wheel or run from a checkout")


def list_configs() -> List[str]:
    """Every config's name (``framework/.../file``), base files (``_base_``, ``Base-*``, ``common``) included."""
    root = config_dir()
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*")
                  if path.suffix in _SUFFIXES and "__pycache__" not in path.parts)


def config_file(name: str) -> str:
    """The path of the config ``name`` (see the module docstring), as a string for the frameworks' loaders.

    Raises:
        FileNotFoundError: no such config; the message names the closest ones.
    """
    relative = name[len(BASE_PREFIX):] if name.startswith(BASE_PREFIX) else name  # as written in a _base_
    relative = relative[len("configs/"):] if relative.startswith("configs/") else relative
    path = config_dir() / relative
    if path.suffix in _SUFFIXES and path.is_file():
        return str(path)
    close = difflib.get_close_matches(relative, list_configs(), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise FileNotFoundError(f"no config named {name!r} in {config_dir()}; {hint}names are paths under configs/ "
                            f"(resnest_backbones.list_configs() lists them)")


def resolve_config(path_or_name: Union[str, os.PathLike]) -> str:
    """What the tools do with a config argument: an existing file stays as it is, otherwise it is a packaged
    config's name (:func:`config_file`)."""
    if os.path.isfile(path_or_name):
        return os.fspath(path_or_name)
    try:
        return config_file(os.fspath(path_or_name))
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{os.fspath(path_or_name)} is neither a config file nor a packaged config name: "
                                f"{error}") from None


# ------------------------------------------------------------------------ OpenMMLab configs inheriting ours by name
_READING = threading.RLock()  # one reader at a time while mmengine's Config reads our names


def base_file(base: str, filename: Union[str, os.PathLike]) -> str:
    """The file of the base ``resnest_backbones::NAME`` written in the config ``filename``.

    Raises:
        FileNotFoundError: ``NAME`` is no config of ours (the message names the config, the base and the closest).
    """
    try:
        return config_file(base[len(BASE_PREFIX):] if base.startswith(BASE_PREFIX) else base)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"_base_ {base!r} of {os.fspath(filename)}: {error}") from None


def _ours_by_name(read_base: Any) -> Any:
    """mmengine's ``Config._get_cfg_path(base, filename) -> (path, scope)`` that reads ``resnest_backbones::NAME``
    as our config ``NAME`` with no scope (any other base as ``read_base`` does)."""
    def get_cfg_path(base: str, filename: str) -> Any:
        return (base_file(base, filename), None) if base.startswith(BASE_PREFIX) else read_base(base, filename)

    return get_cfg_path


@contextlib.contextmanager
def _bases_by_name(config_class: Any) -> Iterator[None]:
    """While inside, ``config_class`` (mmengine's ``Config``) reads ``resnest_backbones::`` bases
    (:func:`_ours_by_name`); left as it was on leaving."""
    original = config_class.__dict__.get("_get_cfg_path")
    if not isinstance(original, staticmethod):  # another mmengine: it says what it cannot read
        yield
        return
    with _READING:
        config_class._get_cfg_path = staticmethod(_ours_by_name(original.__func__))
        try:
            yield
        finally:
            config_class._get_cfg_path = original


def load_openmmlab_config(path: Union[str, os.PathLike], **options: Any) -> Any:
    """mmengine's ``Config.fromfile(path, **options)``, bases written ``resnest_backbones::NAME`` read as our configs
    (imports mmengine now).

    A ``package::`` base makes mmengine look for ``<package>/.mim/configs/NAME`` of a package in its fixed table, and
    stamp ``_scope_='<package>'`` on the base's type dicts; neither fits ours (the configs are in
    ``resnest_backbones/configs`` or a checkout's ``configs/``, and ``resnest_backbones`` is the scope of two
    registries, mmseg's and mmdet's children). So mmengine's one step from a ``_base_`` entry to a file,
    ``Config._get_cfg_path``, is given :func:`config_file` for our prefix while the file is read: the base is then
    an ordinary file base (no ``_scope_``; its own ``mmdet::``/``mmseg::`` bases as before), at any depth and in
    lists, with the user's relative bases and ``{{ fileDirname }}`` untouched.

    Raises:
        FileNotFoundError: no such file, or a ``resnest_backbones::`` base naming no config (the message names the
            closest ones).
    """
    from mmengine.config import Config

    with _bases_by_name(Config):
        return Config.fromfile(os.fspath(path), **options)
