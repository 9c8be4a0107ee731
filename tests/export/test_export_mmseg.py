"""ONNX export of a whole ResNeSt segmentor (``docs/deploy.md``): the toy DeepLabV3 S-14 (output stride 8, ASPP)
of ``configs/mmseg/toy``, as built (eval) and fused (``fuse_resnest_modules``), through
``torch.onnx.export`` (TorchScript-based exporter) and onnxruntime.

What is exported is :class:`SegmentorLogits`: mmseg's data preprocessing (BGR -> RGB, mean/std), the segmentor's
tensor forward (``model(inputs, mode="tensor")``: decode-head logits at 1/8 resolution) and the bilinear resize to
the input size that mmseg's ``predict`` does, so the ONNX model maps an image to full-size class logits; it is
checked against mmseg's own inference (``test_step``) first. Batch size, height and width are dynamic axes and are
checked at another batch size and image size than the export's.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F
from support.frameworks import require
from torch import Tensor, nn

pytestmark = require("mmseg")  # a visible skip without mmseg, before its imports below

from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402
from support import REPO_ROOT  # noqa: E402
from support.detection_models import seeded_image, single_process  # noqa: E402
from support.numerics import max_rel_diff, randomize_norms  # noqa: E402

import resnest_backbones as rb  # noqa: E402
import resnest_backbones.mmseg  # noqa: E402,F401 - registers the backbone
from resnest_backbones.accel import InferenceOnly  # noqa: E402

TOY = REPO_ROOT / "configs" / "mmseg" / "toy" / "deeplabv3_resnest14d-d8_toy-ade.py"
OPSET = 17
#: max|ours - eager| / max|eager| of the logits, onnxruntime or fused vs eager (measured: <= 1e-6 for all).
LOGITS_REL = 1e-4
#: The wrapper vs mmseg's own test_step: the same ops in the same order (measured: 0).
SAME_RUNTIME_REL = 1e-6


class SegmentorLogits(nn.Module):
    """The deployable segmentor: BGR images ``(B, 3, H, W)``, float in 0..255 -> class logits ``(B, K, H, W)``."""

    def __init__(self, segmentor: nn.Module) -> None:
        super().__init__()
        self.segmentor = segmentor
        pre = segmentor.data_preprocessor
        self.bgr_to_rgb = bool(pre.channel_conversion)
        self.register_buffer("mean", pre.mean.clone(), persistent=False)
        self.register_buffer("std", pre.std.clone(), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        x = images[:, [2, 1, 0]] if self.bgr_to_rgb else images
        logits = self.segmentor((x - self.mean) / self.std, mode="tensor")
        return F.interpolate(logits, size=images.shape[2:], mode="bilinear",
                             align_corners=self.segmentor.align_corners)


class Case(NamedTuple):
    model: SegmentorLogits
    images: Tensor  # the export's batch (1 x 3 x 64 x 96)
    other: Tensor  # another batch size and image size (2 x 3 x 80 x 64)


def _images(*sizes) -> Tensor:
    return torch.stack([seeded_image(size, seed=i).float() for i, size in enumerate(sizes)])


@pytest.fixture(scope="module")
def built() -> Case:
    cfg = Config.fromfile(str(TOY))
    single_process(cfg.model)  # SyncBN as BN: one process
    init_default_scope("mmseg")
    torch.manual_seed(0)
    segmentor = MODELS.build(cfg.model)
    randomize_norms(segmentor, seed=1)
    return Case(SegmentorLogits(segmentor.eval()).eval(), _images((64, 96)), _images((80, 64), (80, 64)))


@pytest.fixture(scope="module")
def fused(built: Case) -> Case:
    model = copy.deepcopy(built.model)
    assert rb.fuse_resnest_modules(model) == 1
    assert isinstance(model.segmentor.backbone, InferenceOnly)
    return Case(model, built.images, built.other)


@pytest.fixture(scope="module", params=["built", "fused"])
def case(request: pytest.FixtureRequest) -> Case:
    return request.getfixturevalue(request.param)


def _eager(model: nn.Module, images: Tensor) -> Tensor:
    with torch.no_grad():
        return model(images)


def test_wrapper_is_mmseg_inference(built: Case) -> None:
    segmentor = built.model.segmentor
    image = built.images[0]
    h, w = image.shape[1:]
    sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
    with torch.no_grad():
        (result,) = segmentor.test_step(dict(inputs=[image.to(torch.uint8)], data_samples=[sample]))
    logits = _eager(built.model, built.images)[0]
    assert logits.shape == result.seg_logits.data.shape and logits.std() > 0.1  # non-trivial logits
    assert max_rel_diff(logits, result.seg_logits.data) <= SAME_RUNTIME_REL


def test_fused_matches_built(built: Case, fused: Case) -> None:
    for images in (built.images, built.other):
        assert max_rel_diff(_eager(fused.model, images), _eager(built.model, images)) <= LOGITS_REL


def test_onnx_runtime_matches_eager(case: Case, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (test extra)")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (test extra)")
    path = tmp_path / "segmentor.onnx"
    with torch.no_grad():
        torch.onnx.export(case.model, (case.images,), str(path), dynamo=False, opset_version=OPSET,
                          input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"},
                                        "logits": {0: "batch", 2: "height", 3: "width"}})
    onnx.checker.check_model(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for images in (case.images, case.other):
        (logits,) = session.run(None, {"images": images.numpy()})
        assert max_rel_diff(torch.from_numpy(logits), _eager(case.model, images)) <= LOGITS_REL
