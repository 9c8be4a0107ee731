"""The deep stem of ResNeSt (Zhang et al., 2020, "ResNeSt: Split-Attention Networks"): three 3x3 convolutions.

The official/timm checkpoints store it as ``conv1.0`` (conv), ``conv1.1`` (norm), ``conv1.3`` (conv),
``conv1.4`` (norm) and ``conv1.6`` (conv), with the ReLUs at the parameter-free indices 2 and 5; the norm after
the third conv is the network's own ``bn1``. Those indices are named here once, so the model, the checkpoint
converters, the acceleration code and the tests all refer to the same constants instead of magic numbers.
"""
from typing import Callable

from torch import nn

__all__ = ["DeepStem", "STEM_ATTRIBUTE", "STEM_INDICES", "stem_key"]

#: Attribute of the stem in :class:`~resnest_backbones.ResNeSt` (and first part of its ``state_dict`` keys).
STEM_ATTRIBUTE = "conv1"
#: Child indices of the stem's layers in the official layout (the ReLUs have no parameters).
CONV_A, NORM_A, ACT_A, CONV_B, NORM_B, ACT_B, CONV_C = range(7)
#: The indices that own ``state_dict`` entries, in order.
STEM_INDICES = (CONV_A, NORM_A, CONV_B, NORM_B, CONV_C)


def stem_key(index: int) -> str:
    """The official ``state_dict`` prefix of stem child ``index``, e.g. ``stem_key(NORM_A) == "conv1.1."``."""
    return f"{STEM_ATTRIBUTE}.{index}."


class DeepStem(nn.Sequential):
    """``conv_a -> norm_a -> ReLU -> conv_b -> norm_b -> ReLU -> conv_c`` (stride 2 in ``conv_a``).

    A ``Sequential`` so that the children keep the official keys (``0``, ``1``, ``3``, ``4``, ``6``); the named
    accessors say which layer is which where code needs one.

    Args:
        in_channels: input image channels.
        width: output channels of ``conv_a`` and ``conv_b``.
        out_channels: output channels of ``conv_c`` (``2 * width`` in every published model).
        norm_layer: ``norm_layer(channels)`` builds ``norm_a`` and ``norm_b``.
    """

    # Python-side accessors; TorchScript runs the Sequential forward and need not compile them.
    __jit_unused_properties__ = ["conv_a", "norm_a", "conv_b", "norm_b", "conv_c"]

    def __init__(self, in_channels: int, width: int, out_channels: int,
                 norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d) -> None:
        super().__init__(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False),
            norm_layer(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride=1, padding=1, bias=False),
            norm_layer(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, out_channels, 3, stride=1, padding=1, bias=False),
        )

    @property
    def conv_a(self) -> nn.Module:
        return self[CONV_A]

    @property
    def norm_a(self) -> nn.Module:
        return self[NORM_A]

    @property
    def conv_b(self) -> nn.Module:
        return self[CONV_B]

    @property
    def norm_b(self) -> nn.Module:
        return self[NORM_B]

    @property
    def conv_c(self) -> nn.Module:
        return self[CONV_C]
