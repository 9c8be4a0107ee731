"""The one memory-saving switch: every entry point takes ``memory_efficient`` and honours it both ways.

``True`` (every entry point's default) trains with the memory-saving modules, ``False`` with the reference modules,
everywhere: ``create_model``, the torchvision adapter, the detectron2 builders (``build_resnest``,
``MODEL.RESNEST.MEMORY_EFFICIENT``, the backbone class itself) and the OpenMMLab backbone (mmseg and mmdet
registries).
"""
from __future__ import annotations

import importlib
from typing import Callable, Dict

import pytest
from torch import nn

import resnest_backbones as rb
from resnest_backbones.accel import MemoryEfficientBottleneck, MemoryEfficientDeepStem, MemoryEfficientSplitAttention
from resnest_backbones.layers import DeepStem, SplitAttention
from resnest_backbones.models import Bottleneck

FAST = (MemoryEfficientBottleneck, MemoryEfficientDeepStem, MemoryEfficientSplitAttention)
REFERENCE = (Bottleneck, DeepStem, SplitAttention)
VARIANT = "resnest14d"


def modules_in_use(model: nn.Module) -> str:
    """``"fast"`` when every ResNeSt part runs the memory-saving class, ``"reference"`` when none does."""
    kinds = [type(m) in FAST for m in model.modules() if isinstance(m, REFERENCE)]
    assert len(kinds) >= 3, "no ResNeSt parts found"
    assert len(set(kinds)) == 1, "a model with both kinds of modules"
    return "fast" if kinds[0] else "reference"


def _detectron2_builders() -> Dict[str, Callable[[bool], nn.Module]]:
    from detectron2.config import get_cfg
    from detectron2.layers import ShapeSpec

    from resnest_backbones.detectron2 import ResNeStBackbone, add_resnest_config, build_resnest, build_resnest_backbone

    def from_config(enabled: bool) -> nn.Module:
        cfg = add_resnest_config(get_cfg())
        cfg.MODEL.RESNEST.NAME, cfg.MODEL.RESNEST.NORM, cfg.MODEL.RESNEST.MEMORY_EFFICIENT = VARIANT, "BN", enabled
        return build_resnest_backbone(cfg, ShapeSpec(channels=3))

    return {
        "build_resnest": lambda enabled: build_resnest(VARIANT, memory_efficient=enabled),
        "MODEL.RESNEST.MEMORY_EFFICIENT": from_config,
        "ResNeStBackbone": lambda enabled: ResNeStBackbone(**rb.models.variant_kwargs(VARIANT),
                                                           memory_efficient=enabled),
    }


def _openmmlab_builder(registry_module: str) -> Callable[[bool], nn.Module]:
    """A builder through ``registry_module``'s MODELS registry, as a config's ``model.backbone`` is built."""
    def build(enabled: bool) -> nn.Module:
        registry = importlib.import_module(registry_module).MODELS
        return registry.build(dict(type="resnest_backbones.ResNeSt", variant=VARIANT, memory_efficient=enabled))

    return build


def _core_builders() -> Dict[str, Callable[[bool], nn.Module]]:
    from resnest_backbones.torchvision import resnest_fpn_backbone

    return {
        "create_model": lambda enabled: rb.create_model(VARIANT, memory_efficient=enabled),
        "torchvision resnest_fpn_backbone": lambda enabled: resnest_fpn_backbone(
            VARIANT, norm_layer=nn.BatchNorm2d, trainable_layers=5, memory_efficient=enabled),
    }


@pytest.mark.parametrize("entry", list(_core_builders()))
@pytest.mark.parametrize("enabled", [True, False])
def test_core_entry_points_honour_the_switch(entry: str, enabled: bool) -> None:
    model = _core_builders()[entry](enabled)
    assert modules_in_use(model) == ("fast" if enabled else "reference")


def test_default_is_on_everywhere_in_the_core() -> None:
    assert modules_in_use(rb.create_model(VARIANT)) == "fast"
    assert modules_in_use(rb.ResNeSt(**rb.models.variant_kwargs(VARIANT))) == "reference"  # the bare reference class


def test_switch_turns_a_built_model_both_ways_and_refuses_non_booleans() -> None:
    model = rb.create_model(VARIANT)
    assert modules_in_use(rb.set_memory_efficient(model, False)) == "reference"
    assert modules_in_use(rb.set_memory_efficient(model, True)) == "fast"
    with pytest.raises(TypeError, match="memory_efficient must be True or False"):
        rb.create_model(VARIANT, memory_efficient="no")


@pytest.mark.detectron2
@pytest.mark.parametrize("entry", ["build_resnest", "MODEL.RESNEST.MEMORY_EFFICIENT", "ResNeStBackbone"])
@pytest.mark.parametrize("enabled", [True, False])
def test_detectron2_entry_points_honour_the_switch(entry: str, enabled: bool) -> None:
    model = _detectron2_builders()[entry](enabled)
    assert modules_in_use(model) == ("fast" if enabled else "reference")


@pytest.mark.detectron2
def test_detectron2_default_is_on() -> None:
    from detectron2.config import get_cfg

    from resnest_backbones.detectron2 import add_resnest_config

    assert add_resnest_config(get_cfg()).MODEL.RESNEST.MEMORY_EFFICIENT is True


@pytest.mark.parametrize("framework,registry", [
    pytest.param("mmseg", "mmseg.registry", marks=pytest.mark.mmseg),
    pytest.param("mmdet", "mmdet.registry", marks=pytest.mark.mmdet),
])
@pytest.mark.parametrize("enabled", [True, False])
def test_openmmlab_backbone_honours_the_switch(framework: str, registry: str, enabled: bool) -> None:
    importlib.import_module(f"resnest_backbones.{framework}")  # registers the backbone, as the framework's configs do

    assert modules_in_use(_openmmlab_builder(registry)(enabled)) == ("fast" if enabled else "reference")


@pytest.mark.mmseg
def test_openmmlab_default_is_on() -> None:
    from resnest_backbones.openmmlab import OpenMMLabResNeSt

    assert modules_in_use(OpenMMLabResNeSt(VARIANT)) == "fast"
