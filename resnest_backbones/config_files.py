"""The project's configs by name, wherever the package is: inside an installed wheel (package data under
``resnest_backbones/configs/``) or in a checkout (``configs/`` beside the package, editable installs included).

A name is a path relative to the configs directory, as in the repository: ``detectron2/COCO-Detection/
faster_rcnn_S50_FPN_1x.yaml``, ``mmseg/deeplabv3_resnest101e-d8_4xb4-160k_ade20k-512x512.py``,
``mmdet/toy/faster-rcnn_resnest14d_fpn_toy-coco.py`` (a leading ``configs/`` is accepted too). Every tool that takes a
config path also takes such a name (:func:`resolve_config`), and the files keep their relative ``_base_``/``_BASE_``
links, so detectron2's, mmseg's and mmdet's own tools read them from their installed place::

    python -c "import resnest_backbones as rb; print(rb.config_file('mmseg/toy/deeplabv3_resnest14d-d8_toy-ade.py'))"
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import List, Union

__all__ = ["config_dir", "config_file", "list_configs", "resolve_config"]

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
    relative = name[len("configs/"):] if name.startswith("configs/") else name
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
