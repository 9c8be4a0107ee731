# What every toy mmseg config shares: the toy ADE20K-layout data (made under data/toy_ade on first use; five classes,
# 128x128 images) and a short run for 2 CPU cores -- data loaded in the main process, 150 iterations with one
# validation and one checkpoint at the end, a log line every 20 iterations. The toy configs shrink full configs of two
# families (mmseg's recipe, the paper's), and mmengine refuses two bases that set the same key, so these values carry
# names of their own and a toy config takes them from `_base_`, e.g. `train_cfg = _base_.toy_train_cfg`.
toy_iters = 150
toy_loader = dict(num_workers=0, persistent_workers=False)
toy_ade = dict(type='resnest_backbones.ToyADE20KDataset', data_root='data/toy_ade',
               toy=dict(num_train=64, num_val=16, image_size=(128, 128), seed=0))
toy_train_cfg = dict(type='IterBasedTrainLoop', max_iters=toy_iters, val_interval=toy_iters)
toy_hooks = dict(
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=toy_iters, max_keep_ckpts=1))
