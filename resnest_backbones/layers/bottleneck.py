"""The ResNeSt bottleneck block (Zhang et al., 2020): 1x1 conv, split-attention 3x3 conv, 1x1 conv, residual."""
# No `from __future__ import annotations` here: TorchScript reads the real annotations of the @torch.jit.unused
# method and cannot resolve string ones.

from typing import Callable, Optional

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

from ..types import NormLayer
from .dropblock import DropBlock2d
from .split_attention import SplitAttention

__all__ = ["Bottleneck", "NormLayer"]


class Bottleneck(nn.Module):
    """ResNeSt bottleneck: 1x1 conv, split-attention 3x3 conv, 1x1 conv (x4 channels), residual.

    Args:
        in_channels: input channels.
        planes: base width of the block; output channels are ``4 * planes``.
        stride: spatial stride of the block.
        dilation: dilation of the 3x3 split-attention conv.
        cardinality, radix: split-attention groups and splits.
        bottleneck_width: width per cardinal group at ``planes == 64``.
        avd: downsample with a 3x3 average pool (stride ``stride``) instead of a strided conv.
        avd_first: place that pool before the split-attention conv instead of after it.
        norm_layer: builds normalisation layers.
        conv_layer: builds the split-attention conv (plain or deformable).
        drop_block_prob: DropBlock probability (0 disables it).
        downsample: shortcut projection, when the shape changes.
        with_cp: recompute this block in the backward pass instead of storing its activations.
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        cardinality: int = 1,
        radix: int = 2,
        bottleneck_width: int = 64,
        avd: bool = False,
        avd_first: bool = False,
        norm_layer: NormLayer = nn.BatchNorm2d,
        conv_layer: Callable[..., nn.Module] = nn.Conv2d,
        drop_block_prob: float = 0.0,
        downsample: Optional[nn.Module] = None,
        with_cp: bool = False,
    ) -> None:
        super().__init__()
        width = int(planes * (bottleneck_width / 64.0)) * cardinality
        out_channels = planes * self.expansion
        self.with_cp = with_cp

        def drop_block() -> nn.Module:
            return DropBlock2d(drop_block_prob, 3) if drop_block_prob > 0 else nn.Identity()

        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = norm_layer(width)
        self.drop_block1 = drop_block()
        self.relu = nn.ReLU(inplace=True)
        pool = nn.AvgPool2d(3, stride, padding=1) if avd else nn.Identity()
        self.avd_first = pool if avd_first else nn.Identity()
        self.conv2 = SplitAttention(
            width, width, 3, stride=1 if avd else stride, padding=dilation, dilation=dilation,
            cardinality=cardinality, radix=radix, norm_layer=norm_layer, conv_layer=conv_layer,
            drop_block=drop_block() if drop_block_prob > 0 else None,
        )
        self.avd_last = nn.Identity() if avd_first else pool
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = norm_layer(out_channels)
        self.drop_block3 = drop_block()
        self.downsample = downsample if downsample is not None else nn.Identity()

    def _residual(self, x: Tensor) -> Tensor:
        out = self.conv1(x)
        out = self.conv2(self.avd_first(self.relu(self.drop_block1(self.bn1(out)))))
        return self._project_and_add(out, x)

    def _project_and_add(self, out: Tensor, x: Tensor) -> Tensor:
        """``relu(bn3(conv3(avd_last(out))) + shortcut(x))``: the block's end after split attention."""
        return self._add_shortcut(self.drop_block3(self.bn3(self.conv3(self.avd_last(out)))), x)

    def _add_shortcut(self, out: Tensor, x: Tensor) -> Tensor:
        """``relu(out + shortcut(x))`` for the residual branch's output ``out`` (which it overwrites)."""
        # In place: the norm's output is not saved by autograd, so this saves an allocation and a pass.
        out += self.downsample(x)
        return self.relu(out)

    @torch.jit.unused
    def _checkpointed(self, x: Tensor) -> Tensor:
        return torch.utils.checkpoint.checkpoint(self._residual, x, use_reentrant=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.with_cp and x.requires_grad and not torch.jit.is_scripting():
            return self._checkpointed(x)
        return self._residual(x)
