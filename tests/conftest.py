"""Test-suite wiring: framework markers skip visibly when their framework is missing, and the run ends with
a line naming which framework suites ran and which were skipped."""
from __future__ import annotations

import functools
import importlib
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))  # tests/helpers.py

FRAMEWORKS = {
    "detectron2": ("detectron2.modeling", "detectron2 is not installed or does not import (it is not on PyPI: "
                                          "build it from its official source into .venv, see README)"),
    "mmseg": ("mmseg.models", "mmsegmentation/mmcv with ops are not installed or do not import "
                              "(run tools/setup_env.sh)"),
}


@functools.lru_cache(maxsize=None)
def _available(module: str) -> bool:
    """Whether ``module`` imports (a broken install counts as missing, and the summary says so)."""
    try:
        importlib.import_module(module)
    except Exception:  # noqa: BLE001 - any import failure means the suite cannot run
        return False
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    skip_gpu = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        for marker, (module, reason) in FRAMEWORKS.items():
            if marker in item.keywords and not _available(module):
                item.add_marker(pytest.mark.skip(reason=reason))


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    ran = {name: 0 for name in FRAMEWORKS}
    for outcome in ("passed", "failed", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            for name in FRAMEWORKS:
                if name in getattr(report, "keywords", {}):
                    ran[name] += 1
    parts = []
    for name, (module, reason) in FRAMEWORKS.items():
        if ran[name]:
            parts.append(f"{name}: ran ({ran[name]} tests)")
        else:
            parts.append(f"{name}: skipped ({reason if not _available(module) else 'no test selected'})")
    terminalreporter.write_line("framework suites -- " + "; ".join(parts))
