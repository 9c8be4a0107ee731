"""tools/benchmark.py and resnest_backbones.benchmark: option parsing, the official names derived from the variant
table, the ratio maths, and one tiny end-to-end run of the command line (no timings are asserted)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from support import REPO_ROOT
from support.processes import run_python

import resnest_backbones as rb
from resnest_backbones.benchmark.models import Case, available_impls, official_name
from resnest_backbones.benchmark.results import add_ratios, best_format_ratios

ROOT = REPO_ROOT
TOOL = ROOT / "tools" / "benchmark.py"


def _tool():
    spec = importlib.util.spec_from_file_location("benchmark_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cases_parse_and_bad_ones_say_how_to_write_them(capsys) -> None:
    case = Case("4X96")
    assert (case.spec, case.batch, case.size, case.head) == ("4x96:logits", 4, 96, "logits")
    assert Case("2x512:features").head == "features"
    with pytest.raises(ValueError, match="BATCHxSIZE"):
        Case("224")
    with pytest.raises(ValueError, match="'logits' or 'features'"):
        Case("2x64:boxes")
    tool = _tool()
    args = tool.parse_args(["--variant", "resnest14d", "--cases", "1x32", "--impls", "ours", "--repeats", "1"])
    assert [c.spec for c in args.cases] == ["1x32:logits"] and args.modes == ["inference", "train", "memory"]
    for bad in (["--cases", "8by224"], ["--variant", "resnest51"], ["--repeats", "0"]):
        with pytest.raises(SystemExit) as err:
            tool.parse_args(bad)
        assert err.value.code == 2
    assert "BATCHxSIZE" in capsys.readouterr().err


def test_official_names_come_from_the_alias_table() -> None:
    pytest.importorskip("resnest.torch", reason="the official resnest package is not installed")
    names = {v: official_name(v) for v in rb.list_variants()}
    assert names["resnest50d"] == "resnest50" and names["resnest269e"] == "resnest269"
    assert names["resnest50d_4s2x40d"] == "resnest50_fast_4s2x40d"
    assert names["resnest50_fast_2s1x64d"] == "resnest50_fast_2s1x64d"  # timm lacks it: the name is official's
    assert names["resnest14d"] is None and names["resnest26d"] is None  # timm-only models
    assert "official" in available_impls("resnest50d", False)
    assert "official" not in available_impls("resnest14d", False)


def _timing(impl: str, fmt: str, images_per_s: float) -> dict:
    return {"mode": "inference", "case": "8x224:logits", "format": fmt, "impl": impl, "images_per_s": images_per_s}


def test_ratios_per_format_and_best_format() -> None:
    results = [_timing("ours", "contiguous", 10.0), _timing("ours", "channels_last", 15.0),
               _timing("timm", "contiguous", 12.0), _timing("timm", "channels_last", 8.0),
               {"mode": "memory-train", "case": "8x224:logits", "format": "contiguous", "impl": "ours",
                "peak_mib": 900.0},
               {"mode": "memory-train", "case": "8x224:logits", "format": "contiguous", "impl": "timm",
                "peak_mib": 1200.0}]
    add_ratios(results)
    assert [r.get("ratio_vs_timm") for r in results] == [10 / 12, 15 / 8, None, None, 0.75, None]
    best = {(r["mode"], r["impl"]): r for r in best_format_ratios(results)}
    assert set(best) == {("inference", "ours"), ("memory-train", "ours")}
    inference = best["inference", "ours"]
    assert (inference["format"], inference["timm_format"], inference["ratio_vs_timm"]) == (
        "channels_last", "contiguous", 15 / 12)
    assert best["memory-train", "ours"]["ratio_vs_timm"] == 0.75


def test_command_line_runs_a_tiny_case(tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    proc = run_python([TOOL, "--variant", "resnest14d", "--cases", "2x32:logits", "--impls", "ours", "--formats",
                       "contiguous", "--repeats", "1", "--warmup", "0", "--threads", "1", "--device", "cpu",
                       "--out", out], env=dict(OMP_NUM_THREADS="1"), timeout=300)
    report = json.loads(out.with_suffix(".json").read_text())
    rows = {r["mode"]: r for r in report["results"]}
    assert set(rows) == {"inference", "train", "memory-train"} and all(r["impl"] == "ours" for r in rows.values())
    assert rows["train"]["times_s"] and rows["inference"]["images_per_s"] > 0
    assert rows["memory-train"]["peak_mib"] > 0 and rows["memory-train"]["method"]
    assert report["meta"]["impls"] == ["ours"] and report["meta"]["variant"] == "resnest14d"
    assert report["meta"]["command"].startswith("python tools/benchmark.py --variant resnest14d")
    assert "memory-train      2x32:logits" in proc.stdout
    assert out.with_suffix(".md").read_text().startswith("| mode | input | format | impl |")
    assert out.with_suffix(".png").stat().st_size > 0
