"""Mask R-CNN ResNeSt-50 FPN, SyncBN (mask head too), 1x (LazyConfig twin of mask_rcnn_S50_FPN_1x.yaml).
Paper: 42.81 box AP, 38.14 mask AP."""
from ..common.resnest_parts import mask_rcnn_sizes
from ..common.resnest_rcnn_fpn import dataloader, lr_multiplier, model, optimizer, train

mask_rcnn_sizes(dataloader)
