"""LazyConfig pieces shared by the ResNeSt R-CNN recipes (ResNeSt, Zhang et al., 2020; official detectron2 recipe).

Built on detectron2's own model-zoo configs (``model_zoo.get_config``), changing what docs/reference.md section 2
lists: ResNeSt-50 backbone with SyncBN (FREEZE_AT 2), SyncBN FPN, 4-conv + 1-FC SyncBN box head, SyncBN mask
head, RGB input with torchvision statistics, short side in [640, 800] (range), precise BN, 16 images at
LR 0.02 for 90k iterations (steps 60k, 80k). Leaves import from here and change the rest.

Runs under detectron2's own ``tools/lazyconfig_train_net.py`` as well as this project's ``tools/train_net.py``.
"""
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import FastRCNNConvFCHead

from resnest_backbones.detectron2 import build_resnest

NORM = "SyncBN"
WEIGHTS = "https://github.com/zhanghang1989/ResNeSt/releases/download/weights_step1/resnest50-528c19ca.pth"

model = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
# The backbone loads its ImageNet weights (strictly) when it is built, so detectron2's own lazyconfig_train_net.py,
# tools/train_net.py and any other trainer start from them; train.init_checkpoint is for whole-model files.
model.backbone.bottom_up = L(build_resnest)(
    name="resnest50d", norm=NORM, freeze_at=2, out_features=["res2", "res3", "res4", "res5"], weights=WEIGHTS)
model.backbone.norm = NORM
box_head = L(FastRCNNConvFCHead)(
    input_shape=ShapeSpec(channels=256, height=7, width=7), conv_dims=[256] * 4, fc_dims=[1024], conv_norm=NORM)
model.roi_heads.box_head = box_head
model.roi_heads.mask_head.conv_norm = NORM
model.pixel_mean = [123.68, 116.779, 103.939]
model.pixel_std = [58.393, 57.12, 57.375]
model.input_format = "RGB"

dataloader = model_zoo.get_config("common/data/coco.py").dataloader
dataloader.train.mapper.augmentations[0].short_edge_length = (640, 800)
dataloader.train.mapper.augmentations[0].sample_style = "range"
dataloader.train.mapper.augmentations[0].max_size = 1333
dataloader.train.mapper.image_format = "RGB"
dataloader.train.total_batch_size = 16

optimizer = model_zoo.get_config("common/optim.py").SGD
optimizer.lr = 0.02
lr_multiplier = model_zoo.get_config("common/coco_schedule.py").lr_multiplier_1x  # 90k, steps 60k and 80k

train = model_zoo.get_config("common/train.py").train
train.max_iter = 90000
train.init_checkpoint = ""  # whole-model files only (evaluation, fine-tuning, resume); ImageNet: the backbone's
train.precise_bn = dict(enabled=True, num_iter=200)  # read by tools/train_net.py (detectron2's default: 200)


def without_masks(model):
    """Drop the mask branch (box-only recipes)."""
    for key in ("mask_in_features", "mask_pooler", "mask_head"):
        model.roi_heads.pop(key)
    return model
