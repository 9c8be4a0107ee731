"""Deformable convolution (DCNv1, and modulated DCNv2) with the signature of ``nn.Conv2d``.

Used as the ``conv_layer`` of split attention in chosen stages (the paper's Faster R-CNN S-50 DCN recipe:
modulated, 2 deformable groups, res3-res5). The weight is named like ``nn.Conv2d``'s, so ImageNet weights
of the plain conv load into it; the offset predictor ``conv_offset`` starts at zero (plain-conv behaviour)
and has no counterpart in any ImageNet checkpoint.

It computes the official detectron2 wrapper's deformable block (``resnest/d2/resnest.py`` and ``splat.py`` of
github zhanghang1989/ResNeSt; facts in docs/reference.md section 4), so that wrapper's DCN zoo weights
(``resN.i.conv2_offset`` -> ``conv2.conv.conv_offset``) give the same function:

* ``conv_offset`` reads this conv's input (the block's conv1 -> norm -> ReLU output) and is a 3x3 conv grouped
  by ``deform_groups``, with bias, with the stride, padding and dilation of this conv (stride 1 under AVD,
  whose pool comes after split attention);
* modulated: its output is chunked into three equal parts along the channels; the first two, concatenated,
  are the offsets and the third the mask logits (sigmoid). With more than one deformable group that is *not*
  "27 channels per group": the chunks cut across the offset conv's groups, exactly as the official block does;
* the offsets and mask go to ``torchvision.ops.deform_conv2d`` as they are: its layout (per deformable group,
  per kernel position ``i * k + j``: channel ``2 * pos`` = dy, ``2 * pos + 1`` = dx; mask channel ``pos``) and
  its bilinear sampling (zero outside the map) are those of detectron2's ``ModulatedDeformConv``/``DeformConv``,
  so no permutation is needed.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

__all__ = ["DeformConv2d", "OFFSET_LAYER_NAME"]

#: Name of the offset predictor inside :class:`DeformConv2d` (checkpoint loading recognises it).
OFFSET_LAYER_NAME = "conv_offset"


class DeformConv2d(nn.Module):
    """Deformable 2-D convolution over ``torchvision.ops.deform_conv2d``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias: as ``nn.Conv2d``.
        deform_groups: number of offset groups (each sees ``in_channels // deform_groups`` channels); also the
            groups of the offset predictor.
        modulated: predict a sigmoid modulation mask too (DCNv2).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        deform_groups: int = 1,
        modulated: bool = True,
    ) -> None:
        super().__init__()
        if in_channels % deform_groups:
            raise ValueError(f"in_channels ({in_channels}) must be divisible by deform_groups ({deform_groups})")
        self.stride, self.padding, self.dilation = (stride, stride), (padding, padding), (dilation, dilation)
        self.modulated = modulated
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        per_position = 3 if modulated else 2
        self.conv_offset = nn.Conv2d(
            in_channels, deform_groups * per_position * kernel_size * kernel_size, kernel_size,
            stride=stride, padding=padding, dilation=dilation, groups=deform_groups, bias=True,
        )
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x: Tensor) -> Tensor:
        offset = self.conv_offset(x)
        mask = torch.jit.annotate(Optional[Tensor], None)
        if self.modulated:
            first, second, logits = offset.chunk(3, dim=1)
            offset, mask = torch.cat([first, second], dim=1), torch.sigmoid(logits)
        return deform_conv2d(x, offset, self.weight, self.bias, self.stride, self.padding, self.dilation, mask)
