# Cascade R-CNN + FPN with a ResNeSt-101 backbone on COCO: MMDetection's own model
# mmdet::resnest/cascade-rcnn_s101_fpn_syncbn-backbone+head_ms-range-1x_coco.py (published box AP 46.8), with our
# backbone: the S-50 config with the deeper variant, as mmdet's S-101 config is its S-50 config with depth=101,
# stem_channels=128 (deep stem 2 x 64) and the ImageNet file of open-mmlab://resnest101 (the URL mmengine resolves it
# to).
_base_ = './cascade-rcnn_resnest50d_fpn_syncbn-backbone+head_ms-range-1x_coco.py'

checkpoint_file = 'https://download.openmmlab.com/pretrain/third_party/resnest101_d2-f3b931b2.pth'
model = dict(backbone=dict(variant='resnest101e', init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)))
