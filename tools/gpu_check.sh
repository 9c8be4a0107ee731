#!/usr/bin/env bash
# One command for a CUDA machine: runs the GPU suite and writes a report (docs/gpu.md).
#
#   tools/gpu_check.sh [REPORT_DIR]       default: $OUT when set, else work_dirs/gpu_check (in the repository)
#
# REPORT_DIR/report.md gets: the machine's facts (nvidia-smi when present; python, torch, CUDA, cuDNN, devices,
# framework versions), `pytest -m gpu` (every gpu-marked test: tests/gpu, the memory-saving modules against the
# reference modules on CUDA in float64/float32/AMP, SyncBN in one process, whole detectron2/mmseg/torchvision models)
# with its summary, the CPU counterparts (the not-gpu tests of tests/gpu: CPU autocast), and tools/gpu_benchmark.py
# (its summary; its tables in REPORT_DIR/benchmark). Full logs and JUnit XML files lie beside the report.
#
# Without CUDA it still runs, in about a minute: the GPU tests skip ("no CUDA device", which the report states), the
# benchmark runs only its tiny CPU fallback of the core network (one inference repetition, float32), whose numbers
# say nothing about a GPU.
#
# Environment: GPU_CHECK_BENCHMARK_ARGS: extra tools/gpu_benchmark.py options on CUDA (e.g. "--suites core
# --repeats 3"; the default, every suite in both AMP dtypes and memory formats, takes a while); GPU_CHECK_SKIP_BENCHMARK=1:
# no benchmark. The python is the repository's .venv/bin/python when present, else `python` on PATH.
# Exit status: 0 when every step succeeded, 1 otherwise (the report is complete either way).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ $# -gt 0 ]]; then
    OUT_DIR="$1"
elif [[ -n "${OUT:-}" ]]; then
    OUT_DIR="$OUT"
else
    OUT_DIR="$ROOT/work_dirs/gpu_check"
fi
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"  # absolute, before leaving the caller's directory
cd "$ROOT"

if [[ -x "$ROOT/.venv/bin/python" ]]; then
    PY="$ROOT/.venv/bin/python"
elif command -v python >/dev/null 2>&1; then
    PY="python"
else
    PY="python3"
fi

REPORT="$OUT_DIR/report.md"
STEPS=()  # "name|exit status|seconds|log" per step
FAILED=0

note() { printf '%s\n' "$@" >>"$REPORT"; }

# run_step NAME LOG COMMAND...: the command's output to LOG; records its exit status and time, never stops the script.
run_step() {
    local name="$1" log="$2" start=$SECONDS status=0
    shift 2
    echo "[gpu_check] $name: $*" >&2
    "$@" >"$log" 2>&1 || status=$?
    STEPS+=("$name|$status|$((SECONDS - start))|$(basename "$log")")
    if [[ $status -ne 0 ]]; then
        FAILED=1
    fi
    return 0
}

# pytest_summary LOG: pytest's short summary (skip reasons, failures, xfails) and final line, at most 150 lines.
pytest_summary() {
    local summary
    summary="$(sed -n '/short test summary info/,$p' "$1")"
    if [[ -z "$summary" ]]; then
        summary="$(tail -n 5 "$1")"
    fi
    note '```' "$(printf '%s\n' "$summary" | head -n 150)" '```'
}

CUDA="$("$PY" -c 'import torch; print("yes" if torch.cuda.is_available() else "no")' 2>/dev/null || echo unknown)"
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
CHANGED="$(git status --porcelain 2>/dev/null | wc -l | tr -d ' ')"

: >"$REPORT"
note "# GPU check report" "" \
     "\`tools/gpu_check.sh $OUT_DIR\`, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $COMMIT ($CHANGED changed files in" \
     "the work tree). What the suite covers and how to read this report: docs/gpu.md." ""

# ------------------------------------------------------------------------------------------------ machine
note "## Machine" ""
"$PY" - >>"$REPORT" 2>&1 <<'EOF' || note "(the python facts failed: see above)"
import importlib
import platform
import socket
import sys

import torch

print(f"- host: {socket.gethostname()}, {platform.platform()}, {platform.processor() or platform.machine()}")
print(f"- python: {sys.executable} ({platform.python_version()})")
print(f"- torch: {torch.__version__}, built for CUDA {torch.version.cuda}, cuDNN "
      f"{torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else 'not available'}")
available = torch.cuda.is_available()
print(f"- CUDA available: {'yes' if available else 'no'}")
if available:
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        print(f"- device {index}: {props.name}, compute capability {props.major}.{props.minor}, "
              f"{props.total_memory / 2**30:.1f} GiB")
    print(f"- bfloat16 supported: {torch.cuda.is_bf16_supported()}; TF32 for cuDNN convolutions by default: "
          f"{torch.backends.cudnn.allow_tf32} (the suite turns it off where it compares float32 results)")
print(f"- torch.distributed: {torch.distributed.is_available()}, NCCL: "
      f"{torch.distributed.is_available() and torch.distributed.is_nccl_available()}")
versions = []
for name in ("torchvision", "detectron2", "mmengine", "mmcv", "mmseg", "mmdet", "resnest_backbones"):
    try:
        versions.append(f"{name} {getattr(importlib.import_module(name), '__version__', '?')}")
    except Exception as error:  # noqa: BLE001 - a missing or broken framework is a fact of the machine
        versions.append(f"{name} missing ({type(error).__name__})")
print("- packages: " + ", ".join(versions))
EOF
note "" "### nvidia-smi" ""
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi >"$OUT_DIR/nvidia-smi.txt" 2>&1 || true
    note '```' "$(cat "$OUT_DIR/nvidia-smi.txt")" '```'
else
    note "nvidia-smi: not found on PATH (no NVIDIA driver tools on this machine)."
fi
note ""

# ---------------------------------------------------------------------------------------------- GPU tests
GPU_CMD=("$PY" -m pytest -m gpu -p no:cacheprovider -q -rfEsxX --durations=15 --junitxml="$OUT_DIR/pytest_gpu.xml")
run_step "GPU tests (pytest -m gpu)" "$OUT_DIR/pytest_gpu.log" "${GPU_CMD[@]}"
note "## GPU tests" "" "\`python -m pytest -m gpu\` (every gpu-marked test of the suite; log: pytest_gpu.log)." ""
if [[ "$CUDA" == "yes" ]]; then
    note "GPU tests: ran on CUDA (see the machine's devices above)."
else
    note "GPU tests: skipped, no CUDA device (CUDA available: $CUDA): every gpu-marked test skips with the reason" \
         "\"no CUDA device\"; nothing ran on a GPU."
fi
note ""
pytest_summary "$OUT_DIR/pytest_gpu.log"
note ""

# ------------------------------------------------------------------------------------------ CPU counterparts
CPU_CMD=("$PY" -m pytest -m "not gpu and not slow" -p no:cacheprovider -q -rfEsxX tests/gpu
         --junitxml="$OUT_DIR/pytest_cpu.xml")
run_step "CPU counterparts (tests/gpu, not gpu)" "$OUT_DIR/pytest_cpu.log" "${CPU_CMD[@]}"
note "## CPU counterparts" "" \
     "\`python -m pytest -m \"not gpu and not slow\" tests/gpu\`: the CPU autocast checks and the suite's own" \
     "checks, which run on any machine (log: pytest_cpu.log). Expected failures (xfail) name known bugs." ""
pytest_summary "$OUT_DIR/pytest_cpu.log"
note ""

# ---------------------------------------------------------------------------------------------- benchmark
note "## Benchmark" ""
if [[ "${GPU_CHECK_SKIP_BENCHMARK:-0}" == "1" ]]; then
    note "benchmark: skipped (GPU_CHECK_SKIP_BENCHMARK=1)."
else
    if [[ "$CUDA" == "yes" ]]; then
        read -r -a EXTRA <<<"${GPU_CHECK_BENCHMARK_ARGS:-}"
        BENCH_CMD=("$PY" tools/gpu_benchmark.py --out "$OUT_DIR/benchmark" ${EXTRA[@]+"${EXTRA[@]}"})
        note "benchmark: CUDA, \`tools/gpu_benchmark.py ${GPU_CHECK_BENCHMARK_ARGS:-}\` (its GPU defaults unless" \
             "GPU_CHECK_BENCHMARK_ARGS says otherwise; tables in benchmark/)."
    else
        BENCH_CMD=("$PY" tools/gpu_benchmark.py --device cpu --suites core --amp none --modes inference
                   --repeats 1 --warmup 0 --out "$OUT_DIR/benchmark")
        note "benchmark: CPU fallback only, no CUDA device: tools/gpu_benchmark.py's core network, one inference" \
             "repetition in float32 at 2x64 pixels, to show that the tool runs; the GPU benchmark (AMP, both memory" \
             "formats, whole models) was skipped. These numbers say nothing about a GPU."
    fi
    run_step "benchmark (tools/gpu_benchmark.py)" "$OUT_DIR/benchmark.log" "${BENCH_CMD[@]}"
    note ""
    if [[ -f "$OUT_DIR/benchmark/summary.md" ]]; then
        sed 's/^#/###/' "$OUT_DIR/benchmark/summary.md" >>"$REPORT"
    else
        note "No benchmark summary was written; the end of benchmark.log:" '```' "$(tail -n 30 "$OUT_DIR/benchmark.log")" '```'
    fi
fi
note ""

# ------------------------------------------------------------------------------------------------ summary
note "## Summary" "" "| step | exit status | seconds | log |" "|---|---|---|---|"
for step in "${STEPS[@]}"; do
    IFS='|' read -r name status seconds log <<<"$step"
    note "| $name | $status | $seconds | $log |"
done
note ""
if [[ $FAILED -ne 0 ]]; then
    note "Result: some step failed (a non-zero exit status above): see its log."
else
    note "Result: every step succeeded."
fi
echo "[gpu_check] report: $REPORT" >&2
exit "$FAILED"
