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
rendering are the core benchmark's own.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from .models import FORMATS, Case
from .timing import Runner

#: The repository root (our configs live under it).
ROOT = Path(__file__).resolve().parents[2]
OFFICIAL_D2_ENV = "RESNEST_OFFICIAL_D2"
#: The official fork's Faster R-CNN S-50 config, relative to its checkout (override with RESNEST_OFFICIAL_D2_CONFIG).
OFFICIAL_D2_CONFIG = "configs/COCO-Detection/faster_rcnn_ResNeSt_50_FPN_syncbn_range-scale_1x.yaml"


@dataclass(frozen=True)
class WholeModel:
    """One whole-model benchmark: its framework, implementations (ours first), ratio reference, default case."""

    framework: str  # importable module that must be present
    impls: Tuple[str, ...]
    reference: str
    default_case: str
    description: str
    #: The inference styles its cases may ask for (``BATCHxSIZE`` is whole-image; ``BATCHxSIZE:slide``).
    inference_styles: Tuple[str, ...] = ("whole",)


#: Our model with its ResNeSt fused for inference (:func:`resnest_backbones.fuse_resnest_modules`).
FUSED = "ours+fused"
#: How a whole-model case may run inference: ``whole`` (one pass over the image), ``slide`` (mmseg's windows).
INFERENCE_STYLES = ("whole", "slide")


WHOLE_MODELS: Dict[str, WholeModel] = {
    "deeplabv3": WholeModel("mmseg", ("ours", FUSED, "mmseg-resnest", "mmseg-r101"), "mmseg-resnest", "2x256",
                            "mmseg DeepLabV3 S-101-D8 (ADE20K head, 150 classes): ours (and ours fused for "
                            "inference) vs mmseg's ResNeSt vs mmseg's ResNet-101-D8; whole-image or slide inference",
                            INFERENCE_STYLES),
    "faster_rcnn": WholeModel("detectron2", ("ours", FUSED, "d2-r50", "official"), "d2-r50", "2x512",
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
    if mode == "memory-train" and "+compile" in impl:
        return f"{impl} is skipped in {mode}: compiled copies are timed, not memory-measured"
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
    if name == "faster_rcnn" and _official_d2_config() is None:
        impls.remove("official")
    return impls


# ------------------------------------------------------------------------------------------------ mmseg
def _mmseg_config_dir() -> Path:
    """mmseg's bundled configs (the ``.mim`` folder of the installed package)."""
    import mmseg

    return Path(mmseg.__file__).resolve().parent / ".mim" / "configs"


def deeplab_config_path(impl: str) -> Path:
    """The config file of a DeepLabV3 entry."""
    if impl == "ours":
        return ROOT / "configs" / "mmseg" / "deeplabv3_resnest101e-d8_4xb4-160k_ade20k-512x512.py"
    if impl == "mmseg-resnest":
        return _mmseg_config_dir() / "resnest" / "resnest_s101-d8_deeplabv3_4xb4-160k_ade20k-512x512.py"
    if impl == "mmseg-r101":
        return _mmseg_config_dir() / "deeplabv3" / "deeplabv3_r101-d8_4xb4-160k_ade20k-512x512.py"
    raise ValueError(f"unknown DeepLabV3 implementation {impl!r}")


def build_deeplab(impl: str) -> nn.Module:
    """The segmentor of ``impl`` from its config, no pretrained weights, SyncBN reverted to BatchNorm."""
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import resnest_backbones.mmseg  # noqa: F401  (registers our backbone)

    init_default_scope("mmseg")
    cfg = Config.fromfile(str(deeplab_config_path(impl)))
    cfg.model.pretrained = None
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights logs every parameter at INFO
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return revert_sync_batchnorm(model)


class SegmentorRunner(Runner):
    """An mmseg segmentor: ``loss`` on a fixed batch with random labels (train), ``predict`` (inference).

    The inputs are already normalised tensors, so the data preprocessor (normalisation, padding) is bypassed: it
    is the same for every entry and not what is compared."""

    def __init__(self, model: nn.Module, mode: str, x: Tensor, amp: Optional[torch.dtype], device: torch.device,
                 num_classes: int = 150) -> None:
        super().__init__(model, mode, x, amp, device)
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample

        batch, _, height, width = x.shape
        labels = torch.randint(0, num_classes, (batch, 1, height, width), generator=torch.Generator().manual_seed(0))
        meta = {"img_shape": (height, width), "ori_shape": (height, width), "pad_shape": (height, width),
                "padding_size": [0, 0, 0, 0]}
        self.samples = []
        for i in range(batch):
            sample = SegDataSample(metainfo=dict(meta))
            sample.gt_sem_seg = PixelData(data=labels[i].to(device))
            self.samples.append(sample)

    def infer(self) -> None:
        self.model.predict(self.x, self.samples)

    def train_loss(self) -> Tensor:
        loss, _ = self.model.parse_losses(self.model.loss(self.x, self.samples))
        return loss


# ------------------------------------------------------------------------------------------------ detectron2
def _official_d2_config() -> Optional[Path]:
    """The official fork's config file when ``RESNEST_OFFICIAL_D2`` names a checkout that has it, else ``None``."""
    checkout = os.environ.get(OFFICIAL_D2_ENV)
    if not checkout:
        return None
    path = Path(os.environ.get("RESNEST_OFFICIAL_D2_CONFIG", Path(checkout) / OFFICIAL_D2_CONFIG))
    return path if path.is_file() else None


def faster_rcnn_cfg(impl: str, device: torch.device) -> Any:
    """The yacs config of a Faster R-CNN entry, fitted to one process: SyncBN -> BN, no weights, ``device``.

    ``d2-r50``: detectron2's zoo R-50 FPN 1x with our recipe's norms, box head, input format and statistics and
    frozen stages (everything our Base-ResNeSt-RCNN-FPN.yaml changes except the backbone)."""
    from detectron2 import model_zoo
    from detectron2.config import get_cfg

    from resnest_backbones.detectron2.config import add_resnest_config, replace_norm

    ours = add_resnest_config(get_cfg())
    ours.merge_from_file(str(ROOT / "configs" / "detectron2" / "COCO-Detection" / "faster_rcnn_S50_FPN_1x.yaml"))
    ours.MODEL.RESNEST.WEIGHTS = ""
    ours.MODEL.WEIGHTS = ""
    if impl == "ours":
        cfg = ours
    elif impl == "d2-r50":
        cfg = get_cfg()
        cfg.merge_from_file(model_zoo.get_config_file("COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml"))
        cfg.MODEL.WEIGHTS = ""
        cfg.MODEL.RESNETS.NORM = ours.MODEL.RESNEST.NORM
        cfg.MODEL.BACKBONE.FREEZE_AT = ours.MODEL.BACKBONE.FREEZE_AT
        cfg.MODEL.FPN = ours.MODEL.FPN.clone()
        cfg.MODEL.ROI_BOX_HEAD = ours.MODEL.ROI_BOX_HEAD.clone()
        cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD = list(ours.MODEL.PIXEL_MEAN), list(ours.MODEL.PIXEL_STD)
        cfg.INPUT = ours.INPUT.clone()
    elif impl == "official":
        path = _official_d2_config()
        if path is None:
            raise ValueError(f"the official entry needs {OFFICIAL_D2_ENV} (a checkout of the official fork)")
        cfg = get_cfg()  # the fork's detectron2, when it is the one importable, knows its own keys
        cfg.merge_from_file(str(path))
        cfg.MODEL.WEIGHTS = ""
    else:
        raise ValueError(f"unknown Faster R-CNN implementation {impl!r}")
    replace_norm(cfg, "SyncBN", "BN")
    cfg.MODEL.DEVICE = str(device)
    return cfg


def build_faster_rcnn(impl: str, device: torch.device) -> nn.Module:
    """The detector of ``impl`` (random weights, one-process norms) on ``device``."""
    from detectron2.modeling import build_model

    import resnest_backbones.detectron2  # noqa: F401  (registers our backbone)

    return build_model(faster_rcnn_cfg(impl, device))


class DetectorRunner(Runner):
    """A detectron2 meta-architecture: the loss dict of a fixed batch with 3 random boxes an image (train), the
    post-processed detections (inference). Images are 0-255 float CHW tensors, as detectron2's mapper gives."""

    def __init__(self, model: nn.Module, mode: str, x: Tensor, amp: Optional[torch.dtype], device: torch.device,
                 num_boxes: int = 3, num_classes: int = 80) -> None:
        super().__init__(model, mode, x, amp, device)
        from detectron2.structures import Boxes, Instances

        gen = torch.Generator().manual_seed(0)
        _, _, height, width = x.shape
        images = (x - x.min()) / (x.max() - x.min()) * 255
        self.inputs: List[Dict[str, Any]] = []
        for image in images:
            corners = torch.rand(num_boxes, 2, 2, generator=gen) * torch.tensor([width, height])
            low, high = corners.min(dim=1).values, corners.max(dim=1).values + 16  # at least 16 pixels a side
            boxes = torch.cat([low, torch.minimum(high, torch.tensor([width, height]))], dim=1)
            inst = Instances((height, width))
            inst.gt_boxes = Boxes(boxes.to(device))
            inst.gt_classes = torch.randint(0, num_classes, (num_boxes,), generator=gen).to(device)
            self.inputs.append({"image": image, "height": height, "width": width, "instances": inst})

    def infer(self) -> None:
        self.model([{k: v for k, v in d.items() if k != "instances"} for d in self.inputs])

    def train_loss(self) -> Tensor:
        from detectron2.utils.events import EventStorage

        with EventStorage(0):  # the losses log statistics to the current storage, as in a trainer
            return sum(self.model(self.inputs).values())


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
