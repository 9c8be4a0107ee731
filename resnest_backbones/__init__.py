"""resnest_backbones: ResNeSt (Zhang et al., 2020, "ResNeSt: Split-Attention Networks") backbones.

One framework-free model definition (every published variant) with strict loading of the official/timm,
detectron2 and OpenMMLab checkpoints. Framework adapters live in subpackages and register themselves on
import: ``resnest_backbones.detectron2``, ``resnest_backbones.mmseg`` and ``resnest_backbones.mmdet`` (sharing
``resnest_backbones.openmmlab``), ``resnest_backbones.torchvision``.
Importing this package never imports detectron2, mmcv, mmseg or mmengine.

Example:
    >>> import torch, resnest_backbones
    >>> model = resnest_backbones.create_model("resnest50d", output_stride=8).eval()
    >>> {k: tuple(v.shape) for k, v in model.forward_features(torch.zeros(1, 3, 64, 64)).items()}
    {'res2': (1, 256, 16, 16), 'res3': (1, 512, 8, 8), 'res4': (1, 1024, 8, 8), 'res5': (1, 2048, 8, 8)}
"""
from .accel import fuse_for_inference, fuse_resnest_modules, memory_efficient_training
from .config_files import config_file, list_configs
from .factory import create_model, set_memory_efficient
from .models import (
    VARIANTS,
    CheckpointError,
    FeatureInfo,
    LoadReport,
    ResNeSt,
    convert_state_dict,
    list_variants,
    load_checkpoint,
    read_checkpoint,
)

__version__ = "0.1.0"

__all__ = [
    "VARIANTS", "CheckpointError", "FeatureInfo", "LoadReport", "ResNeSt", "config_file", "convert_state_dict",
    "create_model", "fuse_for_inference", "fuse_resnest_modules", "list_configs", "list_variants", "load_checkpoint",
    "memory_efficient_training", "read_checkpoint", "set_memory_efficient", "__version__",
]
