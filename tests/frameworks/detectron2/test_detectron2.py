"""detectron2 adapter of the ResNeSt backbones (Zhang et al., 2020): backbone shapes, FPN, freezing, SyncBN,
checkpoint formats. Skipped, visibly, when detectron2 is not installed."""
from __future__ import annotations

import logging
import re
from typing import Dict, List

import pytest
import torch
from support.frameworks import require
from torch import nn

pytestmark = require("detectron2")  # a visible skip without detectron2, before its imports below

from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402
from detectron2.data import DatasetCatalog, DatasetMapper  # noqa: E402
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec  # noqa: E402
from detectron2.modeling import BACKBONE_REGISTRY, build_model  # noqa: E402
from detectron2.modeling.backbone.resnet import build_resnet_backbone  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402
from support.checkpoints import to_detectron2_wrapper  # noqa: E402
from support.numerics import randomize_norms  # noqa: E402
from torch.nn.modules.batchnorm import _BatchNorm  # noqa: E402

import resnest_backbones as rb  # noqa: E402
from resnest_backbones.detectron2 import (  # noqa: E402
    ResNeStBackbone,
    ResNeStCheckpointer,
    add_resnest_config,
    build_resnest,
    register_toy_coco,
    replace_norm,
)

TOY = "configs/detectron2/toy/faster_rcnn_toy.yaml"


@pytest.fixture(scope="module", autouse=True)
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> None:
    register_toy_coco(tmp_path_factory.mktemp("toy_coco"), num_train=4, num_val=2, image_size=96)


def toy_cfg(*opts: str):
    cfg = add_resnest_config(get_cfg())
    cfg.merge_from_file(TOY)
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", *opts])
    return cfg


def toy_batch(cfg, n: int = 2) -> List[Dict]:
    mapper = DatasetMapper(cfg, is_train=True)
    return [mapper(d) for d in DatasetCatalog.get("toy_coco_train")[:n]]


# ------------------------------------------------------------------------------------------------ shapes
@pytest.mark.parametrize("name", rb.list_variants())
def test_output_shape_equals_real_outputs(name: str) -> None:
    features = ["stem", "res2", "res3", "res4", "res5"]
    model = build_resnest(name, norm="BN", out_features=features).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 96))
    shapes = model.output_shape()
    assert list(out) == list(shapes) == features
    for key, tensor in out.items():
        assert tensor.shape[1] == shapes[key].channels
        assert (64 // tensor.shape[2], 96 // tensor.shape[3]) == (shapes[key].stride, shapes[key].stride)
    assert isinstance(model, ResNeStBackbone) and isinstance(model, rb.ResNeSt)


def test_output_shape_dilated_and_truncated() -> None:
    model = build_resnest("resnest14d", norm="BN", output_stride=16, out_features=["res3", "res5"]).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    shapes = {k: (v.channels, v.stride) for k, v in model.output_shape().items()}
    assert shapes == {"res3": (512, 8), "res5": (2048, 16)}
    assert {k: tuple(v.shape[1:]) for k, v in out.items()} == {"res3": (512, 8, 8), "res5": (2048, 4, 4)}
    truncated = build_resnest("resnest14d", norm="BN", out_features=["res3"])
    assert isinstance(truncated.layer3, nn.Identity) and isinstance(truncated.layer4, nn.Identity)


def test_builders_are_registered_and_fpn_gives_p2_to_p6() -> None:
    for name in ("build_resnest_backbone", "build_resnest_fpn_backbone", "build_retinanet_resnest_fpn_backbone"):
        assert BACKBONE_REGISTRY.get(name) is not None
    cfg = toy_cfg()
    fpn = BACKBONE_REGISTRY.get("build_resnest_fpn_backbone")(cfg, ShapeSpec(channels=3)).eval()
    with torch.no_grad():
        out = fpn(torch.randn(1, 3, 128, 128))
    assert list(out) == ["p2", "p3", "p4", "p5", "p6"]
    for key, spec in fpn.output_shape().items():
        assert out[key].shape[1] == spec.channels == cfg.MODEL.FPN.OUT_CHANNELS
        assert out[key].shape[-1] == 128 // spec.stride
    cfg = toy_cfg("MODEL.RESNEST.OUT_FEATURES", "['res3', 'res4', 'res5']", "MODEL.FPN.IN_FEATURES",
                  "['res3', 'res4', 'res5']")
    retina = BACKBONE_REGISTRY.get("build_retinanet_resnest_fpn_backbone")(cfg, ShapeSpec(channels=3)).eval()
    with torch.no_grad():
        out = retina(torch.randn(1, 3, 128, 128))
    assert list(out) == ["p3", "p4", "p5", "p6", "p7"]
    assert [v.shape[-1] for v in out.values()] == [16, 8, 4, 2, 1]


def test_fpn_asking_for_missing_features_says_what_to_do() -> None:
    cfg = toy_cfg("MODEL.RESNEST.OUT_FEATURES", "['res2', 'res3']")
    with pytest.raises(ValueError, match="MODEL.RESNEST.OUT_FEATURES"):
        BACKBONE_REGISTRY.get("build_resnest_fpn_backbone")(cfg, ShapeSpec(channels=3))
    with pytest.raises(ValueError, match="unknown norm"):
        build_resnest("resnest14d", norm="")


@pytest.mark.parametrize("norm", ["BN", "SyncBN", "FrozenBN", "GN", "naiveSyncBN"])
def test_every_detectron2_norm_name_builds_and_trains(norm: str) -> None:
    cfg = toy_cfg("MODEL.RESNEST.NORM", norm)
    model = BACKBONE_REGISTRY.get("build_resnest_backbone")(cfg, ShapeSpec(channels=3)).train()
    expected = {"BN": nn.BatchNorm2d, "SyncBN": nn.SyncBatchNorm, "FrozenBN": FrozenBatchNorm2d,
                "GN": nn.GroupNorm, "naiveSyncBN": nn.BatchNorm2d}[norm]
    assert all(isinstance(m, expected) for m in (model.bn1, model.layer1[0].bn1, model.layer4[0].conv2.bn0))
    out = model(torch.randn(2, 3, 64, 64))
    sum(v.mean() for v in out.values()).backward()
    assert model.layer4[0].conv3.weight.grad is not None


def test_config_keys_reach_the_model() -> None:
    cfg = toy_cfg("MODEL.RESNEST.OUTPUT_STRIDE", "16", "MODEL.RESNEST.DROPBLOCK_PROB", "0.1",
                  "MODEL.RESNEST.DEFORM_ON_PER_STAGE", "[False, False, False, True]",
                  "MODEL.RESNEST.DEFORM_NUM_GROUPS", "2", "MODEL.RESNEST.DEFORM_MODULATED", "True")
    model = BACKBONE_REGISTRY.get("build_resnest_backbone")(cfg, ShapeSpec(channels=3))
    assert model.output_shape()["res5"].stride == 16
    dropblock = {name.split(".")[0] for name, m in model.named_modules() if type(m).__name__ == "DropBlock2d"}
    assert dropblock == {"layer3", "layer4"}
    offsets = {name.split(".")[0] for name, _ in model.named_parameters() if "conv_offset" in name}
    assert offsets == {"layer4"}
    offset = next(p for n, p in model.named_parameters() if "conv_offset" in n and n.endswith("weight"))
    assert offset.shape[0] == 2 * 3 * 3 * 3  # 2 groups x (x, y, mask) x 3x3 kernel: modulated DCN


# ------------------------------------------------------------------------------------------------ freezing
def _summary(groups: Dict[str, nn.Module]) -> Dict[str, tuple]:
    """Per stage: (all params trainable, no params trainable, number of FrozenBN, number of trainable BN)."""
    result = {}
    for name, module in groups.items():
        grads = [p.requires_grad for p in module.parameters()]
        frozen_norms = sum(isinstance(m, FrozenBatchNorm2d) for m in module.modules())
        live_norms = sum(isinstance(m, _BatchNorm) for m in module.modules())
        result[name] = (all(grads), not any(grads), frozen_norms > 0 and live_norms == 0, live_norms > 0)
    return result


@pytest.mark.parametrize("freeze_at", range(6))
def test_freeze_at_like_detectron2_resnet(freeze_at: int) -> None:
    cfg = toy_cfg("MODEL.BACKBONE.FREEZE_AT", str(freeze_at), "MODEL.RESNETS.NORM", "BN",
                  "MODEL.RESNEST.NORM", "BN", "MODEL.RESNETS.DEPTH", "50")
    theirs = build_resnet_backbone(cfg, ShapeSpec(channels=3))
    ours = BACKBONE_REGISTRY.get("build_resnest_backbone")(cfg, ShapeSpec(channels=3))
    their_groups = {"stem": theirs.stem, **{f"res{i}": getattr(theirs, f"res{i}") for i in range(2, 6)}}
    our_groups = {"stem": nn.ModuleList([ours.conv1, ours.bn1]),
                  **{f"res{i}": getattr(ours, f"layer{i - 1}") for i in range(2, 6)}}
    assert _summary(our_groups) == _summary(their_groups)
    expected_frozen = ["stem", "res2", "res3", "res4", "res5"][:freeze_at]
    assert [k for k, v in _summary(our_groups).items() if v[1]] == expected_frozen
    # frozen statistics stay put in training mode; the rest keeps training
    ours.train()
    before = {k: v.clone() for k, v in ours.state_dict().items() if k.endswith("running_mean")}
    ours(torch.randn(2, 3, 64, 64))
    after = ours.state_dict()
    stage_of = {"conv1": "stem", "bn1": "stem", "layer1": "res2", "layer2": "res3", "layer3": "res4", "layer4": "res5"}
    for key, value in before.items():
        changed = not torch.equal(value, after[key])
        assert changed == (stage_of[key.split(".")[0]] not in expected_frozen), key


# ------------------------------------------------------------------------------------------------ norms
def test_syncbn_trains_in_one_cpu_process() -> None:
    cfg = toy_cfg("SOLVER.IMS_PER_BATCH", "2")
    assert cfg.MODEL.RESNEST.NORM == cfg.MODEL.FPN.NORM == cfg.MODEL.ROI_BOX_HEAD.NORM == "SyncBN"
    torch.manual_seed(0)
    model = build_model(cfg).train()
    sync = [m for m in model.backbone.bottom_up.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert sync, "the backbone should use SyncBatchNorm"
    before = sync[0].running_mean.clone()
    with EventStorage(0):
        losses = model(toy_batch(cfg))
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total)
    assert not torch.equal(before, sync[0].running_mean)
    assert model.backbone.bottom_up.conv1[0].weight.grad is not None


def test_cpu_sync_bn_keeps_the_norm_weight_decay() -> None:
    """After the CPU-processes swap (tools/train_net.py), detectron2's optimiser still sees the swapped layers
    as norms: their parameters get SOLVER.WEIGHT_DECAY_NORM, not SOLVER.WEIGHT_DECAY."""
    from detectron2.solver import build_optimizer

    from resnest_backbones.distributed import sync_on_cpu
    from resnest_backbones.layers import SyncBatchNorm

    cfg = toy_cfg("SOLVER.WEIGHT_DECAY_NORM", "0.0", "SOLVER.WEIGHT_DECAY", "1e-4")
    model = build_model(cfg)
    sync_on_cpu(model)
    swapped = {id(p) for m in model.modules() if isinstance(m, SyncBatchNorm) for p in m.parameters()}
    assert swapped and not any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    decay = {id(p): group["weight_decay"] for group in build_optimizer(cfg, model).param_groups
             for p in group["params"]}
    assert {decay[i] for i in swapped} == {0.0}
    assert 1e-4 in decay.values()  # the convolutions keep the ordinary weight decay


def test_add_resnest_config_changes_no_existing_default() -> None:
    plain, ours = get_cfg(), add_resnest_config(get_cfg())
    assert set(ours.MODEL) - set(plain.MODEL) == {"RESNEST"}
    ours.MODEL.pop("RESNEST")
    assert ours == plain


def test_replace_norm_rewrites_every_norm_key() -> None:
    cfg = toy_cfg()
    changed = replace_norm(cfg)
    assert sorted(changed) == ["MODEL.FPN.NORM", "MODEL.RESNEST.NORM", "MODEL.ROI_BOX_HEAD.NORM",
                               "MODEL.ROI_MASK_HEAD.NORM"]
    assert cfg.MODEL.RESNEST.NORM == "BN" and cfg.MODEL.RESNETS.NORM == "FrozenBN"


# ------------------------------------------------------------------------------------------------ weights
@pytest.fixture(scope="module")
def imagenet_files(tmp_path_factory: pytest.TempPathFactory):
    """An 'ImageNet' resnest14d (random weights, random norm statistics) in both published formats."""
    torch.manual_seed(0)
    source = randomize_norms(rb.create_model("resnest14d", num_classes=10)).eval()
    root = tmp_path_factory.mktemp("ckpt")
    torch.save(source.state_dict(), root / "resnest14d_official.pth")
    wrapper = to_detectron2_wrapper(source.state_dict())
    torch.save({"model": {"backbone.bottom_up." + k: v for k, v in wrapper.items()}}, root / "resnest14d_detectron.pth")
    return source, root / "resnest14d_official.pth", root / "resnest14d_detectron.pth"


def _detector(freeze_at: int = 2):
    return build_model(toy_cfg("MODEL.RESNEST.NORM", "BN", "MODEL.BACKBONE.FREEZE_AT", str(freeze_at))).eval()


def test_both_checkpoint_formats_load_fully_and_agree(imagenet_files, caplog: pytest.LogCaptureFixture) -> None:
    source, official, detectron = imagenet_files
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = source.forward_features(x)
    features = []
    for path in (official, detectron):
        model = _detector()
        with caplog.at_level(logging.INFO):
            ResNeStCheckpointer(model).load(str(path))
        assert re.search(r"checkpoint: \d+ tensors loaded, 0 missing, 0 unexpected", caplog.text), caplog.text
        caplog.clear()
        with torch.no_grad():
            features.append(model.backbone.bottom_up(x))
    for key in expected:
        torch.testing.assert_close(features[0][key], features[1][key], rtol=0, atol=0)
        torch.testing.assert_close(features[0][key], expected[key], rtol=1e-5, atol=1e-5)


def test_partial_backbone_checkpoint_is_an_error(imagenet_files, tmp_path) -> None:
    source, _, _ = imagenet_files
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("layer3.")}
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(rb.CheckpointError, match="missing"):
        ResNeStCheckpointer(_detector()).load(str(tmp_path / "partial.pth"))
    with pytest.raises(rb.CheckpointError):  # a bigger variant's weights do not fit resnest14d
        torch.save(rb.create_model("resnest26d").state_dict(), tmp_path / "other.pth")
        ResNeStCheckpointer(_detector()).load(str(tmp_path / "other.pth"))


def test_full_detectron2_checkpoints_still_resume(tmp_path) -> None:
    torch.manual_seed(1)
    trained = _detector()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    DetectionCheckpointer(trained, save_dir=str(tmp_path)).save("model_final")
    restored = _detector()
    ResNeStCheckpointer(restored, save_dir=str(tmp_path)).resume_or_load(str(tmp_path / "model_final.pth"),
                                                                       resume=False)
    for (name, a), b in zip(trained.state_dict().items(), restored.state_dict().values()):
        assert torch.equal(a, b), name


def test_toy_dataset_is_registered() -> None:
    dicts = DatasetCatalog.get("toy_coco_train")
    assert len(dicts) == 4 and all(d["annotations"] for d in dicts)
    assert {a["category_id"] for d in dicts for a in d["annotations"]} <= {0, 1, 2}


def test_unknown_resnest_config_key_is_refused() -> None:
    cfg = add_resnest_config(get_cfg())
    with pytest.raises((KeyError, AssertionError), match="Non-existent key: MODEL.RESNEST.NAMEX"):
        cfg.merge_from_list(["MODEL.RESNEST.NAMEX", "resnest50d"])
