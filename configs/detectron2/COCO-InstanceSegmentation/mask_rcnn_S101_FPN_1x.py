"""Mask R-CNN ResNeSt-101 FPN, SyncBN (mask head too), 1x (LazyConfig twin of mask_rcnn_S101_FPN_1x.yaml).
Paper: 45.75 box AP, 40.65 mask AP."""
from ..common.resnest_parts import mask_rcnn_sizes
from ..common.resnest_rcnn_fpn import IMAGENET_S101, dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.update(name="resnest101e", weights=IMAGENET_S101)
mask_rcnn_sizes(dataloader)
