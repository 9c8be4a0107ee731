"""Registries of the ``resnest_backbones`` scope: children of mmengine's root registries.

A scope of its own keeps ``resnest_backbones.ResNeSt`` apart from mmseg's and mmdet's ``ResNeSt``; being a child
of the root (rather than of ``mmseg.registry.MODELS``) is what lets mmdet configs find it as well.
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

__all__ = ["DATASETS", "MODELS", "SCOPE"]

SCOPE = "resnest_backbones"
MODELS = Registry("model", parent=MMENGINE_MODELS, scope=SCOPE, locations=["resnest_backbones.mmseg"])
DATASETS = Registry("dataset", parent=MMENGINE_DATASETS, scope=SCOPE,
                    locations=["resnest_backbones.mmseg.datasets"])
