# DeepLabV3 with a ResNeSt-269 backbone on ADE20K: the ResNeSt-50 recipe with a deeper variant.
_base_ = './deeplabv3_resnest50d-d8_4xb4-160k_ade20k-512x512.py'

checkpoint_file = 'https://github.com/zhanghang1989/ResNeSt/releases/download/weights_step1/resnest269-0cc87c48.pth'
model = dict(backbone=dict(variant='resnest269e', init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)))
