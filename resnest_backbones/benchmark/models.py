"""The input cases and the compared implementations, built with the same weights."""
from __future__ import annotations

import importlib
from typing import Any, Dict, List, Optional

import torch
from torch import Tensor, nn

from ..accel import fuse_for_inference
from ..factory import create_model
from ..models.variants import VARIANTS

FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


class Case:
    """One input case: ``BATCHxSIZE[:logits|features]`` (square images, 3 channels)."""

    def __init__(self, spec: str) -> None:
        shape, _, head = spec.partition(":")
        try:
            batch, size = (int(v) for v in shape.lower().split("x"))
        except ValueError:
            raise ValueError(f"bad case {spec!r}: write BATCHxSIZE[:logits|features], e.g. 8x224:logits") from None
        head = head or "logits"
        if head not in ("logits", "features"):
            raise ValueError(f"bad case {spec!r}: the head must be 'logits' or 'features'")
        self.spec, self.batch, self.size, self.head = f"{batch}x{size}:{head}", batch, size, head

    def __str__(self) -> str:
        return self.spec

    def image(self) -> Tensor:
        """The case's input batch (seed 0, on the CPU): the same for every implementation and process."""
        return torch.randn(self.batch, 3, self.size, self.size, generator=torch.Generator().manual_seed(0))


class _OfficialFeatures(nn.Module):
    """The official network's four stage outputs (it has no features mode of its own)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> List[Tensor]:
        net = self.net
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        feats = []
        for i in range(1, 5):
            x = getattr(net, f"layer{i}")(x)
            feats.append(x)
        return feats


def _optional(module: str) -> Optional[Any]:
    """The module if it is installed (timm and the official package are optional), else ``None``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def official_name(variant: str) -> Optional[str]:
    """Constructor name of ``variant`` in the official ``resnest.torch`` package, or ``None`` (not installed,
    or no such model there). Derived from the variant table: the official alias if the variant has one, else
    the name itself (the ``resnest50_fast_*`` models that timm lacks keep the official name)."""
    official = _optional("resnest.torch")
    if official is None:
        return None
    return next((n for n in (*VARIANTS[variant].aliases, variant) if hasattr(official, n)), None)


#: The cost reference: timm's ResNet-D of the variant's depth (``resnet50d`` for ResNeSt-50), the network users weigh
#: a ResNeSt against (its own weights: it is another network).
RESNET = "resnet"

#: ResNeSt's multiply-adds without split attention: timm's ResNet-D whose stride-2 3x3 convolutions run at full
#: resolution and are followed by an average pool (``resnetaa50d``), where ResNeSt-D's split convolution is
#: (``avd`` after it). The same multiply-adds as the ResNeSt (5.37 GMACs at 224 for both -50s): the time ours
#: takes beyond it is what split attention costs.
RESNET_AA = "resnet-aa"


def resnet_name(variant: str, pooled: bool = False) -> Optional[str]:
    """timm's ResNet-D of ``variant``'s depth (``resnet50d`` for ``resnest50d``; with ``pooled`` its average-pool
    twin ``resnetaa50d``, only for variants that pool after the split convolution), or ``None`` (timm not
    installed, or no such depth there: ResNeSt-14 and -269)."""
    timm = _optional("timm")
    if timm is None or (pooled and VARIANTS[variant].avd_first):
        return None
    name = f"resnet{'aa' if pooled else ''}{3 * sum(VARIANTS[variant].layers) + 2}d"
    return name if name in timm.list_models(name) else None


def available_impls(variant: str, compile_models: bool) -> List[str]:
    """Implementations benchmarked for ``variant`` in this environment (ours first, the ResNet-Ds last)."""
    impls = ["ours", "ours+fused"]
    if _optional("timm") is not None:
        impls.append("timm")
    if official_name(variant) is not None:
        impls.append("official")
    impls += [name for name in (RESNET_AA, RESNET) if resnet_name(variant, pooled=name == RESNET_AA)]
    if compile_models:
        impls += [f"{name}+compile" for name in ("ours", "timm", RESNET_AA, RESNET) if name in impls]
    return impls


def reference_state_dict(variant: str) -> Optional[Dict[str, Tensor]]:
    """Deterministic shared weights (timm's initialisation, seed 0) in official/timm keys, or ``None``."""
    timm = _optional("timm")
    if timm is None:
        return None
    torch.manual_seed(0)
    return timm.create_model(variant, pretrained=False, num_classes=1000).state_dict()


def build(impl: str, variant: str, head: str, state: Optional[Dict[str, Tensor]]) -> nn.Module:
    """The model of ``impl`` (``ours``, ``ours+fused``, ``timm``, ``official``, ``resnet``, ``resnet-aa``,
    ``*+compile``); the ResNeSts share the weights ``state``, the ResNet-Ds have their own (timm's initialisation,
    seed 0)."""
    base = impl.split("+")[0]
    logits = head == "logits"
    sd = state if logits or state is None else {k: v for k, v in state.items() if not k.startswith("fc.")}
    timm_kwargs = {} if logits else {"features_only": True, "out_indices": (1, 2, 3, 4)}
    if base == "ours":
        model: nn.Module = create_model(variant, num_classes=1000 if logits else 0)
    elif base == "timm":
        import timm

        model = timm.create_model(variant, pretrained=False, num_classes=1000, **timm_kwargs)
    elif base in (RESNET, RESNET_AA):
        import timm

        name = resnet_name(variant, pooled=base == RESNET_AA)
        if name is None:
            raise ValueError(f"timm has no ResNet-D of {variant!r}'s depth (or is not installed)")
        torch.manual_seed(0)
        return timm.create_model(name, pretrained=False, num_classes=1000, **timm_kwargs)
    elif base == "official":
        import resnest.torch as official

        name = official_name(variant)
        if name is None:
            raise ValueError(f"the official package has no model for {variant!r}")
        model = getattr(official, name)(pretrained=False)
    else:
        raise ValueError(f"unknown implementation {impl!r}")
    if state is not None:
        model.load_state_dict(state if base == "official" else sd, strict=True)
    if base == "official" and not logits:
        model = _OfficialFeatures(model)
    return model


def prepare(model: nn.Module, impl: str, mode: str, memory_format: torch.memory_format,
            device: torch.device) -> nn.Module:
    """Device, memory format, train/eval, fusion and compilation for one benchmark entry."""
    model = model.to(device).to(memory_format=memory_format)
    model.train(mode == "train")
    if "+fused" in impl:
        model = fuse_for_inference(model)
    if "+compile" in impl:
        model = torch.compile(model)
    return model
