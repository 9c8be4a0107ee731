"""tools/wheel_cache.py, the set-up's cache of compiled wheels: a wheel is built once per key, reused while the key
matches and never otherwise; the key holds what a compiled binary depends on. A small stand-in package plays mmcv
(its real compile takes 10-20 minutes)."""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
from support import REPO_ROOT

spec = importlib.util.spec_from_file_location("wheel_cache", REPO_ROOT / "tools" / "wheel_cache.py")
wheel_cache = importlib.util.module_from_spec(spec)
sys.modules["wheel_cache"] = wheel_cache
spec.loader.exec_module(wheel_cache)


@pytest.fixture
def stand_in(tmp_path: Path) -> Path:
    """A one-module package, version 1.0, as a source folder pip can build a wheel of."""
    src = tmp_path / "standin-src"
    (src / "standin").mkdir(parents=True)
    (src / "standin" / "__init__.py").write_text("VALUE = 1\n")
    (src / "setup.py").write_text("from setuptools import setup\nsetup(name='standin', version='1.0', "
                                  "packages=['standin'])\n")
    return src


def test_key_holds_what_the_binary_depends_on(stand_in: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    facts = wheel_cache.build_key("mmcv==2.1.0", str(stand_in), ["MMCV_WITH_OPS"])
    for name in ("spec", "source_sha256", "torch", "torch_cuda", "cuda_toolkit_at_build", "cxx11_abi",
                 "python_abi", "platform", "compiler", "env"):
        assert name in facts, name
    key = wheel_cache.wheel_key(facts)
    assert key == wheel_cache.wheel_key(wheel_cache.build_key("mmcv==2.1.0", str(stand_in), ["MMCV_WITH_OPS"]))
    monkeypatch.setenv("MMCV_WITH_OPS", "0")  # another build variable
    assert wheel_cache.wheel_key(wheel_cache.build_key("mmcv==2.1.0", str(stand_in), ["MMCV_WITH_OPS"])) != key
    monkeypatch.delenv("MMCV_WITH_OPS")
    moved = stand_in.parent / "elsewhere" / stand_in.name  # the same source read from another folder (CI's clone)
    shutil.copytree(stand_in, moved)
    assert wheel_cache.wheel_key(wheel_cache.build_key(str(moved), str(moved), ["MMCV_WITH_OPS"])) == \
        wheel_cache.wheel_key(wheel_cache.build_key(str(stand_in), str(stand_in), ["MMCV_WITH_OPS"]))
    (stand_in / "standin" / "__init__.py").write_text("VALUE = 2\n")  # another source, same version
    assert wheel_cache.wheel_key(wheel_cache.build_key("mmcv==2.1.0", str(stand_in), ["MMCV_WITH_OPS"])) != key


def test_built_once_then_reused_and_never_for_another_key(stand_in: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture) -> None:
    root, target = tmp_path / "cache", tmp_path / "site"
    wheel = wheel_cache.install("standin", str(stand_in), str(stand_in), root=root, target=target)
    assert "compiling it once" in capsys.readouterr().out
    assert (target / "standin" / "__init__.py").read_text() == "VALUE = 1\n"
    assert json.loads((wheel.parent / "key.json").read_text())["source_sha256"]

    def no_build(*args, **kwargs):
        raise AssertionError("built again although a wheel with this key is kept")

    monkeypatch.setattr(wheel_cache, "build_wheel", no_build)
    again = wheel_cache.install("standin", str(stand_in), str(stand_in), root=root, target=tmp_path / "site2")
    assert again == wheel and "installing the kept wheel" in capsys.readouterr().out
    assert (tmp_path / "site2" / "standin" / "__init__.py").is_file()

    # another torch (the 'undefined symbol' trap): the kept wheel is not used
    real = wheel_cache._torch_facts
    monkeypatch.setattr(wheel_cache, "_torch_facts", lambda: {**real(), "torch": "0.0.0-other"})
    with pytest.raises(AssertionError, match="built again"):
        wheel_cache.install("standin", str(stand_in), str(stand_in), root=root, target=tmp_path / "site3")
    monkeypatch.setattr(wheel_cache, "_torch_facts", real)
    # a folder whose key.json says otherwise (edited, or a hash collision) is not used either
    key_file = wheel.parent / "key.json"
    key_file.write_text(json.dumps({**json.loads(key_file.read_text()), "torch": "0.0.0-other"}))
    assert wheel_cache.cached_wheel("standin", wheel_cache.build_key(str(stand_in), str(stand_in)), root) is None


def test_progress_is_read_from_the_build_log() -> None:
    assert wheel_cache.compile_progress("[3/120] c++ -c a.cpp\n  [7/120] c++ -c b.cpp\n") == "7/120 source files"
    assert wheel_cache.compile_progress("gcc -O2 -c x/a.cpp -o a.o\ngcc -c y/b.cc -o b.o\nlinking\n") == \
        "2 source files"
    assert wheel_cache.compile_progress("Collecting mmcv\n") == ""


def test_heartbeat_prints_elapsed_time(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    wheel_cache.run_with_heartbeat([sys.executable, "-c", "import time; print('[1/4] c++ -c a.cpp', flush=True); "
                                    "time.sleep(0.7)"], "stand-in", tmp_path / "log", period=0.25)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[setup] stand-in: ")]
    assert 1 <= len(lines) <= 3 and lines[-1].endswith("1/4 source files")
    with pytest.raises(SystemExit, match="failed"):
        wheel_cache.run_with_heartbeat([sys.executable, "-c", "raise SystemExit(3)"], "bad", tmp_path / "log2")
