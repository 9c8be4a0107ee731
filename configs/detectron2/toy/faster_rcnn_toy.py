"""Toy Faster R-CNN ResNeSt-14 FPN (LazyConfig twin of faster_rcnn_toy.yaml; see common/resnest_toy.py).

Runs under detectron2's own tools/lazyconfig_train_net.py, which imports nothing of this project: importing this
config registers the toy data. On a CPU, in one process (torch's SyncBN runs as BN there), with the copy of
detectron2's tools/ that tools/setup_env.sh keeps in the environment::

    RESNEST_TOY_COCO=data/toy_coco .venv/bin/python .venv/share/detectron2/tools/lazyconfig_train_net.py \\
        --config-file configs/detectron2/toy/faster_rcnn_toy.py train.device=cpu
"""
from ..common.resnest_parts import without_masks
from ..common.resnest_toy import dataloader, lr_multiplier, model, optimizer, train

without_masks(model, dataloader)
