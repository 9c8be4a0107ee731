"""The memory-saving training modules (resnest_backbones.accel: ``MemoryEfficientDeepStem``,
``MemoryEfficientSplitAttention``, ``MemoryEfficientBottleneck`` and the ops and norm kernels they run) against the
reference modules on a CUDA device, the default path of every GPU user (docs/gpu.md).

For each network of ``gpu_support.VARIANTS``, each precision (float64; float32 with TF32 off; AMP float16 and
bfloat16 through ``torch.autocast("cuda", dtype)``) and each memory format (contiguous, channels_last), one
training step of both paths: outputs, the input's gradient, every parameter's gradient and the running statistics
after the step (float64: equal to 1e-9; otherwise as accurate as the reference against float64 truth:
``gpu_support.RULES``). Also: the memory-saving path keeps less for backward and lowers the peak of a training step
on the device, and ``torch.no_grad`` / eval mode run the reference forward.

Every test needs CUDA (marker ``gpu``: tests/conftest.py skips them without a device). CPU counterparts of the
mixed-precision checks, which run everywhere: test_gpu_cpu_autocast.py.
"""
from __future__ import annotations

import gpu_support as gs
import pytest
import torch
from support.numerics import max_rel_diff, saved_bytes

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda")


@pytest.mark.parametrize("fmt", list(gs.FORMATS))
@pytest.mark.parametrize("precision", gs.PRECISIONS)
@pytest.mark.parametrize("variant", list(gs.VARIANTS))
def test_memory_saving_modules_match_reference_on_cuda(variant: str, precision: str, fmt: str) -> None:
    reference, fast, truth = gs.models_to_compare(variant, precision, fmt, CUDA)
    _, reference_step = gs.compare_training_steps(reference, fast, truth, precision, fmt, CUDA)
    assert reference_step.op_calls == 0


@pytest.mark.parametrize("precision", ["float32", "fp16", "bf16"])
def test_memory_saving_modules_keep_less_for_backward_on_cuda(precision: str) -> None:
    """What autograd keeps for backward after the forward (distinct storages, parameters excluded; deterministic):
    at most 85 % of the reference's, as on the CPU (tests/accel/test_accel.py), in every precision."""
    reference, fast, _ = gs.models_to_compare("resnest14d", precision, "channels_last", CUDA)
    x = gs.image_batch(CUDA, "channels_last", size=128, batch=8)
    amp = gs.amp_dtype(precision)
    kept = {}
    for name, model in (("memory-saving", fast), ("reference", reference)):
        with torch.autocast(CUDA.type, dtype=amp, enabled=amp is not None):
            kept[name] = saved_bytes(model, x)
    assert kept["memory-saving"] <= 0.85 * kept["reference"], kept


def _peak_training_bytes(model: torch.nn.Module, x: torch.Tensor, amp) -> int:
    """The device's peak of allocated memory over one forward and backward, above what was allocated before."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    with torch.autocast("cuda", dtype=amp, enabled=amp is not None):
        out = model(x)
    out.float().square().mean().backward()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


@pytest.mark.parametrize("precision", ["float32", "fp16", "bf16"])
def test_memory_saving_modules_lower_the_training_peak_on_cuda(precision: str) -> None:
    """The saved maps are the point of the memory-saving path: a training step's peak of device memory (16 images of
    128 x 128, where activations outweigh the 10.6 M parameters and their gradients) is lower than the
    reference's."""
    reference, fast, _ = gs.models_to_compare("resnest14d", precision, "channels_last", CUDA)
    x = gs.image_batch(CUDA, "channels_last", size=128, batch=16)
    amp = gs.amp_dtype(precision)
    peaks = {"memory-saving": _peak_training_bytes(fast, x, amp)}
    fast.zero_grad(set_to_none=True)
    peaks["reference"] = _peak_training_bytes(reference, x, amp)
    assert peaks["memory-saving"] < peaks["reference"], peaks


def test_no_grad_and_eval_take_the_reference_path_on_cuda() -> None:
    """Without autograd recording (``torch.no_grad``: running statistics still move in training mode) and in eval
    mode the memory-saving modules run the reference forward: no op call, the same values (to 1e-6, not bitwise:
    cuDNN may choose its algorithms per call)."""
    reference, fast, _ = gs.models_to_compare("resnest14d", "float32", "channels_last", CUDA)
    x = gs.image_batch(CUDA, "channels_last")
    for mode in ("train", "eval"):
        outputs = []
        for model in (fast, reference):
            model.train(mode == "train")
            with gs.counting_ops() as calls, torch.no_grad():
                outputs.append(model(x))
            assert calls[0] == 0, mode
        assert max_rel_diff(outputs[0], outputs[1]) <= 1e-6, mode
    for (name, a), b in zip(fast.named_buffers(), reference.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)
