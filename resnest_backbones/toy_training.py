"""What a framework's toy training is: the one object, ``TOY``, that a framework's ``toy_target`` module (in its
subpackage, named by its row of :data:`resnest_backbones.frameworks.FRAMEWORKS`) defines, and how it is read.

``resnest_backbones.benchmark.toy_targets`` (the accuracy targets ``tools/toy_margins.py`` sweeps) and
``tools/demo.py`` (its sections) are built from these. A ``toy_target`` module imports no framework: it builds
command lines, and its picture imports the predictor when it draws. Its subpackage's ``__init__`` does import the
framework (it registers the backbone), so :func:`load_toy` reads the module's file without running it.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Tuple

__all__ = ["ToyTraining", "last_float", "load_toy"]

PACKAGE = __name__.rsplit(".", 1)[0]


@dataclass(frozen=True)
class ToyTraining:
    """One framework's toy training: the accuracy target a slow test holds it to, and its demo section."""

    threshold: float  # the slow test's assertion (same unit as the metric)
    metric: str  # what is measured; the demo's table shows the part before the first comma
    test: str  # the slow test that asserts it (its node id)
    #: The target's run: (seed, threads, scratch dir) -> argv, run in the checkout. Every run makes its own copy of
    #: the toy data in its scratch directory (the same files: the data's seed is fixed): runs at once must not share
    #: a data directory, since a tool that finds other parameters there replaces it.
    command: Callable[[int, int, Path], List[str]]
    parse: Callable[[str], float]  # the metric read from the output of a run (target or demo)
    model: str  # the model the demo section trains
    demo: Tuple[str, ...]  # the demo section's training (and evaluation) argv, run in the checkout
    picture: Callable[[Path], Path]  # draws the demo's trained model on toy val images: checkout root -> the file


def last_float(pattern: str, scale: float = 1.0) -> Callable[[str], float]:
    """The last number ``pattern`` captures in a command's output, times ``scale``."""
    regex = re.compile(pattern)

    def parse(output: str) -> float:
        found = regex.findall(output)
        if not found:
            raise ValueError(f"no match for {pattern!r} in the output")
        return float(found[-1]) * scale

    return parse


@functools.lru_cache(maxsize=None)
def load_toy(module: str) -> ToyTraining:
    """The ``TOY`` of ``module``. A module of this package whose subpackage is not imported yet is read from its
    file alone (its subpackage's ``__init__``, which imports the framework, does not run); any other is imported."""
    parts = module.split(".")
    path = Path(__file__).parent.joinpath(*parts[1:]).with_suffix(".py")
    if parts[0] != PACKAGE or module in sys.modules or ".".join(parts[:-1]) in sys.modules or not path.is_file():
        return importlib.import_module(module).TOY
    spec = importlib.util.spec_from_file_location(module, path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded.TOY
