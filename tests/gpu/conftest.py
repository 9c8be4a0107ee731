"""tests/gpu: the GPU suite (docs/gpu.md) and its CPU counterparts.

Workaround, until tests/conftest.py asks for the marker (``item.get_closest_marker("gpu")``) instead of the
keyword: it skips a test when ``"gpu" in item.keywords`` and CUDA is missing, and a test's keywords hold the names of
its parent nodes, this directory's "gpu" among them, so every test here, the CPU counterparts included, would skip
on a machine without CUDA. The directory's node drops its own name from its keywords; ``-m gpu`` (markers) and
``-k gpu`` (node names) select as before, and gpu-marked tests keep the keyword through their marker.
"""
from __future__ import annotations

from pathlib import Path
from typing import List

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    for item in items:
        for node in item.listchain():
            path = getattr(node, "path", None)
            if isinstance(node, pytest.Directory) and path is not None and Path(path).resolve() == HERE:
                markers = getattr(node.keywords, "_markers", None)  # pytest's NodeKeywords (no public delete)
                if isinstance(markers, dict):
                    markers.pop(node.name, None)
