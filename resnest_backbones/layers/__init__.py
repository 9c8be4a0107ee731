"""Framework-free building blocks of ResNeSt: split attention, deformable conv, DropBlock."""
from . import fused
from .deform_conv import DeformConv2d
from .dropblock import DropBlock2d
from .split_attention import SplitAttention, attention_channels

__all__ = ["fused", "DeformConv2d", "DropBlock2d", "SplitAttention", "attention_channels"]
