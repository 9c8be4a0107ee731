"""MMSegmentation / MMDetection adapter of the ResNeSt backbones (Zhang et al., 2020, "ResNeSt:
Split-Attention Networks").

Importing this package registers :class:`ResNeSt` as ``resnest_backbones.ResNeSt`` in a child registry of
mmengine's root ``MODELS`` with the scope ``resnest_backbones`` (mmseg already owns the name ``ResNeSt`` for its
own implementation). Because the registry hangs off mmengine's root, any OpenMMLab 2.x codebase (mmseg, mmdet)
finds it from its own configs::

    custom_imports = dict(imports=['resnest_backbones.mmseg'], allow_failed_imports=False)
    model = dict(backbone=dict(_delete_=True, type='resnest_backbones.ResNeSt', variant='resnest101e',
                               out_indices=(0, 1, 2, 3), output_stride=8, norm_cfg=dict(type='SyncBN')))

This package needs mmengine and mmcv only; the toy datasets (which need mmseg) are registered by importing
:mod:`resnest_backbones.mmseg.datasets`.
"""
from .backbone import ResNeSt
from .registry import DATASETS, MODELS

__all__ = ["DATASETS", "MODELS", "ResNeSt"]
