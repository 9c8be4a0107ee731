"""The ``resnest_backbones`` scope inside MMDetection's model and dataset registries.

mmdet builds every submodule of a detector with its own ``mmdet.registry.MODELS`` (and its data sets with
``mmdet.registry.DATASETS``); a child of each with the scope ``resnest_backbones`` makes
``type='resnest_backbones.ResNeSt'`` resolve to :class:`~resnest_backbones.openmmlab.OpenMMLabResNeSt` there, while
mmdet's own ``type='ResNeSt'`` keeps meaning mmdet's implementation. (The shared registries of the same scope,
:mod:`resnest_backbones.openmmlab.registry` and mmseg's, hang off mmengine's root; a registry's children are per
parent, so they never collide, and whatever is built under mmdet's default scope finds these.)
"""
from mmdet.registry import DATASETS as MMDET_DATASETS
from mmdet.registry import MODELS as MMDET_MODELS
from mmengine.registry import Registry

from ..openmmlab.registry import SCOPE

__all__ = ["DATASETS", "MODELS", "SCOPE"]

MODELS = Registry("model", parent=MMDET_MODELS, scope=SCOPE, locations=["resnest_backbones.mmdet"])
DATASETS = Registry("dataset", parent=MMDET_DATASETS, scope=SCOPE, locations=["resnest_backbones.mmdet.datasets"])
