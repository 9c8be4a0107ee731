# Toy DeepLabV3 + ResNeSt-14 on the toy Cityscapes-layout data (leftImg8bit/ + gtFine/*_labelTrainIds.png, 64x128
# images, made under data/toy_cityscapes on first use): the toy ADE20K config (the same model, pipelines and
# schedule; on these 2:1 images its 128x128 resize bound is Cityscapes' 128x64) on the Cityscapes layout.
_base_ = './deeplabv3_resnest14d-d8_toy-ade.py'

toy_cityscapes = dict(type='resnest_backbones.ToyCityscapesDataset', data_root='data/toy_cityscapes',
                      toy=dict(num_train=32, num_val=8, image_size=(64, 128), seed=0))
# merged into the toy ADE20K loaders (their pipelines stay), with the Cityscapes directories
train_dataloader = dict(dataset=dict(**toy_cityscapes, data_prefix=dict(img_path='leftImg8bit/train',
                                                                        seg_map_path='gtFine/train')))
val_dataloader = dict(dataset=dict(**toy_cityscapes, data_prefix=dict(img_path='leftImg8bit/val',
                                                                      seg_map_path='gtFine/val')))
test_dataloader = val_dataloader
