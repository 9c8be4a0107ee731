"""Helpers shared by the test modules, importable as ``tests.support.<kit>`` (the suite is a package).

Kits: ``frameworks`` (the detectron2/mmseg probes behind every framework skip), ``numerics`` (random norms,
relative differences, test images), ``checkpoints`` (foreign checkpoint layouts), ``processes`` (running the
project's tools in a subprocess, killing them mid-run), ``safety`` (code-running pickles, file digests).
"""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The repository root: tests reach tools/, configs/ and docs/ from it, wherever their own file lies."""
