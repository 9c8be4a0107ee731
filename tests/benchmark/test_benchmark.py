"""tools/benchmark.py and resnest_backbones.benchmark: option parsing, the official names derived from the variant
table, the ratio maths, and one tiny end-to-end run of the command line (no timings are asserted)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from support import REPO_ROOT
from support.processes import run_python

import resnest_backbones as rb
from resnest_backbones.benchmark.models import RESNET_AA, Case, available_impls, build, official_name, resnet_name
from resnest_backbones.benchmark.render import format_table
from resnest_backbones.benchmark.results import add_flop_parity, add_ratios, best_format_ratios
from resnest_backbones.benchmark.timing import Runner, forward_macs, median_interval, paired_ratio, summary

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
                       "--profile", "1", "--out", out], env=dict(OMP_NUM_THREADS="1"), timeout=300)
    report = json.loads(out.with_suffix(".json").read_text())
    rows = {r["mode"]: r for r in report["results"]}
    assert set(rows) == {"inference", "train", "memory-train"} and all(r["impl"] == "ours" for r in rows.values())
    assert rows["train"]["times_s"] and rows["inference"]["images_per_s"] > 0
    assert rows["memory-train"]["peak_mib"] > 0 and rows["memory-train"]["method"]
    profile = rows["train"]["profile_ms"]  # --profile: where a training step spends its time, by operator
    assert profile["aten::convolution_backward"] > 0 and profile["outside ATen"] >= 0
    assert profile["total"] == pytest.approx(sum(v for op, v in profile.items() if op != "total"))
    assert report["meta"]["impls"] == ["ours"] and report["meta"]["variant"] == "resnest14d"
    assert report["meta"]["command"].startswith("python tools/benchmark.py --variant resnest14d")
    assert "memory-train      2x32:logits" in proc.stdout
    markdown = out.with_suffix(".md").read_text()
    assert markdown.startswith("| mode | input | format | impl |")
    assert "train 2x32:logits contiguous: milliseconds per repetition by operator" in markdown
    assert "| aten::convolution_backward | " in markdown and "| other ATen operators | " in markdown
    assert out.with_suffix(".png").stat().st_size > 0
    out.with_suffix(".md").unlink()  # --replot writes the markdown and the plot again from the JSON alone
    run_python([TOOL, "--replot", out.with_suffix(".json")], timeout=300)
    assert out.with_suffix(".md").read_text() == markdown


def test_median_interval_is_the_sign_test_interval() -> None:
    # n = 11: the 2nd and 10th of the sorted values cover the median with 1 - 2 * 12/2048 = 98.8 %; the 3rd and
    # 9th would cover 93.5 % only
    median, low, high, coverage = median_interval([float(v) for v in (5, 1, 9, 3, 7, 11, 2, 4, 6, 8, 10)])
    assert (median, low, high) == (6.0, 2.0, 10.0) and coverage == pytest.approx(1 - 2 * 12 / 2048)
    assert median_interval([3.0, 1.0, 2.0])[1:3] == (1.0, 3.0)  # too few for 95 %: min-max, with its coverage
    assert median_interval([3.0, 1.0, 2.0])[3] == pytest.approx(0.75)


def test_paired_ratio_cancels_the_load_of_each_repetition() -> None:
    # the machine slows down 3x during repetitions 3-5; every repetition, ours takes 0.9 of the reference's time
    reference = [1.0, 1.1, 3.0, 3.3, 2.9, 1.0, 1.05]
    ours = [0.9 * t for t in reference]
    paired = paired_ratio(ours, reference)
    assert paired["median"] == pytest.approx(1 / 0.9) and paired["low"] == pytest.approx(1 / 0.9)
    assert paired["high"] == pytest.approx(1 / 0.9) and paired["pairs"] == 7


def test_ratios_to_the_resnet_carry_the_flop_parity() -> None:
    def timed(impl: str, seconds: float) -> dict:
        return {"mode": "train", "case": "8x224:logits", "format": "channels_last", "impl": impl,
                **summary([seconds] * 6, 8)}

    results = [timed("ours", 1.0), timed("timm", 1.1), timed("resnet", 0.8)]
    add_ratios(results, "timm")
    add_ratios(results, "resnet")
    add_flop_parity(results, {"8x224:logits": {"ours": 5.4e9, "timm": 5.4e9, "resnet": 4.35e9}}, "resnet")
    ours = results[0]
    assert ours["ratio_vs_resnet"] == pytest.approx(0.8) and ours["ratio_vs_timm"] == pytest.approx(1.1)
    assert ours["flop_parity_vs_resnet"] == pytest.approx(4.35 / 5.4)
    assert ours["ratio_vs_timm_paired"]["median"] == pytest.approx(1.1)
    best = best_format_ratios(results, "resnet")
    assert [r["impl"] for r in best] == ["ours", "timm"] and best[0]["flop_parity_vs_resnet"] == pytest.approx(
        4.35 / 5.4)
    report = {"meta": {"reference": "timm", "resnet": "resnet", "case_notes": []}, "results": results,
              "best_format": best_format_ratios(results, "timm"), "best_format_vs_resnet": best}
    table = format_table(report)
    assert "/timm" in table and "/resnet" in table
    assert ("vs resnet    10.00 (channels_last): 0.800x (paired 0.800 [0.800-0.800]); FLOP parity 0.806x: 0.993 of "
            "it") in table


def test_the_resnet_reference_is_timms_resnet_d_of_the_same_depth() -> None:
    pytest.importorskip("timm")
    assert resnet_name("resnest50d") == "resnet50d" and resnet_name("resnest101e") == "resnet101d"
    assert resnet_name("resnest14d") is None  # timm has no resnet14d
    assert available_impls("resnest50d", True)[-4:] == ["ours+compile", "timm+compile", "resnet-aa+compile",
                                                        "resnet+compile"]
    macs = forward_macs(Runner(build("resnet", "resnest26d", "logits", None).eval(), "inference",
                               torch.zeros(1, 3, 64, 64), None, torch.device("cpu")))
    assert 0.2e9 < macs < 0.3e9  # resnet26d: 2.6 GMACs at 224 (timm), x (64/224)^2 = 0.21 GMACs


def test_the_pooled_resnet_does_the_resnests_multiply_adds_without_split_attention() -> None:
    pytest.importorskip("timm")
    assert resnet_name("resnest50d", pooled=True) == "resnetaa50d"
    assert resnet_name("resnest101e", pooled=True) == "resnetaa101d"
    assert resnet_name("resnest50_fast_1s1x64d", pooled=True) is None  # pools before the split convolution
    assert available_impls("resnest50d", False)[-2:] == [RESNET_AA, "resnet"]
    image = torch.zeros(1, 3, 224, 224)  # on small images split attention's per-image layers weigh more
    macs = {impl: forward_macs(Runner(build(impl, "resnest50d", "logits", None).eval(), "inference", image, None,
                                      torch.device("cpu"))) for impl in ("ours", RESNET_AA, "resnet")}
    assert macs[RESNET_AA] == pytest.approx(macs["ours"], rel=1e-3) and macs["resnet"] < 0.85 * macs["ours"]
