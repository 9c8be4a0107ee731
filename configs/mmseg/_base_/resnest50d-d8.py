# The ResNeSt-50 backbone (Zhang et al., 2020) of the DeepLabV3 recipes (docs/reference.md section 3), shared by the
# ADE20K and Cityscapes configs, which put it in place of mmseg's ResNet with `backbone={{_base_.resnest_backbone}}`.
# Output stride 8 with dilated stages 3/4 (the first block of a dilated stage at half the dilation), SyncBN,
# every norm trained. These configs are mmseg's own ResNeSt DeepLabV3 models (mmseg's configs/resnest/
# resnest_s101-d8_deeplabv3_*) with our backbone, so they use mmseg's ResNeSt semantics, avd_dilated=False (AVD
# only in strided blocks): mmseg's released S-101 files then compute exactly mmseg's outputs here (tested to 1e-5
# in tests/test_mmseg_released.py). The ResNeSt paper's models (official semantics, PyTorch-Encoding's head and
# recipe) are configs/mmseg/paper/. Also from mmseg's configs (deeplabv3_r50/r101-d8 + resnest): stem 2 x 64 = 128
# channels for S-101 (stem_channels=128), radix 2, reduction 4, avg_down, AVD after the split-attention conv.
# Left as it was: the ImageNet file. mmseg trained from open-mmlab://resnest101 (resnest101_d2-f3b931b2.pth, the
# OpenMMLab conversion); ours points to the official file; both load here (init_cfg.checkpoint=...).

# Official ImageNet weights, from the official ResNeSt GitHub release (tag weights_step1), downloaded once into
# torch hub's cache (hash-checked) when the model is initialised; a local path works too.
checkpoint_file = 'https://github.com/zhanghang1989/ResNeSt/releases/download/weights_step1/resnest50-528c19ca.pth'
resnest_backbone = dict(
    _delete_=True,  # replaces the base config's ResNet backbone instead of merging into it
    type='resnest_backbones.ResNeSt',
    variant='resnest50d',
    out_indices=(0, 1, 2, 3),
    strides=(1, 2, 1, 1),  # output stride 8
    dilations=(1, 1, 2, 4),
    contract_dilation=True,
    avd_dilated=False,  # mmseg's ResNeSt: no AVD in dilated stages (True = official semantics, the paper's)
    norm_cfg=dict(type='SyncBN', requires_grad=True),
    norm_eval=False,
    init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file))
