#!/usr/bin/env python
"""Make the built-in toy data sets of resnest_backbones (ResNeSt, Zhang et al., 2020) from the command line.

Subcommands (one per data set; each is deterministic and reused when it already exists with the same
parameters):

    coco   COCO "instances" detection / instance segmentation of coloured shapes (numpy + Pillow only)

Example:
    python tools/make_toy_data.py coco --root data/toy_coco --num-train 128 --num-val 32 --image-size 128
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from resnest_backbones.toy_data import make_toy_coco  # noqa: E402


def _coco(args: argparse.Namespace) -> None:
    start = time.time()
    paths = make_toy_coco(args.root, num_train=args.num_train, num_val=args.num_val,
                          image_size=args.image_size, seed=args.seed)
    print(f"toy COCO ready in {time.time() - start:.1f} s under {paths['root']}")
    for key in ("train_images", "train_json", "val_images", "val_json"):
        print(f"  {key}: {paths[key]}")
    print(f"  categories: {', '.join(paths['categories'])}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{coco}")
    coco = commands.add_parser("coco", help="COCO-format shapes for detection / instance segmentation")
    coco.add_argument("--root", default="data/toy_coco", help="output directory (default: %(default)s)")
    coco.add_argument("--num-train", type=int, default=128, help="training images (default: %(default)s)")
    coco.add_argument("--num-val", type=int, default=32, help="validation images (default: %(default)s)")
    coco.add_argument("--image-size", type=int, default=128, help="side of the square images (default: %(default)s)")
    coco.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    coco.set_defaults(func=_coco)
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ValueError as error:  # bad parameters: a message, not a traceback
        raise SystemExit(f"error: {error}")


if __name__ == "__main__":
    main()
