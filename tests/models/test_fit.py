"""The one fit-or-reset decision of whole-model checkpoints (resnest_backbones.models.checkpoint.fit): fine-tuning
from a file of another class count resets exactly the class layers (found by building the model at N and N+1
classes) and drops heads the model lacks; every other misfit, and any class difference when evaluating, is an
error naming the keys."""
from __future__ import annotations

from typing import Dict, Optional

import pytest
import torch
from torch import nn

from resnest_backbones.models.checkpoint import CheckpointError
from resnest_backbones.models.checkpoint.fit import ClassLayers, decide_fit, load_fitting


class Detector(nn.Module):
    """A detector's shape: backbone, neck, a box head (hidden layer, N+1 scores, 4N class-specific boxes), a
    two-stage cascade of class-agnostic boxes, optionally a mask head (N masks) -- like Faster/Cascade/Mask R-CNN."""

    def __init__(self, num_classes: int, masks: bool = False, hidden: int = 16, backbone: int = 8) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, backbone, 3), nn.BatchNorm2d(backbone))
        self.neck = nn.Conv2d(backbone, 8, 1)
        self.roi_head = nn.Module()
        self.roi_head.shared = nn.Linear(8, hidden)
        self.roi_head.fc_cls = nn.Linear(hidden, num_classes + 1)
        self.roi_head.fc_reg = nn.Linear(hidden, 4 * num_classes)
        self.roi_head.stages = nn.ModuleList(nn.Linear(hidden, num_classes + 1) for _ in range(2))
        self.roi_head.stage_reg = nn.ModuleList(nn.Linear(hidden, 4) for _ in range(2))
        if masks:
            self.roi_head.mask_head = nn.Module()
            self.roi_head.mask_head.conv = nn.Conv2d(8, 8, 3)
            self.roi_head.mask_head.logits = nn.Conv2d(8, num_classes, 1)


def shapes(n: int, **kwargs) -> Dict[str, torch.Size]:
    with torch.device("meta"):
        return {k: v.shape for k, v in Detector(n, **kwargs).state_dict().items()}


CLASS_KEYS = ["roi_head.fc_cls.bias", "roi_head.fc_cls.weight", "roi_head.fc_reg.bias", "roi_head.fc_reg.weight",
              *(f"roi_head.stages.{i}.{p}" for i in range(2) for p in ("bias", "weight"))]


def layers(n: int, **kwargs) -> ClassLayers:
    return ClassLayers.from_builder(lambda k: shapes(k, **kwargs), n)


def test_class_layers_are_learnt_from_two_builds() -> None:
    found = layers(2, masks=True)
    assert sorted(found.rules) == sorted(CLASS_KEYS + ["roi_head.mask_head.logits.bias",
                                                       "roi_head.mask_head.logits.weight"])
    assert found.rules["roi_head.fc_reg.weight"].classes((320, 16)) == 80  # 4 x 80 class-specific boxes
    assert found.rules["roi_head.fc_cls.weight"].classes((81, 16)) == 80  # 80 classes + background
    assert found.rules["roi_head.fc_cls.weight"].classes((81, 15)) is None  # another hidden width: not a count
    assert found.rules["roi_head.fc_reg.weight"].classes((322, 16)) is None  # not a whole number of classes


def fine_tune(model: nn.Module, file: nn.Module, mode: str = "finetune", class_layers: Optional[ClassLayers] = None):
    return load_fitting(model, file.state_dict(), mode=mode, source="coco.pth",
                        class_layers=class_layers or layers(2))


def test_fine_tuning_resets_exactly_the_class_layers() -> None:
    torch.manual_seed(0)
    coco, model = Detector(80), Detector(2)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    decision = fine_tune(model, coco)
    assert decision.fresh == sorted(CLASS_KEYS) and decision.file_classes == 80 and not decision.dropped
    assert decision.line.startswith("fine-tuning from coco.pth: 8 class layers start fresh (checkpoint: 80 "
                                    "classes, model: 2): roi_head.fc_cls.bias")
    for key, value in model.state_dict().items():
        expected = fresh[key] if key in CLASS_KEYS else coco.state_dict()[key]
        assert torch.equal(value, expected), key


def test_the_same_class_count_loads_everything_in_both_modes() -> None:
    for mode in ("exact", "finetune"):
        model, file = Detector(2), Detector(2)
        decision = fine_tune(model, file, mode)
        assert decision.fresh == [] and decision.line is None
        assert all(torch.equal(v, file.state_dict()[k]) for k, v in model.state_dict().items())


def test_evaluating_a_file_of_another_class_count_is_an_error() -> None:
    with pytest.raises(CheckpointError, match=r"coco.pth holds a model of 80 classes; this config's model has 2"
                                              r"(.|\n)*num_classes=80"):
        fine_tune(Detector(2), Detector(80), mode="exact")


@pytest.mark.parametrize("file,key", [
    (Detector(80, backbone=4), "backbone.0.weight"),       # another backbone: always an error
    (Detector(80, hidden=32), "roi_head.shared.weight"),   # a head's hidden layer
])
def test_other_misfits_stay_errors_when_fine_tuning(file: nn.Module, key: str) -> None:
    with pytest.raises(CheckpointError,
                       match=f"does not fit the model of this config outside its class layers(.|\\n)*{key}"):
        fine_tune(Detector(2), file)


def test_a_tensor_the_file_lacks_is_an_error() -> None:
    state = Detector(80).state_dict()
    del state["neck.weight"]
    with pytest.raises(CheckpointError, match="missing in checkpoint: neck.weight"):
        load_fitting(Detector(2), state, mode="finetune", source="coco.pth", class_layers=layers(2))


def test_class_layers_of_different_counts_are_an_error() -> None:
    state = Detector(80).state_dict()
    state["roi_head.fc_reg.weight"] = torch.zeros(4 * 50, 16)  # boxes for 50 classes, scores for 80
    state["roi_head.fc_reg.bias"] = torch.zeros(4 * 50)
    with pytest.raises(CheckpointError, match="roi_head.fc_cls.weight"):
        load_fitting(Detector(2), state, mode="finetune", source="coco.pth", class_layers=layers(2))


def test_a_head_the_model_lacks_is_dropped_when_fine_tuning_only() -> None:
    mask_rcnn = Detector(80, masks=True)
    decision = fine_tune(Detector(2), mask_rcnn)
    assert decision.dropped == ["roi_head.mask_head.conv.bias", "roi_head.mask_head.conv.weight",
                                "roi_head.mask_head.logits.bias", "roi_head.mask_head.logits.weight"]
    assert decision.line.endswith("dropped 4 tensors of heads this model does not have: roi_head.mask_head")
    with pytest.raises(CheckpointError, match="unexpected in checkpoint: roi_head.mask_head.conv.bias"):
        fine_tune(Detector(80), mask_rcnn, mode="exact", class_layers=layers(80))


def test_an_unknown_mode_is_refused() -> None:
    from resnest_backbones.models.checkpoint import LoadReport

    with pytest.raises(ValueError, match="mode 'train'"):
        decide_fit(LoadReport("whole-model"), [], mode="train", source="x")
