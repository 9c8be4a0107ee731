"""The package's import structure: every module imports on its own, no two modules or subpackages import each
other, and the layers import only downwards.

An import cycle works or fails depending on which module a user imports first, so each module is imported alone
in a fresh process (forked from one that has imported only torch and torchvision: ``support.processes.ImportServer``),
and the graph of module-level relative imports must be acyclic, module by module and
subpackage by subpackage. The layers, bottom up: ``types`` (the shared type aliases) < ``layers`` < ``models`` <
``accel`` < ``factory`` (``create_model``) < everything else (framework subpackages, ``openmmlab`` (what mmseg and
mmdet share) among them, tools' helpers) < the package's ``__init__``. The OpenMMLab subpackages stay apart:
``mmseg`` and ``mmdet`` share only ``openmmlab``, which needs neither framework (only mmengine and mmcv).
"""
from __future__ import annotations

import ast
import functools
import importlib
import pkgutil
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Set

import pytest
from support.frameworks import FRAMEWORKS as PROBES
from support.frameworks import available, required, skip_missing
from support.processes import ImportServer

import resnest_backbones

PACKAGE = "resnest_backbones"
ROOT = Path(resnest_backbones.__file__).parent
#: Subpackages that need a framework (named like it), and the framework probe they need.
FRAMEWORKS = {f"{PACKAGE}.{name}": name for name in PROBES}
#: What mmseg and mmdet share needs neither of them, only what these probes import (mmengine and mmcv); without it
#: neither framework works, so its modules skip as theirs do (and fail where either is required).
OPENMMLAB, OPENMMLAB_USERS = f"{PACKAGE}.openmmlab", ("mmseg", "mmdet")
OPENMMLAB_PROBES = ("mmengine.runner", "mmcv.cnn")
#: ``resnest_backbones.<subpackage>`` -> the modules it must not import (nor their submodules), anywhere in its files.
APART = {
    "openmmlab": ("mmseg", "mmdet", f"{PACKAGE}.mmseg", f"{PACKAGE}.mmdet"),  # the shared part: mmengine and mmcv
    "mmdet": ("mmseg", f"{PACKAGE}.mmseg"),
    "mmseg": ("mmdet", f"{PACKAGE}.mmdet"),
}


def _modules() -> List[str]:
    names = [PACKAGE] + [m.name for m in pkgutil.walk_packages([str(ROOT)], prefix=f"{PACKAGE}.")]
    return sorted(names)


def _framework(name: str) -> Optional[str]:
    """The framework the module ``name`` needs, or ``None`` for the framework-free modules."""
    for prefix, framework in FRAMEWORKS.items():
        if _within(name, prefix):
            return framework
    return None


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@functools.lru_cache(maxsize=None)
def _openmmlab_usable() -> bool:
    """Whether mmengine and mmcv import (any failure counts, as for the framework probes)."""
    try:
        for probe in OPENMMLAB_PROBES:
            importlib.import_module(probe)
    except Exception:  # noqa: BLE001 - a broken install is no install
        return False
    return True


def _path(name: str) -> Path:
    parts = name.split(".")[1:]
    package = ROOT.joinpath(*parts)
    return package / "__init__.py" if package.is_dir() else package.with_suffix(".py")


def _target(module: str, is_package: bool, node: ast.ImportFrom) -> List[str]:
    """The package modules a top-level ``from ... import ...`` of ``module`` loads (a submodule when it is one)."""
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - node.level + 1]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    if source != PACKAGE and not source.startswith(PACKAGE + "."):
        return []
    targets = []
    for alias in node.names:
        candidate = f"{source}.{alias.name}"
        targets.append(candidate if _path(candidate).exists() else source)
    return targets


def import_graph() -> Dict[str, Set[str]]:
    """``module -> modules it imports`` from the ``import``/``from`` statements at each module's top level."""
    graph: Dict[str, Set[str]] = {}
    for name in _modules():
        path = _path(name)
        tree = ast.parse(path.read_text(), str(path))
        edges: Set[str] = set()
        for node in tree.body:
            if isinstance(node, ast.ImportFrom):
                edges.update(_target(name, path.name == "__init__.py", node))
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name.startswith(PACKAGE + "."))
        graph[name] = edges - {name}
    return graph


def all_imports(module: str) -> Set[str]:
    """Every module that ``module`` names in an ``import``/``from`` statement, at any depth of its file (lazy imports
    inside functions included); ``from x import y`` counts as ``x`` and ``x.y``, relative imports made absolute."""
    path = _path(module)
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
            source = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module or ""
            found.update([source, *(f"{source}.{alias.name}" for alias in node.names)])
    return found


def apart_violations(imports: Dict[str, Iterable[str]]) -> List[str]:
    """``module -> imported`` pairs of ``imports`` (module -> the modules it imports) that :data:`APART` forbids."""
    return sorted(f"{module} -> {target}" for module, targets in imports.items() for target in targets
                  for sub, banned in APART.items() if _within(module, f"{PACKAGE}.{sub}")
                  and any(_within(target, b) for b in banned))


def _cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One cycle of ``graph`` (as a path that ends where it starts), or ``[]``."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


#: Rank of the bottom layers (``resnest_backbones.<name>``); every other part ranks above them, the package's
#: ``__init__`` (which exports from all of them) at the top. A part may import only parts of its rank or below.
LAYER_RANKS = {"types": 0, "layers": 1, "models": 2, "accel": 3, "factory": 4}
OTHER_RANK, ROOT_RANK = 5, 6


def part(module: str) -> str:
    """The subpackage or top-level module of the package that ``module`` belongs to."""
    return ".".join(module.split(".")[:2])


def rank(name: str) -> int:
    return ROOT_RANK if name == PACKAGE else LAYER_RANKS.get(name.split(".")[1], OTHER_RANK)


def package_graph(graph: Dict[str, Set[str]]) -> Dict[str, Set[str]]:
    """The module graph collapsed to the package's parts (subpackages and top-level modules), self-edges dropped."""
    parts: Dict[str, Set[str]] = {}
    for module, targets in graph.items():
        parts.setdefault(part(module), set()).update(part(t) for t in targets if part(t) != part(module))
    return parts


def test_import_graph_is_acyclic() -> None:
    graph = import_graph()
    # The graph sees the imports this test is about (so an empty graph cannot pass by accident).
    assert f"{PACKAGE}.accel" in graph[f"{PACKAGE}.factory"]
    assert f"{PACKAGE}.models.resnest" in graph[f"{PACKAGE}.accel.training"]
    assert _cycle(graph) == [], " -> ".join(_cycle(graph))


def test_subpackages_are_acyclic_and_layered() -> None:
    parts = package_graph(import_graph())
    assert {f"{PACKAGE}.{name}" for name in LAYER_RANKS} <= set(parts)
    assert f"{PACKAGE}.models" in parts[f"{PACKAGE}.accel"]  # the walk sees imports between parts
    assert _cycle(parts) == [], " -> ".join(_cycle(parts))
    upward = sorted(f"{a} -> {b}" for a, targets in parts.items() for b in targets if rank(b) > rank(a))
    assert upward == [], f"imports up the layers ({' < '.join(LAYER_RANKS)} < the rest): {upward}"


def test_layer_check_finds_an_upward_import() -> None:
    parts = package_graph({f"{PACKAGE}.models.variants": {f"{PACKAGE}.accel.training"}})
    assert parts == {f"{PACKAGE}.models": {f"{PACKAGE}.accel"}}
    assert rank(f"{PACKAGE}.accel") > rank(f"{PACKAGE}.models")


def test_openmmlab_subpackages_stay_apart() -> None:
    """mmdet's adapter and the shared ``openmmlab`` import no mmseg (neither the framework nor our adapter),
    mmseg's no mmdet, ``openmmlab`` neither: each framework's subpackage works without the other framework."""
    imports = {name: all_imports(name) for name in _modules()
               if any(_within(name, f"{PACKAGE}.{sub}") for sub in APART)}
    # the walk sees each adapter's imports of the shared part, lazy ones and relative ones
    assert f"{PACKAGE}.openmmlab.registry" in imports[f"{PACKAGE}.mmdet.registry"]
    assert f"{PACKAGE}.openmmlab.checkpoint" in imports[f"{PACKAGE}.mmseg.predict"]
    assert "mmseg.registry" in imports[f"{PACKAGE}.mmseg.predict"]
    assert apart_violations(imports) == []
    assert apart_violations({f"{PACKAGE}.openmmlab.cli": {"mmseg.apis"}, f"{PACKAGE}.mmdet.x": {f"{PACKAGE}.mmseg"},
                             f"{PACKAGE}.mmseg.x": {f"{PACKAGE}.mmdet.cli", "mmdetection", f"{PACKAGE}.mmdetx"}}) == [
        f"{PACKAGE}.mmdet.x -> {PACKAGE}.mmseg", f"{PACKAGE}.mmseg.x -> {PACKAGE}.mmdet.cli",
        f"{PACKAGE}.openmmlab.cli -> mmseg.apis"]
    # the layers: the shared part sits with the framework subpackages that import it
    assert rank(OPENMMLAB) == rank(f"{PACKAGE}.mmseg") == rank(f"{PACKAGE}.mmdet")


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []


@pytest.fixture(scope="module")
def importer() -> Iterator[ImportServer]:
    server = ImportServer()
    yield server
    server.close()


@pytest.mark.parametrize("name", _modules())
def test_module_imports_alone(name: str, importer: ImportServer) -> None:
    framework = _framework(name)
    if framework and not available(framework):
        skip_missing(framework)  # a visible skip (a failure where the framework is required)
    if _within(name, OPENMMLAB) and not _openmmlab_usable():
        skip_missing(next((f for f in OPENMMLAB_USERS if f in required()), OPENMMLAB_USERS[0]))
    status, output = importer.import_alone(name)
    assert status == 0, f"import {name}: exit status {status}:\n{output[-5000:]}"


def test_the_import_server_reports_what_fails(importer: ImportServer) -> None:
    status, output = importer.import_alone(f"{PACKAGE}.no_such_module")
    assert status != 0 and f"ModuleNotFoundError: No module named '{PACKAGE}.no_such_module'" in output
    assert importer.import_alone(f"{PACKAGE}.types") == (0, "")  # and the server goes on after a failure
