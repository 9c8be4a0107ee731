# DeepLabV3 + ResNeSt-50 on ADE20K with the ResNeSt paper's recipe (Zhang et al., 2020, Table 7: 45.12 mIoU ms+flip),
# i.e. PyTorch-Encoding's model, training and evaluation (github zhanghang1989/PyTorch-Encoding; docs/reference.md
# section 4). Every value carries its source: PE = PyTorch-Encoding, with the file it comes from.
#   train: torchrun --nproc_per_node=4 tools/mmseg_train.py <this file> --launcher pytorch
#   released weights: deeplab_resnest50_ade-2225f09d.pth, converted by tools/convert_weights.py --to mmseg
#   evaluation (the paper's protocol, multi-scale + flip): mmseg's tools/test.py <this file> CKPT --tta
#
# Where mmseg cannot express PE exactly (none of these changes the model, i.e. the function the weights compute):
# * training: the auxiliary FCNHead's dropout is mmseg's Dropout2d (PE: element-wise Dropout(0.1)) and its convs
#   start from mmseg's initialisation (PE: PyTorch defaults; our DeepLabV3Head keeps PyTorch defaults like PE);
#   an infinite shuffled sampler instead of epochs (same iterations and images per iteration); the long side is
#   int(520 * r), r uniform in [0.5, 2.0), so 260..1039 (PE: randint(260, 1040), 1040 included).
# * evaluation: images are resized with OpenCV's bilinear (PE: torch bilinear, align_corners=True) and padded to
#   480 with the mean colour (PE: black); the last sliding window is shifted back inside the image (PE: a partial
#   window, padded); the 12 predictions are averaged as softmax probabilities (PE: exp of the flip-summed
#   logits, summed over scales). Their effect on the ms+flip mIoU is not measured here (no ADE20K, no GPU).
_base_ = ['mmseg::_base_/default_runtime.py', 'mmseg::_base_/datasets/ade20k.py']
custom_imports = dict(imports=['resnest_backbones.mmseg', 'resnest_backbones.mmseg.heads'], allow_failed_imports=False)

num_classes = 150  # ADE20K (PE encoding/datasets/ade20k.py NUM_CLASS)
crop_size = (480, 480)  # PE train.py --crop-size default 480
base_size = 520  # PE train.py --base-size default 520
iters_per_epoch = 1263  # floor(20210 training images / 16 per iteration), drop_last=True (PE train.py)
epochs = 180  # PE train.py: ade20k default 180 epochs (S-50 used the default; the model zoo's S-101/S-200 commands
# pass --epochs 180 as well; GluonCV's S-50/S-269 logs show 120: we keep 180 for every depth)
max_iters = epochs * iters_per_epoch  # 227340
norm_cfg = dict(type='SyncBN', requires_grad=True)  # PE: SyncBatchNorm in backbone and heads
# Official ImageNet weights (official ResNeSt GitHub release, tag weights_step1); PE loaded its model store's
# resnest50 file (SHA-1 name resnest50-fb9de5b3.pth), in the same official keys -- either loads here.
checkpoint_file = 'https://github.com/zhanghang1989/ResNeSt/releases/download/weights_step1/resnest50-528c19ca.pth'

data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],  # PE: Normalize([.485, .456, .406], [.229, .224, .225]) on RGB in [0, 1], x255
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,  # PE reads RGB (PIL); mmseg's loader gives BGR
    pad_val=0,
    seg_pad_val=255,
    size=crop_size,  # no-op in training (the pipeline already pads to 480 with black, as PE does)
    test_cfg=dict(size=crop_size))  # PE MultiEvalModule pads images smaller than the crop to 480
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        type='resnest_backbones.ResNeSt',
        variant='resnest50d',
        out_indices=(0, 1, 2, 3),
        output_stride=8,  # PE BaseNet dilated=True: stages 3/4 dilated 2/4 (first block at half), output stride 8
        avd_dilated=True,  # official ResNeSt semantics, as PE's backbone: AVD kept in a dilated stage's first block
        norm_cfg=norm_cfg,
        norm_eval=False,  # PE trains every norm
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    decode_head=dict(
        type='resnest_backbones.DeepLabV3Head',  # PE encoding/models/sseg/deeplab.py DeepLabV3Head
        in_channels=2048,
        in_index=3,
        channels=256,  # PE: inter_channels = in_channels // 8
        dilations=(12, 24, 36),  # PE: atrous_rates=[12, 24, 36]
        project_dropout=0.5,  # PE ASPP_Module.project: Dropout2d(0.5)
        dropout_ratio=0.1,  # PE DeepLabV3Head.block: Dropout(0.1)
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        align_corners=True,  # PE up_kwargs: bilinear, align_corners=True
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0,
                         # PE SegmentationLosses = nn.CrossEntropyLoss: mean over labelled pixels
                         avg_non_ignore=True)),
    auxiliary_head=dict(
        type='FCNHead',  # PE encoding/models/sseg/fcn.py FCNHead on layer3 (auxlayer)
        in_channels=1024,
        in_index=2,
        channels=256,  # PE: inter_channels = in_channels // 4
        num_convs=1,  # PE: one 3x3 conv + norm + ReLU
        concat_input=False,
        dropout_ratio=0.1,  # PE: Dropout(0.1)
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        align_corners=True,  # PE up_kwargs
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.2,  # PE train.py --aux-weight 0.2
                         avg_non_ignore=True)),
    train_cfg=dict(),
    # PE MultiEvalModule: 480x480 windows, stride int(480 * 2/3) = 320, where the image is larger than the crop
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(320, 320)))

# --------------------------------------------------------------------------------------------------- data
# The loaders are mmseg's ADE20K ones (mmseg::_base_/datasets/ade20k.py: ADE20KDataset in
# data/ade/ADEChallengeData2016, training and validation splits, 4 images per GPU x 4 GPUs = 16 per iteration as PE
# train.py --batch-size 16, an infinite shuffled sampler, mIoU) with PE's pipelines:
train_pipeline = [  # PE encoding/datasets/base.py BaseDataset._sync_transform, in its order
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),  # PE ade20k.py: target = mask - 1 (0 -> ignored)
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),  # PE: random mirror first
    # PE: long side = randint(base_size * 0.5, base_size * 2.0) = 260..1040, aspect kept, PIL bilinear (mask
    # nearest). RandomResize draws (520r, 520r) with r uniform in [0.5, 2.0); keep_ratio fits the long side to it.
    dict(type='RandomResize', scale=(base_size, base_size), ratio_range=(0.5, 2.0), keep_ratio=True,
         backend='pillow', interpolation='bilinear'),
    # PE: zero-pad (bottom/right) to at least 480 x 480, image 0 and label ignored
    dict(type='Pad', size=crop_size, pad_val=dict(img=0, seg=255)),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),  # PE: uniform random 480 crop
    # PE: no photometric distortion
    dict(type='PackSegInputs'),
]
test_pipeline = [  # single scale (s = 1.0 of the protocol): long side 520, slide inference
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(base_size, base_size), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
# PE experiments/segmentation/test.py + MultiEvalModule: long side ceil(520 * s), s in 0.5..1.75, each with flip
img_scales = [260, 390, 520, 650, 780, 910]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(s, s), keep_ratio=True) for s in img_scales],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations', reduce_zero_label=True)],
        [dict(type='PackSegInputs')],
    ]),
]
tta_model = dict(type='SegTTAModel')
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# --------------------------------------------------------------------------------------------- schedule
optim_wrapper = dict(
    type='OptimWrapper',
    # PE train.py: SGD, lr 0.004 per 16 images (ade20k), momentum 0.9, weight decay 1e-4 on every parameter
    optimizer=dict(type='SGD', lr=0.004, momentum=0.9, weight_decay=1e-4),
    # PE train.py params_list + LR_Scheduler_Head: head and auxlayer at 10x the backbone's lr throughout
    paramwise_cfg=dict(custom_keys={'decode_head': dict(lr_mult=10.), 'auxiliary_head': dict(lr_mult=10.)}),
    clip_grad=None)
param_scheduler = [  # PE utils/lr_scheduler.py 'poly': lr = base * (1 - T / total) ** 0.9, no warm-up
    dict(type='PolyLR', eta_min=0., power=0.9, begin=0, end=max_iters, by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=10 * iters_per_epoch)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=10 * iters_per_epoch),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
randomness = dict(seed=1)  # PE train.py --seed default 1
