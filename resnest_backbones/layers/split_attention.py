"""Split-Attention convolution, the core layer of ResNeSt (Zhang et al., 2020, arXiv 2004.08955).

One grouped convolution produces ``radix`` feature-map splits per cardinal group; a small two-layer
bottleneck on their global average decides, per channel, how to mix the splits (softmax over the radix
axis, or a sigmoid gate when ``radix == 1``).

Channel layout is radix-major: channel ``r * C + k * (C // cardinality) + j`` is split ``r`` of cardinal
group ``k``. Every published checkpoint depends on this layout, so it must never change.
"""
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..types import NormLayer

ConvLayer = Callable[..., nn.Module]

__all__ = ["SplitAttention", "attention_channels", "combine_splits"]


def attention_channels(in_channels: int, radix: int, reduction: int = 4, min_channels: int = 32) -> int:
    """Width of the attention bottleneck ``fc1`` (the official ``inter_channels``)."""
    return max(in_channels * radix // reduction, min_channels)


def combine_splits(x: Tensor, weights: Tensor) -> Tensor:
    """Weighted sum of the radix splits: ``sum_r x[:, r*C:(r+1)*C] * weights[:, r]``.

    Args:
        x: ``(B, radix * C, H, W)`` feature maps, radix-major channels, any memory format.
        weights: ``(B, radix, C, 1, 1)`` mixing weights.

    Returns:
        ``(B, C, H, W)`` in the memory format of ``x`` (channels_last stays channels_last).

    One multiply then ``addcmul_`` per further split: no ``(B, radix, C, H, W)`` temporary and no
    5-D reduction, unlike ``(x.view(B, radix, C, H, W) * weights).sum(1)``, whose 5-D reduction is slower
    and returns a contiguous tensor, throwing channels_last away before the next convolution (measurements:
    ``benchmarks/micro_measurements.md``). The multiply allocates the output, so the in-place accumulation
    never touches a tensor autograd saved.
    """
    channels = weights.shape[2]
    out = x[:, :channels] * weights[:, 0]
    for r in range(1, weights.shape[1]):
        out.addcmul_(x[:, r * channels:(r + 1) * channels], weights[:, r])
    return out


class SplitAttention(nn.Module):
    """Split-attention 3x3 convolution: ``conv -> bn0 -> relu -> attention over radix splits``.

    Args:
        in_channels: input channels.
        channels: output channels ``C`` (the conv itself produces ``radix * C``).
        kernel_size, stride, padding, dilation: of the split convolution.
        cardinality: number of cardinal groups.
        radix: number of splits per cardinal group (1 turns the softmax into a sigmoid gate).
        reduction: reduction factor of the attention bottleneck (4 in every published model).
        norm_layer: ``norm_layer(num_channels)`` builds a normalisation layer.
        conv_layer: builds the split convolution (``nn.Conv2d`` or a deformable conv, same signature).
        drop_block: optional regulariser applied after ``bn0`` (DropBlock in the paper).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        dilation: int = 1,
        cardinality: int = 1,
        radix: int = 2,
        reduction: int = 4,
        norm_layer: NormLayer = nn.BatchNorm2d,
        conv_layer: ConvLayer = nn.Conv2d,
        drop_block: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        if radix < 1 or cardinality < 1:
            raise ValueError(f"radix and cardinality must be >= 1, got radix={radix}, cardinality={cardinality}")
        if channels % cardinality:
            raise ValueError(f"channels ({channels}) must be divisible by cardinality ({cardinality})")
        self.radix = radix
        self.cardinality = cardinality
        self.channels = channels
        inter = attention_channels(in_channels, radix, reduction)
        self.conv = conv_layer(
            in_channels, channels * radix, kernel_size, stride=stride, padding=padding,
            dilation=dilation, groups=cardinality * radix, bias=False,
        )
        self.bn0 = norm_layer(channels * radix)
        self.drop_block = drop_block if drop_block is not None else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.fc1 = nn.Conv2d(channels, inter, 1, groups=cardinality)
        self.bn1 = norm_layer(inter)
        self._bn1_batch_stats = isinstance(self.bn1, nn.modules.batchnorm._BatchNorm)
        self.fc2 = nn.Conv2d(inter, channels * radix, 1, groups=cardinality)

    def attention(self, pooled: Tensor) -> Tensor:
        """Mixing weights ``(B, radix, C, 1, 1)`` from the pooled sum of the splits ``(B, C, 1, 1)``."""
        batch = pooled.shape[0]
        if batch == 1 and self.training and self._bn1_batch_stats and self.bn1.training:
            raise ValueError(
                "batch size 1 in training mode: the split-attention norm after global pooling (bn1) would see "
                "one value per channel. Train with >= 2 images per device, or keep norm statistics frozen "
                "(norm_eval=True, FrozenBN), or use GroupNorm (norm_layer=lambda c: nn.GroupNorm(32, c); "
                "detectron2 MODEL.RESNEST.NORM 'GN'; mmseg norm_cfg=dict(type='GN', num_groups=32))")
        if self.cardinality == 1:
            # One group: fc1 and fc2 as the matrix products they are (oneDNN's convolution takes 3-6x the time of
            # F.linear, forward and backward, on these 1x1 maps: batch 8, measured 2026-12-07).
            hidden = F.linear(pooled.flatten(1), self.fc1.weight.flatten(1), self.fc1.bias)
            hidden = self.relu(self.bn1(hidden.view(batch, -1, 1, 1)))
            logits = F.linear(hidden.flatten(1), self.fc2.weight.flatten(1), self.fc2.bias)
        else:
            logits = self.fc2(self.relu(self.bn1(self.fc1(pooled))))
        if self.radix == 1:
            return torch.sigmoid(logits).view(batch, 1, self.channels, 1, 1)
        # fc2 is grouped by cardinality, so its outputs are cardinal-major; the splits are radix-major.
        logits = logits.view(batch, self.cardinality, self.radix, -1).transpose(1, 2)
        return F.softmax(logits, dim=1).reshape(batch, self.radix, self.channels, 1, 1)

    def mixing_weights(self, x: Tensor) -> Tensor:
        """Attention weights ``(B, radix, C, 1, 1)`` for the activated splits ``x`` ``(B, radix * C, H, W)``."""
        return self.weights_from_means(x.mean((2, 3)))

    def weights_from_means(self, means: Tensor) -> Tensor:
        """Attention weights ``(B, radix, C, 1, 1)`` from the spatial means ``(B, radix * C)`` of the activated
        splits."""
        batch = means.shape[0]
        # Pool first, then sum the radix splits: the same value, without materialising the (B, C, H, W) sum.
        pooled = means.view(batch, self.radix, self.channels).sum(1)
        return self.attention(pooled.view(batch, self.channels, 1, 1))

    def attend(self, x: Tensor) -> Tensor:
        """Everything after the split convolution: ``bn0 -> relu -> attention`` on its output ``x``."""
        x = self.relu(self.drop_block(self.bn0(x)))
        return combine_splits(x, self.mixing_weights(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.attend(self.conv(x))
