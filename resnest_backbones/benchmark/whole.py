"""Whole-model benchmark cases: segmentors and detectors built from this project's real configs, with their norms.

* ``deeplabv3``: mmseg DeepLabV3 S-101-D8, our config (``configs/mmseg/deeplabv3_resnest101e-d8_...``) against
  the same model with mmseg's own ResNeSt backbone (mmseg's ``configs/resnest/resnest_s101-d8_deeplabv3_...``,
  the ratio's reference) and mmseg's ResNet-101-D8 (``deeplabv3_r101-d8``, the cost baseline);
* ``faster_rcnn``: detectron2 Faster R-CNN S-50 FPN, our yacs config, against detectron2's R-50 FPN with the same
  recipe (norms, box head, input statistics; the ratio's reference) and, when the environment variable
  ``RESNEST_OFFICIAL_D2`` names a checkout of the official ResNeSt detectron2 fork, the official model.

Both have ``ours+fused``: the ``ours`` model (same seed, so the same weights) with
:func:`resnest_backbones.fuse_resnest_modules` applied, i.e. its ResNeSt replaced in place by the BN-folded
inference copy. It is for inference only: the benchmark skips it in the train modes (with a message) and
:func:`make_runner` refuses to build it for training.

DeepLabV3 is measured with mmseg's whole-image inference (``test_cfg=dict(mode='whole')``, what the ADE20K
configs use) or, for a case spelled ``BATCHxSIZE:slide``, mmseg's sliding-window inference. The window follows
mmseg's DeepLabV3 Cityscapes 769x769 config (``deeplabv3_r50-d8_4xb2-40k_cityscapes-769x769.py``:
``crop_size=(769, 769)`` on 1024x2048 images, i.e. 3/4 of the image height, ``stride=(513, 513)``, 2/3 of the
crop, the stride/crop ratio of nearly all of mmseg's slide configs): on a square SIZE image the crop is 3/4 of the
side and the stride 2/3 of the crop (both rounded), i.e. 2x2 windows that cover 2.25x the image's pixels
(:func:`slide_window`). Slide is an inference setting only: training is the same as for the whole-image case, so
the train modes skip slide cases.

Single process: every SyncBN runs as plain BatchNorm, exactly what a one-process training gets (mmengine's
``revert_sync_batchnorm``; our detectron2 tools' SyncBN -> BN). No weights are downloaded: every backbone is
randomly initialised (speed and memory do not depend on the values).

Each entry is a :class:`~.timing.Runner` subclass, so timing, memory (the fresh-process worker), ratios and
rendering are the core benchmark's own. The models and their runners are built in :mod:`.whole_builders`; this
module holds the table, the cases and the entries.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from .models import FORMATS, Case
from .timing import Runner
from .whole_builders import (
    OFFICIAL_D2_CONFIG,
    OFFICIAL_D2_ENV,
    ROOT,
    DetectorRunner,
    SegmentorRunner,
    build_deeplab,
    build_faster_rcnn,
    deeplab_config_path,
    faster_rcnn_cfg,
    official_d2_config,
)

__all__ = ["FUSED", "INFERENCE_STYLES", "OFFICIAL_D2_CONFIG", "OFFICIAL_D2_ENV", "ROOT", "WHOLE_MODELS",
           "DetectorRunner", "SegmentorRunner", "WholeCase", "WholeModel", "build_deeplab", "build_faster_rcnn",
           "deeplab_config_path", "describe_case", "faster_rcnn_cfg", "make_runner", "missing_framework",
           "official_d2_config", "seg_test_cfg", "skip_reason", "slide_window", "whole_impls"]


@dataclass(frozen=True)
class WholeModel:
    """One whole-model benchmark: its framework, implementations (ours first), ratio reference, default case."""

    framework: str  # importable module that must be present
    impls: Tuple[str, ...]
    reference: str
    resnet: str  # the ResNet of the same recipe: the cost reference (ratio and FLOP parity)
    default_case: str
    description: str
    #: The inference styles its cases may ask for (``BATCHxSIZE`` is whole-image; ``BATCHxSIZE:slide``).
    inference_styles: Tuple[str, ...] = ("whole",)


#: Our model with its ResNeSt fused for inference (:func:`resnest_backbones.fuse_resnest_modules`).
FUSED = "ours+fused"
#: How a whole-model case may run inference: ``whole`` (one pass over the image), ``slide`` (mmseg's windows).
INFERENCE_STYLES = ("whole", "slide")


WHOLE_MODELS: Dict[str, WholeModel] = {
    "deeplabv3": WholeModel("mmseg", ("ours", FUSED, "mmseg-resnest", "mmseg-r101"), "mmseg-resnest", "mmseg-r101",
                            "2x256",
                            "mmseg DeepLabV3 S-101-D8 (ADE20K head, 150 classes): ours (and ours fused for "
                            "inference) vs mmseg's ResNeSt vs mmseg's ResNet-101-D8; whole-image or slide inference",
                            INFERENCE_STYLES),
    "faster_rcnn": WholeModel("detectron2", ("ours", FUSED, "d2-r50", "official"), "d2-r50", "d2-r50", "2x512",
                              "detectron2 Faster R-CNN FPN (80 classes): S-50 ours (and ours fused for inference) "
                              "vs detectron2's R-50 with the same recipe (vs the official ResNeSt fork when "
                              "RESNEST_OFFICIAL_D2 is set)"),
}


class WholeCase(Case):
    """``BATCHxSIZE[:whole|:slide]`` for a whole model (square images, 3 channels).

    ``inference`` is ``whole`` (the default; the spec is then plain ``BATCHxSIZE``, as in earlier reports) or
    ``slide`` (spec ``BATCHxSIZE:slide``: mmseg's sliding-window inference, segmentors only)."""

    def __init__(self, spec: str) -> None:
        shape, sep, style = spec.partition(":")
        style = style.lower() if sep else "whole"
        if style not in INFERENCE_STYLES:
            raise ValueError(f"bad case {spec!r}: whole-model cases are BATCHxSIZE, or BATCHxSIZE:slide for "
                             f"sliding-window segmentation inference, e.g. 2x256 or 2x256:slide")
        super().__init__(shape)
        self.head = "whole"
        self.inference = style
        self.spec = f"{self.batch}x{self.size}" + ("" if style == "whole" else f":{style}")


def slide_window(size: int) -> Tuple[int, int]:
    """``(crop, stride)`` of slide inference on a ``size`` x ``size`` image: the crop is 3/4 of the side, the
    stride 2/3 of the crop (both rounded), as mmseg's DeepLabV3 Cityscapes 769x769 config has them (crop 769 of the
    1024-pixel image height, stride 513): 2x2 windows overlapping by a third of the crop."""
    crop = max(round(3 * size / 4), 1)
    return crop, max(round(2 * crop / 3), 1)


def seg_test_cfg(case: WholeCase) -> Dict[str, Any]:
    """mmseg's ``test_cfg`` for ``case``: ``dict(mode='whole')`` or ``dict(mode='slide', crop_size, stride)``."""
    if getattr(case, "inference", "whole") == "whole":
        return {"mode": "whole"}
    crop, stride = slide_window(case.size)
    return {"mode": "slide", "crop_size": (crop, crop), "stride": (stride, stride)}


def describe_case(case: WholeCase) -> str:
    """One line on how ``case`` runs inference (for the report and its tables)."""
    if getattr(case, "inference", "whole") == "whole":
        return f"{case.spec}: whole-image inference on {case.size}x{case.size}"
    cfg = seg_test_cfg(case)
    crop, stride = cfg["crop_size"][0], cfg["stride"][0]
    grids = max(case.size - crop + stride - 1, 0) // stride + 1  # mmseg's slide_inference count
    return (f"{case.spec}: slide inference on {case.size}x{case.size}, crop {crop}x{crop}, stride {stride} "
            f"({grids}x{grids} windows)")


def skip_reason(impl: str, mode: str, case: Optional[Case] = None) -> Optional[str]:
    """Why entry ``impl`` is not measured in ``mode`` (``inference``, ``train``, ``memory-train``,
    ``memory-inference``) for ``case``, or ``None`` when it is. Used for the core network's entries too."""
    training = mode in ("train", "memory-train")
    if training and "+fused" in impl:
        return (f"{impl} is skipped in {mode}: it is for inference only (its batch norms are folded into the "
                f"convolutions and its ResNeSt refuses train())")
    if training and getattr(case, "inference", "whole") != "whole":
        return (f"{case} is skipped in {mode}: slide is an inference setting, training is the same as for the "
                f"whole-image case")
    return None


def missing_framework(name: str) -> Optional[str]:
    """Why whole model ``name`` cannot run here (its framework is not installed), or ``None``."""
    framework = WHOLE_MODELS[name].framework
    try:
        found = importlib.util.find_spec(framework) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return f"skipped whole model {name!r}: {framework} is not installed ({WHOLE_MODELS[name].description})"
    return None


def whole_impls(name: str) -> List[str]:
    """The implementations of ``name`` available here; the official detectron2 fork only when its env var is set."""
    impls = list(WHOLE_MODELS[name].impls)
    if name == "faster_rcnn" and official_d2_config() is None:
        impls.remove("official")
    return impls


# ------------------------------------------------------------------------------------------------ entries
_RUNNERS: Dict[str, Callable[..., Runner]] = {"deeplabv3": SegmentorRunner, "faster_rcnn": DetectorRunner}


def make_runner(name: str, impl: str, case: Case, mode: str, fmt: str, amp: Optional[torch.dtype],
                device: torch.device) -> Runner:
    """One benchmark entry of whole model ``name``: built (seed 0), on ``device`` in memory format ``fmt``,
    train/eval mode, with the case's fixed input; ``ours+fused`` is ``ours`` (same weights) with its ResNeSt fused
    for inference, and a segmentor's ``test_cfg`` is the case's (whole-image or slide)."""
    if name not in WHOLE_MODELS:
        raise ValueError(f"unknown whole model {name!r}; choose one of {', '.join(WHOLE_MODELS)}")
    style = getattr(case, "inference", "whole")
    if style not in WHOLE_MODELS[name].inference_styles:
        raise ValueError(f"case {case}: {name} has no {style} inference (its cases are BATCHxSIZE)")
    if impl == FUSED and mode != "inference":
        raise ValueError(f"{FUSED} is for inference only (its batch norms are folded away and its ResNeSt refuses "
                         f"train()); it cannot run mode {mode!r}: benchmark it with --modes inference (or memory "
                         f"with --memory-phases inference)")
    base = "ours" if impl == FUSED else impl
    torch.manual_seed(0)
    if name == "deeplabv3":
        model = build_deeplab(base)
        from mmengine.config import ConfigDict

        model.test_cfg = ConfigDict(seg_test_cfg(case))
    else:
        model = build_faster_rcnn(base, device)
    model = model.to(device).to(memory_format=FORMATS[fmt])
    model.train(mode == "train")
    if impl == FUSED:
        from ..accel import fuse_resnest_modules

        fuse_resnest_modules(model)  # in place, after the move: the folded weights keep the memory format
    x = case.image().to(device).contiguous(memory_format=FORMATS[fmt])
    return _RUNNERS[name](model, mode, x, amp, device)
