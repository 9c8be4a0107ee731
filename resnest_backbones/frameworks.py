"""The one table of the frameworks ResNeSt plugs into, and which of them a config file is for.

Each row says what the rest of the project needs to know about a framework: the module whose import proves it
usable (and why it is not), its adapter subpackage, its predictor (imported only when built), the config files it
reads, and the module of its subpackage holding its toy training (its toy accuracy target and its demo section:
:class:`~resnest_backbones.toy_training.ToyTraining`). ``resnest_backbones.predict`` (choices, dispatch,
:func:`framework_of_config`), ``tools/demo.py`` (sections), ``resnest_backbones.benchmark.toy_targets`` (targets),
``tests/support/frameworks.py`` (markers, skip reasons) and ``tests/test_imports.py`` read it.

Importing this module imports no framework: probes, predictors and toy trainings are imported when asked for (a toy
training imports none either), and telling a config's framework imports mmengine (an OpenMMLab config) or detectron2
(a LazyConfig whose names it cannot see) only for such a file.
"""
from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

from .config_files import BASE_PREFIX, base_file, load_openmmlab_config
from .toy_training import ToyTraining, load_toy

__all__ = ["FRAMEWORKS", "Framework", "config_format", "framework_of_config", "usable"]

PACKAGE = __name__.rsplit(".", 1)[0]


@dataclass(frozen=True)
class Framework:
    """One framework: a row of :data:`FRAMEWORKS`."""

    name: str  # --framework's value, the test marker, the name of its demo section and of its toy target
    #: Module whose import proves the framework usable (compiled ops included); ``None``: always usable (a core
    #: dependency of the package).
    probe: Optional[str]
    missing: str  # why it is not usable when its probe does not import (the tests' skip reason)
    subpackage: str  # its adapter: ``resnest_backbones.<subpackage>``
    predictor: str  # ``"module:callable"`` building its predictor (see resnest_backbones.predict.load_predictor)
    #: The config files it reads: ``yacs`` (.yaml), ``lazyconfig`` (detectron2's .py), ``openmmlab`` (mmengine's
    #: .py); none: its predictor takes no config.
    config_formats: Tuple[str, ...]
    score_threshold: bool  # whether its predictor takes ``score_threshold``
    #: The framework-free module of its subpackage (``toy_target``) whose ``TOY`` is its toy training: its toy
    #: accuracy target and its tools/demo.py section; ``None``: neither.
    toy: Optional[str]

    @property
    def package(self) -> str:
        return f"{PACKAGE}.{self.subpackage}"

    def predictor_factory(self) -> Callable[..., Any]:
        """The callable named by :attr:`predictor`, imported now (and the framework with it)."""
        module, _, attribute = self.predictor.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def toy_training(self) -> Optional[ToyTraining]:
        """The ``TOY`` of :attr:`toy`, read now (without importing the framework), or ``None`` when it has none."""
        return None if self.toy is None else load_toy(self.toy)


_SETUP = "(run tools/setup_env.sh)"
FRAMEWORKS: Dict[str, Framework] = {row.name: row for row in (
    Framework(name="detectron2", probe="detectron2.modeling",
              missing="detectron2 is not installed or does not import (it is not on PyPI: tools/setup_env.sh builds "
                      "it from DETECTRON2_SOURCE, see README)",
              subpackage="detectron2", predictor=f"{PACKAGE}.detectron2.predict:detectron2_predictor",
              config_formats=("yacs", "lazyconfig"), score_threshold=True, toy=f"{PACKAGE}.detectron2.toy_target"),
    Framework(name="mmseg", probe="mmseg.models",
              missing=f"mmsegmentation/mmcv with ops are not installed or do not import {_SETUP}",
              subpackage="mmseg", predictor=f"{PACKAGE}.mmseg.predict:MMSegPredictor",
              config_formats=("openmmlab",), score_threshold=False, toy=f"{PACKAGE}.mmseg.toy_target"),
    Framework(name="mmdet", probe="mmdet.models", missing=f"mmdet 3.3.0 is not installed or does not import {_SETUP}",
              subpackage="mmdet", predictor=f"{PACKAGE}.mmdet.predict:MMDetPredictor",
              config_formats=("openmmlab",), score_threshold=True, toy=f"{PACKAGE}.mmdet.toy_target"),
    Framework(name="torchvision", probe=None, missing="", subpackage="torchvision",
              predictor=f"{PACKAGE}.torchvision.predict:torchvision_predictor", config_formats=(),
              score_threshold=True, toy=f"{PACKAGE}.torchvision.toy_target"),
)}


@functools.lru_cache(maxsize=None)
def usable(name: str) -> bool:
    """Whether the framework ``name``'s probe imports (any failure counts: a broken install is no install)."""
    probe = FRAMEWORKS[name].probe
    if probe is None:
        return True
    try:
        importlib.import_module(probe)
    except Exception:  # noqa: BLE001 - e.g. mmcv without its compiled ops
        return False
    return True


# ------------------------------------------------------------------------------------- which framework a config is for
_OPENMMLAB_KEYS = ("_base_", "custom_imports", "default_scope")
_LAZYCONFIG_NAMES = {"model", "dataloader", "train"}


@dataclass
class _TopLevel:
    """What a config file binds at its top level, read without running it."""

    values: Dict[str, ast.expr]  # names assigned, and the expression
    names: Set[str]  # every name bound (assigned or imported)
    read_base: bool  # mmengine's new-style ``with read_base():`` inheritance

    @classmethod
    def read(cls, path: Path) -> "_TopLevel":
        found = cls({}, set(), False)
        for node in ast.parse(path.read_text(), str(path)).body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                found.values.update((t.id, node.value) for t in targets if isinstance(t, ast.Name))
                found.names.update(n.id for t in targets if isinstance(t, ast.Tuple) for n in t.elts
                                   if isinstance(n, ast.Name))  # model, dataloader, train = ...
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                found.names.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, ast.With):
                found.read_base |= any(isinstance(i.context_expr, ast.Call) and "read_base" in ast.dump(
                    i.context_expr.func) for i in node.items)
        found.names.update(found.values)
        return found

    def literal(self, name: str) -> Any:
        try:
            return ast.literal_eval(self.values[name]) if name in self.values else None
        except ValueError:  # not a literal: the loaded config says
            return None


def _is_type_dict(node: Optional[ast.expr]) -> bool:
    """Whether ``node`` is an OpenMMLab ``dict(type=...)`` (or ``{'type': ...}``)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        return any(k.arg == "type" for k in node.keywords)
    return isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "type" for k in node.keys)


def _lazyconfig_loads(path: Path) -> bool:
    """Whether detectron2 (when installed) loads ``path`` as a LazyConfig defining a model, data and training."""
    if importlib.util.find_spec("detectron2") is None:
        return False
    try:
        from detectron2.config import LazyConfig

        cfg = LazyConfig.load(str(path))
    except Exception:  # noqa: BLE001 - not a LazyConfig (or a broken one): not told by this rule
        return False
    return _LAZYCONFIG_NAMES <= set(cfg) and "_target_" in cfg.model


def config_format(path: Path) -> Optional[str]:
    """The kind of config ``path`` is (``yacs``, ``lazyconfig``, ``openmmlab``), or ``None`` when it is none of them.

    A ``.py`` is an OpenMMLab config when it inherits (``_base_``, ``with read_base()``), names ``custom_imports`` or
    ``default_scope``, or assigns ``model = dict(type=...)``; a LazyConfig when it binds ``model``, ``dataloader``
    and ``train`` (or, with detectron2 installed, loads as one).
    """
    if path.suffix in (".yaml", ".yml"):
        return "yacs"
    if path.suffix != ".py":
        return None
    top = _TopLevel.read(path)
    if top.read_base or any(key in top.values for key in _OPENMMLAB_KEYS) or _is_type_dict(top.values.get("model")):
        return "openmmlab"
    if _LAZYCONFIG_NAMES <= top.names or _lazyconfig_loads(path):
        return "lazyconfig"
    return None


def _load_openmmlab(path: Path) -> Any:
    """The config as the project's tools load it (bases merged, ``resnest_backbones::NAME`` ones included; custom
    imports not run), or ``None`` without mmengine or when it does not load (e.g. a ``mmseg::`` base without mmseg)."""
    try:
        return load_openmmlab_config(path, import_custom_modules=False)
    except Exception:  # noqa: BLE001 - the file's own text is read instead
        return None


def _inheritance(path: Path) -> Tuple[List[str], Any, Any]:
    """The ``_base_`` chain of ``path`` read from the files (``scope::name`` or absolute paths, nearest first; ours,
    ``resnest_backbones::NAME``, as their files), and the first ``default_scope`` and ``custom_imports`` written
    along it."""
    bases: List[str] = []
    scope = imports = None
    queue, seen = [path.resolve()], {path.resolve()}
    while queue:
        current = queue.pop(0)
        top = _TopLevel.read(current)
        scope = scope if scope is not None else top.literal("default_scope")
        imports = imports if imports is not None else top.literal("custom_imports")
        written = top.literal("_base_") or []
        for base in [written] if isinstance(written, str) else written:
            if base.startswith(BASE_PREFIX):
                base = base_file(base, current)  # raises naming the closest configs: the config cannot run
            elif "::" in base:
                bases.append(base)
                continue
            full = (current.parent / Path(base).expanduser()).resolve()
            bases.append(str(full))
            if full.is_file() and full.suffix == ".py" and full not in seen:
                seen.add(full)
                queue.append(full)
    return bases, scope, imports


def _base_framework(base: str, names: Iterable[str]) -> Optional[str]:
    """The framework a base is under: its ``scope::`` or its nearest folder named like a framework."""
    names = set(names)
    if "::" in base:
        scope = base.split("::", 1)[0]
        return scope if scope in names else None
    return next((part for part in reversed(Path(base).parent.parts) if part in names), None)


def _openmmlab_framework(path: Path, rows: List[Framework]) -> Optional[str]:
    """Which of the OpenMMLab ``rows`` the config is for: its ``default_scope``, else its ``custom_imports`` naming
    one adapter subpackage, else its bases under one framework's folder (or ``scope::``)."""
    bases, scope, imports = _inheritance(path)
    loaded = _load_openmmlab(path)
    if loaded is not None:
        scope, imports = loaded.get("default_scope"), loaded.get("custom_imports")
    modules = (imports or {}).get("imports", []) if isinstance(imports, dict) else []
    modules = [modules] if isinstance(modules, str) else list(modules)
    names = [row.name for row in rows]
    for told in ({scope} & set(names),
                 {row.name for row in rows for m in modules if m == row.package or m.startswith(row.package + ".")},
                 {found for found in (_base_framework(base, names) for base in bases) if found}):
        if len(told) == 1:
            return told.pop()
    return None


def framework_of_config(path: Path) -> str:
    """The framework of :data:`FRAMEWORKS` that reads the config file ``path``: a ``.yaml`` is detectron2's yacs
    config; a ``.py`` is an OpenMMLab config (its framework from the loaded config's ``default_scope``, else
    ``custom_imports`` naming ``resnest_backbones.mmseg``/``.mmdet``, else ``_base_`` files under an ``mmseg``/``mmdet``
    folder, ours named ``resnest_backbones::NAME`` included) or a detectron2 LazyConfig (see :func:`config_format`).

    Raises:
        ValueError: it cannot tell (the message says to pass ``--framework``).
    """
    kind = config_format(path)
    rows = [row for row in FRAMEWORKS.values() if kind in row.config_formats]
    name = rows[0].name if len(rows) == 1 else _openmmlab_framework(path, rows) if rows else None
    if name is None:
        readers = [row.name for row in FRAMEWORKS.values() if row.config_formats]
        why = f"an OpenMMLab config of neither {' nor '.join(r.name for r in rows)}" if rows else \
            "neither a detectron2 LazyConfig nor an OpenMMLab config"
        raise ValueError(f"cannot tell which framework {path} is for ({why}); pass --framework "
                         f"{', '.join(readers[:-1])} or {readers[-1]}")
    return name
