"""The deformable split-attention conv computes the official detectron2 wrapper's DCN block (docs/reference.md
section 4), so that wrapper's DCN zoo weights give the same function here.

* torchvision's ``deform_conv2d`` (our op) reads offsets and masks in the layout of detectron2's deformable conv
  kernels (the official op), checked against a slow sampler written from those kernels' indexing;
* the offset conv has the official shape (grouped by the deformable groups) and stride rule;
* with random non-zero offsets, the model's features equal those of the official backbone computed by
  ``support.official_d2`` from the wrapper-layout state dict, for the model itself and after loading that state
  dict through ``load_state_dict`` and ``load_checkpoint``.
"""
from __future__ import annotations

from typing import Optional

import pytest
import torch
import torch.nn.functional as F
from support.checkpoints import to_detectron2_wrapper
from support.numerics import max_rel_diff, max_rel_diff_outputs, random_image, randomize_norms
from support.official_d2 import official_backbone
from torchvision.ops import deform_conv2d

import resnest_backbones as rb
from resnest_backbones.layers import DeformConv2d
from resnest_backbones.layers.deform_conv import OFFSET_LAYER_NAME

DCN_STAGES = (False, True, True, True)


def sampled_deform_conv(x: torch.Tensor, offset: torch.Tensor, mask: Optional[torch.Tensor], weight: torch.Tensor,
                        stride: int, padding: int, dilation: int, deform_groups: int) -> torch.Tensor:
    """Deformable conv with detectron2's kernel indexing (``deform_conv_cuda_kernel.cu``): for deformable group
    ``g`` and kernel position ``p = i * kw + j`` the row offset is channel ``g * 2K + 2p``, the column offset
    ``g * 2K + 2p + 1`` and the mask ``g * K + p``; bilinear sampling, zero outside the map."""
    batch, channels, height, width = x.shape
    out_channels, in_per_group, kh, kw = weight.shape
    positions = kh * kw
    out_h = (height + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    out_w = (width + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    rows = (torch.arange(out_h, dtype=x.dtype) * stride - padding).view(1, -1, 1)
    cols = (torch.arange(out_w, dtype=x.dtype) * stride - padding).view(1, 1, -1)
    per_deform_group = channels // deform_groups
    columns = x.new_zeros(batch, channels, positions, out_h, out_w)
    for g in range(deform_groups):
        for i in range(kh):
            for j in range(kw):
                p = i * kw + j
                y = rows + i * dilation + offset[:, g * 2 * positions + 2 * p]
                xx = cols + j * dilation + offset[:, g * 2 * positions + 2 * p + 1]
                grid = torch.stack([2 * xx / (width - 1) - 1, 2 * y / (height - 1) - 1], dim=-1)
                part = x[:, g * per_deform_group:(g + 1) * per_deform_group]
                sampled = F.grid_sample(part, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
                if mask is not None:
                    sampled = sampled * mask[:, g * positions + p].unsqueeze(1)
                columns[:, g * per_deform_group:(g + 1) * per_deform_group, p] = sampled
    groups = channels // in_per_group
    out_per_group = out_channels // groups
    outs = [torch.einsum("bcphw,ocp->bohw", columns[:, q * in_per_group:(q + 1) * in_per_group],
                         weight[q * out_per_group:(q + 1) * out_per_group].flatten(2)) for q in range(groups)]
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("modulated", [True, False])
@pytest.mark.parametrize("stride, dilation", [(1, 1), (2, 2)])
def test_torchvision_reads_offsets_in_detectron2s_layout(modulated: bool, stride: int, dilation: int) -> None:
    gen = torch.Generator().manual_seed(0)
    deform_groups, groups, size = 2, 4, 9
    x = torch.randn(2, 8, size, size, generator=gen, dtype=torch.float64)
    weight = torch.randn(12, 8 // groups, 3, 3, generator=gen, dtype=torch.float64)
    out_size = (size - 1) // stride + 1  # padding = dilation: "same" size before the stride
    offset = 1.5 * torch.randn(2, deform_groups * 18, out_size, out_size, generator=gen, dtype=torch.float64)
    mask = torch.rand(2, deform_groups * 9, out_size, out_size, generator=gen, dtype=torch.float64)
    mask = mask if modulated else None
    ours = deform_conv2d(x, offset, weight, None, stride, dilation, dilation, mask)
    reference = sampled_deform_conv(x, offset, mask, weight, stride, dilation, dilation, deform_groups)
    assert max_rel_diff(ours, reference) <= 1e-10


@pytest.mark.parametrize("modulated, groups", [(True, 2), (False, 2), (True, 1)])
def test_offset_conv_has_the_official_shape_and_stride(modulated: bool, groups: int) -> None:
    per_group = 27 if modulated else 18
    conv = DeformConv2d(128, 256, 3, stride=2, padding=2, dilation=2, groups=4, bias=False, deform_groups=groups,
                        modulated=modulated)
    offset = conv.conv_offset
    assert tuple(offset.weight.shape) == (per_group * groups, 128 // groups, 3, 3)
    assert (offset.groups, offset.stride, offset.padding, offset.dilation) == (groups, (2, 2), (2, 2), (2, 2))
    assert offset.bias is not None and not offset.weight.any() and not offset.bias.any()
    # In the model: res3 of S-50 with G = 2 is [54, 64, 3, 3]; under AVD the offset conv (like split attention's
    # conv) has stride 1, the pool coming after split attention; without AVD it has the block's stride.
    for avd in (True, False):
        model = rb.create_model("resnest50d", deform_stages=DCN_STAGES, deform_modulated=modulated,
                                deform_groups=groups, avd=avd)
        offset = model.layer2[0].conv2.conv.conv_offset
        assert tuple(offset.weight.shape) == (per_group * groups, 128 // groups, 3, 3)
        assert offset.stride == ((1, 1) if avd else (2, 2))


@pytest.mark.parametrize("modulated, groups, avd", [(True, 2, True), (False, 2, True), (True, 4, False),
                                                    (False, 1, False)])
def test_model_computes_the_official_dcn_backbone(modulated: bool, groups: int, avd: bool) -> None:
    kwargs = dict(deform_stages=DCN_STAGES, deform_modulated=modulated, deform_groups=groups, avd=avd)
    torch.manual_seed(0)
    source = randomize_norms(rb.create_model("resnest14d", **kwargs)).eval()
    with torch.no_grad():  # offsets of about a pixel, masks away from 0.5
        for name, p in source.named_parameters():
            if OFFSET_LAYER_NAME in name:
                p.normal_(0, 0.05 if name.endswith("weight") else 0.5)
    wrapper = to_detectron2_wrapper(source.state_dict(), deform_groups=groups)
    x = random_image(64)
    with torch.no_grad():
        expected = official_backbone(wrapper, x, avd=avd, deform_groups=groups)
        without_offsets = official_backbone({k: v * 0 if "conv2_offset" in k else v for k, v in wrapper.items()}, x,
                                            avd=avd, deform_groups=groups)
        # The offsets matter far beyond the tolerance below (bn3's small scales keep residual branches small).
        assert max_rel_diff_outputs(without_offsets, expected) > 1e-3
        by_hook = rb.create_model("resnest14d", **kwargs).eval()
        by_hook.load_state_dict(wrapper)
        by_loader = rb.create_model("resnest14d", **kwargs).eval()
        assert rb.load_checkpoint(by_loader, wrapper).ok
        for model in (source, by_hook, by_loader):
            assert max_rel_diff_outputs(model.forward_features(x), expected) <= 1e-5


def test_layout_writer_refuses_an_unofficial_offset_shape() -> None:
    model = rb.create_model("resnest14d", deform_stages=DCN_STAGES, deform_groups=2)
    state = dict(model.state_dict())
    state["layer2.0.conv2.conv.conv_offset.weight"] = torch.zeros(54, 128, 3, 3)  # ungrouped: not the official one
    with pytest.raises(ValueError, match="res3.0.conv2_offset.weight"):
        to_detectron2_wrapper(state, deform_groups=2)
