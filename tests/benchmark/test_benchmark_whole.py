"""Whole-model benchmarks (resnest_backbones.benchmark.whole, ``tools/benchmark.py --whole``) and
``tools/gpu_benchmark.py``: option parsing, the models built from the real configs with one-process norms, the
fused entry (same outputs as ours, inference only), whole-image vs slide inference, the ratio to a reference other
than timm, and tiny end-to-end runs (no timings are asserted)."""
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

from resnest_backbones.accel import InferenceOnly
from resnest_backbones.benchmark import whole
from resnest_backbones.benchmark.models import Case
from resnest_backbones.benchmark.results import Settings, add_ratios, best_format_ratios, run_benchmark
from resnest_backbones.benchmark.whole import FUSED, WHOLE_MODELS, WholeCase, make_runner, whole_impls

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
    assert "whole-model cases are BATCHxSIZE" in err
    assert "--impls must be among ours ours+fused mmseg-resnest mmseg-r101" in err
    with pytest.raises(SystemExit):
        tool.parse_args(["--help"])
    assert "--whole {deeplabv3,faster_rcnn}" in capsys.readouterr().out


def test_fused_and_seg_inference_options(capsys) -> None:
    tool = _load(TOOL, "benchmark_tool_fused")
    args = tool.parse_args(["--whole", "deeplabv3", "--impls", "ours", "ours+fused", "mmseg-resnest",
                            "--seg-inference", "whole", "slide", "--cases", "2x64", "1x32:slide", "--modes",
                            "inference"])
    assert [c.spec for c in args.cases] == ["2x64", "2x64:slide", "1x32:slide"]
    assert [c.inference for c in args.cases] == ["whole", "slide", "slide"]
    assert args.impls == ["ours", FUSED, "mmseg-resnest"]
    assert [c.spec for c in tool.parse_args(["--whole", "deeplabv3", "--seg-inference", "slide"]).cases] == [
        "2x256:slide"]
    assert [c.spec for c in tool.parse_args(["--whole", "deeplabv3", "--cases", "2x64:WHOLE", "2x64:Slide"]).cases] \
        == ["2x64", "2x64:slide"]
    args = tool.parse_args(["--whole", "faster_rcnn", "--impls", "ours", "ours+fused", "d2-r50", "--modes",
                            "inference", "--seg-inference", "whole"])
    assert [c.spec for c in args.cases] == ["2x512"] and args.impls == ["ours", FUSED, "d2-r50"]
    # fused alone is fine with an inference measurement, memory-inference included
    tool.parse_args(["--whole", "faster_rcnn", "--impls", "ours+fused", "--modes", "memory", "--memory-phases",
                     "inference"])
    bad_runs = {
        ("--whole", "faster_rcnn", "--seg-inference", "slide"): "--seg-inference applies to segmentors only",
        ("--whole", "faster_rcnn", "--cases", "2x64:slide"): "faster_rcnn has whole-image inference only: 2x64:slide",
        ("--seg-inference", "slide"): "--seg-inference applies to segmentors only",
        ("--whole", "deeplabv3", "--cases", "2x64:tiles"): "BATCHxSIZE:slide",
        ("--whole", "deeplabv3", "--impls", "ours+fused", "--modes", "train", "memory"):
            "fused models are for inference only",
        ("--variant", "resnest14d", "--impls", "ours+fused", "--modes", "train"): "fused models are for inference only",
    }
    for bad, message in bad_runs.items():
        with pytest.raises(SystemExit) as err:
            tool.parse_args(list(bad))
        assert err.value.code == 2, bad
        assert message in capsys.readouterr().err, bad


def test_slide_window_geometry_and_test_cfg() -> None:
    assert whole.slide_window(256) == (192, 128) and whole.slide_window(64) == (48, 32)
    # the rule is mmseg's DeepLabV3 Cityscapes 769x769 config's: crop 769 of the 1024-pixel height, stride 513
    crop, stride = whole.slide_window(1024)
    assert abs(crop - 769) <= 1 and abs(stride - 513) <= 1
    for size in range(16, 1025):  # always 2x2 windows, as mmseg's slide_inference counts them
        crop, stride = whole.slide_window(size)
        assert max(size - crop + stride - 1, 0) // stride + 1 == 2, size
    assert whole.seg_test_cfg(WholeCase("2x256")) == {"mode": "whole"}
    assert whole.seg_test_cfg(WholeCase("2x256:slide")) == {"mode": "slide", "crop_size": (192, 192),
                                                          "stride": (128, 128)}
    assert whole.describe_case(WholeCase("2x256:slide")) == (
        "2x256:slide: slide inference on 256x256, crop 192x192, stride 128 (2x2 windows)")
    assert whole.describe_case(WholeCase("1x64")) == "1x64: whole-image inference on 64x64"


def test_fused_entries_are_inference_only_with_a_clear_message(capsys) -> None:
    slide = WholeCase("2x64:slide")
    for mode in ("train", "memory-train"):
        assert "ours+fused is skipped in " + mode + ": it is for inference only" in whole.skip_reason(FUSED, mode)
        assert "slide is an inference setting" in whole.skip_reason("ours", mode, slide)
    for mode in ("inference", "memory-inference"):
        assert whole.skip_reason(FUSED, mode) is None and whole.skip_reason("ours", mode, slide) is None
    assert whole.skip_reason("ours+compile", "memory-train") is None  # measured after it compiled
    for name in WHOLE_MODELS:  # refused before anything is built (the memory worker builds through here too)
        with pytest.raises(ValueError, match="ours\\+fused is for inference only.*--modes inference"):
            make_runner(name, FUSED, WholeCase("2x64"), "train", "contiguous", None, torch.device("cpu"))
    with pytest.raises(ValueError, match="faster_rcnn has no slide inference"):
        make_runner("faster_rcnn", "ours", WholeCase("2x64:slide"), "inference", "contiguous", None,
                    torch.device("cpu"))
    # the shared measurement loop skips the fused entry in train mode and says why (core network: cheap)
    report = run_benchmark(Settings(variant="resnest14d", cases=[Case("2x32:logits")], formats=["contiguous"],
                                    modes=["train"], impls=["ours", FUSED], repeats=1, warmup=0, device="cpu"))
    assert {r["impl"] for r in report["results"]} == {"ours"}
    assert "2x32:logits train: ours+fused is skipped in train: it is for inference only" in capsys.readouterr().err


def test_fused_vs_unfused_lines_compare_best_formats() -> None:
    from resnest_backbones.benchmark.render import fused_vs_unfused

    def row(impl: str, fmt: str, value: float, case: str = "2x256") -> dict:
        return {"mode": "inference", "case": case, "format": fmt, "impl": impl, "images_per_s": value}

    results = [row("ours", "contiguous", 2.0), row("ours", "channels_last", 2.5), row(FUSED, "contiguous", 2.6),
               row(FUSED, "channels_last", 3.5), row("mmseg-resnest", "contiguous", 2.2),
               row("ours", "contiguous", 1.0, "2x256:slide"), row(FUSED, "contiguous", 1.5, "2x256:slide"),
               {"mode": "memory-inference", "case": "2x256", "format": "contiguous", "impl": FUSED, "peak_mib": 9.0}]
    lines = fused_vs_unfused({"results": results})
    assert len(lines) == 2
    assert lines[0].endswith("ours+fused 3.50 img/s (channels_last) vs ours 2.50 (channels_last): 1.400x")
    assert lines[1].split()[1] == "2x256:slide" and lines[1].endswith(": 1.500x")


@pytest.mark.mmseg
def test_fused_deeplab_matches_ours_in_whole_and_slide_inference() -> None:
    from mmengine.config import ConfigDict

    cpu = torch.device("cpu")
    ours = make_runner("deeplabv3", "ours", WholeCase("1x32"), "inference", "channels_last", None, cpu)
    fused = make_runner("deeplabv3", FUSED, WholeCase("1x32:slide"), "inference", "channels_last", None, cpu)
    assert ours.model.test_cfg == {"mode": "whole"}
    assert fused.model.test_cfg == {"mode": "slide", "crop_size": (24, 24), "stride": (16, 16)}
    assert isinstance(fused.model.backbone, InferenceOnly) and not fused.model.training
    assert not isinstance(ours.model.backbone, InferenceOnly)
    windows = []
    encode_decode = fused.model.encode_decode
    fused.model.encode_decode = lambda x, metas: windows.append(tuple(x.shape[2:])) or encode_decode(x, metas)
    fused()  # the Runner: predict under no_grad
    assert windows == [(24, 24)] * 4  # 2x2 windows of the slide config
    del fused.model.encode_decode

    def logits(runner) -> torch.Tensor:
        with torch.no_grad():
            return runner.model.predict(runner.x, runner.samples)[0].seg_logits.data

    for cfg in (whole.seg_test_cfg(WholeCase("1x32")), whole.seg_test_cfg(WholeCase("1x32:slide"))):
        ours.model.test_cfg = fused.model.test_cfg = ConfigDict(cfg)
        expected, got = logits(ours), logits(fused)
        assert expected.shape == got.shape == (150, 32, 32)
        assert (got - expected).abs().max() <= 1e-4 * expected.abs().max(), cfg  # same weights, norms folded
    with pytest.raises(RuntimeError, match="inference only"):  # last: the refused train() leaves heads switched
        fused.model.train()


@pytest.mark.detectron2
def test_fused_faster_rcnn_matches_ours() -> None:
    cpu = torch.device("cpu")
    ours = make_runner("faster_rcnn", "ours", WholeCase("1x64"), "inference", "channels_last", None, cpu)
    fused = make_runner("faster_rcnn", FUSED, WholeCase("1x64"), "inference", "channels_last", None, cpu)
    assert isinstance(fused.model.backbone.bottom_up, InferenceOnly) and not fused.model.training
    fused()  # the whole detector runs: post-processed detections
    with torch.no_grad():
        features = [r.model.backbone(r.model.preprocess_image(r.inputs).tensor) for r in (ours, fused)]
    assert set(features[0]) == set(features[1]) == {"p2", "p3", "p4", "p5", "p6"}
    for name, expected in features[0].items():
        got = features[1][name]
        assert (got - expected).abs().max() <= 1e-4 * expected.abs().max(), name
    with pytest.raises(RuntimeError, match="inference only"):  # last: the refused train() leaves the FPN switched
        fused.model.train()


def test_official_detectron2_entry_only_with_its_checkout(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(whole.OFFICIAL_D2_ENV, raising=False)
    monkeypatch.delenv("RESNEST_OFFICIAL_D2_CONFIG", raising=False)
    assert whole_impls("faster_rcnn") == ["ours", FUSED, "d2-r50"]
    assert whole_impls("deeplabv3") == ["ours", FUSED, "mmseg-resnest", "mmseg-r101"]
    monkeypatch.setenv(whole.OFFICIAL_D2_ENV, str(tmp_path))
    assert whole_impls("faster_rcnn") == ["ours", FUSED, "d2-r50"]  # a checkout without the config: skipped silently
    config = tmp_path / whole.OFFICIAL_D2_CONFIG
    config.parent.mkdir(parents=True)
    config.write_text("MODEL: {}\n")
    assert whole_impls("faster_rcnn") == ["ours", FUSED, "d2-r50", "official"]


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

    from resnest_backbones.openmmlab import OpenMMLabResNeSt

    models = {impl: whole.build_deeplab(impl) for impl in whole_impls("deeplabv3") if impl != FUSED}  # fused: ours
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
    proc = run_python([TOOL, "--whole", "deeplabv3", "--cases", "2x32", "--impls", "ours", "ours+fused",
                       "mmseg-resnest", "--seg-inference", "whole", "slide", "--formats", "contiguous", "--repeats",
                       "1", "--warmup", "0", "--threads", "1", "--device", "cpu", "--out", out], env=ONE_THREAD,
                      timeout=300)
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["meta"]["reference"] == "mmseg-resnest" and report["meta"]["whole"] == "deeplabv3"
    assert report["meta"]["case_notes"] == ["2x32: whole-image inference on 32x32",
                                            "2x32:slide: slide inference on 32x32, crop 24x24, stride 16 (2x2 windows)"]
    rows = {(r["mode"], r["case"], r["impl"]): r for r in report["results"]}
    unfused = ("ours", "mmseg-resnest")
    assert set(rows) == {("inference", case, i) for case in ("2x32", "2x32:slide") for i in (*unfused, FUSED)} | {
        (m, "2x32", i) for m in ("train", "memory-train") for i in unfused}  # slide and fused: inference only
    assert rows["train", "2x32", "ours"]["ratio_vs_mmseg-resnest"] > 0
    assert rows["memory-train", "2x32", "ours"]["peak_mib"] > 0
    assert rows["inference", "2x32:slide", FUSED]["ratio_vs_mmseg-resnest"] > 0
    macs = report["meta"]["macs_per_image"]["2x32"]  # the same network, counted by torch's FlopCounterMode
    assert report["meta"]["resnet"] == "mmseg-r101" and macs["ours"] == pytest.approx(macs["mmseg-resnest"], rel=1e-6)
    assert "ratio_vs_mmseg-resnest" not in rows["train", "2x32", "mmseg-resnest"]
    assert "/mmseg-resnest" in proc.stdout and "train             2x32" in proc.stdout
    assert "inference         2x32:slide" in proc.stdout and "crop 24x24, stride 16 (2x2 windows)" in proc.stdout
    assert "2x32 train: ours+fused is skipped in train: it is for inference only" in proc.stderr
    assert "2x32:slide train: 2x32:slide is skipped in train: slide is an inference setting" in proc.stderr
    markdown = out.with_suffix(".md").read_text()
    assert markdown.startswith("| mode | input | format | impl |") and "* 2x32:slide: slide inference" in markdown


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
    assert not any(impl == FUSED for _, impl in rows)  # inference only: skipped, with the reason
    assert "2x64 memory-train: ours+fused is skipped in memory-train: it is for inference only" in proc.stderr
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
