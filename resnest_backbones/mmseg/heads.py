"""The decode head of the ResNeSt paper's segmentation models (Zhang et al., 2020), for MMSegmentation.

The paper's ADE20K results (DeepLabV3 with ResNeSt-50/101/200/269) were produced with PyTorch-Encoding, whose
``DeepLabV3Head`` is not mmseg's ``ASPPHead``: its ASPP runs at ``in_channels // 8`` (256) channels, concatenates
five branches (1x1, three 3x3 atrous convs at rates 12/24/36, image pooling) and *projects* them with a 1x1 conv +
norm + ReLU + ``Dropout2d(0.5)``; then a 3x3 conv + norm + ReLU, an element-wise ``Dropout(0.1)`` and the 1x1
classifier. Convs have no bias except the classifier; upsampling is bilinear with ``align_corners=True``.
mmseg's ``ASPPHead`` (512 channels, no projection, a 3x3 bottleneck over the concatenation) is a different head,
so the released ``deeplab_resnest*_ade`` files only load into this one.

Submodule names follow PyTorch-Encoding's, so its state dict maps by a prefix rename only
(:mod:`resnest_backbones.mmseg.convert`)::

    head.aspp.b0..b3.{0,1}.*  -> decode_head.aspp.b0..b3.{0,1}.*     (conv, norm)
    head.aspp.b4.gap.{1,2}.*  -> decode_head.aspp.b4.gap.{1,2}.*     (pool, conv, norm, ReLU)
    head.aspp.project.{0,1}.* -> decode_head.aspp.project.{0,1}.*
    head.block.{0,1}.*        -> decode_head.block.{0,1}.*
    head.block.4.*            -> decode_head.conv_seg.*              (mmseg's classifier slot)

Registered as ``resnest_backbones.DeepLabV3Head``; needs mmseg (``BaseDecodeHead``).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import torch
from mmcv.cnn import build_norm_layer
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from torch import Tensor, nn
from torch.nn import functional as F

from .registry import MODELS

__all__ = ["ASPP", "DeepLabV3Head"]

ConfigDict = Dict[str, Any]


def _conv_norm_relu(in_channels: int, out_channels: int, kernel_size: int, dilation: int,
                    norm_cfg: ConfigDict) -> nn.Sequential:
    """``conv (no bias) -> norm -> ReLU`` as one ``nn.Sequential`` (keys ``0.*`` conv, ``1.*`` norm)."""
    padding = dilation if kernel_size == 3 else 0
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False),
        build_norm_layer(norm_cfg, out_channels)[1],
        nn.ReLU(inplace=True))


class _ImagePooling(nn.Module):
    """ASPP's image-level branch: global average pool, 1x1 conv + norm + ReLU, upsample to the input size."""

    def __init__(self, in_channels: int, out_channels: int, norm_cfg: ConfigDict, align_corners: bool) -> None:
        super().__init__()
        # ``gap.0`` is the pool, so the conv/norm keys are ``gap.1``/``gap.2`` as in PyTorch-Encoding.
        self.gap = nn.Sequential(nn.AdaptiveAvgPool2d(1), *_conv_norm_relu(in_channels, out_channels, 1, 1, norm_cfg))
        self.align_corners = align_corners

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(self.gap(x), x.shape[2:], mode="bilinear", align_corners=self.align_corners)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling with a projection (DeepLabV3, PyTorch-Encoding's ``ASPP_Module``).

    Args:
        in_channels: input channels (2048 for ResNeSt's last stage).
        channels: channels of every branch and of the projection (``in_channels // 8`` in the paper: 256).
        dilations: rates of the three 3x3 atrous branches.
        norm_cfg: mmcv norm config of every branch.
        align_corners: of the image-pooling branch's upsampling (a broadcast of a 1x1 map either way).
        project_dropout: ``Dropout2d`` probability after the projection (0.5 in the paper).
    """

    def __init__(self, in_channels: int, channels: int, dilations: Sequence[int], norm_cfg: ConfigDict,
                 align_corners: bool = True, project_dropout: float = 0.5) -> None:
        super().__init__()
        if len(dilations) != 3:
            raise ValueError(f"ASPP takes three atrous rates (the paper's 12, 24, 36), got {list(dilations)}")
        self.b0 = _conv_norm_relu(in_channels, channels, 1, 1, norm_cfg)
        self.b1, self.b2, self.b3 = (_conv_norm_relu(in_channels, channels, 3, d, norm_cfg) for d in dilations)
        self.b4 = _ImagePooling(in_channels, channels, norm_cfg, align_corners)
        self.project = nn.Sequential(*_conv_norm_relu(5 * channels, channels, 1, 1, norm_cfg),
                                     nn.Dropout2d(project_dropout))

    def forward(self, x: Tensor) -> Tensor:
        branches = [self.b0(x), self.b1(x), self.b2(x), self.b3(x), self.b4(x)]
        return self.project(torch.cat(branches, dim=1))


@MODELS.register_module()
class DeepLabV3Head(BaseDecodeHead):
    """PyTorch-Encoding's ``DeepLabV3Head``: the decode head of the ResNeSt paper's segmentation results.

    ``ASPP`` (with its projection) -> ``block`` (3x3 conv + norm + ReLU) -> ``dropout`` (element-wise, as
    PyTorch-Encoding's ``nn.Dropout(0.1)``; mmseg's heads use ``Dropout2d``) -> ``conv_seg`` (1x1, with bias).

    Args:
        dilations: the ASPP's three atrous rates (12, 24, 36 at output stride 8).
        project_dropout: ``Dropout2d`` probability after the ASPP projection (0.5).
        init_cfg: ``None`` keeps PyTorch's default initialisation of every conv, as PyTorch-Encoding does
            (mmseg's default would re-draw the classifier from N(0, 0.01)).
        **kwargs: ``BaseDecodeHead`` arguments: ``in_channels`` (2048), ``channels`` (256), ``num_classes``,
            ``dropout_ratio`` (0.1), ``norm_cfg``, ``align_corners`` (True), ``loss_decode``...
    """

    def __init__(self, dilations: Sequence[int] = (12, 24, 36), project_dropout: float = 0.5,
                 init_cfg: Optional[ConfigDict] = None, **kwargs: Any) -> None:
        super().__init__(init_cfg=init_cfg, **kwargs)
        if not isinstance(self.in_channels, int):
            raise ValueError("DeepLabV3Head reads one feature map: give in_channels as an int (2048) and in_index")
        norm_cfg = self.norm_cfg or dict(type="BN", requires_grad=True)
        self.aspp = ASPP(self.in_channels, self.channels, dilations, norm_cfg, self.align_corners, project_dropout)
        self.block = _conv_norm_relu(self.channels, self.channels, 3, 1, norm_cfg)
        if self.dropout is not None:
            self.dropout = nn.Dropout(self.dropout.p)

    def forward(self, inputs: List[Tensor]) -> Tensor:
        """Class logits at the feature map's resolution (mmseg upsamples them for the loss and prediction)."""
        x = self._transform_inputs(inputs)
        return self.cls_seg(self.block(self.aspp(x)))

