"""Faster R-CNN ResNeSt-50 FPN, SyncBN, 1x (LazyConfig twin of faster_rcnn_S50_FPN_1x.yaml). Paper: 42.33 box AP."""
from ..common.resnest_parts import without_masks
from ..common.resnest_rcnn_fpn import dataloader, lr_multiplier, model, optimizer, train

without_masks(model, dataloader)
