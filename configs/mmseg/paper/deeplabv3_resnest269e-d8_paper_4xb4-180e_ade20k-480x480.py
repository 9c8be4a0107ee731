# DeepLabV3 + ResNeSt-269 on ADE20K with the ResNeSt paper's recipe (47.60 mIoU ms+flip): the ResNeSt-50 paper config
# with a deeper backbone; every other value (and its source) is there. Epochs: the PE default, 180 (see there).
#   released weights: deeplab_resnest269_ade-0074dd10.pth (PyTorch-Encoding; SHA-1 prefix),
#   converted by tools/convert_weights.py --to mmseg
_base_ = './deeplabv3_resnest50d-d8_paper_4xb4-180e_ade20k-480x480.py'

checkpoint_file = 'https://github.com/zhanghang1989/ResNeSt/releases/download/weights_step1/resnest269-0cc87c48.pth'
model = dict(backbone=dict(variant='resnest269e', init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)))
