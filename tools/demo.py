#!/usr/bin/env python
"""The main job on built-in toy data (README's first command, run through `make demo`).

Runs every section whose framework is installed: the core network, then a toy detector or segmentor trained
and evaluated by each framework's tool on the toy data (generated deterministically under data/ on first use), in
the order of the framework table (resnest_backbones.frameworks): detectron2 Faster R-CNN, mmseg DeepLabV3, mmdet
Faster R-CNN, torchvision Faster R-CNN, all with a ResNeSt-14 backbone trained from scratch. Each trained model
then draws its predictions on toy validation images (resnest_backbones.predict, as tools/predict.py does) into
work_dirs/demo_pictures/.

The terminal gets two lines per section and a closing table (section, model, metric, value, the target the test
suite holds the same training to, time, picture); everything the frameworks print goes to
work_dirs/demo_logs/<section>.log. A failed section prints its log's path and last lines, and the demo goes on
with the others (exit code 1 at the end).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from resnest_backbones import list_variants  # noqa: E402
from resnest_backbones.frameworks import FRAMEWORKS, usable  # noqa: E402

LOGS = ROOT / "work_dirs" / "demo_logs"


def core_section() -> str:
    """Every variant builds; ResNeSt-50 features at output stride 8/16/32; a checkpoint round trip. Prints the
    details (to the log), returns the table's value."""
    import torch

    import resnest_backbones as rb

    torch.manual_seed(0)
    for name in rb.list_variants():
        rb.create_model(name, out_features=["res2"])  # builds the stem and res2 only: fast
    model = rb.create_model("resnest50d", num_classes=1000).eval()
    print(f"{len(rb.list_variants())} variants build; resnest50d: {rb.models.count_parameters(model) / 1e6:.2f} M "
          f"parameters")
    x = torch.randn(1, 3, 224, 224)
    for output_stride in (32, 16, 8):
        backbone = rb.create_model("resnest50d", output_stride=output_stride).eval()
        with torch.no_grad():
            shapes = {k: tuple(v.shape[1:]) for k, v in backbone.forward_features(x).items()}
        print(f"OS{output_stride}: {shapes}")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "resnest50d.pth")
        torch.save(model.state_dict(), path)
        copy = rb.create_model("resnest50d", pretrained=path, num_classes=1000).eval()
        with torch.no_grad():
            same = torch.equal(copy(x), model(x))
    if not same:
        raise RuntimeError("checkpoint round trip changed the logits")
    return f"{len(rb.list_variants())} variants build, OS 8/16/32, checkpoint round trip identical"


# ------------------------------------------------------------------------------------------------- sections
@dataclass
class Section:
    key: str  # the framework's name: --only name, log file name
    model: str
    framework: Optional[str]  # module that must import (the framework's probe), or None
    command: List[str]  # the training (and evaluation) the tool runs
    picture: Callable[[Path], Path]  # draws the trained model on toy val images: checkout root -> the file


def sections() -> List[Section]:
    """A section for each framework of the table with a toy training (resnest_backbones.toy_training), in the
    table's order: the model, command and picture its subpackage's ``toy_target`` module names."""
    found = []
    for name, row in FRAMEWORKS.items():
        toy = row.toy_training()
        if toy is not None:
            found.append(Section(name, toy.model, row.probe, list(toy.demo), toy.picture))
    return found


SECTIONS = sections()


@contextlib.contextmanager
def _output_to(log: Path) -> Iterator[None]:
    """Everything this process writes to stdout/stderr (Python and C level) appended to ``log`` meanwhile."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log, "a") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _tail(log: Path, lines: int = 15) -> str:
    return "\n".join("    " + line for line in log.read_text(errors="replace").splitlines()[-lines:])


def run(section: Section, log: Path) -> List[str]:
    """Train with the section's tool (output to ``log``), read its metric, draw the picture; the table row."""
    with open(log, "w") as sink:
        code = subprocess.call(section.command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
    if code != 0:
        raise RuntimeError(f"{' '.join(section.command[1:3])} exited with code {code}")
    toy = FRAMEWORKS[section.key].toy_training()  # the target the test suite holds the same training to
    value = toy.parse(log.read_text(errors="replace"))
    with _output_to(log):
        picture = section.picture(ROOT)
    metric = toy.metric.split(",")[0]
    return [section.key, section.model, metric, f"{value:.1f}", f">= {toy.threshold:g}",
            str(picture.relative_to(ROOT))]


def _table(rows: List[List[str]]) -> str:
    header = ["section", "model", "metric", "value", "target", "time", "picture"]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in [header, ["-" * w for w in widths], *rows]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["core", *(section.key for section in SECTIONS)], help="run one section")
    args = parser.parse_args()
    LOGS.mkdir(parents=True, exist_ok=True)
    chosen = [s for s in SECTIONS if args.only in (None, s.key)]
    total = len(chosen) + (args.only in (None, "core"))
    rows: List[List[str]] = []
    failures: List[str] = []
    start = time.time()
    number = 0
    if args.only in (None, "core"):
        number += 1
        log = LOGS / "core.log"
        log.write_text("")
        print(f"[demo] {number}/{total} core: variants, output strides, checkpoint round trip ...", flush=True)
        t0 = time.time()
        try:
            with _output_to(log):
                value = core_section()
            rows.append(["core", f"ResNeSt ({len(list_variants())} variants)", "build + features + reload", "ok",
                         "identical", f"{time.time() - t0:.0f} s", "-"])
        except Exception as error:  # noqa: BLE001 - report it, go on with the others
            failures.append("core")
            print(f"[demo]     core FAILED: {error}; log {log.relative_to(ROOT)}:\n{_tail(log)}", flush=True)
        else:
            print(f"[demo]     {value}", flush=True)
    for section in chosen:
        number += 1
        log = LOGS / f"{section.key}.log"
        if section.framework and not usable(section.key):  # a broken install is as good as none
            print(f"[demo] {number}/{total} {section.key}: skipped ({section.framework} does not import)", flush=True)
            rows.append([section.key, section.model, "skipped: not installed", "-", "-", "-", "-"])
            continue
        print(f"[demo] {number}/{total} {section.key}: training {section.model} (log: {log.relative_to(ROOT)}) ...",
              flush=True)
        t0 = time.time()
        try:
            row = run(section, log)
        except Exception as error:  # noqa: BLE001 - report it with the section, go on with the others
            failures.append(section.key)
            print(f"[demo]     {section.key} FAILED: {error}; last lines of {log.relative_to(ROOT)}:\n{_tail(log)}",
                  flush=True)
            rows.append([section.key, section.model, "FAILED", "-", "-", f"{time.time() - t0:.0f} s",
                         str(log.relative_to(ROOT))])
            continue
        row.insert(5, f"{time.time() - t0:.0f} s")
        rows.append(row)
        print(f"[demo]     {row[2]} {row[3]} (target {row[4]}) in {row[5]}; picture {row[6]}", flush=True)
    print(f"\n{_table(rows)}\n\n[demo] finished in {time.time() - start:.0f} s"
          + (f"; FAILED: {', '.join(failures)}" if failures else "; logs in work_dirs/demo_logs/"), flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
