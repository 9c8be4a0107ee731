#!/usr/bin/env python
"""Convert a ResNeSt checkpoint (official/timm, official detectron2 wrapper, or OpenMMLab) to this project's
keys (= the official/timm keys), or to detectron2's full-model checkpoint layout; or a released ResNeSt
segmentation model (PyTorch-Encoding's ``deeplab_resnest*_ade``, mmseg's ``deeplabv3_s101-d8_*``) to an mmseg
checkpoint of this project's configs (``--to mmseg``).

Examples:
    # official ImageNet weights -> a detectron2 checkpoint for MODEL.WEIGHTS (FPN models)
    python tools/convert_weights.py resnest50-528c19ca.pth resnest50d_d2.pth --to detectron2 --variant resnest50d
    # the pre-converted detectron2-wrapper or OpenMMLab files -> official keys
    python tools/convert_weights.py resnest50_d2-7497a55b.pth resnest50d.pth --variant resnest50d
    # the paper's ADE20K model (PyTorch-Encoding) -> {"state_dict", "meta"} for configs/mmseg/paper (docs/model_zoo.md)
    python tools/convert_weights.py deeplab_resnest101_ade-06ca799c.pth deeplab_resnest101_ade_mmseg.pth --to mmseg \
        --config configs/mmseg/paper/deeplabv3_resnest101e-d8_paper_4xb4-180e_ade20k-480x480.py

The input's hash is checked against the prefix in its file name when it has one (``name-<hex>.pth``): SHA-1 for
PyTorch-Encoding's files, SHA-256 for the others. With ``--variant`` (backbones) or ``--config`` (``--to mmseg``),
the converted weights are compared with the model first, so a wrong or partial file is reported, naming the keys,
before anything is written.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import resnest_backbones as rb  # noqa: E402
from resnest_backbones.models.file_hash import verify_hash  # noqa: E402


def _config_state_dict(config: str) -> dict:
    """The ``state_dict()`` of the model an mmseg config builds (no pretrained weights are read)."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    from resnest_backbones.config_files import load_openmmlab_config

    cfg = load_openmmlab_config(config)  # bases may name ours: resnest_backbones::NAME
    cfg.model.backbone.init_cfg = None
    init_default_scope(cfg.get("default_scope", "mmseg"))
    return MODELS.build(cfg.model).state_dict()


def convert_segmentor(src: str, dst: str, *, config: str | None = None, verify: bool = True) -> dict:
    """A released segmentation model -> ``{"state_dict", "meta"}`` for ``mmengine.runner.load_checkpoint``."""
    from resnest_backbones.mmseg.convert import check_state_dict, read_released_segmentor, save_mmseg_checkpoint

    checkpoint = read_released_segmentor(src, verify=verify)
    if config is not None:
        check_state_dict(checkpoint.state_dict, _config_state_dict(config))
        checkpoint.meta["config"] = Path(config).name
    save_mmseg_checkpoint(checkpoint, dst)
    return {"source_format": checkpoint.source_format, "tensors": len(checkpoint.state_dict), "not_backbone": 0,
            "hash": checkpoint.meta.get("source_hash")}


def convert(src: str, dst: str, *, to: str = "official", variant: str | None = None, verify: bool = True,
            prefix: str = "backbone.bottom_up.") -> dict:
    """Convert ``src`` to ``dst``; returns a summary dict (format, tensor count, hash prefix checked)."""
    checked = verify_hash(src) if verify else None
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
    return {"source_format": fmt, "tensors": len(state), "not_backbone": len(not_backbone),
            "hash": f"{checked[1]}:{checked[0]}" if checked else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="input checkpoint (.pth/.pt/.pkl)")
    parser.add_argument("dst", help="output file")
    parser.add_argument("--to", choices=["official", "detectron2", "mmseg"], default="official",
                        help="output layout (mmseg: a released segmentation model for configs/mmseg)")
    parser.add_argument("--config", help="with --to mmseg: check the result matches this config's model (strict)")
    parser.add_argument("--variant", help="check the weights load strictly into this variant (e.g. resnest50d)")
    parser.add_argument("--prefix", default="backbone.bottom_up.",
                        help="key prefix of the backbone in the detectron2 layout (backbone. for non-FPN models)")
    parser.add_argument("--no-verify", action="store_true", help="skip the hash check against the file name")
    args = parser.parse_args()
    start = time.time()
    print(f"[convert] reading {args.src} ...", flush=True)
    try:
        if args.to == "mmseg":
            info = convert_segmentor(args.src, args.dst, config=args.config, verify=not args.no_verify)
        else:
            if args.config:
                raise ValueError("--config goes with --to mmseg; check a backbone with --variant")
            info = convert(args.src, args.dst, to=args.to, variant=args.variant, verify=not args.no_verify,
                           prefix=args.prefix)
    except (rb.CheckpointError, ValueError) as error:
        sys.exit(f"[convert] error: {error}")
    sha = f"{info['hash']} verified" if info["hash"] else "no hash in the name"
    what = "tensors" if args.to == "mmseg" else "backbone tensors"
    print(f"[convert] {info['source_format']} checkpoint, {info['tensors']} {what} ({sha}); "
          f"left out {info['not_backbone']} non-backbone tensors; wrote {args.to} layout to {args.dst} "
          f"in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
