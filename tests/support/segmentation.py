"""mmseg batches for the segmentation tests: seeded random images with labels, some pixels ignored."""
from __future__ import annotations

from typing import Any, Dict, Tuple

import torch


def seg_batch(num_classes: int, size: Tuple[int, int], seed: int = 0) -> Dict[str, Any]:
    """Two uint8 images of ``size`` with random labels (the first 4 rows ignored, 255) as mmseg's ``train_step`` /
    ``test_step`` take them. Two, because split attention's BN on pooled features needs more than one sample in
    training."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    gen = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(2):
        inputs.append(torch.randint(0, 256, (3, *size), generator=gen, dtype=torch.uint8))
        labels = torch.randint(0, num_classes, (1, *size), generator=gen)
        labels[:, :4] = 255  # some ignored pixels
        sample = SegDataSample(gt_sem_seg=PixelData(data=labels))
        sample.set_metainfo(dict(img_shape=size, ori_shape=size, pad_shape=size))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)
