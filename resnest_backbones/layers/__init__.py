"""Framework-free building blocks of ResNeSt: deep stem, split attention, the bottleneck, deformable conv, DropBlock,
CPU SyncBN."""
from .bottleneck import Bottleneck, NormLayer
from .deform_conv import DeformConv2d
from .dropblock import DropBlock2d
from .split_attention import SplitAttention, attention_channels
from .stem import DeepStem
from .sync_batchnorm import SyncBatchNorm

__all__ = [
    "Bottleneck", "DeepStem", "DeformConv2d", "DropBlock2d", "NormLayer", "SplitAttention", "SyncBatchNorm",
    "attention_channels",
]
