"""tools/demo.py (the README's first command): a short screen of its own -- two lines per section and a closing
table -- with the frameworks' output in log files, and a failing section reported with its log and last lines
while the others go on. Its sections come from the framework table: a made-up row naming a toy module gets a section
(and a toy target) with no other edit."""
from __future__ import annotations

import dataclasses
import importlib.util
import sys
import types
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
                                                      " sys.exit(3)"], lambda root: root / "never.png")
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
    shown = [name for name, row in FRAMEWORKS.items() if row.toy]
    assert [s.key for s in demo.SECTIONS] == shown and shown
    for section in demo.SECTIONS:  # what the framework's toy_target module names
        row = FRAMEWORKS[section.key]
        toy = row.toy_training()
        assert (section.framework, section.model, section.command) == (row.probe, toy.model, list(toy.demo))
        assert section.picture is toy.picture
    assert not hasattr(demo, "RUNS") and not [name for name in vars(demo) if name.endswith("_picture")]


def test_a_new_framework_is_its_row_and_its_toy_module(tmp_path: Path, monkeypatch, capsys) -> None:
    """A made-up framework whose row names a toy module gets a toy target and a demo section, with no other edit:
    the section trains (the module's demo command), is read with its parser and held to its threshold."""
    from resnest_backbones import frameworks
    from resnest_backbones.benchmark.toy_targets import targets
    from resnest_backbones.toy_training import ToyTraining, last_float

    module = types.ModuleType("made_up_toy_target")
    module.TOY = ToyTraining(
        threshold=5.0, metric="made-up score (%), toyfw", test="tests/frameworks/toyfw/test_toyfw.py::test_toy",
        command=lambda seed, threads, tmp: [sys.executable, "-c", f"print('score {seed + threads}')"],
        parse=last_float(r"score ([0-9.]+)"), model="a made-up model",
        demo=(sys.executable, "-c", "print('score 7.5')"), picture=lambda root: root / "made_up.png")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    row = dataclasses.replace(frameworks.FRAMEWORKS["torchvision"], name="toyfw", subpackage="toyfw",
                              toy=module.__name__)
    monkeypatch.setitem(frameworks.FRAMEWORKS, "toyfw", row)

    target = targets()["toyfw"]
    assert (target.name, target.threshold, target.metric, target.test, target.framework) == (
        "toyfw", 5.0, "made-up score (%), toyfw", module.TOY.test, None)
    assert target.parse(run_python(target.command(2, 1, tmp_path)[1:]).stdout) == 3.0

    demo = _demo_module(monkeypatch)  # the tool as it loads with this table
    assert demo.SECTIONS[-1].key == "toyfw" and demo.SECTIONS[-1].model == "a made-up model"
    monkeypatch.setattr(demo, "LOGS", tmp_path / "logs")
    monkeypatch.setattr(demo, "ROOT", tmp_path)
    monkeypatch.setattr(sys, "argv", ["demo.py", "--only", "toyfw"])
    with pytest.raises(SystemExit) as exit_info:
        demo.main()
    assert exit_info.value.code == 0
    table_row = [cell.strip() for cell in capsys.readouterr().out.splitlines()[-3].split("|")]
    assert table_row[:5] == ["toyfw", "a made-up model", "made-up score (%)", "7.5", ">= 5"]
    assert table_row[6] == "made_up.png"
