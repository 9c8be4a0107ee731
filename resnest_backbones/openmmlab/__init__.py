"""What the OpenMMLab adapters of the ResNeSt backbones (Zhang et al., 2020, "ResNeSt: Split-Attention Networks")
share, MMSegmentation's (:mod:`resnest_backbones.mmseg`) and MMDetection's (:mod:`resnest_backbones.mmdet`); it
needs mmengine and mmcv only, neither mmseg nor mmdet.

Importing this package registers :class:`OpenMMLabResNeSt` (one class for mmseg and mmdet) as
``resnest_backbones.ResNeSt`` in a child registry of mmengine's root ``MODELS`` with the scope
``resnest_backbones`` (:mod:`.registry`; mmseg and mmdet already own the name ``ResNeSt``). Configs import it
through their framework's adapter, which adds that framework's parts (``custom_imports=dict(imports=
['resnest_backbones.mmseg'])`` or ``['resnest_backbones.mmdet']``).

The modules:

* :mod:`.backbone`: :class:`OpenMMLabResNeSt`, OpenMMLab arguments onto the core ResNeSt; :mod:`.weights`: its
  pretrained ``init_cfg``, loaded strictly.
* :mod:`.checkpoint`: whole-model checkpoints (``load_from``, ``--resume``, the test tools', the predictors'):
  read without running code, loaded strictly; a framework may pass a converter for its released files.
* :mod:`.engine`: mmengine's ``Runner`` on CPU processes (gloo) as well as GPUs, with that loading;
  :mod:`.cli`: the whole ``main`` of ``tools/mmseg_*.py`` and ``tools/mmdet_*.py`` (each tool passes its
  framework's metric printer, checkpoint check, converter, ``--toy``).
"""
from .backbone import OpenMMLabResNeSt
from .registry import MODELS, SCOPE

__all__ = ["MODELS", "OpenMMLabResNeSt", "SCOPE"]
