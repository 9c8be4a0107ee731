"""Cascade R-CNN ResNeSt-50 FPN, SyncBN, 1x (LazyConfig twin of cascade_rcnn_S50_FPN_1x.yaml). Paper: 45.41 box AP.

detectron2's cascade heads (IoU 0.5/0.6/0.7, class-agnostic regression) with the ResNeSt 4-conv + 1-FC SyncBN
box head in each stage, and 2000 RPN proposals per image in training (common/resnest_rcnn_fpn.py: cascade).
"""
from ..common.resnest_parts import cascade, without_masks
from ..common.resnest_rcnn_fpn import dataloader, lr_multiplier, model, optimizer, train

cascade(model)
without_masks(model, dataloader)
