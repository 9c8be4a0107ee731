"""Test-suite wiring: framework markers skip visibly when their framework is missing (the probes are the one
table in ``support/frameworks.py``, which framework modules also use through ``require``), or fail where
``$RESNEST_REQUIRE_FRAMEWORKS`` requires the framework; the run ends with a line naming which framework suites ran
and which were skipped. Helpers live in ``tests/support`` (importable as ``support.*`` through pytest.ini's
``pythonpath = tests``)."""
from __future__ import annotations

import collections
import os
import sys
from typing import Iterator

import pytest
import torch
from support.disk import check_free_disk
from support.frameworks import FRAMEWORKS, REQUIRE_ENV, available, required, skip_missing


def pytest_configure(config: pytest.Config) -> None:
    required()  # an unknown name in $RESNEST_REQUIRE_FRAMEWORKS stops the run at once
    if not hasattr(config, "workerinput"):  # once, in the process that starts the run
        check_free_disk(config)
    for name in FRAMEWORKS:  # one marker per framework of the table
        config.addinivalue_line("markers", f"{name}: needs {name} (skipped, with the reason, when it is missing)")
    _share_the_cores()


def _share_the_cores() -> None:
    """In a pytest-xdist worker (``make test``), this process and the tools its tests start use their share of the
    cores: two workers on 2 cores take one thread each (two OpenMP pools of 2 threads on 2 cores spin against each
    other and run slower than one)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)  # inherited by every process a test starts
        torch.set_num_threads(threads)


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    """The files with ``slow`` tests (the toy trainings) first, in their order, then the others: ``make test``'s
    workers take whole files, and a long file handed out last would keep one worker busy while the other idles."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: the order within each group stays


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu") is not None and not torch.cuda.is_available():  # the mark, not tests/gpu/
        pytest.skip("no CUDA device")
    for name in FRAMEWORKS:
        if name in item.keywords and not available(name):
            skip_missing(name)


@pytest.fixture(autouse=True)
def _restore_openmmlab_default_scope() -> Iterator[None]:
    """Each test ends with mmengine's default scope as it began (none, before any test set one): a test that sets
    mmdet's cannot make the next test build mmseg models in mmdet's registry (mmengine's ``Registry.build`` follows
    the default scope). mmengine keeps the scopes in ``DefaultScope._instance_dict``, the current one last."""
    registry = sys.modules.get("mmengine.registry")
    saved = collections.OrderedDict(registry.DefaultScope._instance_dict) if registry else collections.OrderedDict()
    yield
    registry = sys.modules.get("mmengine.registry")
    if registry is not None:
        registry.DefaultScope._instance_dict = saved


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    return longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Where frameworks are required, any skip that names one of them fails the run (a stray ``importorskip``
    that bypasses the probes cannot hide a missing framework)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not required():
        return
    hidden = [(report.nodeid, _skip_reason(report)) for report in reporter.stats.get("skipped", [])
              if any(name in _skip_reason(report) for name in required())]
    for nodeid, reason in hidden:
        reporter.write_line(f"FAILED (skipped, but {REQUIRE_ENV} requires its framework): {nodeid}: {reason}")
    if hidden:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    ran = {name: 0 for name in FRAMEWORKS}
    for outcome in ("passed", "failed", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            for name in FRAMEWORKS:
                if name in getattr(report, "keywords", {}):
                    ran[name] += 1
    parts = []
    for name, probe in FRAMEWORKS.items():
        if ran[name]:
            parts.append(f"{name}: ran ({ran[name]} tests)")
        else:
            parts.append(f"{name}: skipped ({probe.reason if not available(name) else 'no test selected'})")
    terminalreporter.write_line("framework suites -- " + "; ".join(parts))


@pytest.fixture(scope="session")
def own_sample(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The own-data sample (resnest_backbones.toy_data.make_own_sample: category ids 3 and 9, mixed sizes, a
    grayscale JPEG, an RGBA PNG, an empty image, label PNGs), made once for the session's own-data tests."""
    from resnest_backbones.toy_data import make_own_sample

    return make_own_sample(tmp_path_factory.mktemp("my_data"))
