# DeepLabV3 with a ResNeSt-200 backbone on Cityscapes: the ResNeSt-50 recipe with a deeper variant.
_base_ = './deeplabv3_resnest50d-d8_4xb2-80k_cityscapes-512x1024.py'

checkpoint_file = 'https://github.com/zhanghang1989/ResNeSt/releases/download/weights_step1/resnest200-75117900.pth'
model = dict(backbone=dict(variant='resnest200e', init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)))
