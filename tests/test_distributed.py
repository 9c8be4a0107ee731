"""Ending a distributed run's processes: ``close_process_group`` (barrier, destroy) and ``exit_process`` (flush,
then leave without the interpreter's teardown, which now and then aborted a finished gloo process)."""
from __future__ import annotations

import textwrap
from pathlib import Path

import torch.distributed as dist
from support.processes import run_python

from resnest_backbones.distributed import close_process_group


def test_close_process_group_without_a_group_does_nothing() -> None:
    assert not dist.is_initialized()
    assert close_process_group() is False


def test_a_distributed_process_ends_with_its_output_and_logs_flushed(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    script = textwrap.dedent(f"""
        import logging, sys
        import torch, torch.distributed as dist
        from resnest_backbones.distributed import close_process_group, exit_process

        dist.init_process_group("gloo", init_method="file://{tmp_path / 'init'}", rank=0, world_size=1)
        model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))  # keeps the group alive
        model(torch.ones(1, 2)).sum().backward()
        logger = logging.getLogger("run")
        logger.addHandler(logging.FileHandler({str(log)!r}))
        logger.warning("last log line")
        for stream in (sys.stdout, sys.stderr):
            stream.reconfigure(write_through=False)  # buffered, even under PYTHONUNBUFFERED: exit_process must flush
        sys.stdout.write("last output, no newline")
        sys.stderr.write("last error output")
        assert close_process_group() and not dist.is_initialized()
        exit_process(0)
        print("not reached")
        """)
    proc = run_python(["-c", script])
    assert proc.stdout == "last output, no newline"
    assert proc.stderr.endswith("last error output")
    assert log.read_text() == "last log line\n"
