"""One repetition of an inference or training step, interleaved timing of several of them, the paired ratio of
two timed entries with its confidence interval, and the multiply-adds of one inference pass."""
from __future__ import annotations

import math
import statistics
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

AMP_DTYPES: Dict[str, Optional[torch.dtype]] = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def loss_of(out: Any, target: Tensor) -> Tensor:
    """Cross-entropy for logits; for feature maps the sum of their means (every output gets a gradient)."""
    if isinstance(out, Tensor):
        return nn.functional.cross_entropy(out.float(), target)
    values = out.values() if isinstance(out, dict) else out
    return sum(v.float().mean() for v in values)


class Runner:
    """One callable per (impl, mode) that runs one repetition: an inference pass or one SGD step."""

    def __init__(self, model: nn.Module, mode: str, x: Tensor, amp: Optional[torch.dtype], device: torch.device):
        self.model, self.mode, self.x, self.amp, self.device = model, mode, x, amp, device
        self.target = torch.randint(0, 1000, (x.shape[0],), generator=torch.Generator().manual_seed(0)).to(device)
        self.opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4) \
            if mode == "train" else None
        use_scaler = amp == torch.float16 and device.type == "cuda" and mode == "train"
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None

    def _autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None)

    def infer(self) -> None:
        """One forward pass (already under no_grad and autocast); whole-model runners override it."""
        self.model(self.x)

    def train_loss(self) -> Tensor:
        """The training loss of one forward pass (under autocast); whole-model runners override it."""
        return loss_of(self.model(self.x), self.target)

    def _forward_backward(self) -> None:
        """An inference pass, or a training step's forward and backward (gradients left in ``.grad``)."""
        if self.opt is None:
            with torch.no_grad(), self._autocast():
                self.infer()
            return
        self.opt.zero_grad(set_to_none=True)
        with self._autocast():
            loss = self.train_loss()
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def compile_now(self) -> None:
        """Run the model once, forward and (training) backward, so that ``torch.compile`` compiles, and leave no
        gradient behind: a later measurement then sees the step's memory, not the compiler's."""
        self._forward_backward()
        if self.opt is not None:
            self.opt.zero_grad(set_to_none=True)

    def __call__(self) -> None:
        self._forward_backward()
        if self.opt is not None and self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        elif self.opt is not None:
            self.opt.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def summary(times: Sequence[float], batch: int) -> Dict[str, Any]:
    """Median, min and max of the repetitions' times, and the matching throughputs (images/s)."""
    med = statistics.median(times)
    return {"times_s": list(times), "median_s": med, "min_s": min(times), "max_s": max(times),
            "images_per_s": batch / med, "images_per_s_min": batch / max(times), "images_per_s_max": batch / min(times)}


def time_entries(runners: Dict[str, Runner], repeats: int, warmup: int, label: str) -> Dict[str, List[float]]:
    """Interleaved timing: every repetition runs each entry once, in a rotating order, so that machine load
    hits all entries alike."""
    names = list(runners)
    for _ in range(warmup):
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


def profile_by_op(runner: Runner, steps: int) -> Dict[str, float]:
    """Where ``runner``'s repetitions spend their time: milliseconds per repetition by ATen operator (self CPU
    time under ``torch.profiler`` over ``steps`` repetitions, which the profiler slows), plus ``outside ATen``
    (the rest: Python, autograd and custom-function frames, a compiled graph's own kernels) and ``total``. On CUDA
    this is the CPU side only."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            runner()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e3 / steps
    ops = {e.key: e.self_cpu_time_total / 1e3 / steps for e in events if e.key.startswith("aten::")}
    return {**dict(sorted(ops.items(), key=lambda kv: -kv[1])), "outside ATen": total - sum(ops.values()),
            "total": total}


def median_interval(values: Sequence[float], level: float = 0.95) -> Tuple[float, float, float, float]:
    """The median of ``values``, and the distribution-free interval around it: the order statistics
    ``(v[j], v[n-1-j])`` (sorted) with the largest ``j`` that still covers the true median with probability >=
    ``level`` (the sign test: coverage ``1 - 2 P(Binomial(n, 1/2) <= j)``). Returns ``(median, low, high,
    coverage)``; with fewer than 6 values no interval reaches 95 % and min-max is returned with its coverage."""
    ordered, n = sorted(values), len(values)
    if not n:
        raise ValueError("no values")

    def coverage(j: int) -> float:
        return 1 - 2 * sum(math.comb(n, i) for i in range(j + 1)) / 2 ** n

    j = 0
    while j + 1 < n - 1 - (j + 1) and coverage(j + 1) >= level:
        j += 1
    return statistics.median(ordered), ordered[j], ordered[n - 1 - j], coverage(j)


def paired_ratio(times: Sequence[float], reference_times: Sequence[float]) -> Dict[str, float]:
    """Speed of an entry relative to a reference timed in the same interleaved run: repetition ``k`` of both ran in
    the same rotation, so ``reference_times[k] / times[k]`` cancels the load the machine had then. The median of
    those ratios and its interval (:func:`median_interval`); > 1: faster than the reference."""
    ratios = [ref / mine for mine, ref in zip(times, reference_times)]
    median, low, high, cover = median_interval(ratios)
    return {"median": median, "low": low, "high": high, "coverage": cover, "pairs": len(ratios)}


def forward_macs(runner: Runner) -> float:
    """Multiply-adds per image of one inference pass of ``runner``'s model (eval mode, no gradients), counted by
    torch's ``FlopCounterMode`` (convolutions and matrix products, as FLOP tables count them). The model's mode is
    restored after. (Counted on the forward pass: torch's counter overstates the backward of grouped convolutions.)"""
    from torch.utils.flop_counter import FlopCounterMode

    model, training = runner.model, runner.model.training
    model.eval()
    try:
        with torch.no_grad(), runner._autocast(), FlopCounterMode(display=False) as counter:
            runner.infer()
    finally:
        model.train(training)
    return counter.get_total_flops() / 2 / runner.x.shape[0]
