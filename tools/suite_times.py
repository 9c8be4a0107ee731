#!/usr/bin/env python
"""The test suite's time per folder, from the JUnit XML report `make test` writes (work_dirs/test-report.xml):
the table docs/testing.md quotes.

    python tools/suite_times.py [work_dirs/test-report.xml]
"""
from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from typing import Dict, List, Optional


def folder_of(case: ET.Element) -> str:
    """``tests/<folder>`` of a test case (``classname`` is the module path, dotted), or ``tests`` at the top."""
    parts = case.get("classname", "").split(".")
    modules = [p for p in parts if p.startswith("test_")]
    folders = parts[: parts.index(modules[0])] if modules else parts[:-1]
    return "/".join(["tests", *[p for p in folders if p != "tests"]])


def main(argv: Optional[List[str]] = None) -> None:
    path = (argv or sys.argv[1:] or ["work_dirs/test-report.xml"])[0]
    seconds: Dict[str, float] = defaultdict(float)
    counts: Dict[str, int] = defaultdict(int)
    for case in ET.parse(path).getroot().iter("testcase"):
        folder = folder_of(case)
        seconds[folder] += float(case.get("time", 0))
        counts[folder] += 1
    total = sum(seconds.values())
    print("| folder | tests | time (s) | share |\n|---|---:|---:|---:|")
    for folder in sorted(seconds, key=seconds.get, reverse=True):
        print(f"| `{folder}/` | {counts[folder]} | {seconds[folder]:.0f} | {100 * seconds[folder] / total:.0f} % |")
    print(f"| all | {sum(counts.values())} | {total:.0f} | 100 % |")


if __name__ == "__main__":
    main()
