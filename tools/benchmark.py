#!/usr/bin/env python
"""Side-by-side speed and memory benchmark of ResNeSt (Zhang et al., 2020, arXiv 2004.08955) implementations.

Times this project's core against timm and the official ``resnest`` package (each when installed), with
the same weights, and against two ResNets of timm (their own weights): ``resnet``, the ResNet-D of the same depth
(``resnet50d``: every entry's ratio to it and its FLOP parity), and ``resnet-aa``, its twin whose stride-2 3x3
convolutions run at full resolution before an average pool (``resnetaa50d``: the ResNeSt's multiply-adds
without split attention). All in ONE process, interleaving the implementations (A, B, C, A, B, C, ...) so
that machine load hits all of them alike; reports medians, min-max and ratios ours/timm, as a terminal table,
JSON and a PNG plot.

Measured, for every input case and memory format:
  * ``inference``: eval mode, ``torch.no_grad()``, one forward pass per repetition;
  * ``train``: one SGD step (zero_grad, forward, loss, backward, optimiser step) per repetition;
  * ``memory``: peak memory of a few training steps (and of inference), each measurement in a fresh
    subprocess. CPU: growth of the kernel's peak-RSS counter (VmHWM, reset through /proc/self/clear_refs
    after the model is built) with glibc told to mmap every allocation >= 64 KiB, so freed tensors leave the
    RSS at once and the peak is the peak of live tensors (+ small allocator slack). CUDA:
    ``torch.cuda.max_memory_allocated``.

The measurement lives in ``resnest_backbones.benchmark``; this tool parses the options and renders the
report (terminal table, markdown table, plot).

Our extra modes: ``ours+fused`` (``fuse_for_inference``: norms folded into convs; inference only) and, with
``--compile``, ``torch.compile``d copies of ours and timm.

Whole models (``--whole``, built from this project's real configs with their norms, SyncBN as plain BatchNorm
in this one process, random weights; cases are BATCHxSIZE):
  * ``deeplabv3``: mmseg DeepLabV3 S-101-D8, ours vs mmseg's ResNeSt backbone (the ratio's reference) vs mmseg's
    ResNet-101-D8 (cost baseline); train = the segmentor's ``loss`` + backward + SGD step on random labels,
    inference = ``predict``; default case 2x256;
  * ``faster_rcnn``: detectron2 Faster R-CNN FPN, S-50 ours vs detectron2's R-50 with the same recipe (the
    ratio's reference), plus the official ResNeSt fork when RESNEST_OFFICIAL_D2 names its checkout; train = the
    loss dict on 3 random boxes an image + backward + SGD step, inference = post-processed detections; default
    case 2x512.
Both also have ``ours+fused``: our model (same weights) with ``resnest_backbones.fuse_resnest_modules`` applied
(its ResNeSt replaced in place by the BN-folded inference copy); inference only, so the train modes skip it
with a message. DeepLabV3 inference is whole-image (``test_cfg`` mode ``whole``, as the ADE20K configs) or
sliding-window (``--seg-inference slide``, or a case spelled ``BATCHxSIZE:slide``): crop = 3/4 of the image
side, stride = 2/3 of the crop, i.e. 2x2 overlapping windows, the geometry of mmseg's DeepLabV3 Cityscapes
769x769 config (crop 769 on 1024x2048 images, stride 513). Slide only changes inference: the train modes skip
slide cases. A whole model whose framework is not installed is skipped with a message (exit status 0, nothing
written).

Example (the figures in the README)::

    python tools/benchmark.py --variant resnest50d --cases 8x224:logits 2x512:features \\
        --threads 2 --repeats 5 --warmup 1 --out benchmarks/resnest50d_cpu
    python tools/benchmark.py --whole deeplabv3 --cases 2x256 --formats contiguous --repeats 5 --warmup 1

Fused against unfused and the reference, inference only (DeepLabV3: whole-image and slide; about 6-7 minutes
each on 2 cores)::

    python tools/benchmark.py --whole deeplabv3 --impls ours ours+fused mmseg-resnest --cases 2x256 \\
        --seg-inference whole slide --modes inference --formats contiguous channels_last --threads 2 \\
        --repeats 15 --warmup 2 --device cpu --out benchmarks/whole_deeplabv3_fused_cpu
    python tools/benchmark.py --whole faster_rcnn --impls ours ours+fused d2-r50 --cases 2x512 \\
        --modes inference --formats contiguous channels_last --threads 2 \\
        --repeats 15 --warmup 2 --device cpu --out benchmarks/whole_faster_rcnn_fused_cpu
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import resnest_backbones as rb  # noqa: E402
from resnest_backbones.benchmark.models import FORMATS, Case  # noqa: E402
from resnest_backbones.benchmark.render import format_table, write_report  # noqa: E402
from resnest_backbones.benchmark.results import MODES, Settings, run_benchmark  # noqa: E402
from resnest_backbones.benchmark.whole import INFERENCE_STYLES, WHOLE_MODELS, WholeCase, missing_framework  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The options; names, cases and combinations are checked here, before any model is built."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="resnest50d", help=f"one of {', '.join(rb.list_variants())}")
    parser.add_argument("--cases", nargs="+", default=None,
                        help="input cases BATCHxSIZE[:logits|features] (default: 8x224:logits 2x512:features); "
                             "with --whole: BATCHxSIZE, or BATCHxSIZE:slide for deeplabv3's sliding-window "
                             "inference (default: " + ", ".join(
                                 f"{name} {w.default_case}" for name, w in WHOLE_MODELS.items()) + ")")
    parser.add_argument("--whole", default=None, choices=list(WHOLE_MODELS),
                        help="benchmark a whole model built from our configs instead of the core network: "
                             + "; ".join(f"{name}: {w.description}" for name, w in WHOLE_MODELS.items()))
    parser.add_argument("--seg-inference", nargs="+", choices=list(INFERENCE_STYLES), default=None,
                        help="--whole deeplabv3: mmseg's test_cfg mode(s) for the cases written without one, each "
                             "a case of its own (default: whole). slide: crop = 3/4 of the image side, stride = "
                             "2/3 of the crop (2x2 windows, as mmseg's DeepLabV3 Cityscapes 769x769 config)")
    parser.add_argument("--formats", nargs="+", choices=list(FORMATS), default=list(FORMATS))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--memory-phases", nargs="+", choices=["train", "inference"], default=["train"],
                        help="what the memory measurement runs (default: train)")
    parser.add_argument("--impls", nargs="+", default=None,
                        help="subset of: ours ours+fused timm official resnet-aa resnet (and *+compile with "
                             "--compile); with --whole: " + "; ".join(f"{name}: {' '.join(w.impls)}"
                                                     for name, w in WHOLE_MODELS.items()))
    parser.add_argument("--compile", action="store_true",
                        help="also benchmark torch.compile'd ours, timm and the ResNets (core network only)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="after timing, profile each timed entry over STEPS repetitions: milliseconds per "
                             "repetition by operator (torch.profiler, self CPU time) in the report")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"], help="autocast dtype")
    parser.add_argument("--out", type=Path, default=None,
                        help="write OUT.json, OUT.md and OUT.png (default: benchmarks/<variant>_<device>, "
                             "benchmarks/whole_<model>_<device> with --whole)")
    parser.add_argument("--replot", type=Path, default=None,
                        help="redraw table, markdown and plot from a JSON this tool wrote, without benchmarking")
    args = parser.parse_args(argv)
    if args.variant not in rb.list_variants():
        parser.error(f"unknown variant {args.variant!r}; choose one of {', '.join(rb.list_variants())}")
    if args.repeats < 1 or args.warmup < 0 or args.profile < 0:
        parser.error("--repeats must be >= 1, --warmup and --profile >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible; use --device cpu")
    if args.whole and args.compile:
        parser.error("--compile applies to the core network, not to --whole models")
    if args.whole and args.impls and set(args.impls) - set(WHOLE_MODELS[args.whole].impls):
        parser.error(f"--whole {args.whole}: --impls must be among {' '.join(WHOLE_MODELS[args.whole].impls)}")
    inferring = "inference" in args.modes or ("memory" in args.modes and "inference" in args.memory_phases)
    if args.impls and all("+fused" in impl for impl in args.impls) and not inferring:
        parser.error(f"--impls {' '.join(args.impls)}: fused models are for inference only (their batch norms are "
                     f"folded away); add --modes inference (or memory with --memory-phases inference)")
    styles = WHOLE_MODELS[args.whole].inference_styles if args.whole else ()
    if args.seg_inference and set(args.seg_inference) - set(styles):
        parser.error("--seg-inference applies to segmentors only (--whole " + " or --whole ".join(
            name for name, w in WHOLE_MODELS.items() if len(w.inference_styles) > 1) + ")")
    default = [WHOLE_MODELS[args.whole].default_case] if args.whole else ["8x224:logits", "2x512:features"]
    specs = args.cases or default
    if args.whole:  # a case without its own inference style gets each one of --seg-inference
        specs = [spec if ":" in spec else f"{spec}:{style}" for spec in specs for style in (
            [None] if ":" in spec else args.seg_inference or ["whole"])]
    try:
        args.cases = [WholeCase(c) if args.whole else Case(c) for c in specs]
    except ValueError as err:
        parser.error(str(err))
    bad = [c.spec for c in args.cases if args.whole and c.inference not in styles]
    if bad:
        parser.error(f"--whole {args.whole} has whole-image inference only: {' '.join(bad)} (slide is for "
                     f"segmentors)")
    return args


def settings_of(args: argparse.Namespace, argv: Optional[Sequence[str]] = None) -> Settings:
    """The measurement's settings from the parsed options (the command line is kept in the report)."""
    words = sys.argv[1:] if argv is None else list(argv)
    return Settings(variant=args.variant, cases=args.cases, formats=args.formats, modes=args.modes,
                    memory_phases=args.memory_phases, impls=args.impls, compile=args.compile, repeats=args.repeats,
                    warmup=args.warmup, threads=args.threads, device=args.device, amp=args.amp,
                    command="python tools/benchmark.py " + " ".join(words), whole=args.whole, profile=args.profile)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.replot is not None:
        report = json.loads(args.replot.read_text())
        print(format_table(report))
        written = write_report(report, args.replot.with_suffix(""))
        print("wrote " + ", ".join(str(path) for path in written[1:]))
        return
    if args.whole and missing_framework(args.whole):
        print(missing_framework(args.whole), file=sys.stderr)
        return
    report = run_benchmark(settings_of(args, argv))
    if not report["results"]:
        sys.exit("nothing was measured: every entry was skipped (see the messages above); nothing written")
    print(format_table(report))
    device = report["meta"]["device"]
    name = f"whole_{args.whole}" if args.whole else args.variant
    written = write_report(report, args.out or ROOT / "benchmarks" / f"{name}_{device}")
    print("wrote " + ", ".join(str(path) for path in written))


if __name__ == "__main__":
    main()
