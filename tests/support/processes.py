"""Running the project's tools (tools/*.py) in a subprocess, as a user runs them: from the repository root,
with this interpreter, unbuffered output; and killing one mid-run."""
from __future__ import annotations

import importlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List, Mapping, Optional, Tuple

from . import REPO_ROOT


def run_python(args: List[str], *, env: Optional[Mapping[str, str]] = None, timeout: float = 600,
               check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python *args`` from the repository root and return the finished process (text output captured).

    ``env`` adds to (overrides) this process's environment. With ``check`` a failure fails the test with the
    end of the output; tests of error exits pass ``check=False`` and assert on the code and stderr themselves.
    """
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=REPO_ROOT,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                          capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"exit {proc.returncode}:\n" + (proc.stdout + proc.stderr)[-5000:]
    return proc


def run_tool(args: List[str], *, env: Optional[Mapping[str, str]] = None, timeout: float = 600) -> str:
    """``run_python`` that must succeed; returns stdout and stderr together (tools log to either)."""
    proc = run_python(args, env=env, timeout=timeout)
    return proc.stdout + proc.stderr


TORCHRUN_2 = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def train_on_two_processes(tool: str, config: str, args: List[str], scope: str) -> Tuple[str, object]:
    """Train ``config`` with the OpenMMLab ``tool`` (e.g. tools/mmseg_train.py) under torchrun on 2 CPU processes
    (gloo) and check that every SyncBN layer of the model, backbone and heads, ran as the project's CPU
    SyncBatchNorm: the count the tool prints equals the model's, and none fell back to plain BatchNorm.
    Returns the output and the model, built from the config in ``scope``'s registry (``mmseg``, ``mmdet``)."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    output = run_tool([*TORCHRUN_2, tool, config, "--launcher", "pytorch", *args], timeout=900)
    layers = re.search(r"2 CPU processes: (\d+) SyncBN layers run as resnest_backbones.layers.SyncBatchNorm", output)
    assert layers, output[-3000:]
    importlib.import_module(f"{scope}.models")  # registers the model classes
    init_default_scope(scope)
    model = importlib.import_module(f"{scope}.registry").MODELS.build(Config.fromfile(str(REPO_ROOT / config)).model)
    assert int(layers.group(1)) == sum(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    assert "plain BatchNorm" not in output
    return output, model


def evaluates_to(test_tool: str, config: str, checkpoint: Path, options: List[str], metric: Callable[[str], float],
                 expected: float, work_dir: Path) -> None:
    """Evaluating ``checkpoint`` on its own (one process) with ``test_tool`` and ``--cfg-options *options`` gives
    the metric a training run reported, ``expected``; ``--no-fuse``, the computation the training's evaluation ran
    (fused scores differ by rounding, which can reorder tied detections and move AP)."""
    output = run_tool([test_tool, config, str(checkpoint), "--no-fuse", "--work-dir", str(work_dir),
                       "--cfg-options", *options], timeout=300)
    assert abs(metric(output) - expected) < 1e-6, (metric(output), expected)


def reaches_target(args: List[str], metric: Callable[[str], float], target: float, label: str,
                   limit: float = 900) -> None:
    """Run the tool ``args`` (a training on toy data) and assert that ``metric(output)`` reaches ``target`` within
    ``limit`` seconds; prints the measured value and time (the figure ``tools/toy_margins.py`` spreads over seeds)."""
    start = time.perf_counter()
    output = run_tool(args, timeout=limit)
    elapsed = time.perf_counter() - start
    value = metric(output)
    print(f"{label} {value:.2f} after {elapsed:.0f} s")
    assert value >= target and elapsed <= limit, f"{label} {value:.2f} (target {target}) after {elapsed:.0f} s"


def kill_when(command: List[str], ready: Callable[[], bool], *, cwd: Path, env: Mapping[str, str], log: Path,
              timeout: float) -> str:
    """Run ``command`` (output to ``log``) and SIGKILL it, with all its children, as soon as ``ready()`` holds.

    Fails if the command ends by itself first (the kill would then test nothing) or ``ready`` never holds
    within ``timeout`` seconds. Returns the output written before the kill.
    """
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own process group: the kill reaches data workers
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, f"ended by itself (exit {proc.returncode}) before the kill:\n" + \
                log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the kill condition never held:\n" + log.read_text()[-3000:]
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"exit {proc.returncode}, not killed:\n" + log.read_text()[-3000:]
    return log.read_text()


#: The import server's program: import what every module of the package imports first (torch and torchvision,
#: through the package's ``__init__``), then for each module name read from stdin fork a child that imports it, its
#: output going to a pipe; answer one JSON line per name: the child's exit status and output.
_IMPORT_SERVER = r"""
import json, os, signal, sys, traceback
import torch, torchvision
for line in sys.stdin:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.dup2(write, 1)
        os.dup2(write, 2)
        signal.alarm(int(sys.argv[1]))
        try:
            __import__(line.strip())
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(1)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    os.close(write)
    with os.fdopen(read, errors="replace") as pipe:
        output = pipe.read()
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"status": status, "output": output}), flush=True)
"""


class ImportServer:
    """Imports modules of the package each in a process of its own, as ``python -c "import NAME"`` from the
    repository root would, but forked from one process that has imported only torch and torchvision (what the
    package imports before any of its own modules): no module of the package is loaded before the child imports
    its module, and the 3-4 s of importing torch are paid once. A child that runs longer than ``timeout`` seconds is
    killed (SIGALRM)."""

    def __init__(self, timeout: int = 300) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _IMPORT_SERVER, str(timeout)], cwd=REPO_ROOT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def import_alone(self, name: str) -> Tuple[int, str]:
        """``(exit status, output)`` of a fresh child importing ``name``; status 0: it imported."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(name + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        assert answer, f"the import server died (exit {self.proc.wait()})"
        reply = json.loads(answer)
        return reply["status"], reply["output"]

    def close(self) -> None:
        self.proc.communicate(timeout=60)
