# Toy Faster R-CNN + FPN with a ResNeSt-14 backbone on the built-in toy COCO data (coloured shapes, three classes;
# made under data/toy_coco on first use by resnest_backbones.ToyCocoDataset): the ResNeSt-50 Faster R-CNN config
# (mmdet's recipe) shrunk to train on 2 CPU cores in minutes -- same model structure (FPN, RPN, Shared4Conv1FC box
# head, SyncBN in backbone and heads, which runs as BN in one process), a small variant trained from scratch (so
# nothing frozen), narrow neck and heads, anchors half the size for 128-pixel images, a short schedule; the scale
# of configs/detectron2/toy/faster_rcnn_toy.yaml. The slow test trains it to its box AP50 target (tools/toy_margins.py
# measures the margin over seeds and threads).
#   python tools/mmdet_train.py configs/mmdet/toy/faster-rcnn_resnest14d_fpn_toy-coco.py --work-dir work_dirs/demo_mmdet
_base_ = '../faster-rcnn_resnest50d_fpn_syncbn-backbone+head_ms-range-1x_coco.py'
custom_imports = dict(imports=['resnest_backbones.mmdet', 'resnest_backbones.mmdet.datasets'],
                      allow_failed_imports=False)

num_classes = 3  # resnest_backbones.toy_data.COCO_CATEGORIES
image_size = (128, 128)
max_iters = 200
data_root = 'data/toy_coco'
toy = dict(num_train=256, num_val=64, image_size=128, seed=0)  # as the detectron2 toy configs' data
channels = 64

model = dict(
    backbone=dict(variant='resnest14d', frozen_stages=-1, init_cfg=None),
    neck=dict(out_channels=channels),
    rpn_head=dict(in_channels=channels, feat_channels=channels, anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=channels),
        bbox_head=dict(in_channels=channels, conv_out_channels=channels, fc_out_channels=256,
                       num_classes=num_classes)),
    train_cfg=dict(rpn_proposal=dict(max_per_img=500), rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(max_per_img=200)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False, sampler=dict(type='InfiniteSampler', shuffle=True),
    batch_sampler=None,
    dataset=dict(_delete_=True, type='resnest_backbones.ToyCocoDataset', data_root=data_root, toy=toy,
                 ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=4), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='resnest_backbones.ToyCocoDataset', data_root=data_root, toy=toy,
                 ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'), test_mode=True,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + '/annotations/instances_val.json', metric='bbox')
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=0.02))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[150, 185], gamma=0.1),
]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
