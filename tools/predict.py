#!/usr/bin/env python
"""Run a trained ResNeSt model on your own images and write them with the predictions drawn.

The config decides the framework: a detectron2 yacs ``.yaml`` or LazyConfig ``.py`` (boxes, masks, panoptic
segments drawn by detectron2's Visualizer), an mmseg ``.py`` (segmentation overlay by mmseg's visualiser), an mmdet
``.py`` (boxes, labels, masks by mmdet's visualiser; mmdet's released files as downloaded), or
``--framework torchvision`` for a model saved by ``tools/torchvision_train.py --output``. The framework is told from
the config as its framework loads it (an OpenMMLab config's ``default_scope``, ``custom_imports`` or ``_base_``
files), so a config of your own that inherits ours is told too; give ``--framework`` where it cannot be told.
Weights are a whole trained model (a path or an http(s)/file URL). Output images have the input's size, one PNG per
input in --output.

Examples:
    python tools/predict.py configs/detectron2/toy/faster_rcnn_toy.yaml --weights work_dirs/demo_d2/model_final.pth \\
        --input data/toy_coco/val --output work_dirs/predictions
    python tools/predict.py configs/mmseg/toy/deeplabv3_resnest14d-d8_toy-ade.py \\
        --weights work_dirs/demo_mmseg/iter_150.pth --input my_photo.jpg --output work_dirs/predictions
    python tools/predict.py configs/mmdet/toy/faster-rcnn_resnest14d_fpn_toy-coco.py \\
        --weights work_dirs/demo_mmdet/iter_200.pth --input data/toy_coco/val --output work_dirs/predictions
    python tools/predict.py --framework torchvision --weights work_dirs/demo_torchvision/model.pth \\
        --input data/toy_coco/val --output work_dirs/predictions --score-threshold 0.3
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from resnest_backbones.models.checkpoint import CheckpointError  # noqa: E402
from resnest_backbones.predict import FRAMEWORKS, detect_framework, list_images, load_predictor, predict_images  # noqa: E402,E501


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", help="detectron2 .yaml/.py or mmseg .py config (not for torchvision)")
    parser.add_argument("--weights", required=True, help="trained whole-model checkpoint: path or URL")
    parser.add_argument("--input", nargs="+", required=True,
                        help="image files and/or folders of images (subfolders included; the pictures keep them)")
    parser.add_argument("--output", default="work_dirs/predictions", help="folder for the drawn images "
                                                                          "(default: %(default)s)")
    parser.add_argument("--framework", choices=FRAMEWORKS, help="default: from the config")
    parser.add_argument("--score-threshold", type=float, default=0.5,
                        help="draw detections scoring at least this (default: %(default)s)")
    parser.add_argument("--no-fuse", action="store_true",
                        help="run the model as built, without fusing the ResNeSt's batch norms into its convolutions "
                             "(fused is the default: faster, the same outputs to ~1e-6)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--variant", default=None, help="torchvision: the backbone variant of a bare state-dict "
                                                         "file (default: the model file's, else resnest14d)")
    parser.add_argument("--image-size", type=int, default=None, help="torchvision: the image size of a bare "
                                                                     "state-dict file (default: the model file's, "
                                                                     "else 128)")
    parser.epilog = "detectron2 config overrides go after '--' (KEY VALUE for yacs, key=value for LazyConfig)"
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args, opts = parser.parse_args(argv[:split]), argv[split + 1:]
    try:
        framework = detect_framework(args.config, args.framework)
        images = list_images(args.input)
        options = {"variant": args.variant, "image_size": args.image_size} if framework == "torchvision" else \
            {"opts": opts} if framework == "detectron2" else {}
        if opts and framework != "detectron2":
            parser.error(f"config overrides are for detectron2 configs, not {framework}")
        predictor = load_predictor(framework, args.config, args.weights, score_threshold=args.score_threshold,
                                   device=args.device, fused=not args.no_fuse, **options)
    except (FileNotFoundError, ValueError, CheckpointError) as error:
        raise SystemExit(f"predict.py: error: {error}") from None
    print(f"{framework} model, classes: {', '.join(map(str, predictor.class_names))}", flush=True)
    for path in predict_images(predictor, images, args.output):
        print(path)


if __name__ == "__main__":
    main()
