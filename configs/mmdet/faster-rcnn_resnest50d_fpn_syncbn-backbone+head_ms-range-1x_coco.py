# Faster R-CNN + FPN with a ResNeSt-50 backbone (Zhang et al., 2020) on COCO: MMDetection's own model
# mmdet::resnest/faster-rcnn_s50_fpn_syncbn-backbone+head_ms-range-1x_coco.py (published box AP 42.0, COCO val2017;
# docs/model_zoo.md), with our backbone. Every key but the backbone's comes from mmdet's config (checked key by key by
# tests/frameworks/mmdet/test_mmdet_configs.py): Shared4Conv1FCBBoxHead with SyncBN, multi-scale training
# (RandomResize 1333 x 640..800), ResNeSt input normalisation, 1x schedule (12 epochs, 8 GPUs x 2 images, SGD lr 0.02).
# mmdet's released file of this model loads as it is (backbone.* in the OpenMMLab layout).
#   python tools/mmdet_train.py <this file> --launcher pytorch    (under torchrun; or mmdet's tools/train.py)
#   python tools/mmdet_test.py <this file> <released or trained .pth>
_base_ = ['mmdet::resnest/faster-rcnn_s50_fpn_syncbn-backbone+head_ms-range-1x_coco.py', './_base_/resnest50d.py']
custom_imports = dict(imports=['resnest_backbones.mmdet'], allow_failed_imports=False)

model = dict(backbone={{_base_.resnest_backbone}})
