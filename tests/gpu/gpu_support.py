"""Helpers of the GPU suite (tests/gpu, docs/gpu.md): the models compared, one recorded training step, the
accuracy rules for comparing the memory-saving modules with the reference modules in each precision, true float32
on CUDA, a one-process process group and a count of the memory-saving ops.

The test modules of tests/gpu import this file as ``gpu_support``: pytest puts tests/gpu on ``sys.path`` when it
imports them (the test directories have no ``__init__.py``; pytest's default import mode).

How the two paths are compared (the reasons for each tolerance are where it is defined):

* float64: the memory-saving and the reference modules compute the same function with the same ops in another
  order, so values, gradients and running statistics agree to rounding (1e-16) times the network's amplification:
  :func:`assert_same_function`, 1e-9;
* float32 and AMP (float16, bfloat16 autocast): both paths round differently, and a deep random network amplifies
  rounding (a ReLU whose input is within an ulp of 0 flips), so the two are not compared with each other but with
  float64 truth: the memory-saving path must be as accurate as the reference in the same precision on the same
  device (:func:`assert_as_accurate`, :data:`RULES`).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch
import torch.distributed as dist
from support.numerics import random_image, randomize_norms
from torch import Tensor, nn

import resnest_backbones as rb
from resnest_backbones.accel import memory_efficient_training, ops

FORMATS: Dict[str, torch.memory_format] = {"contiguous": torch.contiguous_format,
                                           "channels_last": torch.channels_last}
#: Autocast dtypes by the names the tests use.
AMP: Dict[str, torch.dtype] = {"fp16": torch.float16, "bf16": torch.bfloat16}
PRECISIONS = ("float64", "float32", "fp16", "bf16")


def amp_dtype(precision: str) -> Optional[torch.dtype]:
    """The autocast dtype of ``precision`` (None: no autocast, the model's own dtype)."""
    return AMP.get(precision)


def model_dtype(precision: str) -> torch.dtype:
    """The parameters' dtype: float64 for the exact comparison, else float32 (autocast's master weights)."""
    return torch.float64 if precision == "float64" else torch.float32


# ------------------------------------------------------------------------------------------------ models
def _resnest14d(**kwargs) -> nn.Module:
    return rb.create_model("resnest14d", memory_efficient=False, **kwargs)


def _radix1_avd_first(**kwargs) -> nn.Module:
    # The layout of the resnest50_fast_1s1x64d family at ResNeSt-14 depth: radix 1 (sigmoid gate instead of the
    # softmax), the pool before the split convolution (so the bottleneck keeps its reference path and only split
    # attention runs the ops). 50 layers deep the random network is chaotic in float32 (gradient errors jump
    # between 1e-5 and 1e-3 with 1e-7 changes of the input, measured on the CPU); 14 layers deep it is not.
    return rb.ResNeSt([1, 1, 1, 1], radix=1, avd_first=True, **kwargs)


#: The networks compared: the split-attention routes of both kinds (radix 2 with the ``bn3(conv3(...))``
#: projection op, both of its backward routes: the Gram route on the 16x16 maps of stage 1, recomputation on the
#: 2x2 maps of stage 4 at 64-pixel input; radix 1 with the sigmoid gate and the pool first).
VARIANTS: Dict[str, Callable[..., nn.Module]] = {"resnest14d": _resnest14d, "radix1-avd-first": _radix1_avd_first}


def models_to_compare(variant: str, precision: str, fmt: str, device: torch.device,
                      norm_layer: Optional[Callable[[int], nn.Module]] = None
                      ) -> Tuple[nn.Module, nn.Module, nn.Module]:
    """``(reference, memory_saving, truth)``: one seeded network (random norm statistics, so every tensor matters)
    with the reference modules in ``precision``'s dtype, its memory-saving copy, and a float64 copy with the
    reference modules, all on ``device`` in training mode and in the memory format ``fmt``."""
    torch.manual_seed(0)
    kwargs = {"num_classes": 10}
    if norm_layer is not None:
        kwargs["norm_layer"] = norm_layer
    base = randomize_norms(VARIANTS[variant](**kwargs)).train()
    memory_format = FORMATS[fmt]
    reference = copy.deepcopy(base).to(device=device, dtype=model_dtype(precision), memory_format=memory_format)
    memory_saving = memory_efficient_training(copy.deepcopy(reference))
    truth = copy.deepcopy(base).to(device=device, dtype=torch.float64, memory_format=memory_format)
    return reference, memory_saving, truth


def image_batch(device: torch.device, fmt: str, size: int = 64, batch: int = 4) -> Tensor:
    """The seeded float32 image batch of the comparisons (cast to a model's dtype by :func:`record_step`)."""
    return random_image(size, batch=batch).to(device).contiguous(memory_format=FORMATS[fmt])


# ------------------------------------------------------------------------------------------- one step
@dataclasses.dataclass
class Step:
    """What one training step of a model left: float64 copies of its outputs, its input's gradient, its parameters'
    gradients and floating-point buffers (running statistics) after the step, its integer buffers
    (``num_batches_tracked``), and how often the memory-saving ops ran."""

    out: Tensor
    input_grad: Tensor
    grads: Dict[str, Tensor]
    buffers: Dict[str, Tensor]
    counters: Dict[str, int]
    op_calls: int


_OP_FUNCTIONS = (ops._BNReLU, ops._BNReLUConv, ops._CombineRecompute, ops._CombineConvBN)
_MISSING = object()


@contextlib.contextmanager
def counting_ops() -> Iterator[List[int]]:
    """``calls[0]``: how often the memory-saving autograd functions ran inside the block (0: the model took the
    reference path)."""
    calls = [0]

    def counted(apply: Callable) -> Callable:
        def run(*args):
            calls[0] += 1
            return apply(*args)
        return run

    saved = []
    try:
        for function in _OP_FUNCTIONS:
            saved.append((function, vars(function).get("apply", _MISSING)))
            function.apply = counted(function.apply)
        yield calls
    finally:
        for function, apply in saved:
            if apply is _MISSING:
                del function.apply
            else:
                function.apply = apply


def probe_for(out: Tensor) -> Tensor:
    """A seeded standard-normal float64 tensor shaped like ``out``: the loss is ``sum(out * probe)``, so the output
    gradient is O(1) everywhere (no cancellation in the loss)."""
    gen = torch.Generator().manual_seed(2)
    return torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out.device)


def record_step(model: nn.Module, x: Tensor, amp: Optional[torch.dtype] = None) -> Step:
    """One forward (under ``torch.autocast(x.device.type, amp)`` when ``amp`` is given) and one backward of
    ``sum(out * probe)`` computed in float64 outside autocast; the input is cast to the model's dtype."""
    dtype = next(model.parameters()).dtype
    x = x.detach().to(dtype).requires_grad_(True)
    with counting_ops() as calls:
        with torch.autocast(x.device.type, dtype=amp, enabled=amp is not None):
            out = model(x)
        (out.double() * probe_for(out)).sum().backward()
    grads = {name: p.grad.detach().double().clone() for name, p in model.named_parameters() if p.grad is not None}
    buffers = {name: b.detach().double().clone() for name, b in model.named_buffers() if b.is_floating_point()}
    counters = {name: int(b) for name, b in model.named_buffers() if not b.is_floating_point()}
    return Step(out.detach().double(), x.grad.detach().double(), grads, buffers, counters, calls[0])


# ----------------------------------------------------------------------------------------- comparisons
def rel_error(ours: Tensor, truth: Tensor) -> float:
    """``||ours - truth|| / ||truth||`` (Frobenius norms, float64)."""
    ours, truth = ours.double().flatten(), truth.double().flatten()
    return float((ours - truth).norm() / truth.norm().clamp_min(1e-300))


def groups(step: Step) -> Dict[str, Tuple[str, Tensor]]:
    """The quantities compared, each large enough for a stable relative error: ``name -> (kind, values)`` with
    kind ``values`` (the outputs), ``grads`` (the input's gradient; the parameters' gradients per top-level module:
    stem, stages, classifier) or ``buffers`` (all running statistics)."""
    out: Dict[str, Tuple[str, Tensor]] = {"outputs": ("values", step.out.flatten()),
                                          "input gradient": ("grads", step.input_grad.flatten())}
    per_module: Dict[str, List[Tensor]] = {}
    for name, grad in step.grads.items():
        per_module.setdefault(name.split(".")[0], []).append(grad.flatten())
    for module, parts in per_module.items():
        out[f"{module} gradients"] = ("grads", torch.cat(parts))
    if step.buffers:
        out["running statistics"] = ("buffers", torch.cat([b.flatten() for b in step.buffers.values()]))
    return out


@dataclasses.dataclass(frozen=True)
class Rule:
    """The memory-saving path's relative error against float64 truth may be at most ``ratio`` times the reference
    path's (same precision, same device) plus a floor per kind of quantity."""

    ratio: float
    values: float
    grads: float
    buffers: float


#: Measured on the CPU with these comparisons (docs/gpu.md) for these networks, 4 x 64 x 64 input: the reference's
#: relative errors against float64 are, in float32, 1.5e-6 (outputs), 2e-6 to 4e-5 (gradients; channels_last the
#: larger), 5e-8 (running statistics); in bfloat16 2e-2, 0.12-0.3, 3e-4; in float16 2e-3, 4e-2-0.1, 3e-5.
#: Perturbing the input by its own rounding moves these figures by up to 1.2x (float32) and 1.36x (AMP): the ratios
#: 1.5 and 2 leave room for that, while a wrong gradient term, mask or cast gives errors of order 1, above every
#: bound here (the largest, bfloat16 gradients, is about 0.6). The floors cover errors near a precision's rounding
#: level, where ratios are noise; float32 gradients have the largest floor because one ReLU input within an ulp of 0
#: flips its mask (the memory-saving path recomputes the mask from ``x * scale + shift``) and moves a stage's
#: gradient by up to 1e-3 (seen in a 50-layer network). The exact comparison (float64, :func:`assert_same_function`)
#: checks the arithmetic; these rules check that each precision's casts are right.
RULES: Dict[str, Rule] = {
    "float32": Rule(ratio=1.5, values=1e-4, grads=5e-3, buffers=1e-6),
    "fp16": Rule(ratio=2.0, values=1e-3, grads=1e-2, buffers=1e-5),
    "bf16": Rule(ratio=2.0, values=1e-3, grads=1e-2, buffers=1e-5),
}


def assert_as_accurate(fast: Step, reference: Step, truth: Step, rule: Rule) -> Dict[str, Tuple[float, float]]:
    """Every quantity of :func:`groups`: the memory-saving path at most ``rule`` farther from ``truth`` than the
    reference path; ``num_batches_tracked`` equal. Returns ``name -> (memory-saving error, reference error)``."""
    assert fast.counters == reference.counters == truth.counters
    errors, failures = {}, []
    truth_groups, reference_groups = groups(truth), groups(reference)
    for name, (kind, values) in groups(fast).items():
        target = truth_groups[name][1]
        ours, theirs = rel_error(values, target), rel_error(reference_groups[name][1], target)
        errors[name] = (ours, theirs)
        bound = rule.ratio * theirs + getattr(rule, kind)
        if not ours <= bound:  # also catches NaN
            failures.append(f"{name}: memory-saving {ours:.3g} > {bound:.3g} (reference {theirs:.3g})")
    assert not failures, "relative errors against float64:\n" + "\n".join(failures)
    return errors


#: float64: rounding is 1e-16 and the float32 measurements show the networks' amplification of rounding to be
#: 1e2-1e3 (1e4 for a flipped ReLU mask): 1e-9 leaves a 1e3x margin, while any wrong term is of order 1.
EXACT = 1e-9


def assert_same_function(fast: Step, reference: Step, rtol: float = EXACT) -> None:
    """float64: outputs, every gradient (the input's and each parameter's) and every buffer equal to ``rtol``
    relative to the largest magnitude of their kind (a gradient that is 0 in exact arithmetic, e.g. a bias before a
    batch norm, is rounding noise on both paths)."""
    torch.testing.assert_close(fast.out, reference.out, rtol=rtol, atol=rtol * float(reference.out.abs().max()))
    scale = max(float(g.abs().max()) for g in [reference.input_grad, *reference.grads.values()])
    torch.testing.assert_close(fast.input_grad, reference.input_grad, rtol=rtol, atol=rtol * scale)
    assert fast.grads.keys() == reference.grads.keys()
    for name, grad in reference.grads.items():
        torch.testing.assert_close(fast.grads[name], grad, rtol=rtol, atol=rtol * scale, msg=name)
    for name, buffer in reference.buffers.items():
        torch.testing.assert_close(fast.buffers[name], buffer, rtol=rtol, atol=rtol, msg=name)
    assert fast.counters == reference.counters


# --------------------------------------------------------------------------------------- CUDA settings
@contextlib.contextmanager
def exact_float32() -> Iterator[None]:
    """cuDNN convolutions and CUDA matrix products in IEEE float32 inside the block. PyTorch lets cuDNN use TF32
    for float32 convolutions by default (10-bit mantissa, about 5e-4 relative per product): two paths that order
    their work differently would then differ by far more than float32 rounding."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@contextlib.contextmanager
def one_process_group(directory: Path, backend: Optional[str] = None) -> Iterator[str]:
    """A default process group of this one process (NCCL when available, else gloo), set up through a
    ``file://`` rendezvous in ``directory`` and destroyed afterwards; yields the backend."""
    assert not dist.is_initialized(), "a process group is already initialised"
    if backend is None:
        backend = "nccl" if dist.is_nccl_available() else "gloo"
    init_file = Path(directory) / "process_group_init"
    dist.init_process_group(backend, init_method=f"file://{os.fspath(init_file)}", rank=0, world_size=1)
    try:
        yield backend
    finally:
        dist.destroy_process_group()


def compare_training_steps(reference: nn.Module, fast: nn.Module, truth: nn.Module, precision: str, fmt: str,
                           device: torch.device) -> Tuple[Step, Step]:
    """One training step of each model on the same batch (``truth`` in full precision): the memory-saving
    ``fast`` must take its ops and compute the reference's function (float64) or be as accurate as the reference
    against the truth (``RULES[precision]``). Returns the fast and reference steps."""
    x = image_batch(device, fmt)
    amp = amp_dtype(precision)
    with exact_float32():
        fast_step = record_step(fast, x, amp)
        reference_step = record_step(reference, x, amp)
        truth_step = record_step(truth, x)
    assert fast_step.op_calls > 0, "the memory-saving path was not taken"
    if precision == "float64":
        assert_same_function(fast_step, reference_step)
    else:
        assert_as_accurate(fast_step, reference_step, truth_step, RULES[precision])
    return fast_step, reference_step
