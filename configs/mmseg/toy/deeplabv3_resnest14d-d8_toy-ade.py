# Toy DeepLabV3 + ResNeSt-14 on the toy ADE20K-layout data (made under data/toy_ade on first use): the
# ADE20K ResNeSt-50 config shrunk to run on 2 CPU cores in a few minutes -- same model structure (output stride 8,
# ASPP + auxiliary FCN head, SyncBN, which runs as BN in one process), a small variant trained from scratch,
# narrow heads, 64x64 crops of 128x128 images, five classes, a short schedule (./_base_/toy_run.py).
#   python tools/mmseg_train.py configs/mmseg/toy/deeplabv3_resnest14d-d8_toy-ade.py --work-dir work_dirs/demo_mmseg
_base_ = ['../deeplabv3_resnest50d-d8_4xb4-160k_ade20k-512x512.py', './_base_/toy_run.py']
custom_imports = dict(imports=['resnest_backbones.mmseg', 'resnest_backbones.mmseg.datasets'],
                      allow_failed_imports=False)

num_classes = 5  # resnest_backbones.toy_data.segmentation.ADE20K_TOY_CLASSES (and CITYSCAPES_TOY_CLASSES)
crop_size = (64, 64)

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(variant='resnest14d', init_cfg=None),
    decode_head=dict(channels=64, num_classes=num_classes),
    auxiliary_head=dict(channels=32, num_classes=num_classes))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),  # the dataset says whether label 0 is "other" (ADE20K: yes, Cityscapes: no)
    dict(type='RandomResize', scale=(128, 128), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(**_base_.toy_loader, dataset=dict(**_base_.toy_ade, pipeline=train_pipeline))
val_dataloader = dict(**_base_.toy_loader, dataset=dict(**_base_.toy_ade, pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=0.02))
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=_base_.toy_iters, by_epoch=False)]
train_cfg = _base_.toy_train_cfg
default_hooks = _base_.toy_hooks
randomness = dict(seed=0)
