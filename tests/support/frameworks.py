"""The one table of framework probes (detectron2, mmseg) and the two ways a test uses it.

A framework suite is skipped, with the table's reason, when its probe does not import: through its marker
(``@pytest.mark.mmseg``, applied by ``tests/conftest.py``) for tests inside framework-free modules, and through
``pytestmark = require("mmseg")`` for modules that import the framework at module top. Both ask the same
probe, so a broken install skips the same tests either way, and the end-of-run summary can say which ran.
"""
from __future__ import annotations

import functools
import importlib
from typing import Dict, NamedTuple

import pytest


class Probe(NamedTuple):
    module: str  # importing it proves the framework usable (compiled ops included)
    reason: str  # the skip reason shown when it does not import


FRAMEWORKS: Dict[str, Probe] = {
    "detectron2": Probe("detectron2.modeling", "detectron2 is not installed or does not import (it is not on PyPI: "
                                               "build it from its official source into .venv, see README)"),
    "mmseg": Probe("mmseg.models", "mmsegmentation/mmcv with ops are not installed or do not import "
                                   "(run tools/setup_env.sh)"),
}


@functools.lru_cache(maxsize=None)
def available(framework: str) -> bool:
    """Whether ``framework``'s probe imports (any import failure, not only ImportError, counts as missing)."""
    try:
        importlib.import_module(FRAMEWORKS[framework].module)
    except Exception:  # noqa: BLE001 - a broken install (e.g. mmcv without ops) cannot run the suite either
        return False
    return True


def require(framework: str) -> pytest.MarkDecorator:
    """Skip the calling module (or test) unless ``framework`` is usable; return its marker for ``pytestmark``.

    Called at module top, before the module's framework imports, so a missing framework is a visible skip with
    the table's reason rather than a collection error.
    """
    __tracebackhide__ = True  # the skip is reported at the caller's line (the test module), not here
    if not available(framework):
        pytest.skip(FRAMEWORKS[framework].reason, allow_module_level=True)
    return getattr(pytest.mark, framework)
