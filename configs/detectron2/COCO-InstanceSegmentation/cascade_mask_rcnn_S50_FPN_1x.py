"""Cascade Mask R-CNN ResNeSt-50 FPN, SyncBN, 1x (LazyConfig twin of cascade_mask_rcnn_S50_FPN_1x.yaml).
Paper: 46.19 box AP, 39.55 mask AP."""
from ..common.resnest_parts import cascade, mask_rcnn_sizes
from ..common.resnest_rcnn_fpn import dataloader, lr_multiplier, model, optimizer, train

cascade(model)
mask_rcnn_sizes(dataloader)
