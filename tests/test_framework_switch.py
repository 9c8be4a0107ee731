"""The suite's framework rule itself: a test that needs a missing framework skips visibly, or fails where
``$RESNEST_REQUIRE_FRAMEWORKS`` requires it (CI sets ``all``), and any other skip naming a required framework fails
the run.

Each case runs pytest in a subprocess on a small test file, with this suite's ``conftest.py`` as a plugin and mmdet
made missing by a package of that name earlier on the path that refuses to import.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO_ROOT
from support.frameworks import FRAMEWORKS, REQUIRE_ENV
from support.processes import run_python

PROBE_FILE = '''
import pytest

@pytest.mark.mmdet
def test_needs_mmdet():
    pass

def test_plain():
    pass
'''
STRAY_SKIP = '''
import pytest

def test_stray_skip():
    pytest.skip("mmdet is missing here")  # bypasses the probes, as a stray importorskip would
'''


def run_suite(tmp_path: Path, test_source: str, require: str) -> subprocess.CompletedProcess:
    hidden = tmp_path / "hidden"
    (hidden / "mmdet").mkdir(parents=True, exist_ok=True)
    (hidden / "mmdet" / "__init__.py").write_text("raise ImportError('mmdet hidden by the test')\n")
    test_file = tmp_path / "test_probe.py"
    test_file.write_text(test_source)
    env = {"PYTHONPATH": f"{hidden}:{REPO_ROOT / 'tests'}", REQUIRE_ENV: require}
    return run_python(["-m", "pytest", "-p", "conftest", "-c", REPO_ROOT / "pytest.ini", "--rootdir", tmp_path,
                       "-q", "-p", "no:cacheprovider", test_file], env=env, check=False, timeout=300)


def test_missing_framework_skips_with_its_reason_where_not_required(tmp_path: Path) -> None:
    proc = run_suite(tmp_path, PROBE_FILE, "")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed, 1 skipped" in proc.stdout
    assert FRAMEWORKS["mmdet"].reason in proc.stdout  # the skip says why
    assert "mmdet: skipped (" in proc.stdout  # the closing line


@pytest.mark.parametrize("require", ["all", "mmdet", "detectron2,mmdet"])
def test_missing_framework_fails_where_required(tmp_path: Path, require: str) -> None:
    proc = run_suite(tmp_path, PROBE_FILE, require)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 passed, 1 error" in proc.stdout  # fails in its set-up: the test itself never runs
    assert f"mmdet is required here ({REQUIRE_ENV}={require})" in proc.stdout


def test_a_stray_skip_naming_a_required_framework_fails_the_run(tmp_path: Path) -> None:
    assert run_suite(tmp_path, STRAY_SKIP, "").returncode == 0
    proc = run_suite(tmp_path, STRAY_SKIP, "all")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"FAILED (skipped, but {REQUIRE_ENV} requires its framework)" in proc.stdout


def test_unknown_framework_name_stops_the_run(tmp_path: Path) -> None:
    proc = run_suite(tmp_path, PROBE_FILE, "mmdett")
    assert proc.returncode != 0 and "names unknown frameworks ['mmdett']" in proc.stdout + proc.stderr


def test_every_framework_has_its_marker() -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest", "--markers"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert all(f"@pytest.mark.{name}:" in proc.stdout for name in FRAMEWORKS), proc.stdout[-2000:]
