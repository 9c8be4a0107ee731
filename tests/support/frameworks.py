"""The framework probes (detectron2, mmseg, mmdet: the rows of the one framework table,
``resnest_backbones.frameworks.FRAMEWORKS``, that have a probe) and the ways a test uses them.

A framework suite is skipped, with the table's reason, when its probe does not import: through its marker
(``@pytest.mark.mmseg``, checked by ``tests/conftest.py`` before each test) for tests inside framework-free
modules, and through ``pytestmark = require("mmseg")`` for modules that import the framework at module top (or
``require("mmdet")`` inside one test). All ask the same probe, so a broken install skips the same tests either
way, and the end-of-run summary can say which ran.

Where a framework must be there (CI: ``RESNEST_REQUIRE_FRAMEWORKS=all``, every framework of the table, set by
``.ci/run``; or a comma-separated list of names), a test that would skip because it is missing fails instead,
naming the framework and the reason.

Adding a framework: its row in the package's table (with a probe and the reason shown when it does not import)
gives it its marker (``tests/conftest.py``), its import checks (``tests/test_imports.py``), its skip/failure rule
and its line in the run's summary.
"""
from __future__ import annotations

import functools
import os
from typing import Dict, FrozenSet, NamedTuple

import pytest

from resnest_backbones.frameworks import FRAMEWORKS as TABLE
from resnest_backbones.frameworks import usable

#: Comma-separated frameworks (or ``all``) that must be usable: a skip for one of them missing becomes a failure.
REQUIRE_ENV = "RESNEST_REQUIRE_FRAMEWORKS"


class Probe(NamedTuple):
    module: str  # importing it proves the framework usable (compiled ops included)
    reason: str  # the skip reason shown when it does not import


#: The frameworks a test may need: those of the table with a probe (torchvision, a core dependency, has none).
FRAMEWORKS: Dict[str, Probe] = {name: Probe(row.probe, row.missing) for name, row in TABLE.items() if row.probe}


def available(framework: str) -> bool:
    """Whether ``framework``'s probe imports (any import failure, not only ImportError, counts as missing: a broken
    install, e.g. mmcv without ops, cannot run the suite either)."""
    return usable(framework)


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
