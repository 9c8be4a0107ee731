"""The GPU suite itself (docs/gpu.md), checked where there is no GPU: ``pytest -m gpu`` collects its tests (and only
those of the CUDA modules), and tools/gpu_check.sh runs on the CPU, writing a report that says the GPU tests were
skipped for lack of CUDA (slow: it runs the CPU counterparts and the benchmark's CPU fallback)."""
from __future__ import annotations

import importlib
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
from support import REPO_ROOT

SCRIPT = REPO_ROOT / "tools" / "gpu_check.sh"
#: The modules whose every test needs CUDA (gpu-marked); the other modules of tests/gpu run on the CPU.
CUDA_MODULES = ("test_gpu_modules.py", "test_gpu_sync.py", "test_gpu_models.py")
#: Test functions the GPU suite must hold (module::function), as pytest lists them.
EXPECTED = {
    "test_gpu_modules.py::test_memory_saving_modules_match_reference_on_cuda",
    "test_gpu_modules.py::test_memory_saving_modules_keep_less_for_backward_on_cuda",
    "test_gpu_modules.py::test_memory_saving_modules_lower_the_training_peak_on_cuda",
    "test_gpu_modules.py::test_no_grad_and_eval_take_the_reference_path_on_cuda",
    "test_gpu_sync.py::test_torch_sync_bn_in_one_process_on_cuda",
    "test_gpu_sync.py::test_synchronising_sync_bn_kernel_on_cuda",
    "test_gpu_models.py::test_fused_core_model_on_cuda",
    "test_gpu_models.py::test_detectron2_faster_rcnn_trains_a_step_on_cuda",
    "test_gpu_models.py::test_detectron2_faster_rcnn_fused_inference_on_cuda",
    "test_gpu_models.py::test_mmseg_deeplabv3_trains_a_step_on_cuda",
    "test_gpu_models.py::test_mmseg_deeplabv3_fused_inference_on_cuda",
    "test_gpu_models.py::test_torchvision_faster_rcnn_trains_a_step_on_cuda",
    "test_gpu_models.py::test_torchvision_faster_rcnn_fused_inference_on_cuda",
}
#: Parameter sets: 2 networks x 4 precisions x 2 formats; torch SyncBN 4 x 2, ours 3; saved bytes 3, peak 3;
#: no_grad 1; fused core 2; each whole model 3 precisions + 1 fused.
EXPECTED_COUNT = 16 + 3 + 3 + 1 + 8 + 3 + 2 + 3 * 4


def _collected(marker: str) -> List[str]:
    """The test ids ``pytest -m <marker> --collect-only -q tests/gpu`` lists, relative to tests/gpu."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", marker, "--collect-only", "-q", "-p",
                           "no:cacheprovider", "tests/gpu"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ids = [line.strip() for line in proc.stdout.splitlines() if "::" in line]
    assert all(i.startswith("tests/gpu/") for i in ids), ids
    return [i[len("tests/gpu/"):] for i in ids]


def test_pytest_collects_the_gpu_suite() -> None:
    gpu = _collected("gpu")
    functions = {i.split("[")[0] for i in gpu}
    assert functions >= EXPECTED, sorted(EXPECTED - functions)
    assert len(gpu) >= EXPECTED_COUNT, len(gpu)
    assert all(i.split("::")[0] in CUDA_MODULES for i in gpu), "a CPU test is marked gpu"
    for module in CUDA_MODULES:  # every test of the CUDA modules is marked, through the module's pytestmark
        marks = importlib.import_module(module[:-3]).pytestmark
        assert any(mark.name == "gpu" for mark in (marks if isinstance(marks, list) else [marks])), module


def test_gpu_check_script_is_executable_bash() -> None:
    assert SCRIPT.stat().st_mode & stat.S_IXUSR, "tools/gpu_check.sh must be executable"
    text = SCRIPT.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True, timeout=60)  # syntax


@pytest.mark.slow
def test_gpu_check_script_on_cpu(tmp_path: Path) -> None:
    """tools/gpu_check.sh without CUDA (hidden even on a GPU machine): exit 0, a report with the machine's facts,
    the GPU tests skipped with the reason, the CPU counterparts' outcome and the benchmark's CPU fallback."""
    out = tmp_path / "report"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("OUT", None)
    proc = subprocess.run(["bash", str(SCRIPT), str(out)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    report = (out / "report.md").read_text()
    assert "CUDA available: no" in report
    assert "GPU tests: skipped, no CUDA device" in report
    skipped = re.search(r"SKIPPED \[(\d+)\] tests/conftest\.py:\d+: no CUDA device", report)
    assert skipped and int(skipped.group(1)) >= EXPECTED_COUNT, report
    assert re.search(r"\b\d+ skipped\b", report) and "passed" not in _section(report, "GPU tests")
    assert re.search(r"\b\d+ passed\b", _section(report, "CPU counterparts"))
    assert "benchmark: CPU fallback" in report and (out / "benchmark" / "summary.md").is_file()
    for log in ("pytest_gpu.log", "pytest_cpu.log", "benchmark.log", "pytest_gpu.xml", "pytest_cpu.xml"):
        assert (out / log).is_file(), log


def _section(report: str, title: str) -> str:
    """The text of the report's ``## <title>`` section."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", report, re.S | re.M)
    assert match, f"no section {title!r} in the report"
    return match.group(1)
