"""The one ResNeSt definition (Zhang et al., 2020, "ResNeSt: Split-Attention Networks", arXiv 2004.08955).

A ResNet-D style network (deep stem, average-pool shortcut downsampling) whose bottleneck 3x3 convolution is
a split-attention convolution, with optional average-pool downsampling inside the block (AVD). Every
adapter (detectron2, MMSegmentation, torchvision) subclasses :class:`ResNeSt`, so parameter names are the
official/timm ``state_dict`` keys everywhere and the published ImageNet checkpoints load as they are.

The core takes plain arguments only, never a framework's config object.
"""
# No `from __future__ import annotations` here: TorchScript reads the real annotations of the @torch.jit.unused
# method and cannot resolve string ones.

import functools
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.utils.checkpoint
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..layers import Bottleneck, DeepStem, DeformConv2d, NormLayer
from .checkpoint.layouts import install_layout_hooks

__all__ = ["Bottleneck", "FeatureInfo", "ResNeSt", "STAGE_NAMES", "stage_strides_and_dilations"]

#: Names of the four residual stages' outputs (detectron2's convention; strides 4, 8, 16, 32 at OS32).
STAGE_NAMES: Tuple[str, ...] = ("res2", "res3", "res4", "res5")
OUTPUT_NAMES: Tuple[str, ...] = ("stem",) + STAGE_NAMES


class FeatureInfo(NamedTuple):
    """Channels and stride (w.r.t. the input) of one output of the network."""

    channels: int
    stride: int


def stage_strides_and_dilations(output_stride: int) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """Per-stage strides and dilations giving ``output_stride`` (8, 16 or 32), the official way."""
    table = {32: ((1, 2, 2, 2), (1, 1, 1, 1)), 16: ((1, 2, 2, 1), (1, 1, 1, 2)), 8: ((1, 2, 1, 1), (1, 1, 2, 4))}
    if output_stride not in table:
        raise ValueError(f"output_stride must be one of {sorted(table)}, got {output_stride}")
    return table[output_stride]


class ResNeSt(nn.Module):
    """ResNeSt backbone (and, with ``num_classes > 0``, classifier).

    Args:
        layers: number of bottlenecks in each of the four stages.
        radix, cardinality, bottleneck_width: split-attention shape (``2s1x64d`` = radix 2, 1 group, 64 wide).
        stem_width: width of the first two stem convs (the third has ``2 * stem_width``).
        avd, avd_first: average-pool downsampling inside the block, before or after split attention.
        avd_dilated: keep AVD (as a stride-1 3x3 average pool) in the first block of every stage after
            ``res2`` even when the stage is dilated instead of strided, as the official PyTorch ResNeSt
            does (``True``, default). ``False`` gives the timm/MMSegmentation semantics (AVD only where the
            block is strided). Both are the same network at output stride 32.
        in_channels: input image channels.
        num_classes: size of the classification head (0: no head; ``forward`` returns features).
        final_drop: dropout before the classification head.
        output_stride: 32, 16 or 8; the official dilation scheme (ignored when ``strides`` is given).
        strides, dilations: explicit per-stage strides and dilations (MMSegmentation style).
        contract_dilation: the first block of a stage with dilation ``d > 1`` uses ``d // 2`` (official).
        multi_grid: dilation multipliers for the blocks of the last stage (DeepLabV3).
        out_features: outputs of :meth:`forward_features`, among ``stem, res2, res3, res4, res5``
            (default: the four stages). Stages after the last requested one are not built (unless there
            is a classification head), so no parameter goes unused.
        norm_layer: ``norm_layer(channels)`` builds every normalisation layer.
        deform_stages: per stage, whether split attention uses a deformable conv.
        deform_modulated: DCNv2 (modulated) rather than DCNv1.
        deform_groups: deformable (offset) groups.
        drop_block_prob: DropBlock probability in the stages where ``drop_block_stages`` is true.
        drop_block_stages: per stage; the paper regularises ``res4`` and ``res5``.
        zero_init_last: zero the last norm of every block (residual branches start as identity).
        freeze_at: detectron2's convention: 0 freezes nothing, 1 the stem, ``k >= 2`` the stem and
            ``res2 .. res{k}``. Frozen parts get no gradient and keep their norm statistics in ``train()``.
        norm_eval: keep every batch-norm layer in eval mode (frozen statistics) during training.
        with_cp: activation checkpointing of every block (less memory, about 1/3 more compute).
    """

    __jit_unused_properties__ = ["out_feature_info"]  # Python-side metadata; TorchScript skips it

    def __init__(
        self,
        layers: Sequence[int],
        *,
        radix: int = 2,
        cardinality: int = 1,
        bottleneck_width: int = 64,
        stem_width: int = 32,
        avd: bool = True,
        avd_first: bool = False,
        avd_dilated: bool = True,
        in_channels: int = 3,
        num_classes: int = 0,
        final_drop: float = 0.0,
        output_stride: int = 32,
        strides: Optional[Sequence[int]] = None,
        dilations: Optional[Sequence[int]] = None,
        contract_dilation: bool = True,
        multi_grid: Optional[Sequence[int]] = None,
        out_features: Optional[Sequence[str]] = None,
        norm_layer: NormLayer = nn.BatchNorm2d,
        deform_stages: Sequence[bool] = (False, False, False, False),
        deform_modulated: bool = True,
        deform_groups: int = 1,
        drop_block_prob: float = 0.0,
        drop_block_stages: Sequence[bool] = (False, False, True, True),
        zero_init_last: bool = False,
        freeze_at: int = 0,
        norm_eval: bool = False,
        with_cp: bool = False,
    ) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"layers must give the number of blocks of 4 stages, got {list(layers)}")
        if strides is None:
            strides, default_dilations = stage_strides_and_dilations(output_stride)
            dilations = default_dilations if dilations is None else dilations
        dilations = dilations if dilations is not None else (1, 1, 1, 1)
        for label, values in (("strides", strides), ("dilations", dilations), ("deform_stages", deform_stages),
                              ("drop_block_stages", drop_block_stages)):
            if len(values) != 4:
                raise ValueError(f"{label} must have one entry per stage (4), got {list(values)}")
        if multi_grid is not None and len(multi_grid) != layers[3]:
            raise ValueError(f"multi_grid needs one multiplier per block of the last stage ({layers[3]}), "
                             f"got {list(multi_grid)}")
        if not 0 <= freeze_at <= 5:
            raise ValueError(f"freeze_at must be in 0..5 (0: nothing, 1: stem, k: stem + res2..res{{k}}), "
                             f"got {freeze_at}")
        out_features = tuple(out_features) if out_features is not None else STAGE_NAMES
        unknown = [name for name in out_features if name not in OUTPUT_NAMES]
        if not out_features or unknown:
            raise ValueError(f"out_features {list(out_features)} must be a non-empty subset of {list(OUTPUT_NAMES)}")

        self.num_classes = num_classes
        self.out_features: List[str] = [name for name in OUTPUT_NAMES if name in out_features]
        self.norm_eval = norm_eval
        self.freeze_at = freeze_at
        # With a head every stage runs; otherwise nothing after the last requested output is built.
        last_needed = 4 if num_classes > 0 else OUTPUT_NAMES.index(self.out_features[-1])

        stem_out = 2 * stem_width
        self.conv1 = DeepStem(in_channels, stem_width, stem_out, norm_layer)  # its third norm is bn1 (official)
        self.bn1 = norm_layer(stem_out)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.in_channels = in_channels
        self.feature_info: Dict[str, FeatureInfo] = {"stem": FeatureInfo(stem_out, 4)}

        block = functools.partial(
            Bottleneck, cardinality=cardinality, radix=radix, bottleneck_width=bottleneck_width,
            avd_first=avd_first, norm_layer=norm_layer, with_cp=with_cp,
        )
        channels, stride = stem_out, 4
        for index in range(4):
            name = f"layer{index + 1}"
            if index >= last_needed:
                setattr(self, name, nn.Identity())  # keeps forward (and TorchScript) uniform; no parameters
                continue
            planes = 64 * 2 ** index
            conv_layer: Callable[..., nn.Module] = nn.Conv2d
            if deform_stages[index]:
                conv_layer = functools.partial(DeformConv2d, deform_groups=deform_groups, modulated=deform_modulated)
            block_dilations = self._block_dilations(
                layers[index], dilations[index], contract_dilation, multi_grid if index == 3 else None)
            blocks = []
            for i, dilation in enumerate(block_dilations):
                block_stride = strides[index] if i == 0 else 1
                # Official rule: the first block of res3..res5 always uses AVD (a stride-1 pool when dilated).
                use_avd = avd and (block_stride > 1 or (avd_dilated and i == 0 and index > 0))
                blocks.append(block(
                    channels, planes, stride=block_stride, dilation=dilation, avd=use_avd, conv_layer=conv_layer,
                    drop_block_prob=drop_block_prob if drop_block_stages[index] else 0.0,
                    downsample=self._shortcut(channels, planes * 4, block_stride, norm_layer) if i == 0 else None,
                ))
                channels = planes * 4
            setattr(self, name, nn.Sequential(*blocks))
            stride *= strides[index]
            self.feature_info[STAGE_NAMES[index]] = FeatureInfo(channels, stride)

        self.fc = nn.Linear(channels, num_classes) if num_classes > 0 else nn.Identity()
        self.drop = nn.Dropout(final_drop) if final_drop > 0 else nn.Identity()
        self._init_weights(zero_init_last)
        self._apply_freezing()
        install_layout_hooks(self)  # the detectron2 wrapper's keys load through load_state_dict too

    @staticmethod
    def _block_dilations(
        blocks: int, dilation: int, contract: bool, multi_grid: Optional[Sequence[int]]
    ) -> List[int]:
        if multi_grid is not None:
            return [dilation * g for g in multi_grid]
        first = dilation // 2 if contract and dilation > 1 else dilation
        return [first] + [dilation] * (blocks - 1)

    @staticmethod
    def _shortcut(in_channels: int, out_channels: int, stride: int, norm_layer: NormLayer) -> Optional[nn.Module]:
        """Average-pool then 1x1 conv + norm ("avg_down"), when the block changes shape."""
        if stride == 1 and in_channels == out_channels:
            return None
        pool: nn.Module = nn.Identity()
        if stride > 1:
            pool = nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)
        return nn.Sequential(pool, nn.Conv2d(in_channels, out_channels, 1, bias=False), norm_layer(out_channels))

    def _init_weights(self, zero_init_last: bool) -> None:
        for name, module in self.named_modules():
            if isinstance(module, nn.Conv2d) and not name.endswith("conv_offset"):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, (_BatchNorm, nn.GroupNorm)) and module.weight is not None:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_last:
            for module in self.modules():
                if isinstance(module, Bottleneck) and getattr(module.bn3, "weight", None) is not None:
                    nn.init.zeros_(module.bn3.weight)

    # ----------------------------------------------------------------------------------------- freezing
    def frozen_modules(self) -> List[nn.Module]:
        """Modules frozen by ``freeze_at`` (stem, then stages in order)."""
        parts: List[nn.Module] = []
        if self.freeze_at >= 1:
            parts += [self.conv1, self.bn1]
        parts += [getattr(self, f"layer{i}") for i in range(1, self.freeze_at)]
        return parts

    def _apply_freezing(self) -> None:
        for module in self.frozen_modules():
            for param in module.parameters():
                param.requires_grad_(False)
            module.eval()

    def train(self, mode: bool = True) -> "ResNeSt":
        """Switch mode, keeping frozen parts (and, with ``norm_eval``, every batch norm) in eval mode."""
        super().train(mode)
        if mode:
            for module in self.frozen_modules():
                module.eval()
            if self.norm_eval:
                for module in self.modules():
                    if isinstance(module, _BatchNorm):
                        module.eval()
        return self

    # ---------------------------------------------------------------------------------------- forward
    def check_input(self, x: Tensor) -> None:
        """Raise a ``ValueError`` that says what to do when ``x`` is not a ``(B, C, H, W)`` image batch."""
        if x.dim() != 4:
            raise ValueError(f"expected a 4-D (batch, channels, height, width) tensor, got shape "
                             f"{list(x.shape)}; add a batch dimension with x.unsqueeze(0)")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got {x.shape[1]} (shape "
                             f"{list(x.shape)}); build the model with in_channels={x.shape[1]} or fix the input")

    def _forward_all(self, x: Tensor) -> Tuple[Dict[str, Tensor], Tensor]:
        self.check_input(x)
        outputs: Dict[str, Tensor] = {}
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        if "stem" in self.out_features:
            outputs["stem"] = x
        x = self.layer1(x)
        if "res2" in self.out_features:
            outputs["res2"] = x
        x = self.layer2(x)
        if "res3" in self.out_features:
            outputs["res3"] = x
        x = self.layer3(x)
        if "res4" in self.out_features:
            outputs["res4"] = x
        x = self.layer4(x)
        if "res5" in self.out_features:
            outputs["res5"] = x
        return outputs, x

    def forward_features(self, x: Tensor) -> Dict[str, Tensor]:
        """Run the backbone; returns ``{name: feature}`` for every name in ``out_features``."""
        return self._forward_all(x)[0]

    def forward_head(self, x: Tensor) -> Tensor:
        """Global average pool, dropout and the linear classifier on the ``res5`` map."""
        return self.fc(self.drop(torch.flatten(x.mean((2, 3)), 1)))

    def forward(self, x: Tensor) -> Union[Tensor, Dict[str, Tensor]]:
        """Logits ``(B, num_classes)`` when the model has a head, else :meth:`forward_features`' dict."""
        features, last = self._forward_all(x)
        if self.num_classes > 0:
            return self.forward_head(last)
        return features

    # ------------------------------------------------------------------------------------- properties
    @property
    def out_feature_info(self) -> Dict[str, FeatureInfo]:
        """Channels and stride of every output in ``out_features``, without running the model."""
        return {name: self.feature_info[name] for name in self.out_features}

    def extra_repr(self) -> str:
        info = ", ".join(f"{k}: {v.channels}ch/{v.stride}" for k, v in self.out_feature_info.items())
        return f"out_features=[{info}]"
