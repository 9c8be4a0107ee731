"""torchvision's deployment routes for a whole ResNeSt detector (``docs/deploy.md``): ``torch.jit.script`` of the
whole ``FasterRCNN`` (as torchvision supports for its own detectors) and ONNX (``torch.onnx.export``, the
TorchScript-based exporter, which traces) run by onnxruntime, for a Faster R-CNN on
``resnest_fpn_backbone("resnest14d")`` as built (eval) and fused (``fuse_resnest_modules``).

The backbone keeps torchvision's default norm, ``FrozenBatchNorm2d``, with random statistics; the classifier is
random too, so that 20 and 16 detections of two classes survive ``box_score_thresh`` = 0.2 on the two test images,
every score (kept or dropped) at least 8e-4 away from the threshold, so rounding decides none of them.

The fused copy scripts too: its folded convolutions take oneDNN's fused kernel only in eager mode (a scripted
module runs the plain convolution ops, ``torch.jit.is_scripting()``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, NamedTuple

import pytest
import torch
from support.detection_models import seeded_image
from support.numerics import match_detections
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import FrozenBatchNorm2d

from resnest_backbones.torchvision import resnest_fpn_backbone

OPSET = 17
#: Scripted vs eager PyTorch (the same kernels; measured: bit-identical).
SAME_RUNTIME = dict(box_px=1e-3, score=1e-5)
#: onnxruntime vs eager PyTorch (measured: boxes <= 2e-6 px, scores <= 8e-7).
ONNX_RUNTIME = dict(box_px=1e-2, score=1e-4)
#: Fused vs as built, both eager (BN folded in float64; measured: boxes <= 2e-6 px, scores <= 7e-7).
FUSED = dict(box_px=1e-2, score=1e-4)

class Case(NamedTuple):
    model: FasterRCNN
    images: List[Tensor]  # RGB, float in 0..1: the test image (96 x 128), then one of another size (128 x 96)


def _randomize_frozen_norms(model: nn.Module, seed: int) -> None:
    """Random affine parameters and statistics for every FrozenBatchNorm2d (as support.numerics.randomize_norms
    does for batch norms: small scales on each block's last norm)."""
    gen = torch.Generator().manual_seed(seed)
    for name, norm in model.named_modules():
        if isinstance(norm, FrozenBatchNorm2d):
            n, scale = norm.weight.numel(), 0.1 if name.endswith("bn3") else 1.0
            norm.weight.copy_((torch.rand(n, generator=gen) * 0.5 + 0.75) * scale)
            norm.bias.copy_(torch.randn(n, generator=gen) * 0.1)
            norm.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            norm.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)


@pytest.fixture(scope="module")
def built() -> Case:
    torch.manual_seed(0)
    backbone = resnest_fpn_backbone("resnest14d", out_channels=64)  # FrozenBatchNorm2d, torchvision's default
    anchors = AnchorGenerator(sizes=((16,), (32,), (64,), (128,), (256,)), aspect_ratios=((0.5, 1.0, 2.0),) * 5)
    model = FasterRCNN(backbone, num_classes=4, rpn_anchor_generator=anchors, min_size=96, max_size=128,
                       box_score_thresh=0.2)
    with torch.no_grad():
        _randomize_frozen_norms(model, seed=1)
        cls_score = model.roi_heads.box_predictor.cls_score.weight
        cls_score.copy_(torch.randn(cls_score.shape, generator=torch.Generator().manual_seed(0)))
    images = [seeded_image((96, 128)).float() / 255, seeded_image((128, 96), seed=8).float() / 255]
    return Case(model.eval(), images)


def _eager(model: nn.Module, image: Tensor) -> Dict[str, Tensor]:
    with torch.no_grad():
        return model([image])[0]


def test_detections_are_non_trivial(built: Case) -> None:
    found = _eager(built.model, built.images[0])
    assert len(found["scores"]) == 20 and len(set(found["labels"].tolist())) == 2


def test_fused_matches_built(built: Case, fused: Case) -> None:
    for image in built.images:
        match_detections(_eager(fused.model, image), _eager(built.model, image), **FUSED)


def _script_and_reload(model: nn.Module, path: Path) -> torch.jit.ScriptModule:
    torch.jit.script(model).save(str(path))
    return torch.jit.load(str(path))  # what a deployment loads


def test_scripted_matches_eager(case: Case, tmp_path: Path) -> None:
    scripted = _script_and_reload(case.model, tmp_path / "model.ts")
    for image in case.images:  # scripting keeps every shape dynamic
        with torch.no_grad():
            _, (found,) = scripted([image])  # a scripted torchvision detector returns (losses, detections)
        match_detections(found, _eager(case.model, image), **SAME_RUNTIME)


def test_onnx_runtime_matches_eager(case: Case, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (test extra)")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (test extra)")
    path = tmp_path / "model.onnx"
    with torch.no_grad():
        torch.onnx.export(case.model, ([case.images[0]],), str(path), dynamo=False, opset_version=OPSET,
                          input_names=["image"], output_names=["boxes", "labels", "scores"],
                          dynamic_axes={"image": {1: "height", 2: "width"}, "boxes": {0: "n"}, "labels": {0: "n"},
                                        "scores": {0: "n"}})
    onnx.checker.check_model(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for image in case.images:
        boxes, labels, scores = (torch.from_numpy(v) for v in session.run(None, {"image": image.numpy()}))
        match_detections(dict(boxes=boxes, labels=labels, scores=scores), _eager(case.model, image), **ONNX_RUNTIME)
