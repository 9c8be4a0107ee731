"""Tests of the torchvision adapter (resnest_backbones.torchvision) and of hubconf.py.

torchvision's detection models built on the ResNeSt-FPN backbone train and infer on CPU; the builder follows
``resnet_fpn_backbone``'s conventions (checked against torchvision's own helper); ImageNet checkpoints load
strictly into the body; ``torch.hub.load(..., source="local")`` returns the core model.
"""
from __future__ import annotations

import importlib.util
import re
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Set

import pytest
import torch
from support import REPO_ROOT
from support.numerics import max_rel_diff, randomize_norms
from support.processes import run_python, run_tool
from torch import nn

import resnest_backbones as rb

torchvision = pytest.importorskip("torchvision", reason="torchvision is not installed")
from torchvision.models.detection import FasterRCNN, MaskRCNN, RetinaNet  # noqa: E402
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone  # noqa: E402
from torchvision.ops import FrozenBatchNorm2d  # noqa: E402
from torchvision.ops.feature_pyramid_network import LastLevelP6P7  # noqa: E402

from resnest_backbones.torchvision import ResNeStBackboneWithFPN, resnest_fpn_backbone  # noqa: E402

REPO = REPO_ROOT
SIZE = 64  # detection models resize to this: keeps every step fast on CPU
SMALL = dict(min_size=SIZE, max_size=SIZE, rpn_pre_nms_top_n_train=100, rpn_post_nms_top_n_train=50,
             rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20, box_batch_size_per_image=32)


def _batch(masks: bool = False) -> tuple:
    gen = torch.Generator().manual_seed(0)
    images = [torch.rand(3, SIZE, SIZE, generator=gen) for _ in range(2)]
    targets = []
    for i in range(2):
        boxes = torch.tensor([[4.0, 6.0, 30.0, 40.0], [20.0 + i, 24.0, 60.0, 58.0]])
        target = {"boxes": boxes, "labels": torch.tensor([1, 2])}
        if masks:
            m = torch.zeros(2, SIZE, SIZE, dtype=torch.uint8)
            for k, (x0, y0, x1, y1) in enumerate(boxes.int().tolist()):
                m[k, y0:y1, x0:x1] = 1
            target["masks"] = m
        targets.append(target)
    return images, targets


def _train_and_infer(model: nn.Module, masks: bool = False) -> None:
    """One SGD step (finite losses, gradients reach the trainable backbone) and one inference step."""
    images, targets = _batch(masks)
    body = model.backbone.body
    trainable = {n: p for n, p in body.named_parameters() if p.requires_grad}
    frozen = {n: p for n, p in body.named_parameters() if not p.requires_grad}
    before = {n: p.detach().clone() for n, p in body.named_parameters()}
    model.train()
    losses = model(images, targets)
    assert losses and all(torch.isfinite(v) for v in losses.values()), losses
    loss = sum(losses.values())
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    optimizer.zero_grad()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in trainable.items() if ".layer4." in
               f".{n}" and n.endswith("conv3.weight")), "no gradient reached the last stage"
    assert all(p.grad is None for p in frozen.values())
    optimizer.step()
    assert any(not torch.equal(before[n], p) for n, p in trainable.items())
    assert all(torch.equal(before[n], p) for n, p in frozen.items())
    model.eval()
    with torch.no_grad():
        outputs = model(images)
    assert len(outputs) == 2
    for out in outputs:
        assert {"boxes", "scores", "labels"} <= set(out)
        assert out["boxes"].shape[1:] == (4,) and out["scores"].shape == out["labels"].shape
        if masks:
            assert out["masks"].shape[1:] == (1, SIZE, SIZE)


# ------------------------------------------------------------------------------------------ detection models
@pytest.mark.parametrize("variant", ["resnest14d", "resnest50d"])
def test_faster_rcnn_trains_and_infers(variant: str) -> None:
    torch.manual_seed(0)
    backbone = resnest_fpn_backbone(variant, trainable_layers=3)
    assert isinstance(backbone, ResNeStBackboneWithFPN) and backbone.out_channels == 256
    _train_and_infer(FasterRCNN(backbone, num_classes=3, **SMALL))


def test_mask_rcnn_trains_and_infers() -> None:
    torch.manual_seed(0)
    backbone = resnest_fpn_backbone("resnest14d", trainable_layers=5, norm_layer=nn.BatchNorm2d)
    _train_and_infer(MaskRCNN(backbone, num_classes=3, **SMALL), masks=True)


def test_retinanet_trains_and_infers() -> None:
    torch.manual_seed(0)
    # torchvision's RetinaNet recipe: C3-C5 into the FPN, P6/P7 from C5.
    c5 = rb.create_model("resnest14d", out_features=["res5"]).feature_info["res5"].channels
    backbone = resnest_fpn_backbone("resnest14d", trainable_layers=3, returned_layers=[2, 3, 4],
                                    extra_blocks=LastLevelP6P7(c5, 256))
    features = backbone(torch.zeros(1, 3, SIZE, SIZE))
    assert list(features) == ["0", "1", "2", "p6", "p7"]
    _train_and_infer(RetinaNet(backbone, num_classes=3, min_size=SIZE, max_size=SIZE))


def test_outputs_follow_torchvision_conventions() -> None:
    backbone = resnest_fpn_backbone("resnest14d", returned_layers=[2, 4], out_channels=64).eval()
    with torch.no_grad():
        out = backbone(torch.zeros(1, 3, 128, 96))
    assert isinstance(out, OrderedDict)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "0": (1, 64, 16, 12), "1": (1, 64, 4, 3), "pool": (1, 64, 2, 2)}
    # The body is the core model: official key names, no stage beyond the last returned one.
    assert isinstance(backbone.body, rb.ResNeSt)
    assert "body.layer4.0.conv2.conv.weight" in backbone.state_dict()
    stopped = resnest_fpn_backbone("resnest14d", returned_layers=[1, 2])
    assert not any(k.startswith(("body.layer3", "body.layer4")) for k in stopped.state_dict())


# ----------------------------------------------------------------------------------------- trainable layers
def _groups(model: nn.Module) -> Dict[str, Set[bool]]:
    """Backbone parameter group (stem, layer1..4) -> the set of requires_grad values of its parameters."""
    groups: Dict[str, Set[bool]] = {}
    for name, param in model.named_parameters():
        if not name.startswith("body."):
            assert param.requires_grad, f"{name} (outside the body) must stay trainable"
            continue
        part = name.split(".")[1]
        part = "stem" if part in ("conv1", "bn1") else part
        groups.setdefault(part, set()).add(param.requires_grad)
    return groups


@pytest.mark.parametrize("norm_layer", [FrozenBatchNorm2d, nn.BatchNorm2d])
@pytest.mark.parametrize("returned_layers", [None, [1, 2, 3]])
def test_trainable_layers_match_torchvision(norm_layer, returned_layers: List[int]) -> None:
    for trainable in range(6):
        ref = resnet_fpn_backbone(backbone_name="resnet50", weights=None, norm_layer=norm_layer,
                                  trainable_layers=trainable, returned_layers=returned_layers)
        ours = resnest_fpn_backbone("resnest14d", norm_layer=norm_layer, trainable_layers=trainable,
                                    returned_layers=returned_layers)
        expected = _groups(ref)
        assert all(len(v) == 1 for v in expected.values())  # torchvision freezes whole groups
        assert _groups(ours) == expected, f"trainable_layers={trainable}"


def test_frozen_stages_keep_their_norm_statistics() -> None:
    """Beyond torchvision (which only stops gradients): frozen BatchNorm layers stay in eval mode."""
    backbone = resnest_fpn_backbone("resnest14d", norm_layer=nn.BatchNorm2d, trainable_layers=3).train()
    assert not backbone.body.bn1.training and not backbone.body.layer1[0].bn1.training
    assert backbone.body.layer2[0].bn1.training
    stats = backbone.body.layer1[0].bn1.running_mean.clone()
    backbone(torch.rand(2, 3, 64, 64))
    assert torch.equal(stats, backbone.body.layer1[0].bn1.running_mean)


# ------------------------------------------------------------------------------------------------ weights
@pytest.fixture(scope="module")
def resnest50d_checkpoint(tmp_path_factory) -> Path:
    """An official-format ImageNet checkpoint file (random weights and norm statistics)."""
    torch.manual_seed(0)
    model = randomize_norms(rb.create_model("resnest50d", num_classes=1000))
    path = tmp_path_factory.mktemp("weights") / "resnest50d.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.mark.parametrize("returned_layers", [None, [1, 2, 3]])
def test_official_weights_load_with_no_missing_key(resnest50d_checkpoint: Path, returned_layers) -> None:
    backbone = resnest_fpn_backbone("resnest50d", weights=resnest50d_checkpoint, returned_layers=returned_layers)
    report = rb.load_checkpoint(backbone.body, resnest50d_checkpoint)
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    assert set(report.loaded) == set(backbone.body.state_dict())
    assert any(k.startswith("fc.") for k in report.ignored)  # the ImageNet head, reported, not loaded
    if returned_layers is not None:
        assert any(k.startswith("layer4.") for k in report.ignored)
    state = torch.load(resnest50d_checkpoint)
    assert all(torch.equal(v, state[k]) for k, v in backbone.body.state_dict().items())
    # Frozen batch norm computes what eval-mode batch norm of the core model computes.
    core = rb.create_model("resnest50d", pretrained=resnest50d_checkpoint).eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        ours, ref = backbone.body.forward_features(x), core.forward_features(x)
    assert all(max_rel_diff(ours[k], ref[k]) < 1e-5 for k in ours)


def test_checkpoint_from_the_official_package_loads() -> None:
    official = pytest.importorskip("resnest.torch", reason="the official `resnest==0.0.5` package is not installed")
    state = official.resnest50(pretrained=False).state_dict()
    backbone = resnest_fpn_backbone("resnest50", weights=state)  # official alias of resnest50d
    assert all(torch.equal(v, state[k]) for k, v in backbone.body.state_dict().items())


def test_wrong_checkpoint_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "resnest14d.pth"
    torch.save(rb.create_model("resnest14d").state_dict(), path)
    with pytest.raises(rb.CheckpointError, match="missing"):
        resnest_fpn_backbone("resnest26d", weights=path)


# ---------------------------------------------------------------------------------------------- torch.hub
def test_hub_load_returns_the_core_model(resnest50d_checkpoint: Path) -> None:
    model = torch.hub.load(str(REPO), "resnest50d", source="local", pretrained=str(resnest50d_checkpoint))
    assert type(model) is rb.ResNeSt and model.num_classes == 1000
    state = torch.load(resnest50d_checkpoint)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    backbone = torch.hub.load(str(REPO), "resnest14d", source="local", num_classes=0, out_features=["res3"])
    assert list(backbone.eval()(torch.zeros(1, 3, 32, 32))) == ["res3"]
    fpn = torch.hub.load(str(REPO), "resnest_fpn_backbone", source="local", variant="resnest14d")
    assert isinstance(fpn, ResNeStBackboneWithFPN)


def test_hub_lists_every_variant() -> None:
    spec = importlib.util.spec_from_file_location("hubconf_under_test", REPO / "hubconf.py")
    hub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hub)
    # torch.hub.list's rule: every public callable of hubconf is an entry point.
    entries = {n for n in dir(hub) if callable(getattr(hub, n)) and not n.startswith("_")}
    assert entries == set(rb.list_variants()) | {"resnest_fpn_backbone"}
    assert hub.dependencies == ["torch", "torchvision"]
    assert all("resnest" in getattr(hub, n).__doc__.lower() for n in entries)


# ------------------------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("kwargs, error, message", [
    (dict(trainable_layers=6), ValueError, "trainable_layers must be an int in 0..5"),
    (dict(trainable_layers=-1), ValueError, "trainable_layers"),
    (dict(trainable_layers=True), ValueError, "trainable_layers"),
    (dict(returned_layers=[0, 1]), ValueError, "returned_layers must be increasing stage numbers in 1..4"),
    (dict(returned_layers=[3, 2]), ValueError, "returned_layers"),
    (dict(returned_layers=[]), ValueError, "returned_layers"),
    (dict(returned_layers=[2, 2]), ValueError, "returned_layers"),
    (dict(out_features=["res5"]), TypeError, "use returned_layers"),
    (dict(freeze_at=2), TypeError, "use trainable_layers"),
    (dict(weights=3), TypeError, "weights must be None, True, a checkpoint path or a state dict"),
    (dict(norm_layer="BN"), TypeError, "norm_layer must be callable"),
    (dict(variant="resnest51"), ValueError, "valid names: resnest14d"),
])
def test_bad_arguments_raise_clear_errors(kwargs: dict, error: type, message: str) -> None:
    kwargs = {"variant": "resnest14d", **kwargs}
    with pytest.raises(error, match=message):
        resnest_fpn_backbone(**kwargs)


def test_torchvision_weights_enum_is_refused() -> None:
    from torchvision.models import ResNet50_Weights

    with pytest.raises(TypeError, match="WeightsEnum"):
        resnest_fpn_backbone("resnest14d", weights=ResNet50_Weights.IMAGENET1K_V1)


def test_missing_weights_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises((FileNotFoundError, rb.CheckpointError), match="nope.pth"):
        resnest_fpn_backbone("resnest14d", weights=tmp_path / "nope.pth")


# ------------------------------------------------------------------------------------ the training script
def test_training_script_runs_end_to_end(tmp_path: Path, capsys) -> None:
    script_path = REPO / "tools" / "torchvision_train.py"
    spec = importlib.util.spec_from_file_location("torchvision_train_under_test", script_path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    weights = tmp_path / "resnest14d.pth"
    torch.save(rb.create_model("resnest14d", num_classes=1000).state_dict(), weights)
    common = ["--data-root", str(tmp_path / "toy"), "--num-train", "4", "--num-val", "2", "--image-size", "64",
              "--batch-size", "2", "--threads", str(torch.get_num_threads())]  # no change to this process
    script.main(["--iters", "2", "--output", str(tmp_path / "model.pth")] + common)
    out = capsys.readouterr().out
    assert "step    2/2" in out and "train: loss" in out and "val: 2 val images" in out
    saved = torch.load(tmp_path / "model.pth", weights_only=True)  # a model file: what rebuilds the model too
    assert (saved["variant"], saved["image_size"], saved["classes"]) == ("resnest14d", 64, ["circle", "square",
                                                                                           "triangle"])
    state = saved["state_dict"]
    assert "backbone.body.layer4.0.conv2.conv.weight" in state and "backbone.fpn.inner_blocks.0.0.weight" in state
    script.main(["--iters", "1", "--weights", str(weights)] + common)  # fine-tuning: frozen BN, 3 stages trained
    assert "val: 2 val images" in capsys.readouterr().out


@pytest.mark.slow
def test_toy_faster_rcnn_reaches_ap50(tmp_path: Path) -> None:
    """The script's default schedule (200 steps from scratch) on the toy COCO data: box AP50 >= 0.5.

    ``tools/toy_margins.py`` measures this run over seeds 0-4 and 1/2 threads; the threshold sits far below the
    worst of those runs (figures in the README's "What is tested"), so another CPU's rounding cannot cross it.
    """
    output = run_tool(["tools/torchvision_train.py", "--data-root", tmp_path / "toy"], timeout=20 * 60)
    found = re.findall(r"bbox AP ([0-9.]+), AP50 ([0-9.]+)", output)
    assert found, output[-3000:]
    ap50 = float(found[-1][1])
    print(f"toy torchvision Faster R-CNN ResNeSt-14 FPN: box AP50 {ap50:.3f}")
    assert ap50 >= 0.5


def test_init_from_fine_tunes_the_class_layers_only_and_refuses_another_backbone(own_sample: dict,
                                                                               tmp_path: Path) -> None:
    """--init-from a model file of 3 classes onto the sample's 2: the class layers start fresh (one line), the
    rest loads; from one of 2 other classes, every tensor loads and one line says the names differ; with another
    --variant the backbone does not fit: an error naming the keys, no traceback."""
    from resnest_backbones.torchvision import toy_faster_rcnn
    from resnest_backbones.torchvision.model_file import save_model_file

    served = tmp_path / "shapes.pth"
    save_model_file(served, toy_faster_rcnn("resnest14d", 4, 64), variant="resnest14d", image_size=64,
                    classes=["circle", "square", "triangle"])
    own = ["--train-data", str(own_sample["train_json"]), str(own_sample["train_images"]),
           "--val-data", str(own_sample["val_json"]), str(own_sample["val_images"])]
    short = ["--iters", "1", "--batch-size", "2", "--threads", "1"]
    data = [*own, "--init-from", str(served), *short]
    out = run_tool(["tools/torchvision_train.py", *data, "--output", str(tmp_path / "mine.pth")], timeout=300)
    assert (f"fine-tuning from {served}: 4 class layers start fresh (checkpoint: 3 classes, model: 2): "
            "roi_heads.box_predictor.bbox_pred.bias") in out
    assert torch.load(tmp_path / "mine.pth", weights_only=True)["classes"] == ["kettle", "teapot"]
    cups = tmp_path / "cups.pth"
    save_model_file(cups, toy_faster_rcnn("resnest14d", 3, 64), variant="resnest14d", image_size=64,
                    classes=["cup", "fork"])
    out = run_tool(["tools/torchvision_train.py", *own, "--init-from", str(cups), *short], timeout=300)
    assert (f"starting from {cups}: the same class count, every tensor loaded; its classes ['cup', 'fork'] are not "
            f"the data's ['kettle', 'teapot'], so its class layers are only the starting point") in out
    proc = run_python(["tools/torchvision_train.py", *data, "--variant", "resnest26d"], timeout=300, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "does not fit the model of this config outside its class layers" in proc.stderr
    assert "missing in checkpoint: backbone.body.layer1.1.conv1.weight" in proc.stderr


def test_coco_boxes_reads_a_users_file_as_the_other_frameworks_do(own_sample: dict, tmp_path: Path) -> None:
    """Labels 1..K in category-id order although the file lists 9 before 3; the sideways JPEG (EXIF orientation 6)
    upright, in its entry's size; a crowd region (iscrowd 1) not a target."""
    import json

    from resnest_backbones.torchvision.data import CocoBoxes

    data = json.loads(Path(own_sample["val_json"]).read_text())
    data["annotations"].append(dict(data["annotations"][0], id=999, iscrowd=1, bbox=[0, 0, 5, 5], area=25.0))
    path = tmp_path / "val.json"
    path.write_text(json.dumps(data))
    dataset = CocoBoxes(own_sample["val_images"], path)
    assert dataset.classes == ["kettle", "teapot"] and dataset.category_ids == [3, 9]
    for index, entry in enumerate(dataset.images):
        image, target = dataset[index]
        anns = [a for a in data["annotations"] if a["image_id"] == entry["id"] and not a.get("iscrowd")]
        assert image.shape == (3, entry["height"], entry["width"]), entry["file_name"]
        assert target["labels"].tolist() == [{3: 1, 9: 2}[a["category_id"]] for a in anns]
    assert any(e["file_name"].endswith("_sideways.jpg") for e in dataset.images)
    assert 999 not in [a["id"] for anns in dataset.annotations.values() for a in anns]
