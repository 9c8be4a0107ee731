"""The ``resnest_backbones`` scope for MMSegmentation: the shared model registry (a child of mmengine's root
``MODELS``, :mod:`resnest_backbones.openmmlab.registry`, where the backbone and the decode head register) and the
data sets' registry, a child of mmengine's root ``DATASETS``.

Being children of the root (rather than of ``mmseg.registry``) is what lets mmseg's registries, whatever their
default scope, find ``type='resnest_backbones...'``.
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import Registry

from ..openmmlab.registry import MODELS, SCOPE

__all__ = ["DATASETS", "MODELS", "SCOPE"]

DATASETS = Registry("dataset", parent=MMENGINE_DATASETS, scope=SCOPE,
                    locations=["resnest_backbones.mmseg.datasets"])
