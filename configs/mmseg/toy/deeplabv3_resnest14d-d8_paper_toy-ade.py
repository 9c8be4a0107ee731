# Toy version of the ResNeSt paper's segmentation recipe (configs/mmseg/paper: PyTorch-Encoding's DeepLabV3 head
# and recipe) on the toy ADE20K-layout data (made under data/toy_ade on first use), for 2 CPU cores: ResNeSt-14
# from scratch, narrow heads, 64x64 crops of 128x128 images, five classes, 150 iterations. Kept from the paper's
# recipe: the head (ASPP + projection + 3x3 block), the FCN auxiliary head at weight 0.2, the pipeline (flip,
# long-side random resize 0.5-2x the base size, zero pad, crop, no photometric distortion), SGD with 10x lr on both
# heads, weight decay 1e-4, poly 0.9 without warm-up, mean over labelled pixels, slide inference and the TTA
# protocol (scaled to the base size). Changed: the base lr (0.01 instead of 0.004: from scratch, 150 iterations).
#   python tools/mmseg_train.py configs/mmseg/toy/deeplabv3_resnest14d-d8_paper_toy-ade.py \
#       --work-dir work_dirs/toy_paper
_base_ = ['../paper/deeplabv3_resnest50d-d8_paper_4xb4-180e_ade20k-480x480.py', './_base_/toy_run.py']
custom_imports = dict(imports=['resnest_backbones.mmseg', 'resnest_backbones.mmseg.heads',
                               'resnest_backbones.mmseg.datasets'], allow_failed_imports=False)

num_classes = 5  # resnest_backbones.toy_data.segmentation.ADE20K_TOY_CLASSES
crop_size = (64, 64)
base_size = 70  # the paper's 520 for 480 crops, scaled to 64 crops

model = dict(
    data_preprocessor=dict(size=crop_size, test_cfg=dict(size=crop_size)),
    backbone=dict(variant='resnest14d', init_cfg=None),
    decode_head=dict(channels=64, num_classes=num_classes),
    auxiliary_head=dict(channels=32, num_classes=num_classes),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(43, 43)))  # stride 2/3 of the crop, as the paper's

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomResize', scale=(base_size, base_size), ratio_range=(0.5, 2.0), keep_ratio=True,
         backend='pillow', interpolation='bilinear'),
    dict(type='Pad', size=crop_size, pad_val=dict(img=0, seg=255)),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(base_size, base_size), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
img_scales = [35, 53, 70, 88, 105, 123]  # ceil(70 * s), s in 0.5..1.75
tta_pipeline = _base_.tta_pipeline  # the paper's protocol (each scale, with and without flip), at the toy's scales
tta_pipeline[1].transforms[0] = [dict(type='Resize', scale=(s, s), keep_ratio=True) for s in img_scales]
train_dataloader = dict(**_base_.toy_loader, dataset=dict(**_base_.toy_ade, pipeline=train_pipeline))
val_dataloader = dict(**_base_.toy_loader, dataset=dict(**_base_.toy_ade, pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=0.01))
param_scheduler = [dict(type='PolyLR', eta_min=0., power=0.9, begin=0, end=_base_.toy_iters, by_epoch=False)]
train_cfg = _base_.toy_train_cfg
default_hooks = _base_.toy_hooks
randomness = dict(seed=0)
