"""Every config under configs/mmseg parses, builds on CPU, trains one iteration and runs one inference.

Sizes are shrunk the way a user would with ``--cfg-options`` (crop size of the data preprocessor); the
backbone's pretrained ``init_cfg`` is dropped because the ImageNet files are not downloaded here.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, List

import pytest
import torch
from support import REPO_ROOT
from support.frameworks import require

pytestmark = require("mmseg")  # a visible skip without mmseg, before its imports below

from mmengine.config import Config  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402
from support.segmentation import seg_batch  # noqa: E402

ROOT = REPO_ROOT
# The paper family (PyTorch-Encoding's head and recipe) has its own tests: tests/test_mmseg_paper_configs.py.
CONFIGS = sorted(p for p in (ROOT / "configs" / "mmseg").rglob("*.py")
                 if "_base_" not in p.parts and "paper" not in p.parts and "_paper" not in p.name)
# ResNeSt-269 takes about 25 s here on a busy 2-core machine (110M parameters to build): run it with -m slow.
SLOW = ("resnest269e",)
SIZE = (32, 32)


def _params() -> List[Any]:
    return [pytest.param(p, id=str(p.relative_to(ROOT / "configs" / "mmseg")),
                         marks=[pytest.mark.slow] if any(s in p.name for s in SLOW) else [])
            for p in CONFIGS]


def test_config_set_is_complete() -> None:
    names = {p.name for p in CONFIGS}
    for variant in ("resnest50d", "resnest101e", "resnest200e", "resnest269e"):
        assert f"deeplabv3_{variant}-d8_4xb4-160k_ade20k-512x512.py" in names
    for variant in ("resnest50d", "resnest101e", "resnest200e"):
        assert f"deeplabv3_{variant}-d8_4xb2-80k_cityscapes-512x1024.py" in names
    assert "deeplabv3_resnest14d-d8_toy-ade.py" in names and "deeplabv3_resnest14d-d8_toy-cityscapes.py" in names


@pytest.mark.parametrize("path", _params())
def test_config_builds_trains_and_infers(path: Path) -> None:
    cfg = Config.fromfile(str(path))
    text = path.read_text()
    assert "custom_imports" in text or "_base_ = './" in text or "_base_ = '../" in text
    model_cfg = cfg.model
    backbone = model_cfg.backbone
    assert backbone.type == "resnest_backbones.ResNeSt"
    assert model_cfg.decode_head.type == "ASPPHead" and model_cfg.auxiliary_head.type == "FCNHead"
    assert model_cfg.auxiliary_head.loss_decode.loss_weight == 0.4
    assert tuple(backbone.strides) == (1, 2, 1, 1) and tuple(backbone.dilations) == (1, 1, 2, 4)  # OS8
    assert backbone.norm_cfg.type == "SyncBN"
    if "toy" not in path.parts:
        assert backbone.init_cfg.type == "Pretrained" and backbone.init_cfg.checkpoint.startswith(
            "https://github.com/zhanghang1989/ResNeSt/releases/download/weights_step1/")  # official, downloaded
        assert Path(backbone.init_cfg.checkpoint).name.startswith(backbone.variant.rstrip("de"))
        assert cfg.optim_wrapper.optimizer == dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=0.0005)
        poly = cfg.param_scheduler[0]
        assert (poly.type, poly.power, poly.eta_min) == ("PolyLR", 0.9, 1e-4)
        ade = "ade20k" in path.name
        assert cfg.train_cfg.max_iters == poly.end == (160000 if ade else 80000)
        assert cfg.train_dataloader.batch_size * 4 == (16 if ade else 8)  # 4 GPUs
        assert tuple(cfg.crop_size) == ((512, 512) if ade else (512, 1024))
        assert model_cfg.decode_head.num_classes == (150 if ade else 19)

    # shrink, as with --cfg-options model.data_preprocessor.size=64,64 model.backbone.init_cfg=None
    cfg.merge_from_dict({"model.data_preprocessor.size": SIZE, "model.backbone.init_cfg": None})
    init_default_scope(cfg.get("default_scope", "mmseg"))
    start = time.perf_counter()
    model = MODELS.build(cfg.model)
    model.init_weights()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    num_classes = model.decode_head.num_classes

    model.train()
    losses = model.train_step(seg_batch(num_classes, SIZE), optim_wrapper)
    assert {"decode.loss_ce", "aux.loss_ce"} <= set(losses)
    assert all(math.isfinite(v.item()) for v in losses.values())

    model.eval()
    with torch.no_grad():
        results = model.test_step(seg_batch(num_classes, SIZE, seed=1))
    assert len(results) == 2
    for result in results:
        assert tuple(result.pred_sem_seg.data.shape) == (1, *SIZE)
        assert tuple(result.seg_logits.data.shape) == (num_classes, *SIZE)
    print(f"{path.name}: built + 1 train step + 1 inference in {time.perf_counter() - start:.1f} s")
