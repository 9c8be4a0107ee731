"""Framework-free building blocks of ResNeSt: split attention, deformable conv, DropBlock, CPU-capable SyncBN."""
from . import fused
from .deform_conv import DeformConv2d
from .dropblock import DropBlock2d
from .split_attention import SplitAttention, attention_channels
from .sync_batchnorm import SyncBatchNorm

__all__ = ["fused", "DeformConv2d", "DropBlock2d", "SplitAttention", "SyncBatchNorm", "attention_channels"]
