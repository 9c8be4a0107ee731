"""Toy detection on the generated shapes data set (LazyConfig twin of toy/Base-Toy.yaml): ResNeSt-14 FPN trained
from scratch on a CPU in minutes. The data sets toy_coco_train / toy_coco_val are registered by importing
resnest_backbones.detectron2 (common/resnest_rcnn_fpn.py does), made on first use under $RESNEST_TOY_COCO (default
data/toy_coco). Same model family as the COCO recipe, scaled down: 128-pixel images, smaller anchors and heads, no
ImageNet weights (so nothing frozen), 200 iterations of 4 images.
"""
from detectron2.layers import ShapeSpec

from .resnest_parts import lr_schedule
from .resnest_rcnn_fpn import dataloader, model, optimizer, train

model.backbone.bottom_up.update(name="resnest14d", weights="", freeze_at=0)
model.backbone.out_channels = 64
model.proposal_generator.head.in_channels = 64
model.proposal_generator.anchor_generator.sizes = [[16], [32], [64], [128], [256]]
model.proposal_generator.post_nms_topk = (500, 200)
model.roi_heads.update(num_classes=3, batch_size_per_image=64)
model.roi_heads.box_head.update(input_shape=ShapeSpec(channels=64, height=7, width=7), conv_dims=[64] * 4,
                                fc_dims=[256])
model.roi_heads.box_predictor.input_shape = ShapeSpec(channels=256)
model.roi_heads.mask_head.input_shape = ShapeSpec(channels=64, height=14, width=14)

dataloader.train.dataset.names = "toy_coco_train"
dataloader.test.dataset.names = "toy_coco_val"
dataloader.train.num_workers = dataloader.test.num_workers = 1
dataloader.train.mapper.augmentations[0].update(short_edge_length=(128,), sample_style="choice", max_size=128)
dataloader.test.mapper.augmentations[0].update(short_edge_length=128, max_size=128)
dataloader.train.total_batch_size = 4

lr_multiplier = lr_schedule((150, 185), 200, warmup_iters=50)
# SEED 0 (the same machine gives the same run) and no periodic checkpoint (CHECKPOINT_PERIOD 100000).
train.update(max_iter=200, seed=0, checkpointer=dict(period=100000, max_to_keep=100),
             precise_bn=dict(enabled=True, num_iter=20))
