"""Faster R-CNN ResNeSt-101 FPN, SyncBN, 1x (LazyConfig twin of faster_rcnn_S101_FPN_1x.yaml). Paper: 44.72 box AP."""
from ..common.resnest_parts import without_masks
from ..common.resnest_rcnn_fpn import IMAGENET_S101, dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.update(name="resnest101e", weights=IMAGENET_S101)
without_masks(model, dataloader)
