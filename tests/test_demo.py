"""tools/demo.py (the README's first command): a short screen of its own -- two lines per section and a closing
table -- with the frameworks' output in log files, and a failing section reported with its log and last lines
while the others go on."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from support import REPO_ROOT
from support.processes import run_python

DEMO = REPO_ROOT / "tools" / "demo.py"


def _demo_module(monkeypatch):
    spec = importlib.util.spec_from_file_location("demo_tool", DEMO)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "demo_tool", module)  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def test_core_section_prints_its_lines_and_the_table() -> None:
    lines = run_python([DEMO, "--only", "core"], timeout=300).stdout.strip().splitlines()
    assert len(lines) <= 10, lines
    assert lines[0].startswith("[demo] 1/1 core") and "checkpoint round trip identical" in lines[1]
    assert lines[3].split()[:3] == ["section", "|", "model"] and lines[5].startswith("core")
    assert lines[-1].startswith("[demo] finished in") and "FAILED" not in lines[-1]
    assert "OS8" in (REPO_ROOT / "work_dirs" / "demo_logs" / "core.log").read_text()  # the details went there


def test_failing_section_shows_its_log_and_the_others_go_on(tmp_path: Path, monkeypatch, capsys) -> None:
    demo = _demo_module(monkeypatch)
    failing = demo.Section("mmseg", "a model", None, [sys.executable, "-c", "import sys; print('it broke here');"
                                                      " sys.exit(3)"], lambda: tmp_path / "never.png")
    monkeypatch.setattr(demo, "SECTIONS", [failing])
    monkeypatch.setattr(demo, "LOGS", tmp_path / "logs")
    monkeypatch.setattr(demo, "ROOT", tmp_path)
    monkeypatch.setattr(sys, "argv", ["demo.py"])
    monkeypatch.setattr(demo, "core_section", lambda: "core stood in for")
    with pytest.raises(SystemExit) as exit_info:
        demo.main()
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "mmseg FAILED: " in out and "exited with code 3; last lines of logs/mmseg.log:" in out
    assert "    it broke here" in out and out.rstrip().endswith("FAILED: mmseg")
    assert "core stood in for" in out  # the other section ran


def test_a_section_for_each_framework_of_the_table(monkeypatch) -> None:
    from resnest_backbones.frameworks import FRAMEWORKS

    demo = _demo_module(monkeypatch)
    shown = [name for name, row in FRAMEWORKS.items() if row.demo]
    assert [s.key for s in demo.SECTIONS] == shown and sorted(demo.RUNS) == sorted(shown)
    assert all(s.framework == FRAMEWORKS[s.key].probe and s.model == FRAMEWORKS[s.key].demo for s in demo.SECTIONS)
