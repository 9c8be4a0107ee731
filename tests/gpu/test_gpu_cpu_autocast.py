"""CPU counterparts of the GPU suite's mixed-precision checks (docs/gpu.md), run everywhere (not gpu-marked; a few
seconds each on CI's 2 cores): the memory-saving modules under CPU autocast (bfloat16; float16, which this torch's
CPU autocast runs too) against the reference modules under the same autocast, per network of
``gpu_support.VARIANTS`` and memory format.

On the CPU both paths run the same ATen kernels forward, so outputs and running statistics must be bit-identical;
the gradients differ only where the memory-saving backward recomputes ``relu(bn(x))`` from ``x * scale + shift`` in
the low precision, so they must be as accurate as the reference's against float64 truth (ratio 1.25) and much
closer to the reference's than either is to the truth (half of the reference's error; measured: at most 0.18).

Two more counterparts run what CUDA does differently: CUDA's autocast computes softmax in float32 (CPU autocast
keeps bfloat16/float16), so split attention's weights reach the ops in float32 there; and this package's
SyncBatchNorm synchronising under autocast (the three bugs these checks found are fixed: see below).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gpu_support as gs
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from resnest_backbones.accel.norms import SyncBatchNormKernel, kernel_for
from resnest_backbones.layers import SyncBatchNorm, split_attention

CPU = torch.device("cpu")


def _cpu_autocast_runs(dtype: torch.dtype) -> bool:
    """Whether this torch's CPU autocast runs convolutions in ``dtype`` (float16: not in older torch releases)."""
    try:
        with torch.autocast("cpu", dtype=dtype):
            out = F.conv2d(torch.randn(1, 2, 4, 4), torch.randn(2, 2, 3, 3))
    except (RuntimeError, ValueError):  # an unsupported autocast dtype (older torch)
        return False
    return out.dtype == dtype


# Three dtype bugs these tests found (2026-12-06), fixed in the package since: the memory-saving convolutions'
# backward ran cuDNN/oneDNN with the float32 weight beside autocast's float16 maps (accel.ops._conv_backward now
# runs in the forward's dtype and returns each gradient in its tensor's dtype); with float32 attention weights
# (CUDA autocast's softmax) _CombineConvBN's backward mixed float32 and low-precision maps (it now recomputes the
# projection in the dtype the forward convolution ran in); SyncBatchNorm lerped float32 running statistics towards
# bfloat16 ones (layers.sync_batchnorm.update_running_stats casts them).

NO_CPU_FP16 = pytest.mark.skipif(not _cpu_autocast_runs(torch.float16),
                                 reason="this torch's CPU autocast does not run float16")

#: On the CPU: the forward is bit-identical (asserted separately, floors 0), the gradients as accurate as the
#: reference's within 25 % plus 1e-3 (rounding-level errors of gradients that are 0 in exact arithmetic).
CPU_RULE = gs.Rule(ratio=1.25, values=0.0, grads=1e-3, buffers=0.0)
#: The memory-saving gradients' distance to the reference's, relative to the reference's error (measured <= 0.18).
DIRECT = 0.5


def _check(variant: str, precision: str, fmt: str) -> None:
    reference, fast, truth = gs.models_to_compare(variant, precision, fmt, CPU)
    x = gs.image_batch(CPU, fmt)
    amp = gs.amp_dtype(precision)
    fast_step = gs.record_step(fast, x, amp)  # first: where a bug raises, it raises before the other steps
    reference_step = gs.record_step(reference, x, amp)
    truth_step = gs.record_step(truth, x)
    assert fast_step.op_calls > 0, "the memory-saving path was not taken"
    assert torch.equal(fast_step.out, reference_step.out)
    assert fast_step.buffers.keys() == reference_step.buffers.keys()
    assert all(torch.equal(fast_step.buffers[k], v) for k, v in reference_step.buffers.items())
    errors = gs.assert_as_accurate(fast_step, reference_step, truth_step, CPU_RULE)
    fast_groups, reference_groups = gs.groups(fast_step), gs.groups(reference_step)
    for name, (_, reference_error) in errors.items():
        direct = gs.rel_error(fast_groups[name][1], reference_groups[name][1])
        assert direct <= DIRECT * reference_error + 1e-12, (name, direct, reference_error)


@pytest.mark.parametrize("fmt", list(gs.FORMATS))
@pytest.mark.parametrize("precision", ["bf16", pytest.param("fp16", marks=NO_CPU_FP16)])
@pytest.mark.parametrize("variant", list(gs.VARIANTS))
def test_cpu_autocast_memory_saving_modules_match_reference(variant: str, precision: str, fmt: str) -> None:
    _check(variant, precision, fmt)


class _Float32Softmax:
    """``torch.nn.functional`` with softmax computed in float32, as CUDA's autocast computes it."""

    def __getattr__(self, name: str) -> Any:
        return getattr(F, name)

    @staticmethod
    def softmax(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return F.softmax(x.float(), *args, **kwargs)


@pytest.mark.parametrize("precision", ["bf16", pytest.param("fp16", marks=NO_CPU_FP16)])
def test_cpu_autocast_with_cuda_softmax_policy(precision: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Split attention's softmax in float32 under CPU autocast: the dtypes the ops get under CUDA's autocast (float16
    meets the float16 weight bug first)."""
    monkeypatch.setattr(split_attention, "F", _Float32Softmax())
    _check("resnest14d", precision, "contiguous")


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_cpu_synchronising_sync_bn(precision: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This package's SyncBatchNorm made to synchronise in a one-process gloo group (as tests/gpu/test_gpu_sync.py
    does on CUDA): the synchronising kernel against the module, float32 and bfloat16 autocast."""
    monkeypatch.setattr(SyncBatchNorm, "_group_size", lambda self: 2)
    with gs.one_process_group(tmp_path, "gloo"):
        reference, fast, truth = gs.models_to_compare("resnest14d", precision, "contiguous", CPU,
                                                      norm_layer=SyncBatchNorm)
        norm = fast.layer1[0].bn1
        assert isinstance(kernel_for(norm, torch.zeros(2, norm.num_features, 2, 2, requires_grad=True)),
                          SyncBatchNormKernel)
        x = gs.image_batch(CPU, "contiguous")
        amp = gs.amp_dtype(precision)
        fast_step = gs.record_step(fast, x, amp)
        reference_step = gs.record_step(reference, x, amp)
        truth_step = gs.record_step(truth, x)
    assert fast_step.op_calls > 0
    gs.assert_as_accurate(fast_step, reference_step, truth_step, gs.RULES[precision])
