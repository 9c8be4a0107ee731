#!/usr/bin/env python
"""Train or evaluate a detectron2 model with a ResNeSt backbone (ResNeSt, Zhang et al., 2020).

detectron2's usual entry point: a yacs ``.yaml`` or LazyConfig ``.py`` file, ``--eval-only``, ``--resume``,
``--num-gpus``/``--num-machines``/``--machine-rank``/``--dist-url`` (multi-GPU and multi-node through
detectron2's ``launch``; on one machine the processes meet on a free local port unless ``--dist-url`` names one)
and trailing overrides (``KEY VALUE`` for yacs, ``key=value`` for LazyConfig)::

    python tools/train_net.py --config-file configs/detectron2/COCO-Detection/faster_rcnn_S50_FPN_1x.yaml --num-gpus 8
    python tools/train_net.py --config-file configs/detectron2/toy/faster_rcnn_toy.yaml OUTPUT_DIR work_dirs/toy

Without CUDA it runs on the CPU, and ``--num-gpus N`` starts N CPU processes (gloo) whose "SyncBN" layers run
as :class:`resnest_backbones.layers.SyncBatchNorm` (torch's refuses CPU tensors); in a single process "SyncBN"
becomes plain "BN" (identical there). All of this is logged. The training and evaluation logic lives in
:mod:`resnest_backbones.detectron2.engine`::

    python tools/train_net.py --config-file configs/detectron2/toy/faster_rcnn_toy.yaml --num-gpus 2   # 2 CPU processes

Your own data, fine-tuning a model of another class count (its class layers start fresh; docs/own_data.md)::

    python tools/train_net.py --config-file detectron2/COCO-Detection/faster_rcnn_S50_FPN_1x.yaml \
        --train-data my/train.json my/images --val-data my/val.json my/images MODEL.WEIGHTS coco_model.pth
"""
import os
import sys

from detectron2.engine import default_argument_parser, launch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout, uninstalled
from resnest_backbones.detectron2.engine import train_or_evaluate  # noqa: E402
from resnest_backbones.own_data import COCO_FILES, add_data_arguments  # noqa: E402

if __name__ == "__main__":
    parser = default_argument_parser()
    parser.add_argument("--no-fuse", action="store_true",
                        help="--eval-only: evaluate the model as built; by default the ResNeSt runs fused for "
                             "inference (batch norms folded into the convolutions: faster, the same outputs to ~1e-6)")
    add_data_arguments(parser, COCO_FILES)
    # One machine: a free port on localhost (detectron2's default port is the same for every run of a user, so two
    # runs at once, e.g. two multi-process trainings side by side, fought over it).
    parser.set_defaults(dist_url="auto")
    args = parser.parse_args()
    if args.num_machines > 1 and args.dist_url == "auto":
        parser.error("--num-machines > 1 needs --dist-url tcp://<machine 0's address>:<a free port>, the same on "
                     "every machine")
    launch(train_or_evaluate, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
