# DeepLabV3 with a ResNeSt-50 backbone (Zhang et al., 2020) on ADE20K: mmseg's recipe (docs/reference.md section 3).
# Everything but the backbone comes from mmseg's own DeepLabV3 config: output stride 8, SyncBN, ASPP
# (dilations 1/12/24/36) + auxiliary FCN head on stage 3 (loss weight 0.4), 512x512 crops, 16 images per
# iteration (4 GPUs x 4), SGD lr 0.01 / momentum 0.9 / weight decay 5e-4, poly LR (power 0.9, min 1e-4), 160k
# iterations. Train: python tools/mmseg_train.py <this file>  (or mmseg's tools/train.py / dist_train.sh).
_base_ = ['mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-160k_ade20k-512x512.py', './_base_/resnest50d-d8.py']
custom_imports = dict(imports=['resnest_backbones.mmseg'], allow_failed_imports=False)

model = dict(
    pretrained=None,  # the base config's ResNet-50 weights; ours come through the backbone's init_cfg
    backbone={{_base_.resnest_backbone}})
