# The ResNeSt-50 backbone (Zhang et al., 2020) of MMDetection's own ResNeSt detectors (docs/reference.md section 4),
# shared by the four S-50 configs, which put it in place of mmdet's ResNeSt with `backbone={{_base_.resnest_backbone}}`.
# Every argument describes mmdet's backbone of configs/resnest/* (mmdet 3.3.0) in our names:
#   mmdet: ResNeSt(depth=50, stem_channels=64, radix=2, reduction_factor=4, avg_down_stride=True, num_stages=4,
#                  style='pytorch')          -> variant='resnest50d' (3-4-6-3 blocks, deep stem 2 x 32 = 64
#                                                channels, radix 2, reduction 4, avg_down shortcuts, AVD after the
#                                                split-attention conv; at output stride 32 mmdet's AVD placement is
#                                                the official one)
#   out_indices=(0, 1, 2, 3), frozen_stages=1, norm_eval=False, norm_cfg=SyncBN: the same values
#   init_cfg checkpoint 'open-mmlab://resnest50' -> the URL mmengine resolves it to (mmengine/hub/openmmlab.json):
#                                                OpenMMLab's conversion of the official ImageNet weights, served on
#                                                OpenMMLab's download site; here it is fetched into torch hub's cache,
#                                                its SHA-256 prefix (in the name) checked, and loaded strictly.
checkpoint_file = 'https://download.openmmlab.com/pretrain/third_party/resnest50_d2-7497a55b.pth'
resnest_backbone = dict(
    _delete_=True,  # replaces mmdet's own ResNeSt backbone dict instead of merging into it
    type='resnest_backbones.ResNeSt',
    variant='resnest50d',
    out_indices=(0, 1, 2, 3),
    frozen_stages=1,  # stem and stage 1
    norm_cfg=dict(type='SyncBN', requires_grad=True),
    norm_eval=False,
    init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file))
