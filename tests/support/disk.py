"""The suite's disk rule (checked by ``tests/conftest.py`` before the first test): a run that would fill the disk
stops at once, saying how much room it needs, where, and what to do."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

#: Free disk the suite needs where its temporary files and work_dirs/ go. `make test`'s peak on 2026-12-07 was
#: 2.3 GiB (published-layout checkpoints of up to 1 GB, toy trainings), with torch.compile's cache already in
#: /tmp; a cold cache adds 1.4 GiB. On a full disk the run used to end in hundreds of unrelated errors (stop 40).
FREE_GIB_NEEDED = 4


def check_free_disk(config: pytest.Config) -> None:
    """Raise ``pytest.UsageError`` where the temporary directory (``--basetemp``'s parent, else ``TMPDIR``'s) or
    the checkout has less than :data:`FREE_GIB_NEEDED` free."""
    basetemp = config.option.basetemp
    for where in {Path(basetemp).resolve().parent if basetemp else Path(tempfile.gettempdir()), config.rootpath}:
        free = shutil.disk_usage(where).free / 2**30
        if free < FREE_GIB_NEEDED:
            raise pytest.UsageError(
                f"the test suite needs about {FREE_GIB_NEEDED} GiB of free disk, and {where} has {free:.1f} GiB: "
                "free some space (old /tmp/pytest-of-* directories are safe to delete), or point TMPDIR (or "
                "--basetemp) at a disk with room")
