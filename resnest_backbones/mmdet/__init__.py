"""MMDetection adapter of the ResNeSt backbones (Zhang et al., 2020, "ResNeSt: Split-Attention Networks").

Importing this package registers the OpenMMLab backbone, :class:`~resnest_backbones.openmmlab.OpenMMLabResNeSt`
(the one class for mmseg and mmdet, needing only mmengine and mmcv: :mod:`resnest_backbones.openmmlab`), as
``resnest_backbones.ResNeSt`` in the ``resnest_backbones`` scope of mmdet's model registry (mmdet owns the name
``ResNeSt`` for its own implementation), so mmdet's own ``tools/train.py`` / ``tools/test.py`` and
``tools/mmdet_train.py`` / ``tools/mmdet_test.py`` of this project run configs such as ``configs/mmdet/*``::

    custom_imports = dict(imports=['resnest_backbones.mmdet'], allow_failed_imports=False)
    model = dict(backbone=dict(_delete_=True, type='resnest_backbones.ResNeSt', variant='resnest50d',
                               out_indices=(0, 1, 2, 3), frozen_stages=1, norm_cfg=dict(type='SyncBN')))

Like every ResNeSt of this package, it reads mmdet's released detectors (OpenMMLab backbone keys under
``backbone.``) with no conversion step: its ``load_state_dict`` pre-hook renames them, strictly
(:func:`resnest_backbones.models.checkpoint.layouts.accept_foreign_layouts`). The toy COCO data set is
registered by importing :mod:`resnest_backbones.mmdet.datasets` (``resnest_backbones.ToyCocoDataset``).
"""
from ..openmmlab import OpenMMLabResNeSt
from .registry import DATASETS, MODELS

__all__ = ["DATASETS", "MODELS", "OpenMMLabResNeSt"]

MODELS.register_module(name="ResNeSt", module=OpenMMLabResNeSt)
