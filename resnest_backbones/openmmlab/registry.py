"""The ``resnest_backbones`` scope the OpenMMLab adapters share, and its model registry: a child of mmengine's root
``MODELS``.

A scope of its own keeps ``resnest_backbones.ResNeSt`` apart from mmseg's and mmdet's ``ResNeSt``; being a child
of the root (rather than of ``mmseg.registry.MODELS``) is what lets any OpenMMLab 2.x codebase find it.
:class:`~resnest_backbones.openmmlab.OpenMMLabResNeSt` registers here (and mmseg's decode head,
:mod:`resnest_backbones.mmseg.heads`); the framework children of the same scope live with their framework
(:mod:`resnest_backbones.mmseg.registry`: the data sets under mmengine's root ``DATASETS``;
:mod:`resnest_backbones.mmdet.registry`: children of mmdet's registries). A registry's children are per parent,
so the registries of one scope never collide.
"""
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

__all__ = ["MODELS", "SCOPE"]

SCOPE = "resnest_backbones"
MODELS = Registry("model", parent=MMENGINE_MODELS, scope=SCOPE, locations=["resnest_backbones.openmmlab"])
