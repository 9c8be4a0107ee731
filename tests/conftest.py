"""Test-suite wiring: framework markers skip visibly when their framework is missing (the probes are the one
table in ``support/frameworks.py``, which framework modules also use through ``require``), and the run ends with
a line naming which framework suites ran and which were skipped. Helpers live in ``tests/support`` (importable
as ``support.*`` through pytest.ini's ``pythonpath = tests``)."""
from __future__ import annotations

import pytest
import torch
from support.frameworks import FRAMEWORKS, available


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    skip_gpu = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        for name, probe in FRAMEWORKS.items():
            if name in item.keywords and not available(name):
                item.add_marker(pytest.mark.skip(reason=probe.reason))


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
