"""Cascade Mask R-CNN ResNeSt-200 FPN, SyncBN, "all tricks" 3x (LazyConfig twin of
cascade_mask_rcnn_S200_FPN_tricks_3x.yaml). Paper: 50.54 box AP, 44.21 mask AP.

Beyond the 1x recipe (common/resnest_3x.py): 8-conv mask head, short side drawn from [640, 864] (max 1440), random
crop (relative range 0.9), 270k iterations with steps at 240k and 255k.
"""
from ..common.resnest_3x import all_tricks, dataloader, lr_multiplier, model, optimizer, train

all_tricks(model, dataloader)
