"""Peak memory of a few repetitions of one entry, each measured in a fresh subprocess.

CPU: growth of the kernel's peak-RSS counter (VmHWM, reset through /proc/self/clear_refs after the model is
built) with glibc told to mmap every allocation >= 64 KiB, so freed tensors leave the RSS at once and the peak
is the peak of live tensors (+ small allocator slack). CUDA: ``torch.cuda.max_memory_allocated``. A
``torch.compile``d entry runs a forward and backward pass before the peak is reset, so that its compilation
(which the other entries do not have) does not count; it allocates no optimizer state, so the measured steps
still hold the momentum buffers' first allocation, as they do for the other entries.

The worker runs as ``python -m resnest_backbones.benchmark.memory SPEC_JSON`` and prints one JSON line.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from .models import FORMATS, Case, build, prepare, reference_state_dict
from .timing import AMP_DTYPES, Runner

#: The folder that holds the ``resnest_backbones`` package: put on the worker's path so ``-m`` finds it.
_PACKAGE_PARENT = Path(__file__).resolve().parents[2]


def _vm_hwm() -> Optional[int]:
    """Peak resident set size in bytes (Linux), or ``None`` where /proc has no such counter."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _vm_rss() -> int:
    """Current resident set size in bytes: the baseline the peak grows from."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak_rss() -> bool:
    """Resets the peak so that building the model does not count; ``False`` where the kernel refuses."""
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
    if spec.get("whole"):  # a whole model (segmentor, detector): same measurement, its own entry
        from .whole import WholeCase, make_runner

        run: Runner = make_runner(spec["whole"], spec["impl"], WholeCase(spec["case"]), spec["phase"],
                                  spec["format"], AMP_DTYPES[spec["amp"]], device)
    else:
        case = Case(spec["case"])
        state = reference_state_dict(spec["variant"])
        model = build(spec["impl"], spec["variant"], case.head, state)
        del state
        model = prepare(model, spec["impl"], spec["phase"], FORMATS[spec["format"]], device)
        x = case.image().to(device).contiguous(memory_format=FORMATS[spec["format"]])
        run = Runner(model, spec["phase"], x, AMP_DTYPES[spec["amp"]], device)
    if "+compile" in spec["impl"]:
        run.compile_now()  # the compiler's own memory is not the step's
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
    """:func:`memory_worker` in a fresh interpreter (no earlier peak, allocator tuned as the docstring says)."""
    path = os.pathsep.join(p for p in (str(_PACKAGE_PARENT), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0", PYTHONPATH=path)
    proc = subprocess.run([sys.executable, "-m", __name__, json.dumps(spec)], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"memory worker failed for {spec}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(json.dumps(memory_worker(json.loads(sys.argv[1]))))
