"""Panoptic FPN with Cascade ROI heads, ResNeSt-200, SyncBN, tricks 3x (LazyConfig twin of
panoptic_fpn_S200_FPN_tricks_3x.yaml). Paper: 51.00 box AP, 43.68 mask AP, 47.90 PQ.

Beyond the 1x recipe (common/resnest_3x.py): detectron2's semantic FPN head with SyncBN (loss weight 0.5), the mask
head without norm (as in the official config), short side drawn from [400, 1000] (max 1440), the COCO
panoptic-separated sets with detectron2's evaluators (COCO, semantic, panoptic), test-time augmentation (``tta``:
see common/resnest_rcnn_fpn.py, test_time_augmentation), 270k iterations with steps at 240k and 255k.
"""
from detectron2 import model_zoo

from ..common.resnest_3x import dataloader, lr_multiplier, model, optimizer, train
from ..common.resnest_parts import test_time_augmentation
from ..common.resnest_rcnn_fpn import NORM

_panoptic = model_zoo.get_config("common/models/panoptic_fpn.py").model
model.update(_target_=_panoptic._target_, sem_seg_head=_panoptic.sem_seg_head)
model.sem_seg_head.update(norm=NORM, loss_weight=0.5)
model.roi_heads.mask_head.conv_norm = ""
dataloader.train.mapper.augmentations[0].short_edge_length = (400, 1000)
# detectron2's panoptic data config also sets filter_empty=False (its Base-Panoptic-FPN.yaml does too); the yacs twin
# keeps DATALOADER.FILTER_EMPTY_ANNOTATIONS at its default, True, and so does this one.
_separated = model_zoo.get_config("common/data/coco_panoptic_separated.py").dataloader
dataloader.update(evaluator=_separated.evaluator)
dataloader.train.dataset.names = _separated.train.dataset.names
dataloader.test.dataset.names = _separated.test.dataset.names
tta = test_time_augmentation(mask_on=True)
