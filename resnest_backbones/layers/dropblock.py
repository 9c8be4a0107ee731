"""DropBlock (Ghiasi et al., 2018), the regulariser of ResNeSt's ImageNet training (applied to res4/res5).

Drops contiguous ``block_size x block_size`` regions of each channel during training and rescales the rest
so the expected activation is unchanged; the identity in eval mode.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DropBlock2d"]


class DropBlock2d(nn.Module):
    """DropBlock over ``(B, C, H, W)`` feature maps.

    Args:
        drop_prob: fraction of activations to drop (paper: 0.1).
        block_size: side of the square dropped regions (paper's ResNeSt setting: 3).
    """

    def __init__(self, drop_prob: float, block_size: int = 3) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        if block_size < 1 or block_size % 2 == 0:
            raise ValueError(f"block_size must be a positive odd number, got {block_size}")
        self.drop_prob = drop_prob
        self.block_size = block_size

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        height, width = x.shape[-2:]
        block = min(self.block_size, height, width)
        # Seed rate so that, once grown into blocks, about drop_prob of the valid area is dropped.
        valid = max((height - block + 1) * (width - block + 1), 1)
        gamma = self.drop_prob * height * width / (block * block * valid)
        seeds = (x.new_empty(x.shape).uniform_() < gamma).to(x.dtype)
        dropped = F.max_pool2d(seeds, kernel_size=block, stride=1, padding=block // 2)[..., :height, :width]
        keep = 1.0 - dropped
        return x * keep * (keep.numel() / keep.sum().clamp_min(1.0))
