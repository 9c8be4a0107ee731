# DeepLabV3 + ResNeSt-101 on ADE20K with the ResNeSt paper's recipe (46.91 mIoU ms+flip): the ResNeSt-50 paper config
# with a deeper backbone; every other value (and its source) is there. PE model-zoo command: --epochs 180.
#   released weights: deeplab_resnest101_ade-06ca799c.pth (PyTorch-Encoding; SHA-1 prefix),
#   converted by tools/convert_weights.py --to mmseg
_base_ = './deeplabv3_resnest50d-d8_paper_4xb4-180e_ade20k-480x480.py'

checkpoint_file = 'https://github.com/zhanghang1989/ResNeSt/releases/download/weights_step1/resnest101-22405ba7.pth'
model = dict(backbone=dict(variant='resnest101e', init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)))
