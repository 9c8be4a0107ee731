"""Cascade R-CNN ResNeSt-101 FPN, SyncBN, 1x (LazyConfig twin of cascade_rcnn_S101_FPN_1x.yaml). Paper: 47.50 box AP."""
from ..common.resnest_parts import cascade, without_masks
from ..common.resnest_rcnn_fpn import IMAGENET_S101, dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.update(name="resnest101e", weights=IMAGENET_S101)
cascade(model)
without_masks(model, dataloader)
