"""The one table of framework probes (detectron2, mmseg, mmdet) and the ways a test uses it.

A framework suite is skipped, with the table's reason, when its probe does not import: through its marker
(``@pytest.mark.mmseg``, checked by ``tests/conftest.py`` before each test) for tests inside framework-free
modules, and through ``pytestmark = require("mmseg")`` for modules that import the framework at module top (or
``require("mmdet")`` inside one test). All ask the same probe, so a broken install skips the same tests either
way, and the end-of-run summary can say which ran.

Where a framework must be there (CI: ``RESNEST_REQUIRE_FRAMEWORKS=all``, every framework of the table, set by
``.ci/run``; or a comma-separated list of names), a test that would skip because it is missing fails instead,
naming the framework and the reason.

Adding a framework: one row in :data:`FRAMEWORKS` gives it its marker (``tests/conftest.py``), its import checks
(``tests/test_imports.py``), its skip/failure rule and its line in the run's summary.
"""
from __future__ import annotations

import functools
import importlib
import os
from typing import Dict, FrozenSet, NamedTuple

import pytest

#: Comma-separated frameworks (or ``all``) that must be usable: a skip for one of them missing becomes a failure.
REQUIRE_ENV = "RESNEST_REQUIRE_FRAMEWORKS"


class Probe(NamedTuple):
    module: str  # importing it proves the framework usable (compiled ops included)
    reason: str  # the skip reason shown when it does not import


FRAMEWORKS: Dict[str, Probe] = {
    "detectron2": Probe("detectron2.modeling", "detectron2 is not installed or does not import (it is not on PyPI: "
                                               "tools/setup_env.sh builds it from DETECTRON2_SOURCE, see README)"),
    "mmseg": Probe("mmseg.models", "mmsegmentation/mmcv with ops are not installed or do not import "
                                   "(run tools/setup_env.sh)"),
    "mmdet": Probe("mmdet.models", "mmdet 3.3.0 is not installed or does not import (run tools/setup_env.sh)"),
}


@functools.lru_cache(maxsize=None)
def available(framework: str) -> bool:
    """Whether ``framework``'s probe imports (any import failure, not only ImportError, counts as missing)."""
    try:
        importlib.import_module(FRAMEWORKS[framework].module)
    except Exception:  # noqa: BLE001 - a broken install (e.g. mmcv without ops) cannot run the suite either
        return False
    return True


@functools.lru_cache(maxsize=None)
def required() -> FrozenSet[str]:
    """The frameworks named by ``$RESNEST_REQUIRE_FRAMEWORKS`` (empty when unset; ``all``: every one of the table);
    an unknown name is an error."""
    names = frozenset(n.strip() for n in os.environ.get(REQUIRE_ENV, "").split(",") if n.strip())
    if names == {"all"}:
        return frozenset(FRAMEWORKS)
    unknown = sorted(names - FRAMEWORKS.keys())
    if unknown:
        raise pytest.UsageError(f"{REQUIRE_ENV} names unknown frameworks {unknown}; known: {sorted(FRAMEWORKS)}")
    return names


def skip_missing(framework: str) -> None:
    """Skip the calling test or module because ``framework`` is missing, or fail it where it is required."""
    __tracebackhide__ = True
    reason = FRAMEWORKS[framework].reason
    if framework in required():
        pytest.fail(f"{framework} is required here ({REQUIRE_ENV}={os.environ[REQUIRE_ENV]}) but missing: {reason}",
                    pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require(framework: str) -> pytest.MarkDecorator:
    """Skip the calling module (or test) unless ``framework`` is usable; return its marker for ``pytestmark``.

    Called at module top, before the module's framework imports, so a missing framework is a visible skip with
    the table's reason rather than a collection error (or, where the framework is required, a failure).
    """
    __tracebackhide__ = True  # the skip is reported at the caller's line (the test module), not here
    if not available(framework):
        skip_missing(framework)
    return getattr(pytest.mark, framework)
