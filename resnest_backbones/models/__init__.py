"""The ResNeSt model, its variant table and checkpoint handling (torch/torchvision only).

The reference modules only: ``resnest_backbones.create_model`` (:mod:`resnest_backbones.factory`, a layer above this
one and :mod:`resnest_backbones.accel`) builds a variant and switches the memory-saving modules on or off.
"""
from .checkpoint import CheckpointError, LoadReport, convert_state_dict, load_checkpoint, read_checkpoint
from .resnest import STAGE_NAMES, Bottleneck, FeatureInfo, ResNeSt, stage_strides_and_dilations
from .variants import VARIANTS, Variant, count_parameters, list_variants, resolve_variant, variant_kwargs

__all__ = [
    "Bottleneck", "CheckpointError", "FeatureInfo", "LoadReport", "ResNeSt", "STAGE_NAMES", "VARIANTS", "Variant",
    "convert_state_dict", "count_parameters", "list_variants", "load_checkpoint",
    "read_checkpoint", "resolve_variant", "stage_strides_and_dilations", "variant_kwargs",
]
