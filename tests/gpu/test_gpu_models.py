"""Whole models with the ResNeSt backbone on a CUDA device (docs/gpu.md): one training step (float32, AMP float16,
AMP bfloat16) and one fused inference (``resnest_backbones.fuse_resnest_modules``: the ResNeSt inside the model
replaced, in place, by its batch-norm-folded copy) of

* detectron2's Faster R-CNN of configs/detectron2/toy/faster_rcnn_toy.yaml,
* mmseg's DeepLabV3 of configs/mmseg/toy/deeplabv3_resnest14d-d8_toy-ade.py,
* torchvision's Faster R-CNN on ``resnest_backbones.torchvision.resnest_fpn_backbone``,

plus the core network's fused copy. The configs' SyncBN becomes BN (one process, no group to synchronise). The
models are built as the CPU suites build them (tests/frameworks/...), with random weights and norm statistics,
and moved to the device. Training steps use the memory-saving modules (every adapter's default) and must give finite
losses, gradients that reach the last stage, changed weights and moved running statistics. Fused outputs are
compared with the unfused model's.

Every test needs CUDA (marker ``gpu``); the framework ones also their framework (markers ``detectron2``,
``mmseg``; torchvision is skipped when it is not installed).
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

import gpu_support as gs
import pytest
import torch
from support import REPO_ROOT
from support.detection_models import single_process
from support.numerics import max_rel_diff, max_rel_diff_outputs, random_image, randomize_norms
from support.segmentation import seg_batch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

import resnest_backbones as rb
from resnest_backbones.accel import InferenceOnly, fuse_for_inference, fuse_resnest_modules

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda")
D2_TOY = REPO_ROOT / "configs" / "detectron2" / "toy" / "faster_rcnn_toy.yaml"
ADE_TOY = REPO_ROOT / "configs" / "mmseg" / "toy" / "deeplabv3_resnest14d-d8_toy-ade.py"
AMPS: Dict[str, Optional[torch.dtype]] = {"float32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
SIZE = 128  # the toy detection images' side
SEG_SIZE = (64, 64)  # the toy DeepLabV3's crop

#: Fused against unfused, float32 on the GPU with TF32 off (gpu_support.exact_float32; with TF32 every convolution
#: of either model would round to 10 bits, 5e-4). Folding rounds each folded weight once (computed in float64,
#: stored in float32: 6e-8 relative); through the network such rounding moves outputs by about 1e-6 (the CPU suite,
#: tests/accel/test_inference.py, bounds it by 1e-4). 1e-3 leaves a margin of 100x over that (cuDNN picks other
#: algorithms for the folded convolutions, which have a bias), while a wrong fold (a norm left out, a scale or shift
#: misapplied, the wrong statistics) moves the outputs by order 1.
FUSED_RTOL = 1e-3
#: Detections pass a score threshold and NMS: a candidate whose score or overlap sits at a threshold may go either
#: way under the 1e-6 changes of fusion. The features check is the strict one; of the detections, at least 90 % must
#: have a twin (same class, IoU >= 0.99) on the other side.
MATCHED_DETECTIONS = 0.9


# -------------------------------------------------------------------------------------------- helpers
def _spread_scores(classifier: nn.Linear) -> None:
    """Scale a random classifier's weights so that class scores are far apart (as support.detection_models does):
    detections then do not hinge on rounding."""
    with torch.no_grad():
        classifier.weight.mul_(20.0)


def _first_batch_norm(module: nn.Module) -> _BatchNorm:
    return next(m for m in module.modules() if isinstance(m, _BatchNorm))


def _assert_memory_saving(resnest: nn.Module) -> None:
    assert isinstance(resnest, rb.ResNeSt)
    kinds = {type(m).__name__ for m in resnest.modules()}
    assert {"MemoryEfficientDeepStem", "MemoryEfficientSplitAttention", "MemoryEfficientBottleneck"} <= kinds


def _train_one_step(model: nn.Module, resnest: nn.Module, losses_of: Callable[[], Dict[str, Tensor]],
                    amp: Optional[torch.dtype]) -> None:
    """One SGD step of ``model`` on the device: ``losses_of()`` runs under ``torch.autocast("cuda", amp)`` and the
    backward outside it (as torch's AMP recipe does); the memory-saving ops ran, the losses are finite, every
    trainable parameter of the ResNeSt got a finite gradient (non-zero in the last stage), weights and running
    statistics moved."""
    _assert_memory_saving(resnest)
    model.train()
    trainable = {name: p for name, p in resnest.named_parameters() if p.requires_grad}
    before = {name: p.detach().clone() for name, p in trainable.items()}
    norm = _first_batch_norm(resnest)
    mean_before = norm.running_mean.clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    optimizer.zero_grad(set_to_none=True)
    with gs.counting_ops() as calls:
        with torch.autocast(CUDA.type, dtype=amp, enabled=amp is not None):
            losses = losses_of()
        loss = sum(losses.values())
        assert torch.isfinite(loss), {k: float(v) for k, v in losses.items()}
        loss.backward()
    assert calls[0] > 0, "the memory-saving path was not taken"
    missing = [name for name, p in trainable.items() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no or non-finite gradient: {missing[:5]}"
    last = [p.grad for name, p in trainable.items() if name.startswith("layer4.") and name.endswith("conv3.weight")]
    assert last and all(g.abs().sum() > 0 for g in last), "no gradient reached the last stage"
    optimizer.step()
    assert any(not torch.equal(before[name], p) for name, p in trainable.items()), "no weight moved"
    assert not torch.equal(mean_before, norm.running_mean), "the running statistics did not move"


def _matched_fraction(ours: Dict[str, Tensor], theirs: Dict[str, Tensor]) -> float:
    """The share of detections with a twin (same label, IoU >= 0.99) on the other side, over the larger set."""
    from torchvision.ops import box_iou

    count = max(len(ours["boxes"]), len(theirs["boxes"]))
    if count == 0:
        return 1.0
    if min(len(ours["boxes"]), len(theirs["boxes"])) == 0:
        return 0.0
    twins = (box_iou(ours["boxes"], theirs["boxes"]) >= 0.99) & (ours["labels"][:, None] == theirs["labels"][None])
    return float(twins.any(1).sum()) / count


def _fuse_in_place(model: nn.Module, resnest_name: str) -> None:
    assert fuse_resnest_modules(model) == 1
    assert isinstance(model.get_submodule(resnest_name), InferenceOnly) and not model.training
    assert not any(isinstance(m, _BatchNorm) for m in model.get_submodule(resnest_name).modules())


# ------------------------------------------------------------------------------------------------ core
@pytest.mark.parametrize("fmt", list(gs.FORMATS))
def test_fused_core_model_on_cuda(fmt: str) -> None:
    torch.manual_seed(0)
    memory_format = gs.FORMATS[fmt]
    model = randomize_norms(rb.create_model("resnest14d", num_classes=10)).eval().to(CUDA, memory_format=memory_format)
    fused = fuse_for_inference(model)
    x = random_image(96).to(CUDA).contiguous(memory_format=memory_format)
    with gs.exact_float32(), torch.no_grad():
        expected, got = model(x), fused(x)
    assert max_rel_diff(got, expected) <= FUSED_RTOL


# ------------------------------------------------------------------------------------------ detectron2
def _detectron2_model() -> nn.Module:
    from detectron2.modeling import build_model

    from resnest_backbones.detectron2 import replace_norm
    from resnest_backbones.detectron2.config import load_config

    cfg = load_config(D2_TOY, ["MODEL.DEVICE", CUDA.type])
    replace_norm(cfg)  # SyncBN -> BN: one process
    torch.manual_seed(0)
    model = build_model(cfg)  # on MODEL.DEVICE
    randomize_norms(model, seed=1)
    _spread_scores(model.roi_heads.box_predictor.cls_score)
    return model


def _detectron2_inputs(training: bool) -> List[Dict]:
    from detectron2.structures import Boxes, Instances

    gen = torch.Generator().manual_seed(0)
    inputs = []
    for i in range(2):  # split attention's norm after global pooling needs 2 samples in training
        image = torch.randint(0, 256, (3, SIZE, SIZE), generator=gen, dtype=torch.uint8)
        item = {"image": image, "height": SIZE, "width": SIZE}
        if training:
            instances = Instances((SIZE, SIZE))
            instances.gt_boxes = Boxes(torch.tensor([[10.0, 12.0, 60.0, 70.0], [50.0 + i, 40.0, 120.0, 110.0]]))
            instances.gt_classes = torch.tensor([0, 2])
            item["instances"] = instances
        inputs.append(item)
    return inputs


@pytest.mark.detectron2
@pytest.mark.parametrize("amp", list(AMPS))
def test_detectron2_faster_rcnn_trains_a_step_on_cuda(amp: str) -> None:
    from detectron2.utils.events import EventStorage

    model = _detectron2_model()
    inputs = _detectron2_inputs(training=True)

    def losses() -> Dict[str, Tensor]:
        with EventStorage(0):
            return model(inputs)

    _train_one_step(model, model.backbone.bottom_up, losses, AMPS[amp])


@pytest.mark.detectron2
def test_detectron2_faster_rcnn_fused_inference_on_cuda() -> None:
    model = _detectron2_model().eval()
    inputs = _detectron2_inputs(training=False)
    with gs.exact_float32(), torch.no_grad():
        images = model.preprocess_image(inputs).tensor
        expected_features, expected = model.backbone(images), model(inputs)
        _fuse_in_place(model, "backbone.bottom_up")
        features, got = model.backbone(images), model(inputs)
    assert max_rel_diff_outputs(features, expected_features) <= FUSED_RTOL
    for ours, theirs in zip(got, expected):
        ours, theirs = ({"boxes": r["instances"].pred_boxes.tensor, "labels": r["instances"].pred_classes}
                        for r in (ours, theirs))
        assert _matched_fraction(ours, theirs) >= MATCHED_DETECTIONS


# ----------------------------------------------------------------------------------------------- mmseg
def _mmseg_model() -> nn.Module:
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    cfg = Config.fromfile(str(ADE_TOY))  # imports the config's custom_imports (the backbone's registration)
    single_process(cfg.model)  # SyncBN -> BN: one process
    init_default_scope("mmseg")  # (tests/conftest.py restores the default scope after each test)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    randomize_norms(model, seed=1)
    return model.to(CUDA)  # mmengine's BaseModel.to also moves its data preprocessor


@pytest.mark.mmseg
@pytest.mark.parametrize("amp", list(AMPS))
def test_mmseg_deeplabv3_trains_a_step_on_cuda(amp: str) -> None:
    model = _mmseg_model()
    data = model.data_preprocessor(seg_batch(model.decode_head.num_classes, SEG_SIZE), training=True)

    def losses() -> Dict[str, Tensor]:
        loss, _ = model.parse_losses(model(**data, mode="loss"))
        return {"loss": loss}

    _train_one_step(model, model.backbone, losses, AMPS[amp])


@pytest.mark.mmseg
def test_mmseg_deeplabv3_fused_inference_on_cuda() -> None:
    model = _mmseg_model().eval()
    data = model.data_preprocessor(seg_batch(model.decode_head.num_classes, SEG_SIZE, seed=1), training=False)
    with gs.exact_float32(), torch.no_grad():
        expected = model(**data, mode="tensor")  # the decode head's logits
        _fuse_in_place(model, "backbone")
        got = model(**data, mode="tensor")
    assert max_rel_diff(got, expected) <= FUSED_RTOL


# ----------------------------------------------------------------------------------------- torchvision
def _torchvision_model() -> nn.Module:
    pytest.importorskip("torchvision", reason="torchvision is not installed")
    from torchvision.models.detection import FasterRCNN

    from resnest_backbones.torchvision import resnest_fpn_backbone

    torch.manual_seed(0)
    # Batch norm, every stage trained (as from scratch): frozen norms would keep the reference path (see
    # resnest_backbones.accel.ops.supports).
    backbone = resnest_fpn_backbone("resnest14d", norm_layer=nn.BatchNorm2d, trainable_layers=5)
    model = FasterRCNN(backbone, num_classes=4, min_size=SIZE, max_size=SIZE, rpn_pre_nms_top_n_train=200,
                       rpn_post_nms_top_n_train=100, rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=50,
                       box_batch_size_per_image=64)
    randomize_norms(model, seed=1)
    _spread_scores(model.roi_heads.box_predictor.cls_score)
    return model.to(CUDA)


def _torchvision_batch() -> tuple:
    gen = torch.Generator().manual_seed(0)
    images = [torch.rand(3, SIZE, SIZE, generator=gen).to(CUDA) for _ in range(2)]
    targets = [{"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0], [50.0 + i, 40.0, 120.0, 110.0]], device=CUDA),
                "labels": torch.tensor([1, 3], device=CUDA)} for i in range(2)]
    return images, targets


@pytest.mark.parametrize("amp", list(AMPS))
def test_torchvision_faster_rcnn_trains_a_step_on_cuda(amp: str) -> None:
    model = _torchvision_model()
    images, targets = _torchvision_batch()
    _train_one_step(model, model.backbone.body, lambda: model(images, targets), AMPS[amp])


def test_torchvision_faster_rcnn_fused_inference_on_cuda() -> None:
    model = _torchvision_model().eval()
    images, _ = _torchvision_batch()
    with gs.exact_float32(), torch.no_grad():
        batch = model.transform(images)[0].tensors
        expected_features, expected = model.backbone(batch), model(images)
        _fuse_in_place(model, "backbone.body")
        features, got = model.backbone(batch), model(images)
    assert max_rel_diff_outputs(dict(features), dict(expected_features)) <= FUSED_RTOL
    for ours, theirs in zip(got, expected):
        assert _matched_fraction(ours, theirs) >= MATCHED_DETECTIONS
