"""Cascade R-CNN ResNeSt-200 FPN, SyncBN, 1x (LazyConfig twin of cascade_rcnn_S200_FPN_1x.yaml). Paper: 49.03 box AP."""
from ..common.resnest_parts import cascade, without_masks
from ..common.resnest_rcnn_fpn import IMAGENET_S200, dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.update(name="resnest200e", weights=IMAGENET_S200)
without_masks(model, dataloader)
cascade(model)
