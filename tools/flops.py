#!/usr/bin/env python
"""FLOPs and parameter counts of every ResNeSt variant (Zhang et al., 2020, arXiv 2004.08955), via fvcore.

Prints a markdown table: our parameter count next to the published one (``Variant.published_params_m``), and
fvcore's multiply-accumulate count (fvcore counts one "flop" per multiply-add, the convention of the paper's
"GFLOPs" and of timm's "GMACs") at 224x224 and at the resolution each published model was evaluated at
(``Variant.eval_size``).

    python tools/flops.py                       # every variant, markdown table on stdout
    python tools/flops.py --variants resnest50d --out docs_drafts/flops.md
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import resnest_backbones as rb  # noqa: E402


def count(name: str, size: int) -> Tuple[float, float, List[str]]:
    """``(params in M, GMACs at size x size, ops fvcore could not count)`` of ``name`` with its 1000-way head."""
    from fvcore.nn import FlopCountAnalysis

    model = rb.create_model(name, num_classes=1000).eval()
    params = rb.models.count_parameters(model) / 1e6
    with torch.no_grad():
        analysis = FlopCountAnalysis(model, torch.zeros(1, 3, size, size))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        macs = analysis.total() / 1e9
        skipped = sorted(analysis.unsupported_ops())
    return params, macs, skipped


def _published(value: Optional[float]) -> str:
    """A published figure with two decimals, or a dash where none was published."""
    return "–" if value is None else f"{value:.2f}"


def report(names: Sequence[str], progress: bool = True) -> str:
    rows = ["| variant | params (M) | paper params (M) | GMACs @224 | paper GFLOPs | eval size | GMACs @eval size |",
            "|---|---|---|---|---|---|---|"]
    skipped_all: set = set()
    for name in names:
        variant = rb.models.VARIANTS[name]
        paper_params, paper_flops, eval_size = variant.published_params_m(), variant.gflops, variant.eval_size
        if progress:
            print(f"counting {name} ...", file=sys.stderr, flush=True)
        params, macs, skipped = count(name, 224)
        skipped_all.update(skipped)
        eval_macs = macs if eval_size == 224 else count(name, eval_size)[1]
        rows.append(f"| {name} | {params:.2f} | {_published(paper_params)} | {macs:.2f} | "
                    f"{_published(paper_flops)} | {eval_size} | {eval_macs:.2f} |")
    rows.append("")
    rows.append("GMACs: fvcore's count (one multiply-add = one flop), batch 1, with the 1000-class head. "
                "Not counted (elementwise, negligible): " + (", ".join(sorted(skipped_all)) or "nothing") + ".")
    return "\n".join(rows)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=rb.list_variants(), help="default: all variants")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args(argv)
    unknown = [n for n in args.variants if n not in rb.list_variants()]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {', '.join(rb.list_variants())}")
    try:
        import fvcore  # noqa: F401
    except ImportError:
        raise SystemExit("fvcore is not installed: pip install fvcore (or pip install -e .[tools])") from None
    table = report(args.variants)
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
