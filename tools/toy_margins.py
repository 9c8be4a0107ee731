#!/usr/bin/env python
"""Seed x thread sweep of the toy accuracy targets: how far above its target each toy run lands.

The same seed trains differently on another CPU (oneDNN takes other kernels, so float sums round
differently and a short run drifts). A toy target therefore holds on machines we cannot try only if it holds
with a margin across seeds and thread counts here. This runs every toy training that a test holds to a target,
for seeds 0-4 and 1 and 2 CPU threads (each run in its own process, with ``OMP_NUM_THREADS``), and prints
min / median / max per target, the worst margin, and writes the runs to a JSON file.

    python tools/toy_margins.py                        # all targets, seeds 0-4, threads 1 and 2
    python tools/toy_margins.py --targets mmseg --seeds 0 1 --threads 1

Targets (each the command its slow test runs, with the seed changed; the toy data itself stays the same):
    mmseg        configs/mmseg/toy/deeplabv3_resnest14d-d8_toy-ade.py, mIoU (%) on the toy ADE20K val set
    detectron2   configs/detectron2/toy/faster_rcnn_toy.yaml, box AP50 (%) on the toy COCO val set
    torchvision  tools/torchvision_train.py (default schedule), box AP50 (%) on the toy COCO val set
    mmdet        configs/mmdet/toy/faster-rcnn_resnest14d_fpn_toy-coco.py, box AP50 (%) on the toy COCO val set
A target whose framework does not import is reported as skipped.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from resnest_backbones.benchmark.toy_targets import TARGETS, available  # noqa: E402


def run_one(name: str, seed: int, threads: int) -> Dict[str, object]:
    """Run target ``name`` once in a fresh process; returns the run's record (metric, seconds, or the error)."""
    target = TARGETS[name]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1",
               CUDA_VISIBLE_DEVICES="")
    with tempfile.TemporaryDirectory(prefix=f"toy-{name}-") as tmp:
        command = target.command(seed, threads, Path(tmp))
        start = time.perf_counter()
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    record: Dict[str, object] = dict(target=name, seed=seed, threads=threads, seconds=round(seconds, 1))
    output = proc.stdout + proc.stderr
    try:
        if proc.returncode != 0:
            raise ValueError(f"exit code {proc.returncode}")
        record["value"] = target.parse(output)
    except ValueError as error:
        record["error"] = f"{error}; output tail: {output[-1500:]}"
    return record


def summarise(runs: List[Dict[str, object]]) -> str:
    lines = ["| target | metric | test threshold | runs | min | median | max | worst margin | seconds (median) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, target in TARGETS.items():
        mine = [r for r in runs if r["target"] == name]
        if not mine:
            continue
        values = [float(r["value"]) for r in mine if "value" in r]
        failed = len(mine) - len(values)
        if not values:
            lines.append(f"| {name} | {target.metric} | {target.threshold:g} | {len(mine)} ({failed} failed) "
                         f"| - | - | - | - | - |")
            continue
        low = min(values)
        lines.append(
            f"| {name} | {target.metric} | {target.threshold:g} | {len(mine)}"
            + (f" ({failed} failed)" if failed else "")
            + f" | {low:.2f} | {statistics.median(values):.2f} | {max(values):.2f} | {low - target.threshold:+.2f} "
              f"| {statistics.median(float(r['seconds']) for r in mine):.0f} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", nargs="+", choices=sorted(TARGETS), default=list(TARGETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1,
                        help="run as many runs at once as fit in this many cores (default: all)")
    parser.add_argument("--output", default="benchmarks/results/toy_margins.json", help="JSON of every run")
    parser.add_argument("--summarise", nargs="+", metavar="JSON", help="run nothing: print the table of these "
                        "earlier outputs together (a sweep done in parts)")
    args = parser.parse_args(argv)
    if args.summarise:
        print(summarise([run for path in args.summarise for run in json.loads(Path(path).read_text())]))
        return

    targets = []
    for name in args.targets:
        if available(TARGETS[name].framework):
            targets.append(name)
        else:
            print(f"[toy_margins] {name}: skipped ({TARGETS[name].framework} is not installed)", flush=True)
    runs: List[Dict[str, object]] = []
    start = time.time()
    for threads in sorted(args.threads):  # runs of one thread count at a time, as many at once as fit
        jobs = [(name, seed) for name in targets for seed in args.seeds]
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.cores // threads)) as pool:
            futures = {pool.submit(run_one, name, seed, threads): (name, seed) for name, seed in jobs}
            for future in concurrent.futures.as_completed(futures):
                record = future.result()
                runs.append(record)
                shown = f"{record['value']:.2f}" if "value" in record else f"FAILED: {record['error']}"
                print(f"[toy_margins] {record['target']} seed {record['seed']} threads {threads}: {shown} "
                      f"({record['seconds']:.0f} s; {time.time() - start:.0f} s so far)", flush=True)
    runs.sort(key=lambda r: (str(r["target"]), int(r["threads"]), int(r["seed"])))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(runs, indent=1))
    print(f"\nseeds {args.seeds} x threads {args.threads}, {time.time() - start:.0f} s in all; runs in {args.output}\n")
    print(summarise(runs))
    if any("error" in r for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
