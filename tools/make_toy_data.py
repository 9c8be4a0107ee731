#!/usr/bin/env python
"""Make the built-in toy data sets of resnest_backbones (ResNeSt, Zhang et al., 2020) from the command line.

Subcommands (one per data set; each is deterministic and reused when it already exists with the same
parameters):

    coco        COCO "instances" detection / instance segmentation of coloured shapes
    ade20k      semantic segmentation scenes in the ADE20K directory layout
    cityscapes  semantic segmentation scenes in the Cityscapes directory layout (train ids)
    own         a sample that looks like your own data (COCO JSON with category ids 3 and 9, mixed image sizes
                and formats, label PNGs, classes.txt): what docs/own_data.md runs on

All are made with numpy and Pillow only.

Examples:
    python tools/make_toy_data.py coco --root data/toy_coco --num-train 128 --num-val 32 --image-size 128
    python tools/make_toy_data.py ade20k --root data/toy_ade
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from resnest_backbones.toy_data import make_own_sample, make_toy_ade20k, make_toy_cityscapes, make_toy_coco  # noqa: E402


def _coco(args: argparse.Namespace) -> None:
    start = time.time()
    paths = make_toy_coco(args.root, num_train=args.num_train, num_val=args.num_val,
                          image_size=args.image_size, seed=args.seed)
    print(f"toy COCO ready in {time.time() - start:.1f} s under {paths['root']}")
    for key in ("train_images", "train_json", "val_images", "val_json"):
        print(f"  {key}: {paths[key]}")
    print(f"  categories: {', '.join(paths['categories'])}")


def _segmentation(args: argparse.Namespace) -> None:
    start = time.time()
    make = make_toy_ade20k if args.command == "ade20k" else make_toy_cityscapes
    extra = {"city": args.city} if args.command == "cityscapes" else {}
    root = make(args.root, num_train=args.num_train, num_val=args.num_val, image_size=(args.height, args.width),
                seed=args.seed, **extra)
    print(f"toy {args.command} ready in {time.time() - start:.1f} s under {root}")


def _own(args: argparse.Namespace) -> None:
    paths = make_own_sample(args.root, num_train=args.num_train, num_val=args.num_val, seed=args.seed)
    print(f"own-data sample ready under {paths['root']}")
    for key in ("train_images", "train_json", "train_labels", "val_images", "val_json", "val_labels", "classes"):
        print(f"  {key}: {paths[key]}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{coco,ade20k,cityscapes,own}")
    coco = commands.add_parser("coco", help="COCO-format shapes for detection / instance segmentation")
    coco.add_argument("--root", default="data/toy_coco", help="output directory (default: %(default)s)")
    coco.add_argument("--num-train", type=int, default=128, help="training images (default: %(default)s)")
    coco.add_argument("--num-val", type=int, default=32, help="validation images (default: %(default)s)")
    coco.add_argument("--image-size", type=int, default=128, help="side of the square images (default: %(default)s)")
    coco.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    coco.set_defaults(func=_coco)
    # Defaults of the segmentation sets are those of their generators (resnest_backbones.toy_data.segmentation).
    for name, root, train, val, (height, width) in (("ade20k", "data/toy_ade", 64, 16, (128, 128)),
                                                    ("cityscapes", "data/toy_cityscapes", 32, 8, (64, 128))):
        seg = commands.add_parser(name, help=f"semantic segmentation in the {name} layout")
        seg.add_argument("--root", default=root, help="output directory (default: %(default)s)")
        seg.add_argument("--num-train", type=int, default=train, help="training images (default: %(default)s)")
        seg.add_argument("--num-val", type=int, default=val, help="validation images (default: %(default)s)")
        seg.add_argument("--height", type=int, default=height, help="image height (default: %(default)s)")
        seg.add_argument("--width", type=int, default=width, help="image width (default: %(default)s)")
        seg.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
        if name == "cityscapes":
            seg.add_argument("--city", default="toycity", help="city sub-directory (default: %(default)s)")
        seg.set_defaults(func=_segmentation)
    own = commands.add_parser("own", help="a sample that looks like your own data (docs/own_data.md)")
    own.add_argument("--root", default="data/my_data", help="output directory (default: %(default)s)")
    own.add_argument("--num-train", type=int, default=24, help="training images (default: %(default)s)")
    own.add_argument("--num-val", type=int, default=8, help="validation images (default: %(default)s)")
    own.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    own.set_defaults(func=_own)
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ValueError as error:  # bad parameters: a message, not a traceback
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
