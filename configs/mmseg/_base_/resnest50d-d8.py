# The ResNeSt-50 backbone (Zhang et al., 2020) of the DeepLabV3 recipes (REFERENCE.md section 3), shared by the
# ADE20K and Cityscapes configs, which put it in place of mmseg's ResNet with `backbone={{_base_.resnest_backbone}}`.
# Output stride 8 with dilated stages 3/4 (the first block of a dilated stage at half the dilation), SyncBN,
# every norm trained.

# Official ImageNet weights, from the official ResNeSt GitHub release (tag weights_step1); see the README.
checkpoint_file = 'checkpoints/resnest50-528c19ca.pth'
resnest_backbone = dict(
    _delete_=True,  # replaces the base config's ResNet backbone instead of merging into it
    type='resnest_backbones.ResNeSt',
    variant='resnest50d',
    out_indices=(0, 1, 2, 3),
    strides=(1, 2, 1, 1),  # output stride 8
    dilations=(1, 1, 2, 4),
    contract_dilation=True,
    avd_dilated=True,  # official ResNeSt semantics in dilated stages; False = mmseg's own ResNeSt
    norm_cfg=dict(type='SyncBN', requires_grad=True),
    norm_eval=False,
    init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file))
