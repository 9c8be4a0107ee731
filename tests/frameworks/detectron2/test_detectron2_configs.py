"""Every detectron2 config of the ResNeSt recipes (Zhang et al., 2020): it merges, holds the published
hyper-parameters (docs/reference.md section 2), builds on the CPU and runs one training and one inference step on a
toy batch (input size shrunk through config overrides). Skipped, visibly, without detectron2."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Dict, List

import pytest
import torch
import yaml
from support import REPO_ROOT
from support.frameworks import require

pytestmark = require("detectron2")  # a visible skip without detectron2, before its imports below

import detectron2.data.transforms as T  # noqa: E402
from detectron2 import model_zoo  # noqa: E402
from detectron2.config import LazyConfig, get_cfg, instantiate  # noqa: E402
from detectron2.data import DatasetCatalog, DatasetMapper  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.structures import BitMasks  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

import resnest_backbones as rb  # noqa: E402
from resnest_backbones.detectron2 import ResNeStBackbone, add_resnest_config, register_toy_coco  # noqa: E402

ROOT = REPO_ROOT / "configs" / "detectron2"
LEAVES = sorted(p for p in ROOT.rglob("*.yaml") if not p.name.startswith("Base-"))
LAZY = sorted(p for p in ROOT.glob("COCO-*/*.py"))
# Shrunk for speed (the published values are checked in test_recipe_hyper_parameters): 128-pixel inputs, and
# few proposals/RoIs, since four 256-channel convs per RoI in up to three cascade stages dominate the step.
SMALL = ["INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MIN_SIZE_TRAIN_SAMPLING", "choice", "INPUT.MAX_SIZE_TRAIN", "128",
         "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128", "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "200",
         "MODEL.RPN.POST_NMS_TOPK_TRAIN", "64", "MODEL.RPN.PRE_NMS_TOPK_TEST", "100", "MODEL.RPN.POST_NMS_TOPK_TEST",
         "32", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32"]

# docs/reference.md section 2, per leaf: variant, cascade, mask, DCN, train-size sampling.
RECIPES = {
    "faster_rcnn_S50_FPN_1x": ("resnest50d", False, False, False, "range"),
    "faster_rcnn_S50_FPN_DCNv2_1x": ("resnest50d", False, False, True, "range"),
    "faster_rcnn_S101_FPN_1x": ("resnest101e", False, False, False, "range"),
    "cascade_rcnn_S50_FPN_1x": ("resnest50d", True, False, False, "range"),
    "cascade_rcnn_S101_FPN_1x": ("resnest101e", True, False, False, "range"),
    "cascade_rcnn_S200_FPN_1x": ("resnest200e", True, False, False, "range"),
    "mask_rcnn_S50_FPN_1x": ("resnest50d", False, True, False, "choice"),
    "mask_rcnn_S101_FPN_1x": ("resnest101e", False, True, False, "choice"),
    "cascade_mask_rcnn_S50_FPN_1x": ("resnest50d", True, True, False, "choice"),
    "cascade_mask_rcnn_S101_FPN_1x": ("resnest101e", True, True, False, "choice"),
}
WEIGHT_FILES = {"resnest50d": "resnest50-528c19ca.pth", "resnest101e": "resnest101-22405ba7.pth",
                "resnest200e": "resnest200-75117900.pth"}

# The three 3x configs of the official zoo (zhanghang1989/ResNeSt, d2/configs; docs/reference.md section 4), every key
# of the official leaf and of the official bases between it and Base-RCNN-FPN.yaml (which equals detectron2's,
# and our vendored copy: test_vendored_base_equals_model_zoo), with the published values.
_MEAN, _STD = [123.68, 116.779, 103.939], [58.393, 57.12, 57.375]
_OFFICIAL_MASK_3X = {
    "MODEL.BACKBONE.NAME": "build_resnest_fpn_backbone",  # from ResNest-Base-RCNN-FPN.yaml
    "MODEL.WEIGHTS": "https://s3.us-west-1.wasabisys.com/resnest/detectron/resnest200_detectron-02644020.pth",
    "MODEL.MASK_ON": True, "MODEL.RESNETS.DEPTH": 200, "MODEL.RESNETS.STRIDE_IN_1X1": False,
    "MODEL.RESNETS.RADIX": 2, "MODEL.RESNETS.NORM": "SyncBN", "MODEL.FPN.NORM": "SyncBN",
    "MODEL.ROI_HEADS.NAME": "CascadeROIHeads", "MODEL.ROI_BOX_HEAD.NAME": "FastRCNNConvFCHead",
    "MODEL.ROI_BOX_HEAD.NUM_CONV": 4, "MODEL.ROI_BOX_HEAD.NUM_FC": 1, "MODEL.ROI_BOX_HEAD.NORM": "SyncBN",
    "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG": True, "MODEL.ROI_MASK_HEAD.NUM_CONV": 8,
    "MODEL.ROI_MASK_HEAD.NORM": "SyncBN", "MODEL.RPN.POST_NMS_TOPK_TRAIN": 2000, "MODEL.PIXEL_MEAN": _MEAN,
    "MODEL.PIXEL_STD": _STD, "SOLVER.IMS_PER_BATCH": 16, "SOLVER.BASE_LR": 0.02, "SOLVER.STEPS": (240000, 255000),
    "SOLVER.MAX_ITER": 270000, "INPUT.MIN_SIZE_TRAIN": (640, 864), "INPUT.MIN_SIZE_TRAIN_SAMPLING": "range",
    "INPUT.MAX_SIZE_TRAIN": 1440, "INPUT.CROP.ENABLED": True, "INPUT.FORMAT": "RGB", "TEST.PRECISE_BN.ENABLED": True,
}
OFFICIAL_3X = {
    # mask_cascade_rcnn_ResNeSt_200_FPN_syncBN_all_tricks_3x.yaml: 50.54 box AP, 44.21 mask AP
    "cascade_mask_rcnn_S200_FPN_tricks_3x": _OFFICIAL_MASK_3X,
    # mask_cascade_rcnn_ResNeSt_200_FPN_dcn_syncBN_all_tricks_3x.yaml: 50.91 / 44.50
    "cascade_mask_rcnn_S200_FPN_DCNv2_tricks_3x": {
        **_OFFICIAL_MASK_3X, "MODEL.RESNETS.DEFORM_ON_PER_STAGE": [False, True, True, True],
        "MODEL.RESNETS.DEFORM_MODULATED": True, "MODEL.RESNETS.DEFORM_NUM_GROUPS": 2, "TEST.AUG.ENABLED": False},
    # panoptic_ResNeSt_200_FPN_syncBN_tricks_3x.yaml over ResNeSt-Base-Panoptic-FPN.yaml: 51.00 / 43.68, PQ 47.90
    "panoptic_fpn_S200_FPN_tricks_3x": {
        "MODEL.BACKBONE.NAME": "build_resnest_fpn_backbone", "MODEL.META_ARCHITECTURE": "PanopticFPN",
        "MODEL.MASK_ON": True, "MODEL.SEM_SEG_HEAD.LOSS_WEIGHT": 0.5,
        "DATASETS.TRAIN": ("coco_2017_train_panoptic_separated",),
        "DATASETS.TEST": ("coco_2017_val_panoptic_separated",),
        "MODEL.WEIGHTS": _OFFICIAL_MASK_3X["MODEL.WEIGHTS"], "MODEL.RESNETS.DEPTH": 200,
        "MODEL.RESNETS.STRIDE_IN_1X1": False, "MODEL.RESNETS.RADIX": 2, "MODEL.RESNETS.NORM": "SyncBN",
        "MODEL.FPN.NORM": "SyncBN", "MODEL.ROI_HEADS.NAME": "CascadeROIHeads",
        "MODEL.ROI_BOX_HEAD.NAME": "FastRCNNConvFCHead", "MODEL.ROI_BOX_HEAD.NUM_CONV": 4,
        "MODEL.ROI_BOX_HEAD.NUM_FC": 1, "MODEL.ROI_BOX_HEAD.NORM": "SyncBN",
        "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG": True, "MODEL.SEM_SEG_HEAD.NORM": "SyncBN",
        "MODEL.RPN.POST_NMS_TOPK_TRAIN": 2000, "MODEL.PIXEL_MEAN": _MEAN, "MODEL.PIXEL_STD": _STD,
        "SOLVER.IMS_PER_BATCH": 16, "SOLVER.BASE_LR": 0.02, "SOLVER.STEPS": (240000, 255000),
        "SOLVER.MAX_ITER": 270000, "INPUT.MIN_SIZE_TRAIN": (400, 1000), "INPUT.MIN_SIZE_TRAIN_SAMPLING": "range",
        "INPUT.MAX_SIZE_TRAIN": 1440, "INPUT.FORMAT": "RGB", "TEST.PRECISE_BN.ENABLED": True,
        "TEST.AUG.ENABLED": True,
        # not in the official file, so detectron2's default there; our base sets SyncBN for the other recipes
        "MODEL.ROI_MASK_HEAD.NORM": "",
    },
}


def _official_value_in_ours(cfg, key: str, value):
    """The official wrapper's ResNet-style keys as this project spells them; every other key is detectron2's own
    and must hold the official value as it is. Returns (our key, our value, the value it must have)."""
    variant = rb.VARIANTS[rb.models.resolve_variant(cfg.MODEL.RESNEST.NAME)]
    depth = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 24, 36, 3): 200, (3, 30, 48, 8): 269}
    if key == "MODEL.WEIGHTS":  # the same ImageNet weights; ours in the official layout, loaded by the backbone
        official = value.rsplit("/", 1)[-1].replace("_detectron-02644020", "-75117900")
        return "MODEL.RESNEST.WEIGHTS", cfg.MODEL.RESNEST.WEIGHTS.rsplit("/", 1)[-1], official
    if key == "MODEL.RESNETS.DEPTH":
        return "MODEL.RESNEST.NAME (layers)", depth[tuple(variant.layers)], value
    if key == "MODEL.RESNETS.RADIX":
        return "MODEL.RESNEST.NAME (radix)", variant.radix, value
    if key == "MODEL.RESNETS.STRIDE_IN_1X1":  # ResNeSt strides in the 3x3 conv / AVD pool, never in the 1x1
        return "(ResNeSt)", False, value
    if key.startswith("MODEL.RESNETS."):
        key = key.replace("MODEL.RESNETS.", "MODEL.RESNEST.")
    node = cfg
    for part in key.split("."):
        node = node[part]
    if isinstance(value, tuple):
        node = tuple(node)
    return key, node, value


@pytest.fixture(scope="module", autouse=True)
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> None:
    register_toy_coco(tmp_path_factory.mktemp("toy_coco"), num_train=2, num_val=1, image_size=96)


def load_yaml(path: Path, *opts: str):
    cfg = add_resnest_config(get_cfg())
    cfg.merge_from_file(str(path))
    cfg.merge_from_list(list(opts))
    return cfg


def test_vendored_base_equals_model_zoo() -> None:
    ours = yaml.safe_load((ROOT / "Base-RCNN-FPN.yaml").read_text())
    theirs = yaml.safe_load(Path(model_zoo.get_config_file("Base-RCNN-FPN.yaml")).read_text())
    assert ours == theirs


def test_every_recipe_has_a_leaf() -> None:
    assert sorted([*RECIPES, *OFFICIAL_3X]) == sorted(p.stem for p in LEAVES if "toy" not in p.parts)


@pytest.mark.parametrize("name", sorted(OFFICIAL_3X))
def test_3x_configs_equal_the_official_ones_key_by_key(name: str) -> None:
    cfg = load_yaml(next(p for p in LEAVES if p.stem == name))
    differences = [(key, ours, expected) for key, value in OFFICIAL_3X[name].items()
                   for key, ours, expected in [_official_value_in_ours(cfg, key, value)] if ours != expected]
    assert differences == []
    assert cfg.MODEL.WEIGHTS == "" and cfg.MODEL.BACKBONE.FREEZE_AT == 2  # detectron2's default, as officially


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_hyper_parameters(name: str) -> None:
    variant, cascade, mask, dcn, sampling = RECIPES[name]
    path = next(p for p in LEAVES if p.stem == name)
    c = load_yaml(path)
    m = c.MODEL
    assert (m.BACKBONE.NAME, m.RESNEST.NAME, m.BACKBONE.FREEZE_AT) == ("build_resnest_fpn_backbone", variant, 2)
    assert m.RESNEST.WEIGHTS.endswith("/" + WEIGHT_FILES[variant]) and m.WEIGHTS == ""  # ImageNet: the backbone's
    assert m.RESNEST.NORM == m.FPN.NORM == m.ROI_BOX_HEAD.NORM == m.ROI_MASK_HEAD.NORM == "SyncBN"
    assert (m.ROI_BOX_HEAD.NAME, m.ROI_BOX_HEAD.NUM_CONV, m.ROI_BOX_HEAD.NUM_FC,
            m.ROI_BOX_HEAD.POOLER_RESOLUTION) == ("FastRCNNConvFCHead", 4, 1, 7)
    assert m.ROI_MASK_HEAD.NUM_CONV == 4 and m.MASK_ON == mask
    assert m.PIXEL_MEAN == [123.68, 116.779, 103.939] and m.PIXEL_STD == [58.393, 57.12, 57.375]
    assert c.INPUT.FORMAT == "RGB"
    assert (c.SOLVER.IMS_PER_BATCH, c.SOLVER.BASE_LR, tuple(c.SOLVER.STEPS), c.SOLVER.MAX_ITER) == (
        16, 0.02, (60000, 80000), 90000)
    assert c.TEST.PRECISE_BN.ENABLED
    assert (c.INPUT.MIN_SIZE_TEST, c.INPUT.MAX_SIZE_TEST, c.INPUT.MAX_SIZE_TRAIN) == (800, 1333, 1333)
    assert c.INPUT.MIN_SIZE_TRAIN_SAMPLING == sampling
    assert tuple(c.INPUT.MIN_SIZE_TRAIN) == ((640, 800) if sampling == "range" else tuple(range(640, 801, 32)))
    assert (m.ROI_HEADS.NAME == "CascadeROIHeads") == cascade
    assert m.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG == cascade
    assert m.RPN.POST_NMS_TOPK_TRAIN == (2000 if cascade else 1000)
    assert (list(m.RESNEST.DEFORM_ON_PER_STAGE), m.RESNEST.DEFORM_MODULATED, m.RESNEST.DEFORM_NUM_GROUPS) == (
        ([False, True, True, True], True, 2) if dcn else ([False] * 4, False, 1))


def crop_without_shapely(path: Path) -> List[str]:
    """Random crop of polygon masks (the all-tricks recipes) needs shapely, an optional detectron2 dependency
    (``pip install shapely``); without it these build/train tests run without the crop (the model is the same;
    the recipe test still checks INPUT.CROP.ENABLED)."""
    if not (load_yaml(path).INPUT.CROP.ENABLED and load_yaml(path).MODEL.MASK_ON):
        return []
    try:
        import shapely  # noqa: F401
    except ImportError:
        return ["INPUT.CROP.ENABLED", "False"]
    return []


def toy_batch(mapper, n: int = 2, sem_seg: bool = False) -> List[Dict]:
    """``n`` mapped toy images; with ``sem_seg``, Panoptic FPN's semantic targets made from the instance masks
    (things = class 0, background = stuff class 1), since the toy set has no panoptic annotations. (A toy panoptic
    set could be written, but detectron2's COCOPanopticEvaluator needs panopticapi, which is not on PyPI, so the
    panoptic configs are built, trained and run here, not scored.)"""
    batch = [mapper(copy.deepcopy(d)) for d in (DatasetCatalog.get("toy_coco_train") * n)[:n]]
    for item in batch if sem_seg else []:
        height, width = item["image"].shape[1:]
        masks = item["instances"].gt_masks
        things = (masks if isinstance(masks, BitMasks) else BitMasks.from_polygon_masks(masks, height, width)).tensor
        things = things.any(0)
        item["sem_seg"] = (~things).long()
    return batch


def train_and_infer(model: torch.nn.Module, batch: List[Dict]) -> None:
    """One SGD step (loss finite, parameters move) and one inference step (one result per image)."""
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    head = next(p for n, p in model.named_parameters() if n.startswith("roi_heads") and p.requires_grad)
    before = head.detach().clone()
    with EventStorage(0):
        losses = model(batch)
    total = sum(losses.values())
    assert torch.isfinite(total), losses
    total.backward()
    optimizer.step()
    assert not torch.equal(before, head)
    model.eval()
    with torch.no_grad():
        outputs = model([{"image": b["image"], "height": 96, "width": 96} for b in batch])
    assert len(outputs) == len(batch) and all(o["instances"].image_size == (96, 96) for o in outputs)


@pytest.mark.parametrize("path", LEAVES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_yaml_config_builds_trains_and_infers(path: Path) -> None:
    cfg = load_yaml(path, "MODEL.DEVICE", "cpu", "MODEL.RESNEST.WEIGHTS", "", *SMALL, *crop_without_shapely(path))
    torch.manual_seed(0)
    model = build_model(cfg)
    bottom_up = model.backbone.bottom_up
    assert isinstance(bottom_up, ResNeStBackbone)
    assert bottom_up.out_features == list(cfg.MODEL.RESNEST.OUT_FEATURES)
    if any(cfg.MODEL.RESNEST.DEFORM_ON_PER_STAGE):
        assert any("conv_offset" in n for n, _ in bottom_up.named_parameters())
    panoptic = cfg.MODEL.META_ARCHITECTURE == "PanopticFPN"
    train_and_infer(model, toy_batch(DatasetMapper(cfg, is_train=True), sem_seg=panoptic))


TOY_3X = ["cascade_mask_rcnn_tricks_toy", "cascade_mask_rcnn_DCNv2_tricks_toy", "panoptic_fpn_toy"]


@pytest.mark.parametrize("name", TOY_3X)
def test_toy_counterparts_of_the_3x_configs_train_a_few_steps(name: str) -> None:
    """The toy counterparts (ResNeSt-14, the same heads and tricks) train 3 steps with a finite, moving loss."""
    path = ROOT / "toy" / f"{name}.yaml"
    cfg = load_yaml(path, "MODEL.DEVICE", "cpu", "SOLVER.IMS_PER_BATCH", "2", *crop_without_shapely(path))
    torch.manual_seed(0)
    model = build_model(cfg).train()
    assert (cfg.MODEL.ROI_MASK_HEAD.NUM_CONV == 8) == ("tricks" in name)
    assert any(cfg.MODEL.RESNEST.DEFORM_ON_PER_STAGE) == ("DCN" in name)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=cfg.SOLVER.BASE_LR,
                                momentum=0.9)
    mapper = DatasetMapper(cfg, is_train=True)
    losses = []
    for step in range(3):
        with EventStorage(step):
            loss = sum(model(toy_batch(mapper, sem_seg=name.startswith("panoptic"))).values())
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert len(set(losses)) == 3, losses


@pytest.mark.parametrize("path", LAZY, ids=lambda p: p.stem)
def test_lazy_config_builds_trains_and_infers(path: Path) -> None:
    """Every LazyConfig twin builds, trains one step and infers (test_detectron2_lazy.py compares each with its
    yacs twin key by key and as a built model); the recipe's main settings, against the yacs twin's."""
    cfg = LazyConfig.load(str(path))
    yaml_twin = load_yaml(path.with_suffix(".yaml"))
    backbone = cfg.model.backbone.bottom_up
    assert (backbone.name, backbone.norm, backbone.freeze_at) == (
        yaml_twin.MODEL.RESNEST.NAME, "SyncBN", yaml_twin.MODEL.BACKBONE.FREEZE_AT)
    assert backbone.weights == yaml_twin.MODEL.RESNEST.WEIGHTS and cfg.train.init_checkpoint == ""
    assert (cfg.optimizer.lr, cfg.dataloader.train.total_batch_size, cfg.train.max_iter) == (
        0.02, 16, yaml_twin.SOLVER.MAX_ITER)
    resize = next(a for a in cfg.dataloader.train.mapper.augmentations if a._target_ is T.ResizeShortestEdge)
    assert tuple(resize.short_edge_length) == tuple(yaml_twin.INPUT.MIN_SIZE_TRAIN)
    assert cfg.model.input_format == cfg.dataloader.train.mapper.image_format == "RGB"
    assert cfg.model.proposal_generator.post_nms_topk[0] == yaml_twin.MODEL.RPN.POST_NMS_TOPK_TRAIN
    cascade = yaml_twin.MODEL.ROI_HEADS.NAME == "CascadeROIHeads"
    assert ("Cascade" in cfg.model.roi_heads._target_.__name__) == cascade
    mask = yaml_twin.MODEL.MASK_ON
    assert ("mask_head" in cfg.model.roi_heads) == mask == cfg.dataloader.train.mapper.use_instance_mask
    cfg.model.proposal_generator.update(pre_nms_topk=(200, 100), post_nms_topk=(64, 32))  # as SMALL above
    cfg.model.roi_heads.batch_size_per_image = 32
    backbone.weights = ""  # no network in tests; test_detectron2_weights.py loads the weights it names
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    heads = model.roi_heads.box_head
    heads = list(heads) if isinstance(heads, torch.nn.ModuleList) else [heads]
    assert len(heads) == (3 if cascade else 1)
    assert all(len(h.conv_norm_relus) == 4 and len(h.fcs) == 1 for h in heads)
    if mask:
        assert len(model.roi_heads.mask_head.conv_norm_relus) == yaml_twin.MODEL.ROI_MASK_HEAD.NUM_CONV
    mapper = DatasetMapper(is_train=True, augmentations=[T.ResizeShortestEdge(128, 128)], image_format="RGB",
                           use_instance_mask=mask)
    train_and_infer(model, toy_batch(mapper, sem_seg=yaml_twin.MODEL.META_ARCHITECTURE == "PanopticFPN"))
