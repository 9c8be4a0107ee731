"""Cascade R-CNN ResNeSt-50 FPN, SyncBN, 1x (LazyConfig twin of cascade_rcnn_S50_FPN_1x.yaml). Paper: 45.41 box AP.

detectron2's cascade heads (IoU 0.5/0.6/0.7, class-agnostic regression) with the ResNeSt 4-conv + 1-FC SyncBN
box head in each stage, and 2000 RPN proposals per image in training.
"""
import copy

from detectron2 import model_zoo

from ..common.resnest_rcnn_fpn import box_head as _box_head
from ..common.resnest_rcnn_fpn import dataloader, lr_multiplier, model, optimizer, train, without_masks

model.roi_heads = model_zoo.get_config("common/models/cascade_rcnn.py").model.roi_heads
model.roi_heads.box_heads = [copy.deepcopy(_box_head) for _ in range(3)]
model = without_masks(model)
model.proposal_generator.post_nms_topk = (2000, 1000)
dataloader.train.mapper.use_instance_mask = False
