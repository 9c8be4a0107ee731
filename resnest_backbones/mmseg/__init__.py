"""MMSegmentation adapter of the ResNeSt backbones (Zhang et al., 2020, "ResNeSt: Split-Attention Networks").

Importing this package registers the OpenMMLab backbone, :class:`~resnest_backbones.openmmlab.OpenMMLabResNeSt`
(one class for mmseg and mmdet, needing only mmengine and mmcv: :mod:`resnest_backbones.openmmlab`), as
``resnest_backbones.ResNeSt`` in a child registry of mmengine's root ``MODELS`` with the scope
``resnest_backbones`` (mmseg already owns the name ``ResNeSt`` for its own implementation)::

    custom_imports = dict(imports=['resnest_backbones.mmseg'], allow_failed_imports=False)
    model = dict(backbone=dict(_delete_=True, type='resnest_backbones.ResNeSt', variant='resnest101e',
                               out_indices=(0, 1, 2, 3), output_stride=8, norm_cfg=dict(type='SyncBN')))

With mmseg installed, importing this package also registers the ResNeSt paper's decode head,
``resnest_backbones.DeepLabV3Head`` (:mod:`resnest_backbones.mmseg.heads`, a ``BaseDecodeHead`` subclass); without
mmseg that module is skipped. The toy datasets (which need mmseg) are registered by importing
:mod:`resnest_backbones.mmseg.datasets`. Released segmentation models are converted by
:mod:`resnest_backbones.mmseg.convert` (the mmseg tools, :mod:`resnest_backbones.mmseg.cli`, and the predictor,
:mod:`resnest_backbones.mmseg.predict`, pass its converter to :mod:`resnest_backbones.openmmlab.checkpoint`).
"""
import importlib.util

from ..openmmlab import OpenMMLabResNeSt
from .registry import DATASETS, MODELS

__all__ = ["DATASETS", "MODELS", "OpenMMLabResNeSt"]

if importlib.util.find_spec("mmseg") is not None:  # the head subclasses mmseg's BaseDecodeHead
    from .heads import DeepLabV3Head  # noqa: F401

    __all__.append("DeepLabV3Head")
