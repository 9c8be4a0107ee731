"""The models and steps of the whole-model benchmark (:mod:`.whole`): mmseg DeepLabV3 and detectron2 Faster R-CNN
built from this project's configs (and the references' configs) with one-process norms, and the runner of each
(a fixed batch with random labels for the training step, the framework's own inference). Frameworks are imported
when a model is built.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from torch import Tensor, nn

from .timing import Runner

#: The repository root (our configs live under it).
ROOT = Path(__file__).resolve().parents[2]
OFFICIAL_D2_ENV = "RESNEST_OFFICIAL_D2"
#: The official fork's Faster R-CNN S-50 config, relative to its checkout (override with RESNEST_OFFICIAL_D2_CONFIG).
OFFICIAL_D2_CONFIG = "configs/COCO-Detection/faster_rcnn_ResNeSt_50_FPN_syncbn_range-scale_1x.yaml"


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
def official_d2_config() -> Optional[Path]:
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
        path = official_d2_config()
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
