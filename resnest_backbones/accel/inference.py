"""Inference mode for ResNeSt (Zhang et al., 2020, "ResNeSt: Split-Attention Networks"): fold norms into convs.

In eval mode a batch norm is a fixed per-channel affine map ``y = x * scale + shift``; right after a convolution it
can be folded into the convolution's weight and bias, which removes one full pass over every activation map (a
sizeable share of ResNeSt's CPU inference time: ``benchmarks/micro_measurements.md``). The folded convolutions then
run with their ReLU (and, at the end of each block, the residual add) fused into one oneDNN kernel on CPU
(:class:`ConvAct`). :func:`fuse_for_inference` returns a fused **copy** and leaves the model it was given
untouched, so the change is undone by keeping (or rebuilding/reloading) the original. The copy computes the same
function up to float rounding (about 1e-6 relative), has no norm layers any more (its ``state_dict`` keys differ:
load checkpoints into the original model, then fuse) and is meant for inference only: its parameters are frozen and
its class (:class:`InferenceOnly` mixed into the model's own) refuses ``train(True)``.
"""
from __future__ import annotations

import copy
from typing import Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..layers import DeformConv2d, SplitAttention
from ..layers.split_attention import combine_splits
from ..layers.stem import CONV_A, CONV_B, CONV_C, NORM_A, NORM_B, DeepStem
from ..models.resnest import Bottleneck, ResNeSt
from .ops import compiling
from .training import reference_modules

__all__ = ["ConvAct", "InferenceOnly", "fold_norm", "fuse_for_inference", "fuse_resnest_modules", "fusable_pairs"]


def _is_foldable_norm(module: nn.Module) -> bool:
    """Batch norms (any ``_BatchNorm``, and frozen ones such as detectron2's/torchvision's FrozenBatchNorm2d)."""
    if isinstance(module, _BatchNorm):
        return module.track_running_stats and module.running_mean is not None
    return type(module).__name__.startswith("FrozenBatchNorm") and all(
        hasattr(module, name) for name in ("weight", "bias", "running_mean", "running_var", "eps"))


def _conv_norm_pairs(model: ResNeSt) -> Iterator[Tuple[nn.Module, str, nn.Module, str]]:
    """``(conv parent, conv attribute, norm parent, norm attribute)`` for every conv directly followed by a norm.

    The pairs are where :class:`ResNeSt` applies them in ``forward``; only the norm's eval-mode behaviour
    matters (DropBlock between ``bn0`` and the ReLU is the identity in eval mode).
    """
    stem = model.conv1
    if isinstance(stem, DeepStem):
        yield stem, str(CONV_A), stem, str(NORM_A)
        yield stem, str(CONV_B), stem, str(NORM_B)
        yield stem, str(CONV_C), model, "bn1"
    for module in model.modules():
        if isinstance(module, Bottleneck):
            yield module, "conv1", module, "bn1"
            yield module, "conv3", module, "bn3"
            shortcut = module.downsample
            if isinstance(shortcut, nn.Sequential) and len(shortcut) == 3:
                yield shortcut, "1", shortcut, "2"
        elif isinstance(module, SplitAttention):
            yield module, "conv", module, "bn0"
            yield module, "fc1", module, "bn1"


def fusable_pairs(model: ResNeSt) -> List[Tuple[str, str]]:
    """Names ``(conv, norm)`` of the pairs :func:`fuse_for_inference` would fold (for reports and tests)."""
    names = {id(m): n for n, m in model.named_modules()}
    pairs = []
    for conv_parent, conv_name, norm_parent, norm_name in _conv_norm_pairs(model):
        conv, norm = getattr(conv_parent, conv_name), getattr(norm_parent, norm_name)
        if isinstance(conv, (nn.Conv2d, DeformConv2d)) and _is_foldable_norm(norm):
            pairs.append((names[id(conv)], names[id(norm)]))
    return pairs


@torch.no_grad()
def fold_norm(conv: nn.Module, norm: nn.Module) -> None:
    """Fold the eval-mode batch norm ``norm`` into ``conv`` (an ``nn.Conv2d`` or :class:`DeformConv2d`) in place.

    ``conv`` gets a bias when it had none. Computed in float64, so folding adds no error of its own.
    """
    weight = norm.weight.double() if norm.weight is not None else torch.ones_like(norm.running_var, dtype=torch.double)
    bias = norm.bias.double() if norm.bias is not None else torch.zeros_like(norm.running_mean, dtype=torch.double)
    scale = weight / torch.sqrt(norm.running_var.double() + norm.eps)
    shift = bias - norm.running_mean.double() * scale
    conv_weight = conv.weight
    fused_weight = conv_weight.double() * scale.view(-1, *([1] * (conv_weight.dim() - 1)))
    # copy_ keeps the parameter's memory format (channels_last stays channels_last).
    conv_weight.copy_(fused_weight.to(conv_weight.dtype))
    conv_bias: Optional[torch.Tensor] = conv.bias
    new_bias = shift if conv_bias is None else conv_bias.double() * scale + shift
    if conv_bias is None:
        conv.bias = nn.Parameter(new_bias.to(conv_weight.dtype), requires_grad=False)
    else:
        conv_bias.copy_(new_bias.to(conv_bias.dtype))


def _onednn_ok(x: Tensor, weight: Tensor) -> bool:
    """Whether oneDNN's fused convolution kernel can run ``x`` (CPU float, no autograd, not compiling)."""
    if compiling():
        return False  # the compiler fuses by itself
    # Only for channels_last input: with NCHW input oneDNN reorders the activations on every call, which
    # measured slower than the plain ops.
    return (x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and not x.requires_grad and x.is_contiguous(memory_format=torch.channels_last)
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)


class ConvAct(nn.Module):
    """``relu(conv(x) + bias [+ residual])`` of a folded convolution, as ONE oneDNN kernel on CPU
    (channels_last input).

    Eager PyTorch runs convolution, bias, residual add and ReLU as separate passes over the activation map
    (and, with one thread and small batches, 1x1 convolutions on a slower im2col/GEMM path); oneDNN's
    post-op fusion does them in one. Elsewhere (NCHW input, GPU, autograd, ``torch.compile``) it runs the
    plain ops.

    Args:
        conv: the (already folded) ``nn.Conv2d``; its weight and bias are shared, not copied.
        relu: apply the ReLU.
    """

    def __init__(self, conv: nn.Conv2d, relu: bool) -> None:
        super().__init__()
        if isinstance(conv.padding, str) or conv.padding_mode != "zeros":
            raise ValueError("ConvAct needs a conv with explicit zero padding")
        self.weight = conv.weight
        self.bias = conv.bias
        self.stride = [int(v) for v in conv.stride]
        self.padding = [int(v) for v in conv.padding]
        self.dilation = [int(v) for v in conv.dilation]
        self.groups = conv.groups
        self.relu = relu

    def forward(self, x: Tensor, residual: Optional[Tensor] = None) -> Tensor:
        if not torch.jit.is_scripting():  # a scripted copy runs the plain ops (TorchScript skips this block)
            if _onednn_ok(x, self.weight):
                op = torch.ops.mkldnn._convolution_pointwise
                if residual is None:
                    return op(x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups,
                              "relu" if self.relu else "none", [], "")
                return op.binary(x, residual, self.weight, self.bias, self.padding, self.stride, self.dilation,
                                 self.groups, "add", None, "relu" if self.relu else None, [], "")
        out = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if residual is not None:
            out = out + residual
        return out.relu_() if self.relu else out

    def extra_repr(self) -> str:
        return (f"{self.weight.shape[1] * self.groups}, {self.weight.shape[0]}, kernel_size="
                f"{tuple(self.weight.shape[2:])}, stride={tuple(self.stride)}, padding={tuple(self.padding)}, "
                f"dilation={tuple(self.dilation)}, groups={self.groups}, relu={self.relu}")


class _FusedSplitAttention(SplitAttention):
    """Split attention whose ``conv`` is a :class:`ConvAct` with ``bn0`` folded in and the ReLU fused."""

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return combine_splits(x, self.mixing_weights(x))


class _FusedBottleneck(Bottleneck):
    """Bottleneck whose norms are folded: ``conv1`` and ``conv2`` carry their ReLU, ``conv3`` the residual
    add and the final ReLU (DropBlock is the identity in eval mode)."""

    def _residual(self, x: Tensor) -> Tensor:
        out = self.avd_last(self.conv2(self.avd_first(self.conv1(x))))
        return self.conv3(out, self.downsample(x))


def _is_folded(module: nn.Module) -> bool:
    return isinstance(module, nn.Identity)


def _fuse_activations(model: ResNeSt) -> None:
    """Swap the folded conv -> (identity) -> ReLU chains for :class:`ConvAct` kernels, where every norm of the
    chain was folded (a block with, e.g., GroupNorm keeps its plain forward)."""
    stem = model.conv1
    if (type(stem) is DeepStem and _is_folded(stem.norm_a) and _is_folded(stem.norm_b) and _is_folded(model.bn1)
            and all(type(conv) is nn.Conv2d for conv in (stem.conv_a, stem.conv_b, stem.conv_c))):
        model.conv1 = nn.Sequential(*(ConvAct(conv, True) for conv in (stem.conv_a, stem.conv_b, stem.conv_c)))
        model.relu = nn.Identity()  # only the stem uses the network-level ReLU
    for block in [m for m in model.modules() if type(m) is Bottleneck]:
        attn = block.conv2
        if not (type(attn) is SplitAttention and type(attn.conv) is nn.Conv2d and _is_folded(attn.bn0)
                and _is_folded(block.bn1) and _is_folded(block.bn3)
                and type(block.conv1) is nn.Conv2d and type(block.conv3) is nn.Conv2d):
            continue
        attn.conv = ConvAct(attn.conv, True)
        attn.__class__ = _FusedSplitAttention
        block.conv1 = ConvAct(block.conv1, True)
        block.conv3 = ConvAct(block.conv3, True)
        shortcut = block.downsample
        if isinstance(shortcut, nn.Sequential) and len(shortcut) == 3 and type(shortcut[1]) is nn.Conv2d:
            shortcut[1] = ConvAct(shortcut[1], False)
        block.__class__ = _FusedBottleneck


def fuse_for_inference(model: ResNeSt) -> ResNeSt:
    """A copy of ``model`` for inference, with every batch norm folded into the convolution before it.

    Args:
        model: a :class:`ResNeSt` (or an adapter subclass). It is not modified.

    Returns:
        The fused copy, in eval mode, parameters frozen. Norms that are not batch norms (e.g. GroupNorm)
        stay as they are. Faster on CPU (see ``benchmarks/``); outputs match ``model.eval()`` to ~1e-6 relative.

    Example:
        >>> model = create_model("resnest50d", pretrained=True).eval()
        >>> fast = fuse_for_inference(model)   # model itself is unchanged
    """
    if not isinstance(model, ResNeSt):
        raise TypeError(f"fuse_for_inference expects a ResNeSt model, got {type(model).__name__}; for a "
                        f"detection/segmentation model pass its backbone (e.g. model.backbone.body)")
    # The training-only memory-saving modules would not match the exact classes fused below.
    fused = reference_modules(copy.deepcopy(model)).eval()
    for conv_parent, conv_name, norm_parent, norm_name in list(_conv_norm_pairs(fused)):
        conv, norm = getattr(conv_parent, conv_name), getattr(norm_parent, norm_name)
        if isinstance(conv, (nn.Conv2d, DeformConv2d)) and _is_foldable_norm(norm):
            fold_norm(conv, norm)
            setattr(norm_parent, norm_name, nn.Identity())
    _fuse_activations(fused)
    for param in fused.parameters():
        param.requires_grad_(False)
    # Nothing is left for norm_eval/frozen bookkeeping to do; keep the copy in eval mode whatever train() says.
    fused.__class__ = _inference_only_class(type(fused))
    return fused


def fuse_resnest_modules(model: nn.Module) -> int:
    """Fuse, in place, every ResNeSt inside a whole model (a detector, a segmentor) for inference: each outermost
    :class:`ResNeSt` submodule is replaced by its :func:`fuse_for_inference` copy, and ``model`` is put in eval mode.

    Load the model's weights first (the fused copies have no norm layers, so their keys differ). The model is for
    inference from then on: ``model.train()`` raises before it switches any module (``model``'s class becomes an
    :class:`InferenceOnly` subclass of its own, like the fused copies').

    Returns:
        How many ResNeSt modules were fused (a model holding one already fused counts it again as 0).

    Raises:
        ValueError: ``model`` holds no ResNeSt.
    """
    model.eval()
    found = [(name, module) for name, module in model.named_modules() if isinstance(module, ResNeSt)]
    outermost = [(name, module) for name, module in found
                 if not any(name != other and name.startswith(other + ".") for other, _ in found)]
    if not outermost:
        raise ValueError(f"{type(model).__name__} holds no ResNeSt module to fuse")
    fused = 0
    for name, module in outermost:
        if isinstance(module, InferenceOnly):
            continue
        if not name:
            raise ValueError("fuse_resnest_modules fuses the ResNeSt inside a whole model in place; for a ResNeSt "
                             "itself use fuse_for_inference(model), which returns the fused copy")
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, fuse_for_inference(module))
        fused += 1
    model.__class__ = _inference_only_class(type(model))
    return fused


class InferenceOnly(nn.Module):
    """Base mixed into the class of every :func:`fuse_for_inference` copy: ``train(True)`` raises.

    The copy's class is ``InferenceOnly<Original>(InferenceOnly, Original)``, so an adapter's copy keeps
    every method of its adapter class; only ``train`` changes.
    """

    def train(self, mode: bool = True) -> "InferenceOnly":
        """``eval()``/``train(False)`` work; training would silently drop the folded batch norms, so it raises."""
        if mode:
            raise RuntimeError("a model returned by fuse_for_inference() is for inference only (its batch norms "
                               "are folded away); train the original model and fuse it again")
        return super().train(False)


_INFERENCE_CLASSES: Dict[type, type] = {}


def _inference_only_class(cls: type) -> type:
    """The (cached) ``InferenceOnly`` subclass of ``cls``: one class per model class, not one per copy."""
    if issubclass(cls, InferenceOnly):
        return cls
    if cls not in _INFERENCE_CLASSES:
        _INFERENCE_CLASSES[cls] = type(f"InferenceOnly{cls.__name__}", (InferenceOnly, cls),
                                       {"__module__": __name__, "__doc__": cls.__doc__})
    return _INFERENCE_CLASSES[cls]
