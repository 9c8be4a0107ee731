"""The ResNeSt paper's segmentation configs (configs/mmseg/paper): recipe values, build, one training step, and
the evaluation protocol (TTA pipeline + slide inference) on toy data.

Sizes are shrunk the way a user would with ``--cfg-options`` (32x32 inputs, small TTA scales and windows); the
pipeline itself is also run unshrunk on a toy image to check the protocol's scales and flips.
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch
from support import REPO_ROOT
from support.frameworks import require

pytestmark = require("mmseg")  # a visible skip without mmseg, before its imports below

from mmengine.config import Config  # noqa: E402
from mmengine.dataset import pseudo_collate  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.structures import PixelData  # noqa: E402
from mmseg.registry import DATASETS, MODELS  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402

from resnest_backbones.toy_data.segmentation import make_toy_ade20k  # noqa: E402

ROOT = REPO_ROOT
PAPER = sorted((ROOT / "configs" / "mmseg" / "paper").glob("*.py"))
SLOW = ("resnest269e",)  # 126 s here (110M parameters: build, a step, TTA); S-200 takes 35 s
SIZE = (32, 32)
EXPECTED_ITERS = {"resnest50d": 180 * 1263, "resnest101e": 180 * 1263, "resnest200e": 180 * 1263,
                  "resnest269e": 180 * 1263}


def _params() -> List[Any]:
    return [pytest.param(p, id=p.name, marks=[pytest.mark.slow] if any(s in p.name for s in SLOW) else [])
            for p in PAPER]


def test_paper_config_set_is_complete() -> None:
    assert {p.name for p in PAPER} == {f"deeplabv3_{v}-d8_paper_4xb4-180e_ade20k-480x480.py" for v in EXPECTED_ITERS}


def check_recipe(cfg: Config, variant: str) -> None:
    """The values of docs/reference.md section 4 (PyTorch-Encoding's recipe and protocol)."""
    model = cfg.model
    backbone, head, aux = model.backbone, model.decode_head, model.auxiliary_head
    assert backbone.type == "resnest_backbones.ResNeSt" and backbone.variant == variant
    assert backbone.output_stride == 8 and backbone.avd_dilated is True and backbone.norm_cfg.type == "SyncBN"
    assert Path(backbone.init_cfg.checkpoint).name.startswith(f"{variant.rstrip('de')}-")  # official ImageNet file
    assert head.type == "resnest_backbones.DeepLabV3Head"
    assert (head.in_channels, head.channels, tuple(head.dilations), head.project_dropout, head.dropout_ratio,
            head.align_corners) == (2048, 256, (12, 24, 36), 0.5, 0.1, True)
    assert aux.type == "FCNHead"
    assert (aux.in_channels, aux.in_index, aux.channels, aux.num_convs, aux.concat_input, aux.dropout_ratio,
            aux.align_corners) == (1024, 2, 256, 1, False, 0.1, True)
    assert head.loss_decode.loss_weight == 1.0 and aux.loss_decode.loss_weight == 0.2
    assert head.loss_decode.avg_non_ignore and aux.loss_decode.avg_non_ignore
    assert head.num_classes == aux.num_classes == 150
    assert cfg.optim_wrapper.optimizer == dict(type="SGD", lr=0.004, momentum=0.9, weight_decay=1e-4)
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys == {"decode_head": dict(lr_mult=10.0),
                                                           "auxiliary_head": dict(lr_mult=10.0)}
    assert len(cfg.param_scheduler) == 1  # no warm-up
    poly = cfg.param_scheduler[0]
    assert (poly.type, poly.power, poly.eta_min, poly.begin) == ("PolyLR", 0.9, 0.0, 0)
    assert cfg.train_cfg.max_iters == poly.end == EXPECTED_ITERS[variant]
    assert cfg.train_dataloader.batch_size * 4 == 16
    transforms = [t.type for t in cfg.train_pipeline]
    assert transforms == ["LoadImageFromFile", "LoadAnnotations", "RandomFlip", "RandomResize", "Pad", "RandomCrop",
                          "PackSegInputs"]  # PE's order; no PhotoMetricDistortion
    resize = cfg.train_pipeline[3]
    assert (tuple(resize.scale), tuple(resize.ratio_range), resize.keep_ratio) == ((520, 520), (0.5, 2.0), True)
    assert tuple(cfg.train_pipeline[5].crop_size) == (480, 480) and cfg.train_pipeline[1].reduce_zero_label
    assert model.test_cfg == dict(mode="slide", crop_size=(480, 480), stride=(320, 320))
    scales = [t.scale for t in cfg.tta_pipeline[1].transforms[0]]
    assert [s[0] for s in scales] == [math.ceil(520 * r) for r in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)]
    assert [t.prob for t in cfg.tta_pipeline[1].transforms[1]] == [0.0, 1.0]
    assert list(model.data_preprocessor.mean) == [123.675, 116.28, 103.53]


def _batch(num_classes: int) -> Dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(2):
        inputs.append(torch.randint(0, 256, (3, *SIZE), generator=gen, dtype=torch.uint8))
        labels = torch.randint(0, num_classes, (1, *SIZE), generator=gen)
        labels[:, :4] = 255
        sample = SegDataSample(gt_sem_seg=PixelData(data=labels))
        sample.set_metainfo(dict(img_shape=SIZE, ori_shape=SIZE, pad_shape=SIZE))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


@pytest.fixture(scope="module")
def toy_ade(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_ade20k(tmp_path_factory.mktemp("toy") / "ade", num_train=2, num_val=2, image_size=(48, 64))


@pytest.mark.parametrize("path", _params())
def test_paper_config_recipe_trains_and_runs_tta(path: Path, toy_ade: Path) -> None:
    start = time.perf_counter()
    cfg = Config.fromfile(str(path))
    variant = cfg.model.backbone.variant
    check_recipe(cfg, variant)

    # the protocol's own pipeline on a toy image: 6 scales (long side 260..910) x 2 flips
    init_default_scope("mmseg")
    tta_data = copy.deepcopy(cfg.test_dataloader.dataset)
    tta_data.update(data_root=str(toy_ade), pipeline=cfg.tta_pipeline)
    sample = DATASETS.build(tta_data)[0]
    shapes = [tuple(s.img_shape) for s in sample["data_samples"]]
    assert [max(s) for s in shapes] == [s for s in (260, 390, 520, 650, 780, 910) for _ in range(2)]
    assert [bool(s.flip) for s in sample["data_samples"]] == [False, True] * 6

    # shrink, as with --cfg-options
    cfg.merge_from_dict({"model.data_preprocessor.size": SIZE, "model.data_preprocessor.test_cfg.size": SIZE,
                         "model.backbone.init_cfg": None, "model.test_cfg.crop_size": SIZE,
                         "model.test_cfg.stride": (21, 21)})
    model = MODELS.build(cfg.model)
    model.init_weights()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    lrs = {group["lr"] for group in optim_wrapper.optimizer.param_groups}
    assert lrs == {0.004, 0.04}  # heads at 10x
    model.train()
    losses = model.train_step(_batch(150), optim_wrapper)
    assert {"decode.loss_ce", "aux.loss_ce"} <= set(losses)
    assert all(math.isfinite(v.item()) for v in losses.values())

    # TTA (small scales; the 48x64 image is larger than the 32x32 window at the second scale: slide inference)
    tta_pipeline = copy.deepcopy(cfg.tta_pipeline)
    tta_pipeline[1].transforms[0] = [dict(type="Resize", scale=(s, s), keep_ratio=True) for s in (32, 64)]
    tta_data.update(pipeline=tta_pipeline)
    tta_cfg = copy.deepcopy(cfg.tta_model)
    tta_cfg.module = model
    tta_model = MODELS.build(tta_cfg).eval()
    with torch.no_grad():
        results = tta_model.test_step(pseudo_collate([DATASETS.build(tta_data)[0]]))
    assert len(results) == 1 and tuple(results[0].pred_sem_seg.data.shape) == (1, 48, 64)
    print(f"{path.name}: recipe + build + 1 train step + TTA in {time.perf_counter() - start:.1f} s")


TOY = ROOT / "configs" / "mmseg" / "toy" / "deeplabv3_resnest14d-d8_paper_toy-ade.py"


def test_toy_paper_config_keeps_the_recipe_and_runs_tta(toy_ade: Path) -> None:
    """The toy paper config: the paper's head, pipeline order and optimiser structure, shrunk; TTA runs."""
    cfg = Config.fromfile(str(TOY))
    assert cfg.model.decode_head.type == "resnest_backbones.DeepLabV3Head" and cfg.model.backbone.avd_dilated
    assert [t.type for t in cfg.train_pipeline] == [t.type for t in Config.fromfile(str(PAPER[0])).train_pipeline]
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys["decode_head"] == dict(lr_mult=10.0)
    assert cfg.model.auxiliary_head.loss_decode.loss_weight == 0.2 and len(cfg.param_scheduler) == 1
    init_default_scope("mmseg")
    model = MODELS.build(cfg.model)
    model.init_weights()
    tta_data = copy.deepcopy(cfg.test_dataloader.dataset)
    tta_data.update(type="ADE20KDataset", data_root=str(toy_ade), pipeline=cfg.tta_pipeline)
    tta_data.pop("toy")
    tta_cfg = copy.deepcopy(cfg.tta_model)
    tta_cfg.module = model
    with torch.no_grad():
        results = MODELS.build(tta_cfg).eval().test_step(pseudo_collate([DATASETS.build(tta_data)[0]]))
    assert tuple(results[0].pred_sem_seg.data.shape) == (1, 48, 64)
