"""The all-tricks Cascade Mask R-CNN ResNeSt-200 with DCNv2 (modulated, 2 deformable groups) in res3-res5 (LazyConfig
twin of cascade_mask_rcnn_S200_FPN_DCNv2_tricks_3x.yaml). Paper: 50.91 box AP, 44.50 mask AP.

No test-time augmentation (TEST.AUG.ENABLED False): no ``tta`` node.
"""
from ..common.resnest_3x import all_tricks, dataloader, lr_multiplier, model, optimizer, train
from ..common.resnest_parts import with_dcnv2

with_dcnv2(model)
all_tricks(model, dataloader)
