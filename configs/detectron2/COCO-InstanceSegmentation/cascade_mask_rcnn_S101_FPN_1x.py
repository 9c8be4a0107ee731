"""Cascade Mask R-CNN ResNeSt-101 FPN, SyncBN, 1x (LazyConfig twin of cascade_mask_rcnn_S101_FPN_1x.yaml).
Paper: 48.30 box AP, 41.56 mask AP."""
from ..common.resnest_parts import cascade, mask_rcnn_sizes
from ..common.resnest_rcnn_fpn import IMAGENET_S101, dataloader, lr_multiplier, model, optimizer, train

mask_rcnn_sizes(dataloader)
model.backbone.bottom_up.update(name="resnest101e", weights=IMAGENET_S101)
cascade(model)
