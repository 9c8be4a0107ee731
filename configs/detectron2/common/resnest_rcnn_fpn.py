"""LazyConfig pieces shared by the ResNeSt R-CNN recipes (ResNeSt, Zhang et al., 2020; official detectron2 recipe).

Every yacs config of configs/detectron2 has a LazyConfig twin of the same name beside it (``.py`` for ``.yaml``):

* COCO-Detection: faster_rcnn_S50_FPN_1x, faster_rcnn_S101_FPN_1x, faster_rcnn_S50_FPN_DCNv2_1x,
  cascade_rcnn_S50_FPN_1x, cascade_rcnn_S101_FPN_1x, cascade_rcnn_S200_FPN_1x;
* COCO-InstanceSegmentation: mask_rcnn_S50_FPN_1x, mask_rcnn_S101_FPN_1x, cascade_mask_rcnn_S50_FPN_1x,
  cascade_mask_rcnn_S101_FPN_1x, and over common/resnest_3x.py cascade_mask_rcnn_S200_FPN_tricks_3x and
  cascade_mask_rcnn_S200_FPN_DCNv2_tricks_3x;
* COCO-PanopticSegmentation: panoptic_fpn_S200_FPN_tricks_3x (over common/resnest_3x.py);
* toy: faster_rcnn_toy (over common/resnest_toy.py, the twin of toy/Base-Toy.yaml), on the toy COCO data that
  importing resnest_backbones.detectron2 (this file does) registers.

tests/frameworks/detectron2/test_detectron2_lazy.py checks each pair key by key (a table from yacs keys to
LazyConfig paths) and builds both models (same parameters and modules); where a yacs key has no LazyConfig
counterpart the twin has the same effect, said where it is set (train.eval_period and train.precise_bn below;
the 3x schedules, the crop and the test-time augmentation in common/resnest_parts.py).

Built on detectron2's own model-zoo configs (``model_zoo.get_config``), changing what docs/reference.md section 2
lists: ResNeSt-50 backbone with SyncBN (FREEZE_AT 2), SyncBN FPN, 4-conv + 1-FC SyncBN box head, SyncBN mask
head, RGB input with torchvision statistics, short side in [640, 800] (range), precise BN, 16 images at
LR 0.02 for 90k iterations (steps 60k, 80k). Leaves import from here and change the rest with the steps of
common/resnest_parts.py.

Runs under detectron2's own ``tools/lazyconfig_train_net.py`` as well as this project's ``tools/train_net.py``.
"""
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import FastRCNNConvFCHead

from resnest_backbones.detectron2 import build_resnest

NORM = "SyncBN"
# The official ImageNet files (MODEL.RESNEST.WEIGHTS of the yacs twins), loaded by the backbone as it is built.
_RELEASES = "https://github.com/zhanghang1989/ResNeSt/releases/download/weights_step1/"
IMAGENET_S50 = _RELEASES + "resnest50-528c19ca.pth"
IMAGENET_S101 = _RELEASES + "resnest101-22405ba7.pth"
IMAGENET_S200 = _RELEASES + "resnest200-75117900.pth"

model = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
# The backbone loads its ImageNet weights (strictly) when it is built, so detectron2's own lazyconfig_train_net.py,
# tools/train_net.py and any other trainer start from them; train.init_checkpoint is for whole-model files.
# Every MODEL.RESNEST key the yacs route passes to build_resnest is spelled out, at add_resnest_config's default.
model.backbone.bottom_up = L(build_resnest)(
    name="resnest50d", norm=NORM, freeze_at=2, out_features=["res2", "res3", "res4", "res5"], weights=IMAGENET_S50,
    output_stride=32, deform_stages=[False] * 4, deform_modulated=False, deform_groups=1, drop_block_prob=0.0,
    drop_block_stages=[False, False, True, True], memory_efficient=True)
model.backbone.norm = NORM
model.roi_heads.box_head = L(FastRCNNConvFCHead)(
    input_shape=ShapeSpec(channels=256, height=7, width=7), conv_dims=[256] * 4, fc_dims=[1024], conv_norm=NORM)
model.roi_heads.mask_head.conv_dims = [256] * 5  # 4 convs (ROI_MASK_HEAD.NUM_CONV) + the deconvolution
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
# TEST.EVAL_PERIOD 0 of the yacs configs: evaluate (and run precise BN) once, after the last iteration; detectron2's
# train.py says every 5000.
train.eval_period = 0
# TEST.PRECISE_BN: read by tools/train_net.py (detectron2's lazyconfig_train_net.py has no precise-BN step).
train.precise_bn = dict(enabled=True, num_iter=200)

