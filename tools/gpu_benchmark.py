#!/usr/bin/env python
"""One-command GPU benchmark: AMP (bf16, fp16), both memory formats, optional torch.compile, the core ResNeSt-50
(ours vs timm) and the whole models (mmseg DeepLabV3 S-101-D8, detectron2 Faster R-CNN S-50 FPN).

Every (suite, AMP dtype) pair is one run of ``resnest_backbones.benchmark`` (``tools/benchmark.py``'s
measurement: interleaved timing, medians and min-max, fresh-process peak memory, ratios to the suite's reference)
written as OUT/<suite>_<amp>.json and .md; OUT/summary.md gathers the tables.

Without CUDA it runs a CPU fallback, so the script itself can be tested anywhere: tiny inputs (core 2x64,
DeepLabV3 2x64, Faster R-CNN 2x128), fp32 and bf16 autocast, channels_last only, 1 repetition, no warm-up, no
memory measurement, no compilation (unless asked for with the options). A whole model whose framework is
missing is skipped with a message.

Example, on an idle GPU machine::

    python tools/gpu_benchmark.py --compile --out benchmarks/gpu
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from resnest_backbones.benchmark.models import FORMATS, Case  # noqa: E402
from resnest_backbones.benchmark.render import format_table, markdown_table, write_report  # noqa: E402
from resnest_backbones.benchmark.results import MODES, Settings, run_benchmark  # noqa: E402
from resnest_backbones.benchmark.whole import WHOLE_MODELS, WholeCase, missing_framework  # noqa: E402

SUITES = ("core", *WHOLE_MODELS)
#: Input cases per suite: on the GPU (the issue's sizes; the core adds a larger batch), and the CPU fallback's.
GPU_CASES: Dict[str, List[str]] = {"core": ["32x224:logits", "2x512:features"], "deeplabv3": ["2x256"],
                                   "faster_rcnn": ["2x512"]}
CPU_CASES: Dict[str, List[str]] = {"core": ["2x64:logits"], "deeplabv3": ["2x64"], "faster_rcnn": ["2x128"]}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The options; the defaults depend on whether CUDA is visible (GPU run or CPU fallback)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suites", nargs="+", choices=SUITES, default=list(SUITES),
                        help="what to benchmark (default: all): core = ResNeSt-50 ours vs timm; " + "; ".join(
                            f"{name} = {w.description}" for name, w in WHOLE_MODELS.items()))
    parser.add_argument("--amp", nargs="+", choices=["none", "bf16", "fp16"], default=None,
                        help="autocast dtypes, one run each (default: bf16 fp16 on CUDA; none bf16 on the CPU)")
    parser.add_argument("--formats", nargs="+", choices=list(FORMATS), default=None,
                        help="memory formats (default: both on CUDA; channels_last on the CPU)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=None,
                        help="default: inference train memory on CUDA; inference train on the CPU")
    parser.add_argument("--compile", action="store_true", help="also torch.compile ours and timm (core suite)")
    parser.add_argument("--repeats", type=int, default=None, help="default: 10 on CUDA, 1 on the CPU")
    parser.add_argument("--warmup", type=int, default=None, help="default: 3 on CUDA, 0 on the CPU")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="auto: CUDA when visible, else the CPU fallback")
    for suite in SUITES:
        parser.add_argument(f"--{suite.replace('_', '-')}-cases", nargs="+", default=None, dest=f"{suite}_cases",
                            help=f"{suite} input cases (default: {' '.join(GPU_CASES[suite])} on CUDA, "
                                 f"{' '.join(CPU_CASES[suite])} on the CPU)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: benchmarks/gpu on CUDA, benchmarks/cpu_fallback on the CPU)")
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible; use --device cpu (the fallback)")
    gpu = args.device == "cuda"
    args.amp = args.amp or (["bf16", "fp16"] if gpu else ["none", "bf16"])
    args.formats = args.formats or (list(FORMATS) if gpu else ["channels_last"])
    args.modes = args.modes or (list(MODES) if gpu else ["inference", "train"])
    args.repeats = args.repeats if args.repeats is not None else (10 if gpu else 1)
    args.warmup = args.warmup if args.warmup is not None else (3 if gpu else 0)
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    args.cases = {}
    for suite in SUITES:
        specs = getattr(args, f"{suite}_cases") or (GPU_CASES if gpu else CPU_CASES)[suite]
        try:
            args.cases[suite] = [Case(s) if suite == "core" else WholeCase(s) for s in specs]
        except ValueError as err:
            parser.error(str(err))
    args.out = args.out or ROOT / "benchmarks" / ("gpu" if gpu else "cpu_fallback")
    return args


def settings_for(args: argparse.Namespace, suite: str, amp: str, command: str) -> Settings:
    """One run's settings: the core network (resnest50d, every implementation available) or a whole model."""
    return Settings(variant="resnest50d", cases=args.cases[suite], formats=args.formats, modes=args.modes,
                    memory_phases=("train", "inference"), compile=args.compile and suite == "core",
                    repeats=args.repeats, warmup=args.warmup, threads=args.threads, device=args.device, amp=amp,
                    command=command, whole=None if suite == "core" else suite)


def main(argv: Optional[Sequence[str]] = None) -> List[Path]:
    """Runs every (suite, AMP) pair; returns the JSON files written."""
    args = parse_args(argv)
    words = sys.argv[1:] if argv is None else list(argv)
    command = "python tools/gpu_benchmark.py " + " ".join(words)
    args.out.mkdir(parents=True, exist_ok=True)
    written: List[Path] = []
    summary = [f"# {'GPU' if args.device == 'cuda' else 'CPU fallback'} benchmark", "", f"`{command}`", ""]
    for suite in args.suites:
        if suite != "core" and missing_framework(suite):
            print(missing_framework(suite), file=sys.stderr)
            summary += [f"## {suite}", "", missing_framework(suite) or "", ""]
            continue
        for amp in args.amp:
            print(f"[gpu_benchmark] {suite}, amp {amp}, {args.device}", file=sys.stderr, flush=True)
            report = run_benchmark(settings_for(args, suite, amp, command))
            print(format_table(report))
            path = write_report(report, args.out / f"{suite}_{amp}", with_plot=False)[0]
            table = markdown_table(report)
            meta = report["meta"]
            summary += [f"## {suite}, amp {amp}", "", f"{meta['device_name']}, torch {meta['versions']['torch']}, "
                        f"median of {meta['repeats']} interleaved runs; ratio reference: {meta['reference']}", "",
                        table, ""]
            written.append(path)
    (args.out / "summary.md").write_text("\n".join(summary))
    print(f"wrote {len(written)} reports and {args.out / 'summary.md'}")
    return written


if __name__ == "__main__":
    main()
