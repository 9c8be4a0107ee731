"""The whole benchmark run and its report: results, ratios to timm (per format and best format), metadata.

The report is plain JSON data: ``{"meta": ..., "results": [...], "best_format": [...]}``. The ratio's reference
implementation is timm for the core network and the whole model's own reference (:mod:`.whole`) with
``Settings.whole``; ``meta["reference"]`` names it and the ratio key is ``ratio_vs_<reference>``.
"""
from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import torch

from .memory import measure_memory
from .models import FORMATS, RESNET, Case, available_impls, build, prepare, reference_state_dict
from .timing import AMP_DTYPES, Runner, forward_macs, paired_ratio, profile_by_op, summary, time_entries
from .whole import describe_case, skip_reason

MODES = ("inference", "train", "memory")


@dataclass
class Settings:
    """What to measure (the command line's options; see ``tools/benchmark.py --help``)."""

    variant: str
    cases: Sequence[Case]
    formats: Sequence[str] = tuple(FORMATS)
    modes: Sequence[str] = MODES
    memory_phases: Sequence[str] = ("train",)
    impls: Optional[Sequence[str]] = None  # None: every available implementation
    compile: bool = False
    repeats: int = 7
    warmup: int = 2
    threads: int = 0  # 0: torch's default
    device: str = "auto"
    amp: str = "none"
    command: str = ""  # recorded in the report's metadata
    whole: Optional[str] = None  # a whole model of .whole.WHOLE_MODELS instead of the core network ``variant``
    profile: int = 0  # > 0: after timing, profile each timed entry over this many repetitions (by operator)


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when visible, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def run_benchmark(settings: Settings) -> Dict[str, Any]:
    """Times every (case, mode, format, implementation) interleaved, then measures memory; the report."""
    device = resolve_device(settings.device)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    amp = AMP_DTYPES[settings.amp]
    if settings.whole:
        from .whole import WHOLE_MODELS, make_runner, whole_impls

        found = whole_impls(settings.whole)
        reference, resnet = WHOLE_MODELS[settings.whole].reference, WHOLE_MODELS[settings.whole].resnet
        state = None
    else:
        found, reference, resnet = available_impls(settings.variant, settings.compile), "timm", RESNET
        state = reference_state_dict(settings.variant)
    impls = [i for i in found if not settings.impls or i in settings.impls]
    results: List[Dict[str, Any]] = []
    macs: Dict[str, Dict[str, float]] = {}  # case -> implementation (uncompiled, unfused) -> multiply-adds per image
    for case in settings.cases:
        x_cpu = case.image()
        for mode in [m for m in settings.modes if m != "memory"]:
            runners: Dict[str, Runner] = {}
            measured = _measured(impls, mode, case)
            for fmt in settings.formats:
                x = x_cpu.to(device).contiguous(memory_format=FORMATS[fmt])
                for impl in measured:
                    if settings.whole:
                        runners[f"{impl}|{fmt}"] = make_runner(settings.whole, impl, case, mode, fmt, amp, device)
                        continue
                    model = prepare(build(impl, settings.variant, case.head, state), impl, mode, FORMATS[fmt], device)
                    runners[f"{impl}|{fmt}"] = Runner(model, mode, x, amp, device)
            counted = macs.setdefault(case.spec, {})
            for key, runner in runners.items():  # fused and compiled copies compute what their model does
                impl = key.split("|")[0]
                if impl == _base(impl) and impl not in counted:
                    counted[impl] = forward_macs(runner)
            times = time_entries(runners, settings.repeats, settings.warmup, f"{case} {mode}") if runners else {}
            for key, values in times.items():
                impl, fmt = key.split("|")
                profiled = {"profile_ms": profile_by_op(runners[key], settings.profile)} if settings.profile else {}
                results.append({"mode": mode, "case": case.spec, "format": fmt, "impl": impl,
                                **summary(values, case.batch), **profiled})
            del runners
        if "memory" in settings.modes:
            results += _memory_results(settings, case, impls, device)
    add_ratios(results, reference)
    add_ratios(results, resnet)
    add_flop_parity(results, macs, resnet)
    meta = metadata(settings, device, impls, reference)
    meta.update(resnet=resnet, macs_per_image=macs)
    if settings.whole:
        meta["case_notes"] = [describe_case(case) for case in settings.cases]
    return {"meta": meta, "results": results, "best_format": best_format_ratios(results, reference),
            "best_format_vs_resnet": best_format_ratios(results, resnet)}


def _measured(impls: Sequence[str], mode: str, case: Case) -> List[str]:
    """The implementations measured in ``mode`` for ``case``; says on stderr why the others are skipped
    (:func:`~.whole.skip_reason`, each reason once)."""
    reasons = {impl: skip_reason(impl, mode, case) for impl in impls}
    for reason in dict.fromkeys(r for r in reasons.values() if r):
        print(f"  {case} {mode}: {reason}", file=sys.stderr, flush=True)
    return [impl for impl in impls if not reasons[impl]]


def _memory_results(settings: Settings, case: Case, impls: Sequence[str], device: torch.device) -> List[Dict[str, Any]]:
    """One fresh-process peak-memory measurement per phase, format and implementation (2 steps each)."""
    rows = []
    for phase in settings.memory_phases:
        measured = _measured(impls, f"memory-{phase}", case)
        for fmt in settings.formats:
            for impl in measured:
                spec = {"impl": impl, "variant": settings.variant, "case": case.spec, "format": fmt,
                        "phase": phase, "device": device.type, "amp": settings.amp,
                        "threads": torch.get_num_threads(), "steps": 2, "whole": settings.whole}
                mem = measure_memory(spec)
                print(f"  {case} memory {phase} {impl} {fmt}: {mem['peak_bytes'] / 2**20:.0f} MiB",
                      file=sys.stderr, flush=True)
                rows.append({"mode": f"memory-{phase}", "case": case.spec, "format": fmt, "impl": impl,
                             "peak_mib": mem["peak_bytes"] / 2**20, "method": mem["method"]})
    return rows


def ratio_key(reference: str) -> str:
    """The results' key of the ratio to ``reference`` (``ratio_vs_timm`` for the core network)."""
    return f"ratio_vs_{reference}"


def add_ratios(results: List[Dict[str, Any]], reference: str = "timm") -> None:
    """``ratio_vs_<reference>``: throughput impl/reference (higher is better) or peak memory impl/reference
    (lower is better), same mode, case and memory format; for timed entries also ``ratio_vs_<reference>_paired``,
    the median of the per-repetition ratios with its 95 % interval (:func:`~.timing.paired_ratio`)."""
    index = {(r["mode"], r["case"], r["format"], r["impl"]): r for r in results}
    for r in results:
        ref = index.get((r["mode"], r["case"], r["format"], reference))
        if ref is None or r["impl"] == reference:
            continue
        key = "peak_mib" if "peak_mib" in r else "images_per_s"
        r[ratio_key(reference)] = r[key] / ref[key]
        if "times_s" in r and "times_s" in ref:
            r[ratio_key(reference) + "_paired"] = paired_ratio(r["times_s"], ref["times_s"])


def _base(impl: str) -> str:
    return impl.split("+")[0]


def add_flop_parity(results: List[Dict[str, Any]], macs: Dict[str, Dict[str, float]], resnet: str) -> None:
    """``flop_parity_vs_<resnet>`` on every timed entry: the throughput ratio to ``resnet`` at which both do the
    same multiply-adds per second (its multiply-adds per image / the entry's; fused and compiled copies count as
    their model). A ``ratio_vs_<resnet>`` above it: faster per FLOP than the ResNet."""
    for r in results:
        counted = macs.get(r["case"], {})
        if "times_s" in r and resnet in counted and _base(r["impl"]) in counted and _base(r["impl"]) != resnet:
            r[f"flop_parity_vs_{resnet}"] = counted[resnet] / counted[_base(r["impl"])]


def best_format_ratios(results: List[Dict[str, Any]], reference: str = "timm") -> List[Dict[str, Any]]:
    """Each implementation in its best memory format vs the reference (timm) in its best one (docs/performance.md's
    targets). Rows carry ``ref_format``/``ref_value`` (also as ``timm_format``/``timm_value`` when the reference
    is timm, the keys earlier reports have)."""
    rows = []
    keys = sorted({(r["mode"], r["case"]) for r in results}, key=lambda k: (k[1], k[0]))
    for mode, case in keys:
        entries = [r for r in results if r["mode"] == mode and r["case"] == case]
        is_memory = mode.startswith("memory")

        def best(impl: str, entries: List[Dict[str, Any]] = entries, is_memory: bool = is_memory
                 ) -> Optional[Dict[str, Any]]:
            cands = [r for r in entries if r["impl"] == impl]
            if not cands:
                return None
            return min(cands, key=lambda r: r["peak_mib"]) if is_memory else max(cands, key=lambda r: r["images_per_s"])

        ref = best(reference)
        for impl in sorted({r["impl"] for r in entries}, key=lambda i: (not i.startswith("ours"), i)):
            mine = best(impl)
            if mine is None or ref is None or impl == reference:
                continue
            value = "peak_mib" if is_memory else "images_per_s"
            row = {"mode": mode, "case": case, "impl": impl, "format": mine["format"], "ref_format": ref["format"],
                   "value": mine[value], "ref_value": ref[value], ratio_key(reference): mine[value] / ref[value]}
            if "times_s" in mine and "times_s" in ref:  # one rotation: every entry of a case and mode
                row[ratio_key(reference) + "_paired"] = paired_ratio(mine["times_s"], ref["times_s"])
            if f"flop_parity_vs_{reference}" in mine:
                row[f"flop_parity_vs_{reference}"] = mine[f"flop_parity_vs_{reference}"]
            if reference == "timm":
                row.update(timm_format=ref["format"], timm_value=ref[value])
            rows.append(row)
    return rows


def metadata(settings: Settings, device: torch.device, impls: Sequence[str],
             reference: str = "timm") -> Dict[str, Any]:
    """Command, date, machine, versions and settings: what a reader needs to judge the numbers."""
    versions = {"torch": torch.__version__}
    for name in ("timm", "resnest", "mmsegmentation", "mmengine", "detectron2"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"command": settings.command, "date": datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="seconds"), "device": device.type,
        "device_name": torch.cuda.get_device_name() if device.type == "cuda" else cpu,
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "variant": settings.whole or settings.variant, "whole": settings.whole, "reference": reference,
        "amp": settings.amp, "repeats": settings.repeats, "warmup": settings.warmup, "impls": list(impls),
        "versions": versions}
