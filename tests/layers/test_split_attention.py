"""The vectorised split-attention layer against a slow, obviously correct per-group reference.

The reference follows the paper's description literally: one small convolution per (radix, cardinal group)
pair, a separate attention MLP per cardinal group, and an explicit softmax over the radix splits of each channel
(a sigmoid gate when radix is 1). It reads the layer's weights by slicing, so it also pins down the radix-major
channel layout every published checkpoint depends on.
"""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from support.numerics import max_rel_diff, randomize_norms

from resnest_backbones.layers import SplitAttention, attention_channels
from resnest_backbones.layers.split_attention import combine_splits


def _bn(x: torch.Tensor, bn: torch.nn.BatchNorm2d, lo: int, hi: int) -> torch.Tensor:
    return F.batch_norm(x, bn.running_mean[lo:hi], bn.running_var[lo:hi], bn.weight[lo:hi], bn.bias[lo:hi],
                        False, 0.0, bn.eps)


def reference_split_attention(layer: SplitAttention, x: torch.Tensor) -> torch.Tensor:
    radix, card, channels = layer.radix, layer.cardinality, layer.channels
    per_group = channels // card                     # output channels of one (split, group) pair
    in_per_group = x.shape[1] // (radix * card)
    inter_per_group = layer.fc1.out_channels // card
    conv = layer.conv
    outputs = []
    for b in range(x.shape[0]):
        sample = x[b:b + 1]
        out_groups = []
        for k in range(card):
            splits = []
            for r in range(radix):
                g = r * card + k                     # radix-major: split r of cardinal group k
                lo, hi = g * per_group, (g + 1) * per_group
                y = F.conv2d(sample[:, g * in_per_group:(g + 1) * in_per_group], conv.weight[lo:hi],
                             stride=conv.stride, padding=conv.padding, dilation=conv.dilation)
                splits.append(F.relu(_bn(y, layer.bn0, lo, hi)))
            pooled = sum(splits).mean(dim=(2, 3), keepdim=True)
            w1 = layer.fc1.weight[k * inter_per_group:(k + 1) * inter_per_group]
            b1 = layer.fc1.bias[k * inter_per_group:(k + 1) * inter_per_group]
            hidden = F.relu(_bn(F.conv2d(pooled, w1, b1), layer.bn1,
                                k * inter_per_group, (k + 1) * inter_per_group))
            rows = slice(k * radix * per_group, (k + 1) * radix * per_group)
            logits = F.conv2d(hidden, layer.fc2.weight[rows], layer.fc2.bias[rows]).view(radix, per_group)
            weights = torch.sigmoid(logits) if radix == 1 else torch.softmax(logits, dim=0)
            mixed = sum(weights[r].view(1, per_group, 1, 1) * splits[r] for r in range(radix))
            out_groups.append(mixed)
        outputs.append(torch.cat(out_groups, dim=1))
    return torch.cat(outputs, dim=0)


@pytest.mark.parametrize("radix, cardinality", list(itertools.product([1, 2, 4], [1, 2, 4])))
@pytest.mark.parametrize("stride, dilation", [(1, 1), (2, 2)])
def test_matches_per_group_reference(radix: int, cardinality: int, stride: int, dilation: int) -> None:
    torch.manual_seed(radix * 10 + cardinality)
    channels = 48
    layer = SplitAttention(channels, channels, 3, stride=stride, padding=dilation, dilation=dilation,
                           cardinality=cardinality, radix=radix)
    for p in layer.parameters():  # fc biases start at zero; make every tensor matter
        torch.nn.init.normal_(p, std=0.2)
    randomize_norms(layer).eval()
    x = torch.randn(2, channels, 9, 11)
    with torch.no_grad():
        got, expected = layer(x), reference_split_attention(layer, x)
    assert got.shape == expected.shape == (2, channels, (9 - 1) // stride + 1, (11 - 1) // stride + 1)
    assert max_rel_diff(got, expected) <= 1e-5


def test_attention_width_follows_the_paper() -> None:
    assert attention_channels(64, 2) == 32        # max(64 * 2 // 4, 32)
    assert attention_channels(256, 2) == 128
    assert attention_channels(96, 1) == 32        # the minimum of 32 channels
    layer = SplitAttention(256, 256, radix=2)
    assert layer.fc1.out_channels == 128 and layer.conv.groups == 2 and layer.fc2.out_channels == 512


def test_invalid_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="divisible by cardinality"):
        SplitAttention(48, 50, cardinality=4)
    with pytest.raises(ValueError, match="radix and cardinality"):
        SplitAttention(48, 48, radix=0)


def test_combine_splits_matches_reference_and_keeps_format() -> None:
    gen = torch.Generator().manual_seed(0)
    for radix in (1, 2, 4):
        x = torch.randn(2, radix * 6, 5, 7, generator=gen)
        w = torch.rand(2, radix, 6, 1, 1, generator=gen)
        reference = (x.view(2, radix, 6, 5, 7) * w).sum(1)
        for fmt in (torch.contiguous_format, torch.channels_last):
            out = combine_splits(x.contiguous(memory_format=fmt), w)
            assert torch.allclose(out, reference, rtol=1e-6, atol=1e-6)
            assert out.is_contiguous(memory_format=fmt)
