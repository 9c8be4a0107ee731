"""What the three ResNeSt-200 3x recipes share (LazyConfig; ResNeSt, Zhang et al., 2020): Cascade Mask R-CNN on
ResNeSt-200 FPN with SyncBN (common/resnest_rcnn_fpn.py), at most 1440 pixels on the long side in training,
270k iterations with steps at 240k and 255k. The leaves: COCO-InstanceSegmentation/cascade_mask_rcnn_S200_FPN_tricks_3x
(and its DCNv2 variant, both adding :func:`all_tricks`) and COCO-PanopticSegmentation/panoptic_fpn_S200_FPN_tricks_3x.
"""
from .resnest_parts import cascade, lr_schedule, random_crop
from .resnest_rcnn_fpn import IMAGENET_S200, dataloader, model, optimizer, train

model.backbone.bottom_up.update(name="resnest200e", weights=IMAGENET_S200)
cascade(model)
dataloader.train.mapper.augmentations[0].max_size = 1440
lr_multiplier = lr_schedule((240000, 255000), 270000)
train.max_iter = 270000


def all_tricks(model, dataloader):
    """The official "all tricks" Cascade Mask R-CNN on top: an 8-conv mask head, the short side drawn from
    [640, 864], random crop (common/resnest_parts.py: random_crop)."""
    model.roi_heads.mask_head.conv_dims = [256] * 9  # 8 convs (ROI_MASK_HEAD.NUM_CONV) + the deconvolution
    dataloader.train.mapper.augmentations[0].short_edge_length = (640, 864)
    random_crop(dataloader)
