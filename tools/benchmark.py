#!/usr/bin/env python
"""Side-by-side speed and memory benchmark of ResNeSt (Zhang et al., 2020, arXiv 2004.08955) implementations.

Times this project's core against timm and the official ``resnest`` package (each when installed), with
the same weights, in ONE process, interleaving the implementations (A, B, C, A, B, C, ...) so that machine
load hits all of them alike; reports medians, min-max and ratios ours/timm, as a terminal table, JSON and a
PNG plot.

Measured, for every input case and memory format:
  * ``inference``: eval mode, ``torch.no_grad()``, one forward pass per repetition;
  * ``train``: one SGD step (zero_grad, forward, loss, backward, optimiser step) per repetition;
  * ``memory``: peak memory of a few training steps (and of inference), each measurement in a fresh
    subprocess. CPU: growth of the kernel's peak-RSS counter (VmHWM, reset through /proc/self/clear_refs
    after the model is built) with glibc told to mmap every allocation >= 64 KiB, so freed tensors leave the
    RSS at once and the peak is the peak of live tensors (+ small allocator slack). CUDA:
    ``torch.cuda.max_memory_allocated``.

Our extra modes: ``ours+fused`` (``fuse_for_inference``: norms folded into convs; inference only) and, with
``--compile``, ``torch.compile``d copies of ours and timm.

Example (the figures in the README)::

    python tools/benchmark.py --variant resnest50d --cases 8x224:logits 2x512:features \\
        --threads 2 --repeats 5 --warmup 1 --out benchmarks/resnest50d_cpu
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import resnest_backbones as rb  # noqa: E402
from resnest_backbones.models.fuse import fuse_for_inference  # noqa: E402

#: timm name -> official ``resnest.torch`` constructor name (variants the official package has).
OFFICIAL_NAMES = {
    "resnest50d": "resnest50", "resnest101e": "resnest101", "resnest200e": "resnest200",
    "resnest269e": "resnest269", "resnest50d_4s2x40d": "resnest50_fast_4s2x40d",
    "resnest50d_1s4x24d": "resnest50_fast_1s4x24d",
    **{f"resnest50_fast_{s}": f"resnest50_fast_{s}" for s in ("1s1x64d", "2s1x64d", "4s1x64d", "1s2x40d", "2s2x40d")},
}
FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
MODES = ("inference", "train", "memory")


# ------------------------------------------------------------------------------------------------ models
class Case:
    """One input case: ``BATCHxSIZE[:logits|features]`` (square images, 3 channels)."""

    def __init__(self, spec: str) -> None:
        shape, _, head = spec.partition(":")
        try:
            batch, size = (int(v) for v in shape.lower().split("x"))
        except ValueError:
            raise SystemExit(f"bad case {spec!r}: write BATCHxSIZE[:logits|features], e.g. 8x224:logits") from None
        head = head or "logits"
        if head not in ("logits", "features"):
            raise SystemExit(f"bad case {spec!r}: the head must be 'logits' or 'features'")
        self.spec, self.batch, self.size, self.head = f"{batch}x{size}:{head}", batch, size, head

    def __str__(self) -> str:
        return self.spec


class _OfficialFeatures(nn.Module):
    """The official network's four stage outputs (it has no features mode of its own)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> List[Tensor]:
        net = self.net
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        feats = []
        for i in range(1, 5):
            x = getattr(net, f"layer{i}")(x)
            feats.append(x)
        return feats


def _optional(module: str) -> Optional[Any]:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        return None


def available_impls(variant: str, compile_models: bool) -> List[str]:
    """Implementations benchmarked for ``variant`` in this environment (ours first)."""
    impls = ["ours", "ours+fused"]
    if _optional("timm") is not None:
        impls.append("timm")
    if variant in OFFICIAL_NAMES and _optional("resnest.torch") is not None:
        impls.append("official")
    if compile_models:
        impls += [f"{name}+compile" for name in ("ours", "timm") if name in impls]
    return impls


def reference_state_dict(variant: str) -> Optional[Dict[str, Tensor]]:
    """Deterministic shared weights (timm's initialisation, seed 0) in official/timm keys, or ``None``."""
    timm = _optional("timm")
    if timm is None:
        return None
    torch.manual_seed(0)
    return timm.create_model(variant, pretrained=False, num_classes=1000).state_dict()


def build(impl: str, variant: str, head: str, state: Optional[Dict[str, Tensor]]) -> nn.Module:
    """The model of ``impl`` (``ours``, ``ours+fused``, ``timm``, ``official``, ``*+compile``), shared weights."""
    base = impl.split("+")[0]
    logits = head == "logits"
    sd = state if logits or state is None else {k: v for k, v in state.items() if not k.startswith("fc.")}
    if base == "ours":
        model: nn.Module = rb.create_model(variant, num_classes=1000 if logits else 0)
    elif base == "timm":
        import timm

        model = timm.create_model(variant, pretrained=False, num_classes=1000, **(
            {} if logits else {"features_only": True, "out_indices": (1, 2, 3, 4)}))
    elif base == "official":
        import resnest.torch as official

        model = getattr(official, OFFICIAL_NAMES[variant])(pretrained=False)
    else:
        raise ValueError(f"unknown implementation {impl!r}")
    if state is not None:
        model.load_state_dict(state if base == "official" else sd, strict=True)
    if base == "official" and not logits:
        model = _OfficialFeatures(model)
    return model


def prepare(model: nn.Module, impl: str, mode: str, memory_format: torch.memory_format,
            device: torch.device) -> nn.Module:
    """Device, memory format, train/eval, fusion and compilation for one benchmark entry."""
    model = model.to(device).to(memory_format=memory_format)
    model.train(mode == "train")
    if "+fused" in impl:
        model = fuse_for_inference(model)
    if "+compile" in impl:
        model = torch.compile(model)
    return model


def loss_of(out: Any, target: Tensor) -> Tensor:
    """Cross-entropy for logits; for feature maps the sum of their means (every output gets a gradient)."""
    if isinstance(out, Tensor):
        return nn.functional.cross_entropy(out.float(), target)
    values = out.values() if isinstance(out, dict) else out
    return sum(v.float().mean() for v in values)


class Runner:
    """One callable per (impl, mode) that runs one repetition."""

    def __init__(self, model: nn.Module, mode: str, x: Tensor, amp: Optional[torch.dtype], device: torch.device):
        self.model, self.mode, self.x, self.amp, self.device = model, mode, x, amp, device
        self.target = torch.randint(0, 1000, (x.shape[0],), generator=torch.Generator().manual_seed(0)).to(device)
        self.opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4) \
            if mode == "train" else None
        use_scaler = amp == torch.float16 and device.type == "cuda" and mode == "train"
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None

    def _autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None)

    def __call__(self) -> None:
        if self.opt is None:
            with torch.no_grad(), self._autocast():
                self.model(self.x)
        else:
            self.opt.zero_grad(set_to_none=True)
            with self._autocast():
                loss = loss_of(self.model(self.x), self.target)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.opt)
                self.scaler.update()
            else:
                loss.backward()
                self.opt.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()


# ----------------------------------------------------------------------------------------------- memory
def _vm_hwm() -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _vm_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak-RSS counter (Linux >= 4.0)
        return True
    except OSError:
        return False


def memory_worker(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Runs in a fresh subprocess: peak memory (bytes) of ``steps`` repetitions of one entry."""
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    amp = _amp_dtype(spec["amp"])
    case = Case(spec["case"])
    state = reference_state_dict(spec["variant"])
    model = build(spec["impl"], spec["variant"], case.head, state)
    del state
    model = prepare(model, spec["impl"], spec["phase"], FORMATS[spec["format"]], device)
    x = torch.randn(case.batch, 3, case.size, case.size, generator=torch.Generator().manual_seed(0))
    x = x.to(device).contiguous(memory_format=FORMATS[spec["format"]])
    run = Runner(model, spec["phase"], x, amp, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        for _ in range(spec["steps"]):
            run()
        return {"peak_bytes": torch.cuda.max_memory_allocated() - base, "method": "cuda max_memory_allocated"}
    base = _vm_rss()
    exact = _reset_peak_rss()
    for _ in range(spec["steps"]):
        run()
    if exact and _vm_hwm() is not None:
        return {"peak_bytes": _vm_hwm() - base, "method": "VmHWM growth (reset via clear_refs)"}
    return {"peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base,
            "method": "ru_maxrss growth (upper bound: includes earlier peaks)"}


def measure_memory(spec: Dict[str, Any]) -> Dict[str, Any]:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    proc = subprocess.run([sys.executable, __file__, "--memory-worker", json.dumps(spec)], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"memory worker failed for {spec}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------- benchmark
def _amp_dtype(name: str) -> Optional[torch.dtype]:
    return {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def _summary(times: Sequence[float], batch: int) -> Dict[str, Any]:
    med = statistics.median(times)
    return {"times_s": list(times), "median_s": med, "min_s": min(times), "max_s": max(times),
            "images_per_s": batch / med, "images_per_s_min": batch / max(times), "images_per_s_max": batch / min(times)}


def time_entries(runners: Dict[str, Runner], repeats: int, warmup: int, label: str) -> Dict[str, List[float]]:
    """Interleaved timing: every repetition runs each entry once, in a rotating order."""
    names = list(runners)
    for i in range(warmup):
        for name in names:
            runners[name]()
    times: Dict[str, List[float]] = {name: [] for name in names}
    for rep in range(repeats):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for name in order:
            start = time.perf_counter()
            runners[name]()
            times[name].append(time.perf_counter() - start)
        print(f"  {label}: repetition {rep + 1}/{repeats} " + " ".join(
            f"{n}={statistics.median(t):.3f}s" for n, t in times.items()), file=sys.stderr, flush=True)
    return times


def run_benchmark(args: argparse.Namespace) -> Dict[str, Any]:
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if args.threads:
        torch.set_num_threads(args.threads)
    amp = _amp_dtype(args.amp)
    impls = [i for i in available_impls(args.variant, args.compile) if not args.impls or i in args.impls]
    state = reference_state_dict(args.variant)
    results: List[Dict[str, Any]] = []
    for case in args.cases:
        x_cpu = torch.randn(case.batch, 3, case.size, case.size, generator=torch.Generator().manual_seed(0))
        for mode in [m for m in args.modes if m != "memory"]:
            runners: Dict[str, Runner] = {}
            for fmt in args.formats:
                x = x_cpu.to(device).contiguous(memory_format=FORMATS[fmt])
                for impl in impls:
                    if mode == "train" and "+fused" in impl:
                        continue  # inference only
                    model = prepare(build(impl, args.variant, case.head, state), impl, mode, FORMATS[fmt], device)
                    runners[f"{impl}|{fmt}"] = Runner(model, mode, x, amp, device)
            times = time_entries(runners, args.repeats, args.warmup, f"{case} {mode}")
            for key, values in times.items():
                impl, fmt = key.split("|")
                results.append({"mode": mode, "case": case.spec, "format": fmt, "impl": impl,
                                **_summary(values, case.batch)})
            del runners
        if "memory" in args.modes:
            for phase in args.memory_phases:
                for fmt in args.formats:
                    for impl in impls:
                        if phase == "train" and ("+fused" in impl or "+compile" in impl):
                            continue
                        spec = {"impl": impl, "variant": args.variant, "case": case.spec, "format": fmt,
                                "phase": phase, "device": device.type, "amp": args.amp,
                                "threads": torch.get_num_threads(), "steps": 2}
                        mem = measure_memory(spec)
                        print(f"  {case} memory {phase} {impl} {fmt}: {mem['peak_bytes'] / 2**20:.0f} MiB",
                              file=sys.stderr, flush=True)
                        results.append({"mode": f"memory-{phase}", "case": case.spec, "format": fmt, "impl": impl,
                                        "peak_mib": mem["peak_bytes"] / 2**20, "method": mem["method"]})
    add_ratios(results)
    return {"meta": metadata(args, device, impls), "results": results, "best_format": best_format_ratios(results)}


def add_ratios(results: List[Dict[str, Any]]) -> None:
    """``ratio_vs_timm``: throughput ours/timm (higher is better) or peak memory ours/timm (lower is better),
    same mode, case and memory format."""
    index = {(r["mode"], r["case"], r["format"], r["impl"]): r for r in results}
    for r in results:
        ref = index.get((r["mode"], r["case"], r["format"], "timm"))
        if ref is None or r["impl"] == "timm":
            continue
        key = "peak_mib" if "peak_mib" in r else "images_per_s"
        r["ratio_vs_timm"] = r[key] / ref[key]


def best_format_ratios(results: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Each implementation in its best memory format vs timm in its best one (the issue's criterion)."""
    rows = []
    keys = sorted({(r["mode"], r["case"]) for r in results}, key=lambda k: (k[1], k[0]))
    for mode, case in keys:
        entries = [r for r in results if r["mode"] == mode and r["case"] == case]
        is_memory = mode.startswith("memory")

        def best(impl: str) -> Optional[Dict[str, Any]]:
            cands = [r for r in entries if r["impl"] == impl]
            if not cands:
                return None
            return min(cands, key=lambda r: r["peak_mib"]) if is_memory else max(cands, key=lambda r: r["images_per_s"])

        ref = best("timm")
        for impl in sorted({r["impl"] for r in entries}, key=lambda i: (i != "ours", i)):
            mine = best(impl)
            if mine is None or ref is None or impl == "timm":
                continue
            value = "peak_mib" if is_memory else "images_per_s"
            rows.append({"mode": mode, "case": case, "impl": impl, "format": mine["format"],
                         "timm_format": ref["format"], "value": mine[value], "timm_value": ref[value],
                         "ratio_vs_timm": mine[value] / ref[value]})
    return rows


def metadata(args: argparse.Namespace, device: torch.device, impls: Sequence[str]) -> Dict[str, Any]:
    versions = {"torch": torch.__version__}
    for name in ("timm", "resnest"):
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
    return {"command": "python tools/benchmark.py " + " ".join(sys.argv[1:]), "date": datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="seconds"), "device": device.type,
        "device_name": torch.cuda.get_device_name() if device.type == "cuda" else cpu,
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "variant": args.variant,
        "amp": args.amp, "repeats": args.repeats, "warmup": args.warmup, "impls": list(impls),
        "versions": versions}


# ------------------------------------------------------------------------------------------------ output
def format_table(report: Dict[str, Any]) -> str:
    lines = [f"{'mode':<17} {'case':<14} {'format':<13} {'impl':<15} {'median':>9} {'min-max':>17} "
             f"{'img/s':>7} {'ours/timm':>9}"]
    for r in report["results"]:
        ratio = f"{r['ratio_vs_timm']:.3f}" if "ratio_vs_timm" in r else ""
        if "peak_mib" in r:
            lines.append(f"{r['mode']:<17} {r['case']:<14} {r['format']:<13} {r['impl']:<15} "
                         f"{r['peak_mib']:>6.0f}MiB {'':>17} {'':>7} {ratio:>9}")
        else:
            lines.append(f"{r['mode']:<17} {r['case']:<14} {r['format']:<13} {r['impl']:<15} "
                         f"{r['median_s']:>8.3f}s {r['min_s']:>8.3f}-{r['max_s']:.3f}s "
                         f"{r['images_per_s']:>7.2f} {ratio:>9}")
    lines.append("")
    lines.append("best memory format of each vs timm in its best one (throughput: higher is better; memory: lower)")
    for r in report["best_format"]:
        unit = "MiB" if r["mode"].startswith("memory") else "img/s"
        lines.append(f"  {r['mode']:<17} {r['case']:<14} {r['impl']:<15} {r['value']:8.2f} {unit} ({r['format']}) "
                     f"vs timm {r['timm_value']:8.2f} ({r['timm_format']}): {r['ratio_vs_timm']:.3f}x")
    return "\n".join(lines)


def markdown_table(report: Dict[str, Any]) -> str:
    rows = ["| mode | input | format | impl | median | min–max | img/s or peak | ours/timm |", "|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        ratio = f"{r['ratio_vs_timm']:.3f}" if "ratio_vs_timm" in r else "–"
        if "peak_mib" in r:
            rows.append(f"| {r['mode']} | {r['case']} | {r['format']} | {r['impl']} | – | – | {r['peak_mib']:.0f} MiB | {ratio} |")
        else:
            rows.append(f"| {r['mode']} | {r['case']} | {r['format']} | {r['impl']} | {r['median_s']:.3f} s | "
                        f"{r['min_s']:.3f}–{r['max_s']:.3f} s | {r['images_per_s']:.2f} | {ratio} |")
    return "\n".join(rows)


def plot(report: Dict[str, Any], path: Path) -> None:
    """One row per input case, one panel per mode; bars per memory format and implementation, min-max
    whiskers, and the ratio to timm (same format) above each bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    cases = list(dict.fromkeys(r["case"] for r in results))
    modes = [m for m in ("inference", "train", "memory-train", "memory-inference") if any(r["mode"] == m for r in results)]
    fig, axes = plt.subplots(len(cases), len(modes), figsize=(4.6 * len(modes), 3.8 * len(cases)), squeeze=False)
    impls = report["meta"]["impls"]
    colors = {impl: plt.cm.tab10(i) for i, impl in enumerate(impls)}
    for row, case in enumerate(cases):
        for col, mode in enumerate(modes):
            ax = axes[row][col]
            entries = [r for r in results if r["mode"] == mode and r["case"] == case]
            formats = [f for f in FORMATS if any(r["format"] == f for r in entries)]
            present = [i for i in impls if any(r["impl"] == i for r in entries)]
            width = 0.8 / max(len(present), 1)
            for j, impl in enumerate(present):
                for k, fmt in enumerate(formats):
                    r = next((r for r in entries if r["impl"] == impl and r["format"] == fmt), None)
                    if r is None:
                        continue
                    xpos = k + (j - (len(present) - 1) / 2) * width
                    if "peak_mib" in r:
                        value, err = r["peak_mib"], None
                    else:
                        value = r["images_per_s"]
                        err = [[value - r["images_per_s_min"]], [r["images_per_s_max"] - value]]
                    ax.bar(xpos, value, width, yerr=err, capsize=2, color=colors[impl],
                           label=impl if k == 0 else None)
                    if "ratio_vs_timm" in r:
                        top = value if err is None else value + err[1][0]
                        ax.text(xpos, top, f"{r['ratio_vs_timm']:.2f}x", ha="center", va="bottom", fontsize=7,
                                rotation=90)
            ax.set_xticks(range(len(formats)), [f.replace("_", " ") for f in formats])
            ax.set_title(f"{mode}, {case}", fontsize=10)
            ax.set_ylabel("peak MiB (lower is better)" if mode.startswith("memory") else "images/s (higher is better)")
            ax.margins(y=0.2)
            if col == 0:
                ax.legend(fontsize=7, loc="lower left")
    meta = report["meta"]
    fig.suptitle(f"{meta['variant']} on {meta['device_name']} ({meta['threads']} threads): median of "
                 f"{meta['repeats']} interleaved runs, whiskers min-max, labels = ratio to timm (same format)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="resnest50d", help=f"one of {', '.join(rb.list_variants())}")
    parser.add_argument("--cases", nargs="+", type=Case, default=[Case("8x224:logits"), Case("2x512:features")],
                        help="input cases BATCHxSIZE[:logits|features] (default: 8x224:logits 2x512:features)")
    parser.add_argument("--formats", nargs="+", choices=list(FORMATS), default=list(FORMATS))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--memory-phases", nargs="+", choices=["train", "inference"], default=["train"],
                        help="what the memory measurement runs (default: train)")
    parser.add_argument("--impls", nargs="+", default=None,
                        help="subset of: ours ours+fused timm official (and *+compile with --compile)")
    parser.add_argument("--compile", action="store_true", help="also benchmark torch.compile'd ours and timm")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"], help="autocast dtype")
    parser.add_argument("--out", type=Path, default=None,
                        help="write OUT.json and OUT.png (default: benchmarks/<variant>_<device>)")
    parser.add_argument("--replot", type=Path, default=None,
                        help="redraw table and plot from a JSON this tool wrote, without benchmarking")
    parser.add_argument("--memory-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.variant not in rb.list_variants():
        parser.error(f"unknown variant {args.variant!r}; choose one of {', '.join(rb.list_variants())}")
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible; use --device cpu")
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.memory_worker:
        print(json.dumps(memory_worker(json.loads(args.memory_worker))))
        return
    if args.replot is not None:
        report = json.loads(args.replot.read_text())
        print(format_table(report))
        plot(report, args.replot.with_suffix(".png"))
        print(f"wrote {args.replot.with_suffix('.png')}")
        return
    report = run_benchmark(args)
    print(format_table(report))
    device = report["meta"]["device"]
    out = args.out or ROOT / "benchmarks" / f"{args.variant}_{device}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    out.with_suffix(".md").write_text(markdown_table(report) + "\n")
    plot(report, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.json')}, {out.with_suffix('.md')} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
