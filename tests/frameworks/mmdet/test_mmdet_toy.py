"""Toy counterparts of the mmdet configs (resnest_backbones.mmdet.toy, the tools' --toy): the toy counterpart of
the Faster R-CNN config is the toy Faster R-CNN config, key for key; those of the Mask, Cascade and Cascade Mask R-CNN
configs keep their detector's structure at toy widths, and train a few iterations and evaluate (boxes, and masks for
the mask models) through tools/mmdet_train.py and tools/mmdet_test.py."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.frameworks import require

pytestmark = require("mmdet")  # a visible skip without mmdet, before its imports below

from mmengine.config import Config  # noqa: E402
from support.detection_models import OURS, PAIRS, Pair, config_leaves, single_process, small, small_data  # noqa: E402
from support.processes import run_tool  # noqa: E402

from resnest_backbones import config_file  # noqa: E402
from resnest_backbones.mmdet.toy import TOY_CONFIG, toy_counterpart  # noqa: E402

#: The keys a runner reads (the toy config's top-level variables such as ``toy`` or ``image_size`` are not).
RUN_KEYS = ("model", "train_dataloader", "val_dataloader", "test_dataloader", "val_evaluator", "test_evaluator",
            "optim_wrapper", "param_scheduler", "train_cfg", "val_cfg", "test_cfg", "default_hooks",
            "log_processor", "env_cfg", "randomness", "custom_imports", "default_scope")
S50 = [pair for pair in PAIRS if "resnest50d" in pair.ours]
AP = re.compile(r"\] (box|mask) AP = ([0-9.]+) %")


def test_toy_counterpart_of_faster_rcnn_is_the_toy_config() -> None:
    faster = next(pair for pair in S50 if pair.ours.startswith("faster-rcnn"))
    made = toy_counterpart(Config.fromfile(str(OURS / faster.ours))).to_dict()
    written = Config.fromfile(config_file(TOY_CONFIG)).to_dict()
    for key in RUN_KEYS:
        assert config_leaves(made[key]) == config_leaves(written[key]), key


@pytest.mark.parametrize("pair", [p for p in S50 if not p.ours.startswith("faster-rcnn")],
                         ids=lambda p: p.ours.split("_")[0])
def test_toy_counterpart_keeps_the_detector_and_trains(tmp_path: Path, pair: Pair) -> None:
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    full = Config.fromfile(str(OURS / pair.ours))
    toy = toy_counterpart(Config.fromfile(str(OURS / pair.ours)))
    init_default_scope("mmdet")
    model = MODELS.build(single_process(toy.model))
    assert type(model.roi_head).__name__ == full.model.roi_head.type  # the detector's own heads, at toy widths
    assert model.roi_head.with_mask == pair.masks
    stages = full.model.roi_head.get("num_stages", 1)
    heads = model.roi_head.bbox_head if stages > 1 else [model.roi_head.bbox_head]
    assert len(heads) == stages and all(head.num_classes == 3 and head.in_channels == 64 for head in heads)
    assert model.backbone.variant == "resnest14d"

    data, work = tmp_path / "toy_coco", tmp_path / "work"
    config = str((OURS / pair.ours).relative_to(OURS.parents[1]))
    trained = run_tool(["tools/mmdet_train.py", config, "--toy", "--work-dir", str(work), *small(3, data)],
                       timeout=600)
    tested = run_tool(["tools/mmdet_test.py", config, str(work / "iter_3.pth"), "--toy", "--no-fuse", "--work-dir",
                       str(tmp_path / "test"), "--cfg-options", *small_data(data)], timeout=300)
    expected = {"box", "mask"} if pair.masks else {"box"}
    for output in (trained, tested):
        assert {kind for kind, _ in AP.findall(output)} == expected, output[-3000:]
    assert AP.findall(trained) == AP.findall(tested)  # the checkpoint evaluates as the run that wrote it (unfused:
    # the same computation, so tied scores rank the same; fused vs unfused: tests/test_predict.py)
