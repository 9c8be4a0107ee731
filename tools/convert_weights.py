#!/usr/bin/env python
"""Convert a ResNeSt checkpoint (official/timm, official detectron2 wrapper, or OpenMMLab) to this project's
keys (= the official/timm keys), or to detectron2's full-model checkpoint layout.

Examples:
    # official ImageNet weights -> a detectron2 checkpoint for MODEL.WEIGHTS (FPN models)
    python tools/convert_weights.py resnest50-528c19ca.pth resnest50d_d2.pth --to detectron2 --variant resnest50d
    # the pre-converted detectron2-wrapper or OpenMMLab files -> official keys
    python tools/convert_weights.py resnest50_d2-7497a55b.pth resnest50d.pth --variant resnest50d

The input's sha256 is checked against the hash prefix in its file name when it has one (``name-<hex>.pth``).
With ``--variant``, the converted weights are loaded strictly into that variant first, so a wrong or partial
file is reported before anything is written.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import resnest_backbones as rb  # noqa: E402
from resnest_backbones.models.checkpoint import verify_sha256  # noqa: E402


def convert(src: str, dst: str, *, to: str = "official", variant: str | None = None, verify: bool = True,
            prefix: str = "backbone.bottom_up.") -> dict:
    """Convert ``src`` to ``dst``; returns a summary dict (format, tensor count, hash prefix checked)."""
    checked = verify_sha256(src) if verify else None
    state, fmt, not_backbone = rb.convert_state_dict(rb.read_checkpoint(src))
    if variant is not None:
        model = rb.create_model(variant, num_classes=1000 if "fc.weight" in state else 0)
        print(rb.load_checkpoint(model, state, strict=True).summary())
    if to == "detectron2":
        # detectron2 builds no classification head; its checkpointer matches names exactly under the prefix.
        payload: object = {"model": {prefix + k: v for k, v in state.items() if not k.startswith("fc.")},
                           "__author__": "resnest_backbones", "matching_heuristics": False}
    else:
        payload = state
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, dst)
    return {"source_format": fmt, "tensors": len(state), "not_backbone": len(not_backbone), "sha256_prefix": checked}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="input checkpoint (.pth/.pt/.pkl)")
    parser.add_argument("dst", help="output file")
    parser.add_argument("--to", choices=["official", "detectron2"], default="official", help="output layout")
    parser.add_argument("--variant", help="check the weights load strictly into this variant (e.g. resnest50d)")
    parser.add_argument("--prefix", default="backbone.bottom_up.",
                        help="key prefix of the backbone in the detectron2 layout (backbone. for non-FPN models)")
    parser.add_argument("--no-verify", action="store_true", help="skip the sha256 check against the file name")
    args = parser.parse_args()
    start = time.time()
    print(f"[convert] reading {args.src} ...", flush=True)
    try:
        info = convert(args.src, args.dst, to=args.to, variant=args.variant, verify=not args.no_verify,
                       prefix=args.prefix)
    except (rb.CheckpointError, ValueError) as error:
        sys.exit(f"[convert] error: {error}")
    sha = f"sha256 prefix {info['sha256_prefix']} verified" if info["sha256_prefix"] else "no hash in the name"
    print(f"[convert] {info['source_format']} checkpoint, {info['tensors']} backbone tensors ({sha}); "
          f"left out {info['not_backbone']} non-backbone tensors; wrote {args.to} layout to {args.dst} "
          f"in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
