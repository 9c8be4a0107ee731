"""Faster R-CNN ResNeSt-50 FPN with DCNv2 (modulated, 2 groups) in res3-res5, SyncBN, 1x (LazyConfig twin of
faster_rcnn_S50_FPN_DCNv2_1x.yaml). Paper: 44.11 box AP."""
from ..common.resnest_parts import with_dcnv2, without_masks
from ..common.resnest_rcnn_fpn import dataloader, lr_multiplier, model, optimizer, train

with_dcnv2(model)
without_masks(model, dataloader)
