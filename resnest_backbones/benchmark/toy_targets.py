"""The toy accuracy targets: each toy training that a slow test holds to a threshold, the command it runs, and how
its metric is read from the command's output. ``tools/toy_margins.py`` sweeps them over seeds and threads.

There is one for each framework of the table (:data:`resnest_backbones.frameworks.FRAMEWORKS`) that names a toy
training (the ``toy_target`` module of its subpackage, :class:`~resnest_backbones.toy_training.ToyTraining`), under
the framework's name, in the table's order; reading them imports no framework.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

from ..frameworks import FRAMEWORKS

__all__ = ["TARGETS", "Target", "available", "targets"]


@dataclass(frozen=True)
class Target:
    """One toy training held to an accuracy threshold by a slow test."""

    name: str  # its framework's name in the table
    threshold: float  # the test's assertion (same unit as the metric)
    metric: str
    test: str  # the slow test that asserts it
    command: Callable[[int, int, Path], List[str]]  # (seed, threads, scratch dir) -> argv
    parse: Callable[[str], float]
    framework: Optional[str]  # the module that must import for it to run (its framework's probe), or None


def targets() -> Dict[str, Target]:
    """The target of each framework of the table with a toy training, read from the table now."""
    found = {}
    for name, row in FRAMEWORKS.items():
        toy = row.toy_training()
        if toy is not None:
            found[name] = Target(name, toy.threshold, toy.metric, toy.test, toy.command, toy.parse, row.probe)
    return found


TARGETS: Dict[str, Target] = targets()


def available(module: Optional[str]) -> bool:
    """Whether the framework module a target needs (None: none) is installed."""
    return module is None or importlib.util.find_spec(module.split(".")[0]) is not None
