"""Whole-model benchmarks (resnest_backbones.benchmark.whole, ``tools/benchmark.py --whole``) and
``tools/gpu_benchmark.py``: option parsing, the models built from the real configs with one-process norms, the
ratio to a reference other than timm, and tiny end-to-end runs (no timings are asserted)."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
import torch
from support import REPO_ROOT
from support.processes import run_python

from resnest_backbones.benchmark import whole
from resnest_backbones.benchmark.results import add_ratios, best_format_ratios
from resnest_backbones.benchmark.whole import WHOLE_MODELS, WholeCase, whole_impls

ROOT = REPO_ROOT
TOOL = ROOT / "tools" / "benchmark.py"
GPU_TOOL = ROOT / "tools" / "gpu_benchmark.py"
ONE_THREAD = dict(OMP_NUM_THREADS="1")


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_whole_options_parse_and_bad_ones_are_usage_errors(capsys) -> None:
    tool = _load(TOOL, "benchmark_tool_whole")
    args = tool.parse_args(["--whole", "deeplabv3"])
    assert [c.spec for c in args.cases] == ["2x256"] and isinstance(args.cases[0], WholeCase)
    args = tool.parse_args(["--whole", "faster_rcnn", "--cases", "2X128", "--impls", "ours", "d2-r50"])
    assert [c.spec for c in args.cases] == ["2x128"] and args.impls == ["ours", "d2-r50"]
    assert [c.spec for c in tool.parse_args([]).cases] == ["8x224:logits", "2x512:features"]
    for bad in (["--whole", "deeplabv3", "--cases", "2x64:features"], ["--whole", "pspnet"],
                ["--whole", "deeplabv3", "--compile"], ["--whole", "deeplabv3", "--impls", "timm"],
                ["--cases", "8by224"]):
        with pytest.raises(SystemExit) as err:
            tool.parse_args(bad)
        assert err.value.code == 2, bad
    err = capsys.readouterr().err
    assert "whole-model cases are BATCHxSIZE" in err and "--impls must be among ours mmseg-resnest mmseg-r101" in err
    with pytest.raises(SystemExit):
        tool.parse_args(["--help"])
    assert "--whole {deeplabv3,faster_rcnn}" in capsys.readouterr().out


def test_official_detectron2_entry_only_with_its_checkout(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(whole.OFFICIAL_D2_ENV, raising=False)
    monkeypatch.delenv("RESNEST_OFFICIAL_D2_CONFIG", raising=False)
    assert whole_impls("faster_rcnn") == ["ours", "d2-r50"]
    assert whole_impls("deeplabv3") == ["ours", "mmseg-resnest", "mmseg-r101"]
    monkeypatch.setenv(whole.OFFICIAL_D2_ENV, str(tmp_path))
    assert whole_impls("faster_rcnn") == ["ours", "d2-r50"]  # a checkout without the config: skipped silently
    config = tmp_path / whole.OFFICIAL_D2_CONFIG
    config.parent.mkdir(parents=True)
    config.write_text("MODEL: {}\n")
    assert whole_impls("faster_rcnn") == ["ours", "d2-r50", "official"]


def test_missing_framework_skips_with_a_message(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(WHOLE_MODELS, "deeplabv3",
                        dataclasses.replace(WHOLE_MODELS["deeplabv3"], framework="no_such_framework_xyz"))
    tool = _load(TOOL, "benchmark_tool_missing")
    tool.main(["--whole", "deeplabv3", "--device", "cpu", "--out", str(tmp_path / "x")])
    assert "skipped whole model 'deeplabv3': no_such_framework_xyz is not installed" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_ratios_against_a_whole_model_reference() -> None:
    def row(impl: str, fmt: str, value: float) -> dict:
        return {"mode": "train", "case": "2x256", "format": fmt, "impl": impl, "images_per_s": value}

    results = [row("ours", "contiguous", 3.0), row("ours", "channels_last", 4.0),
               row("mmseg-resnest", "contiguous", 2.0), row("mmseg-r101", "contiguous", 5.0)]
    add_ratios(results, "mmseg-resnest")
    assert [r.get("ratio_vs_mmseg-resnest") for r in results] == [1.5, None, None, 2.5]
    assert not any("ratio_vs_timm" in r for r in results)
    best = {r["impl"]: r for r in best_format_ratios(results, "mmseg-resnest")}
    assert set(best) == {"ours", "mmseg-r101"}
    assert (best["ours"]["format"], best["ours"]["ref_format"], best["ours"]["ratio_vs_mmseg-resnest"]) == (
        "channels_last", "contiguous", 2.0)
    assert "timm_value" not in best["ours"]  # the timm-named keys are only for the timm reference


@pytest.mark.mmseg
def test_deeplab_models_come_from_the_configs_with_one_process_norms() -> None:
    from mmseg.models.backbones import ResNeSt as MmsegResNeSt
    from mmseg.models.backbones import ResNetV1c

    from resnest_backbones.mmseg import OpenMMLabResNeSt

    models = {impl: whole.build_deeplab(impl) for impl in whole_impls("deeplabv3")}
    assert isinstance(models["ours"].backbone, OpenMMLabResNeSt)
    assert type(models["mmseg-resnest"].backbone) is MmsegResNeSt
    assert models["mmseg-resnest"].backbone.stem_channels == 128 and models["mmseg-resnest"].backbone.depth == 101
    assert type(models["mmseg-r101"].backbone) is ResNetV1c and models["mmseg-r101"].backbone.depth == 101
    for impl, model in models.items():
        norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        assert norms and not any(isinstance(m, torch.nn.SyncBatchNorm) for m in norms), impl  # reverted to BN
        assert model.decode_head.num_classes == 150 and model.auxiliary_head.num_classes == 150, impl


@pytest.mark.mmseg
def test_tiny_deeplab_run_writes_json_and_table(tmp_path: Path) -> None:
    out = tmp_path / "deeplab"
    proc = run_python([TOOL, "--whole", "deeplabv3", "--cases", "2x32", "--impls", "ours", "mmseg-resnest",
                       "--formats", "contiguous", "--repeats", "1", "--warmup", "0", "--threads", "1",
                       "--device", "cpu", "--out", out], env=ONE_THREAD, timeout=300)
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["meta"]["reference"] == "mmseg-resnest" and report["meta"]["whole"] == "deeplabv3"
    rows = {(r["mode"], r["impl"]): r for r in report["results"]}
    assert set(rows) == {(m, i) for m in ("inference", "train", "memory-train") for i in ("ours", "mmseg-resnest")}
    assert rows["train", "ours"]["ratio_vs_mmseg-resnest"] > 0 and rows["memory-train", "ours"]["peak_mib"] > 0
    assert "ratio_vs_mmseg-resnest" not in rows["train", "mmseg-resnest"]
    assert "/mmseg-resnest" in proc.stdout and "train             2x32" in proc.stdout
    assert out.with_suffix(".md").read_text().startswith("| mode | input | format | impl |")


@pytest.mark.detectron2
def test_faster_rcnn_configs_share_the_recipe_with_one_process_norms() -> None:
    ours = whole.faster_rcnn_cfg("ours", torch.device("cpu"))
    r50 = whole.faster_rcnn_cfg("d2-r50", torch.device("cpu"))
    assert ours.MODEL.BACKBONE.NAME == "build_resnest_fpn_backbone" and ours.MODEL.RESNEST.NAME == "resnest50d"
    assert ours.MODEL.RESNEST.WEIGHTS == "" and r50.MODEL.WEIGHTS == "" and r50.MODEL.RESNETS.DEPTH == 50
    assert ours.MODEL.RESNEST.NORM == r50.MODEL.RESNETS.NORM == "BN"
    for key in ("FPN", "ROI_BOX_HEAD"):
        assert ours.MODEL[key] == r50.MODEL[key], key
    assert r50.MODEL.ROI_BOX_HEAD.NUM_CONV == 4 and r50.MODEL.ROI_BOX_HEAD.NORM == "BN"
    assert r50.INPUT.FORMAT == "RGB" and list(r50.MODEL.PIXEL_STD) == list(ours.MODEL.PIXEL_STD)
    assert "SyncBN" not in ours.dump() and "SyncBN" not in r50.dump()


@pytest.mark.detectron2
def test_tiny_faster_rcnn_run_writes_json_and_table(tmp_path: Path) -> None:
    out = tmp_path / "frcnn"
    proc = run_python([str(TOOL), "--whole", "faster_rcnn", "--cases", "2x64", "--formats", "contiguous",
                       "--modes", "train", "memory", "--repeats", "1", "--warmup", "0", "--threads", "1",
                       "--device", "cpu", "--out", str(out)], env=ONE_THREAD, timeout=300)
    report = json.loads(out.with_suffix(".json").read_text())
    rows = {(r["mode"], r["impl"]): r for r in report["results"]}
    assert {("train", "ours"), ("train", "d2-r50"), ("memory-train", "ours"), ("memory-train", "d2-r50")} <= set(rows)
    assert rows["train", "ours"]["ratio_vs_d2-r50"] > 0 and rows["memory-train", "ours"]["ratio_vs_d2-r50"] > 0
    assert "/d2-r50" in proc.stdout and out.with_suffix(".md").is_file()


def test_gpu_benchmark_parses_its_options(monkeypatch) -> None:
    gpu = _load(GPU_TOOL, "gpu_benchmark_tool")
    args = gpu.parse_args(["--device", "cpu"])
    assert (args.amp, args.formats, args.modes, args.repeats, args.warmup) == (
        ["none", "bf16"], ["channels_last"], ["inference", "train"], 1, 0)
    assert [c.spec for c in args.cases["deeplabv3"]] == ["2x64"] and args.suites == ["core", "deeplabv3", "faster_rcnn"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    args = gpu.parse_args(["--compile", "--deeplabv3-cases", "4x512"])
    assert args.device == "cuda" and args.amp == ["bf16", "fp16"] and args.compile
    assert [c.spec for c in args.cases["deeplabv3"]] == ["4x512"] and args.modes == ["inference", "train", "memory"]
    assert gpu.settings_for(args, "faster_rcnn", "fp16", "x").whole == "faster_rcnn"
    assert not gpu.settings_for(args, "faster_rcnn", "fp16", "x").compile
    assert gpu.settings_for(args, "core", "bf16", "x").compile
    with pytest.raises(SystemExit):
        gpu.parse_args(["--faster-rcnn-cases", "2x128:logits"])


def test_gpu_benchmark_cpu_fallback_runs(tmp_path: Path) -> None:
    run_python([GPU_TOOL, "--device", "cpu", "--suites", "core", "--core-cases", "2x32:logits", "--threads", "1",
                "--out", tmp_path], env=ONE_THREAD, timeout=300)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "core_bf16.json", "core_bf16.md", "core_none.json", "core_none.md", "summary.md"]
    report = json.loads((tmp_path / "core_bf16.json").read_text())
    assert report["meta"]["amp"] == "bf16" and {r["format"] for r in report["results"]} == {"channels_last"}
    assert {r["mode"] for r in report["results"]} == {"inference", "train"}
    assert "## core, amp none" in (tmp_path / "summary.md").read_text()


@pytest.mark.detectron2
def test_gpu_benchmark_cpu_fallback_runs_a_whole_model(tmp_path: Path) -> None:
    run_python([GPU_TOOL, "--device", "cpu", "--suites", "faster_rcnn", "--amp", "bf16", "--modes", "inference",
                "--threads", "1", "--out", tmp_path], env=ONE_THREAD, timeout=300)
    report = json.loads((tmp_path / "faster_rcnn_bf16.json").read_text())
    assert {r["impl"] for r in report["results"]} >= {"ours", "d2-r50"} and report["meta"]["amp"] == "bf16"
