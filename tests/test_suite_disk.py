"""The suite's disk rule: a run that would fill the disk stops before its first test, saying how much room it
needs, where, and what to do (a full disk once ended a CI run in hundreds of unrelated errors)."""
from __future__ import annotations

import re
import shutil
from types import SimpleNamespace

import pytest
from support import disk


def _disk_with(free_gib: float):
    return lambda path: SimpleNamespace(free=int(free_gib * 2**30))


def test_a_run_without_room_stops_at_once_saying_what_to_do(monkeypatch, pytestconfig: pytest.Config) -> None:
    free = disk.FREE_GIB_NEEDED - 0.5
    monkeypatch.setattr(shutil, "disk_usage", _disk_with(free))
    shown = re.escape(f"{free:.1f}")
    with pytest.raises(pytest.UsageError, match=rf"needs about {disk.FREE_GIB_NEEDED} GiB of free disk, and "
                                                rf".* has {shown} GiB: free some space .* point TMPDIR"):
        disk.check_free_disk(pytestconfig)


def test_a_run_with_room_goes_on(monkeypatch, pytestconfig: pytest.Config) -> None:
    monkeypatch.setattr(shutil, "disk_usage", _disk_with(disk.FREE_GIB_NEEDED + 0.5))
    disk.check_free_disk(pytestconfig)
