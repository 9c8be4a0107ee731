"""Benchmark reports as a terminal table, a markdown table and a plot (``tools/benchmark.py``,
``tools/gpu_benchmark.py``); :func:`write_report` writes the JSON, markdown and PNG files of one report."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Tuple

from .models import FORMATS
from .results import ratio_key

__all__ = ["format_table", "fused_vs_unfused", "markdown_table", "plot", "profile_tables", "write_report"]


def _reference(report: Dict[str, Any]) -> str:
    """The ratio's reference implementation (timm in reports written before whole models existed)."""
    return report["meta"].get("reference", "timm")


def _references(report: Dict[str, Any]) -> List[str]:
    """The implementations the table has ratio columns for: the reference, then the ResNet (the cost reference,
    in reports that have one) when it is another."""
    refs = [_reference(report), report["meta"].get("resnet")]
    return [ref for i, ref in enumerate(refs) if ref and ref not in refs[:i]
            and (i == 0 or any(ratio_key(ref) in r for r in report["results"]))]


#: The table's columns, with their terminal widths (the first four left-aligned, the others right-aligned), then
#: one ratio column (width 9) per reference.
_COLUMNS = [("mode", 17), ("input", 14), ("format", 13), ("impl", 15), ("median", 9), ("min-max", 17),
            ("img/s or peak", 13)]


def _cells(r: Dict[str, Any], refs: List[str], empty: str) -> List[str]:
    """One result's cells (``empty`` where a measurement has no such value)."""
    ratios = [f"{r[ratio_key(ref)]:.3f}" if ratio_key(ref) in r else empty for ref in refs]
    if "peak_mib" in r:
        measured = [empty, empty, f"{r['peak_mib']:.0f} MiB"]
    else:
        measured = [f"{r['median_s']:.3f} s", f"{r['min_s']:.3f}-{r['max_s']:.3f} s", f"{r['images_per_s']:.2f}"]
    return [r["mode"], r["case"], r["format"], r["impl"], *measured, *ratios]


def _interval(row: Dict[str, Any], key: str) -> str:
    """`` (paired M [low-high])``: the median of the per-repetition ratios and its 95 % interval, where the row has
    them."""
    paired = row.get(key + "_paired")
    return f" (paired {paired['median']:.3f} [{paired['low']:.3f}-{paired['high']:.3f}])" if paired else ""


def _best_lines(rows: List[Dict[str, Any]], ref: str) -> List[str]:
    """The best-format comparisons against ``ref``, one line each (with the FLOP parity where there is one)."""
    key, lines = ratio_key(ref), []
    for r in rows:
        unit = "MiB" if r["mode"].startswith("memory") else "img/s"
        ref_value, ref_format = r.get("ref_value", r.get("timm_value")), r.get("ref_format", r.get("timm_format"))
        parity = r.get(f"flop_parity_vs_{ref}")
        parity = f"; FLOP parity {parity:.3f}x: {r[key] / parity:.3f} of it" if parity else ""
        lines.append(f"  {r['mode']:<17} {r['case']:<14} {r['impl']:<15} {r['value']:8.2f} {unit} ({r['format']}) "
                     f"vs {ref} {ref_value:8.2f} ({ref_format}): {r[key]:.3f}x{_interval(r, key)}{parity}")
    return lines


def _resnet_lines(report: Dict[str, Any], refs: List[str]) -> List[str]:
    """The timed best-format comparisons against the ResNet when it is not the reference (a blank line first)."""
    if len(refs) < 2:
        return []
    resnet = refs[1]
    return ["", f"best memory format of each vs {resnet}, the ResNet (FLOP parity: {resnet}'s multiply-adds per "
                f"image / the entry's, the ratio at which both do as much work per second)",
            *_best_lines([r for r in report["best_format_vs_resnet"] if not r["mode"].startswith("memory")], resnet)]


def format_table(report: Dict[str, Any]) -> str:
    """The terminal table: every entry, then each implementation's best format against the reference's and the
    ResNet's ([low-high]: the paired ratio's 95 % interval)."""
    refs = _references(report)
    columns = [*_COLUMNS, *(("/" + ref, 9) for ref in refs)]
    lines = [" ".join(cell.ljust(width) if i < 4 else cell.rjust(width)
                      for i, (cell, (_, width)) in enumerate(zip(cells, columns)))
             for cells in [[name for name, _ in columns], *(_cells(r, refs, "") for r in report["results"])]]
    lines.append("")
    lines += _case_notes(report)
    lines.append(f"best memory format of each vs {refs[0]} in its best one (throughput: higher is better; memory: "
                 f"lower; paired: the median of the per-repetition ratios [its 95 % interval])")
    lines += _best_lines(report["best_format"], refs[0])
    lines += _resnet_lines(report, refs)
    fused = fused_vs_unfused(report)
    if fused:
        lines += ["", "fused vs unfused, each in its best memory format (throughput ratio: higher is better)"]
        lines += [f"  {line}" for line in fused]
    for table in profile_tables(report):
        lines += ["", *table]
    return "\n".join(lines)


def fused_vs_unfused(report: Dict[str, Any]) -> List[str]:
    """``X+fused`` against ``X`` (each in its best memory format) for every timed mode and case that has both."""
    best: Dict[Any, Dict[str, Any]] = {}
    for r in report["results"]:
        if "images_per_s" in r:
            slot = (r["mode"], r["case"], r["impl"])
            if slot not in best or r["images_per_s"] > best[slot]["images_per_s"]:
                best[slot] = r
    lines = []
    for (mode, case, impl), r in best.items():
        base = best.get((mode, case, impl.replace("+fused", ""))) if impl.endswith("+fused") else None
        if base is not None:
            lines.append(f"{mode:<17} {case:<14} {impl} {r['images_per_s']:.2f} img/s ({r['format']}) vs "
                         f"{base['impl']} {base['images_per_s']:.2f} ({base['format']}): "
                         f"{r['images_per_s'] / base['images_per_s']:.3f}x")
    return lines


#: How many operators a profile table names (the largest in any of its entries); the other ATen operators are summed.
PROFILE_ROWS = 12


def profile_tables(report: Dict[str, Any]) -> List[List[str]]:
    """One markdown table per (mode, case, format) with profiled entries (``--profile``): milliseconds per
    repetition by operator, a column per entry."""
    groups: Dict[Tuple[str, str, str], List[Dict[str, Any]]] = {}
    for r in report["results"]:
        if "profile_ms" in r:
            groups.setdefault((r["mode"], r["case"], r["format"]), []).append(r)
    tables = []
    for (mode, case, fmt), entries in groups.items():
        profiles = [r["profile_ms"] for r in entries]
        ops = {op for p in profiles for op in p if op.startswith("aten::")}
        named = sorted(ops, key=lambda op: -max(p.get(op, 0.0) for p in profiles))[:PROFILE_ROWS]
        rest = ops - set(named)
        rows = [(op, [p.get(op, 0.0) for p in profiles]) for op in named]
        rows.append(("other ATen operators", [sum(v for op, v in p.items() if op in rest) for p in profiles]))
        rows += [(key, [p[key] for p in profiles]) for key in ("outside ATen", "total")]
        header = ["operator", *(r["impl"] for r in entries)]
        tables.append([f"{mode} {case} {fmt}: milliseconds per repetition by operator (self CPU time under "
                       f"torch.profiler, which slows each operator a little):", "",
                       *_pipe_rows([header, ["---"] * len(header),
                                    *([name, *(f"{v:.1f}" for v in values)] for name, values in rows)])])
    return tables


def _pipe_rows(rows: List[List[str]]) -> List[str]:
    """A markdown table's lines, one per row of cells."""
    return ["| " + " | ".join(row) + " |" for row in rows]


def markdown_table(report: Dict[str, Any]) -> str:
    """Every entry as a markdown table (written next to the JSON; the README quotes it)."""
    refs = _references(report)
    header = [*(name for name, _ in _COLUMNS), *("/" + ref for ref in refs)]
    rows = [header, ["---"] * len(header), *(_cells(r, refs, "–") for r in report["results"])]
    table = "\n".join(_pipe_rows(rows))
    sections = [_case_notes(report, bullet="* ")[:-1],
                _bulleted(f"best memory format of each vs {refs[0]} in its best one (paired: the median of the "
                          f"per-repetition ratios [its 95 % interval]):", _best_lines(report["best_format"], refs[0]))]
    resnet = _resnet_lines(report, refs)
    if resnet:
        sections.append(_bulleted(resnet[1] + ":", resnet[2:]))
    fused = fused_vs_unfused(report)
    if fused:
        sections.append(_bulleted("fused vs unfused (best memory formats):", fused))
    sections += profile_tables(report)
    notes = "\n\n".join("\n".join(section) for section in sections if section)
    return table + ("\n\n" + notes if notes else "")


def _bulleted(heading: str, lines: List[str]) -> List[str]:
    """A markdown note: ``heading``, then one bullet per terminal line (its column padding collapsed)."""
    return [heading, *(f"* {' '.join(line.split())}" for line in lines)]


def _case_notes(report: Dict[str, Any], bullet: str = "  ") -> List[str]:
    """How a whole model's cases run inference (whole-image or slide windows), then a blank line; none for the
    core network (and reports written before the notes existed)."""
    notes = report["meta"].get("case_notes") or []
    return ["input cases:", *(bullet + note for note in notes), ""] if notes else []


def plot(report: Dict[str, Any], path: Path) -> None:
    """One row per input case, one panel per mode; bars per memory format and implementation, min-max
    whiskers, and the ratio to the reference (timm; a whole model's own reference) above each bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    ref = _reference(report)
    key = ratio_key(ref)
    cases = list(dict.fromkeys(r["case"] for r in results))
    modes = [m for m in ("inference", "train", "memory-train", "memory-inference")
             if any(r["mode"] == m for r in results)]
    fig, axes = plt.subplots(len(cases), len(modes), figsize=(4.6 * len(modes), 3.8 * len(cases)), squeeze=False)
    impls = report["meta"]["impls"]
    colors = {impl: plt.cm.tab10(i) for i, impl in enumerate(impls)}
    for row, case in enumerate(cases):
        for col, mode in enumerate(modes):
            ax = axes[row][col]
            entries = [r for r in results if r["mode"] == mode and r["case"] == case]
            formats = [f for f in FORMATS if any(r["format"] == f for r in entries)]
            present = [i for i in impls if any(r["impl"] == i for r in entries)]
            width = 0.8 / max(len(present), 1)
            for j, impl in enumerate(present):
                for k, fmt in enumerate(formats):
                    r = next((r for r in entries if r["impl"] == impl and r["format"] == fmt), None)
                    if r is None:
                        continue
                    xpos = k + (j - (len(present) - 1) / 2) * width
                    if "peak_mib" in r:
                        value, err = r["peak_mib"], None
                    else:
                        value = r["images_per_s"]
                        err = [[value - r["images_per_s_min"]], [r["images_per_s_max"] - value]]
                    ax.bar(xpos, value, width, yerr=err, capsize=2, color=colors[impl],
                           label=impl if k == 0 else None)
                    if key in r:
                        top = value if err is None else value + err[1][0]
                        ax.text(xpos, top, f"{r[key]:.2f}x", ha="center", va="bottom", fontsize=7,
                                rotation=90)
            ax.set_xticks(range(len(formats)), [f.replace("_", " ") for f in formats])
            ax.set_title(f"{mode}, {case}", fontsize=10)
            ax.set_ylabel("peak MiB (lower is better)" if mode.startswith("memory") else "images/s (higher is better)")
            ax.margins(y=0.2)
            if col == 0:
                ax.legend(fontsize=7, loc="lower left")
    meta = report["meta"]
    title = (f"{meta['variant']} on {meta['device_name']} ({meta['threads']} threads): median of "
             f"{meta['repeats']} interleaved runs, whiskers min-max, labels = ratio to {ref} (same format)")
    # about 12 characters of a 10-point title per inch of figure: wrapped, a one-panel figure shows it whole
    fig.suptitle(textwrap.fill(title, width=int(12 * fig.get_figwidth())), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(report: Dict[str, Any], out: Path, *, with_plot: bool = True) -> List[Path]:
    """Write ``out.json`` (the report), ``out.md`` (:func:`markdown_table`) and, ``with_plot``, ``out.png``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    written = [out.with_suffix(".json"), out.with_suffix(".md")]
    written[0].write_text(json.dumps(report, indent=1))
    written[1].write_text(markdown_table(report) + "\n")
    if with_plot:
        written.append(out.with_suffix(".png"))
        plot(report, written[-1])
    return written
