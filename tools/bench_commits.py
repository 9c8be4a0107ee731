#!/usr/bin/env python
"""Which commit changed the training step: the ResNeSt of several commits timed against timm's, in one sitting.

Each commit is checked out (``git worktree``, in a scratch folder) and timed in its own process, which builds that
commit's ``create_model(variant)`` and timm's model of the same name and times their training steps (SGD, channels
last, fp32) interleaved; the ratio timm/ours of each repetition cancels the load the machine had then. Rounds
visit the commits in a rotating order, so that a slow minute does not fall on one commit. Reported per commit: the
median of its per-repetition ratios with the 95 % interval (the sign-test interval of
``resnest_backbones.benchmark.timing.median_interval``); two commits whose intervals do not overlap differ.

    python tools/bench_commits.py 0127ecd 74a1723 HEAD --rounds 3 --repeats 5

Only ``create_model`` is taken from each commit; the timing code is this file's (the same for every commit).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]


def worker(checkout: str, variant: str, case: str, repeats: int, warmup: int, threads: int) -> None:
    """In a fresh process: the commit at ``checkout`` against timm, interleaved; prints the times as JSON."""
    sys.path.insert(0, checkout)
    import timm
    import torch

    import resnest_backbones

    assert resnest_backbones.__file__.startswith(checkout), resnest_backbones.__file__
    torch.set_num_threads(threads)
    batch, size = (int(v) for v in case.split("x"))
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).contiguous(
        memory_format=torch.channels_last)
    target = torch.randint(0, 1000, (batch,), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    models = {"ours": resnest_backbones.create_model(variant, num_classes=1000), "timm": timm.create_model(variant)}
    steps = {}
    for name, model in models.items():
        model.to(memory_format=torch.channels_last).train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)

        def step(model=model, opt=opt) -> None:
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), target).backward()
            opt.step()

        steps[name] = step
    times: Dict[str, List[float]] = {name: [] for name in steps}
    names = list(steps)
    for rep in range(warmup + repeats):
        for name in names[rep % 2:] + names[:rep % 2]:
            start = time.perf_counter()
            steps[name]()
            if rep >= warmup:
                times[name].append(time.perf_counter() - start)
    print(json.dumps(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("commits", nargs="*", help="commits (any git revision) to compare")
    parser.add_argument("--variant", default="resnest50d")
    parser.add_argument("--case", default="8x224", help="BATCHxSIZE")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5, help="timed steps of each model per round")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="write the times and summary as JSON")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.variant, args.case, args.repeats, args.warmup, args.threads)
    if not args.commits:
        parser.error("name the commits to compare, e.g. 0127ecd HEAD")
    sys.path.insert(0, str(ROOT))
    from resnest_backbones.benchmark.timing import median_interval

    ratios: Dict[str, List[float]] = {c: [] for c in args.commits}
    times: Dict[str, List[dict]] = {c: [] for c in args.commits}
    failed: Dict[str, str] = {}  # commit -> why its run failed
    with tempfile.TemporaryDirectory(prefix="bench_commits_") as scratch:
        folders = {}
        for commit in args.commits:
            folders[commit] = os.path.join(scratch, commit.replace("/", "_"))
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", folders[commit], commit],
                           check=True)
        try:
            for round_ in range(args.rounds):
                order = args.commits[round_ % len(args.commits):] + args.commits[:round_ % len(args.commits)]
                for commit in [c for c in order if c not in failed]:
                    proc = subprocess.run(
                        [sys.executable, __file__, "--worker", folders[commit], "--variant", args.variant, "--case",
                         args.case, "--repeats", str(args.repeats), "--warmup", str(args.warmup), "--threads",
                         str(args.threads)], capture_output=True, text=True,
                        env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))
                    if proc.returncode != 0:  # e.g. a commit whose package does not import on its own
                        failed[commit] = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
                        print(f"[bench_commits] {commit} failed, left out: {failed[commit]}", file=sys.stderr)
                        continue
                    measured = json.loads(proc.stdout.strip().splitlines()[-1])
                    times[commit].append(measured)
                    ratios[commit] += [t / o for o, t in zip(measured["ours"], measured["timm"])]
                    print(f"[bench_commits] round {round_ + 1}/{args.rounds} {commit}: timm/ours "
                          f"{sorted(ratios[commit])[len(ratios[commit]) // 2]:.3f} so far", file=sys.stderr,
                          flush=True)
        finally:
            for folder in folders.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", folder], check=False)
    summary = {}
    print(f"training step, {args.variant} {args.case} channels_last fp32, {args.threads} threads: timm's step time / "
          f"ours (> 1: ours faster), median of {args.rounds} x {args.repeats} paired repetitions [95 % interval]")
    for commit in args.commits:
        if commit in failed:
            print(f"  failed: {failed[commit]}  ({commit})")
            continue
        median, low, high, coverage = median_interval(ratios[commit])
        paired = summary[commit] = {"median": median, "low": low, "high": high, "coverage": coverage}
        subject = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %ad %s", "--date=short", commit],
                                 capture_output=True, text=True).stdout.strip()[:90]
        print(f"  {paired['median']:.3f} [{paired['low']:.3f}-{paired['high']:.3f}]  {subject}")
    if args.out:
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "times": times,
                                        "summary": summary, "failed": failed}, indent=1))


if __name__ == "__main__":
    main()
