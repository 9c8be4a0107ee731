"""The LazyConfig twins of the detectron2 yacs configs (configs/detectron2: every ``X.py`` beside an ``X.yaml``) are
the same recipes (ResNeSt, Zhang et al., 2020):

* key by key, through :data:`TABLE`, an explicit map from each yacs key to the LazyConfig path that holds it, for
  every key detectron2's LazyConfig exposes; every other yacs key is listed in :data:`NOT_COMPARED` with the reason,
  and every key of detectron2's defaults is in one of the two;
* in effect where the two spell a thing differently (the data mappers, the LR schedule, the optimizer's parameter
  groups, the test-time augmentation wrapper);
* as built models: the same parameter and buffer names and shapes, and the same module types (built on the meta
  device, so even ResNeSt-200 takes about a second);

and detectron2's own ``tools/lazyconfig_train_net.py``, from the detectron2 source the set-up built from, trains the
toy LazyConfig a few iterations and evaluates it (COCO AP). Skipped, visibly, without detectron2.
"""
from __future__ import annotations

import inspect
import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional

import pytest
import torch
import yaml
from support import REPO_ROOT
from support.frameworks import require
from support.processes import run_python

pytestmark = require("detectron2")  # a visible skip without detectron2, before its imports below

import detectron2.data.transforms as T  # noqa: E402
from detectron2.config import CfgNode, LazyConfig, get_cfg, instantiate  # noqa: E402
from detectron2.data import DatasetMapper  # noqa: E402
from detectron2.modeling import GeneralizedRCNNWithTTA, build_model  # noqa: E402
from detectron2.modeling.test_time_augmentation import DatasetMapperTTA  # noqa: E402
from detectron2.solver import build_lr_scheduler, build_optimizer  # noqa: E402
from detectron2.utils.registry import locate  # noqa: E402
from omegaconf import DictConfig, ListConfig, OmegaConf  # noqa: E402

from resnest_backbones.detectron2 import add_resnest_config  # noqa: E402
from resnest_backbones.detectron2.backbone import CONFIG_KEYS  # noqa: E402

ROOT = REPO_ROOT / "configs" / "detectron2"
TWINS = sorted(p for p in ROOT.rglob("*.py") if "common" not in p.parts)
IDS = [f"{p.parent.name}/{p.stem}" for p in TWINS]
#: detectron2's own LazyConfig trainer, kept by tools/setup_env.sh from the source it built detectron2 from.
LAZYCONFIG_TRAIN_NET = Path(sys.prefix) / "share" / "detectron2" / "tools" / "lazyconfig_train_net.py"


def load_yaml(path: Path) -> CfgNode:
    cfg = add_resnest_config(get_cfg())
    cfg.merge_from_file(str(path))
    return cfg


# --- reading a LazyConfig by path -------------------------------------------------------------------------------

ABSENT = object()  # a path that leads nowhere (e.g. the mask head of a box-only config)


def target_name(node: Any) -> str:
    """The short name of a LazyCall node's ``_target_`` (a callable or its dotted name)."""
    target = node["_target_"]
    return target.rsplit(".", 1)[-1] if isinstance(target, str) else target.__qualname__.rsplit(".", 1)[-1]


def signature_default(node: DictConfig, key: str) -> Any:
    """What the LazyCall ``node`` passes for an argument it does not set: its target's default (looked up along
    the class's MRO for ``**kwargs`` constructors). A required argument, or one only ``**kwargs`` takes, is an error:
    the config must spell it."""
    target = node["_target_"]
    target = locate(target) if isinstance(target, str) else target
    for fn in ([k.__init__ for k in target.__mro__] if inspect.isclass(target) else [target]):
        try:
            parameter = inspect.signature(fn).parameters.get(key)
        except (TypeError, ValueError):
            continue
        if parameter is not None and parameter.default is not inspect.Parameter.empty:
            return parameter.default
    raise KeyError(f"{target_name(node)} has no default for {key!r}: the LazyConfig must set it")


def _steps(node: Any, part: str) -> List[Any]:
    if node is ABSENT:
        return [ABSENT]
    plural = re.fullmatch(r"(\w+)\[s\]", part)  # box_head[s]: the single head, or every cascade stage's
    if plural:
        name = plural.group(1)
        return [node[name]] if name in node else (list(node[name + "s"]) if name + "s" in node else [ABSENT])
    by_target = re.fullmatch(r"(\w+)\[(\w+)\]", part)  # augmentations[RandomCrop]: the element of that target
    if by_target:
        found = [x for x in node[by_target.group(1)] if target_name(x) == by_target.group(2)]
        assert len(found) <= 1, (part, found)
        return found or [ABSENT]
    if isinstance(node, (ListConfig, list, tuple)):
        return [node[int(part)]]
    if part in node:
        return [node[part]]
    return [signature_default(node, part) if "_target_" in node else ABSENT]


def lazy_value(cfg: DictConfig, path: str) -> Any:
    """The value at ``path`` (dotted; ``X[s]``: ``X`` or every element of ``Xs``, which must agree;
    ``X[Target]``: the element of the list ``X`` built by ``Target``; a LazyCall argument left out: its target's
    default; nothing there: :data:`ABSENT`), as plain Python (lists, dicts; interpolations resolved)."""
    values = [cfg]
    for part in path.split("."):
        values = [found for value in values for found in _steps(value, part)]
    plain = [to_plain(v) for v in values]
    assert all(v == plain[0] for v in plain), f"{path}: the stages differ: {plain}"
    return plain[0]


def to_plain(value: Any) -> Any:
    """OmegaConf containers as Python ones, tuples as lists, LazyCall nodes of classes kept as such (dicts)."""
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    return value


# --- the table --------------------------------------------------------------------------------------------------


def _same(value: Any) -> Any:
    return value


def _always(cfg: CfgNode) -> bool:
    return True


class Row(NamedTuple):
    """One comparison: the yacs key's value (through ``yacs``) equals the value at ``lazy`` (through ``convert``),
    for the configs where ``when`` holds."""

    lazy: str
    convert: Callable[[Any], Any] = _same
    yacs: Callable[[Any], Any] = _same
    when: Callable[[CfgNode], bool] = _always


def present(value: Any) -> bool:
    """Whether a part is configured (neither absent nor left at its target's default, None)."""
    return value is not ABSENT and value is not None


def name_of(value: Any) -> Any:
    return target_name(value) if isinstance(value, dict) else value


def per_level(value: Any, levels: int = 5) -> Any:
    """Anchor sizes / aspect ratios as detectron2 broadcasts them: one list per feature level."""
    value = to_plain(value)
    if value and not isinstance(value[0], list):
        value = [value]
    return value * levels if len(value) == 1 else value


def one(values: List[Any]) -> Any:
    """The value every element of ``values`` has (conv dims, all equal)."""
    assert len(set(values)) == 1, values
    return values[0]


def loss_weights(value: Any, *names: str) -> Dict[str, float]:
    """A loss_weight argument (a float for all, or a dict) as a dict over ``names``."""
    return {n: value for n in names} if isinstance(value, (int, float)) else {n: value.get(n, 1.0) for n in names}


def fpn_builder(backbone: Dict[str, Any]) -> str:
    """The yacs MODEL.BACKBONE.NAME that builds what the LazyConfig's ``model.backbone`` describes."""
    if target_name(backbone) == "FPN" and target_name(backbone["bottom_up"]) == "build_resnest":
        top = target_name(backbone["top_block"])
        return {"LastLevelMaxPool": "build_resnest_fpn_backbone",
                "LastLevelP6P7": "build_retinanet_resnest_fpn_backbone"}.get(top, top)
    return target_name(backbone)


def flip_mode(flip: Any) -> str:
    if flip is ABSENT:
        return "none"
    return "horizontal" if flip.get("horizontal", True) else "vertical"


def warmup_iters(lr_multiplier: Dict[str, Any]) -> int:
    return round(lr_multiplier["warmup_length"] * lr_multiplier["scheduler"]["milestones"][-1])


def mask_on(cfg: CfgNode) -> bool:
    return cfg.MODEL.MASK_ON


def is_cascade(cfg: CfgNode) -> bool:
    return cfg.MODEL.ROI_HEADS.NAME == "CascadeROIHeads"


def is_standard(cfg: CfgNode) -> bool:
    return cfg.MODEL.ROI_HEADS.NAME == "StandardROIHeads"


def is_panoptic(cfg: CfgNode) -> bool:
    return cfg.MODEL.META_ARCHITECTURE == "PanopticFPN"


def crop_on(cfg: CfgNode) -> bool:
    return cfg.INPUT.CROP.ENABLED


def tta_on(cfg: CfgNode) -> bool:
    return cfg.TEST.AUG.ENABLED


BOTTOM_UP = "model.backbone.bottom_up"
RPN = "model.proposal_generator"
HEADS = "model.roi_heads"
BOX_HEAD = "model.roi_heads.box_head[s]"
PREDICTOR = "model.roi_heads.box_predictor[s]"
MASK_HEAD = "model.roi_heads.mask_head"
SEM_SEG = "model.sem_seg_head"
TRAIN_MAPPER = "dataloader.train.mapper"
RESIZE_TRAIN = "dataloader.train.mapper.augmentations[ResizeShortestEdge]"
RESIZE_TEST = "dataloader.test.mapper.augmentations[ResizeShortestEdge]"
CROP = "dataloader.train.mapper.augmentations[RandomCrop]"
SCHEDULE = "lr_multiplier"
TTA_CFG = "tta.cfg.init_dict"

#: yacs key -> the LazyConfig path(s) that hold it. Keys that some recipes do not use are compared where they are.
TABLE: Dict[str, List[Row]] = {
    # model: architecture, backbone (MODEL.RESNEST -> build_resnest's arguments: backbone.CONFIG_KEYS), weights
    "MODEL.META_ARCHITECTURE": [Row("model", name_of)],
    "MODEL.BACKBONE.NAME": [Row("model.backbone", fpn_builder)],
    "MODEL.BACKBONE.FREEZE_AT": [Row(f"{BOTTOM_UP}.freeze_at")],
    "MODEL.RESNEST.NAME": [Row(f"{BOTTOM_UP}.name")],
    "MODEL.RESNEST.NORM": [Row(f"{BOTTOM_UP}.norm")],
    "MODEL.RESNEST.OUT_FEATURES": [Row(f"{BOTTOM_UP}.out_features")],
    "MODEL.RESNEST.OUTPUT_STRIDE": [Row(f"{BOTTOM_UP}.output_stride")],
    "MODEL.RESNEST.DEFORM_ON_PER_STAGE": [Row(f"{BOTTOM_UP}.deform_stages")],
    "MODEL.RESNEST.DEFORM_MODULATED": [Row(f"{BOTTOM_UP}.deform_modulated")],
    "MODEL.RESNEST.DEFORM_NUM_GROUPS": [Row(f"{BOTTOM_UP}.deform_groups")],
    "MODEL.RESNEST.DROPBLOCK_PROB": [Row(f"{BOTTOM_UP}.drop_block_prob")],
    "MODEL.RESNEST.DROPBLOCK_ON_PER_STAGE": [Row(f"{BOTTOM_UP}.drop_block_stages")],
    "MODEL.RESNEST.WEIGHTS": [Row(f"{BOTTOM_UP}.weights")],
    "MODEL.RESNEST.MEMORY_EFFICIENT": [Row(f"{BOTTOM_UP}.memory_efficient")],
    "MODEL.WEIGHTS": [Row("train.init_checkpoint")],
    "MODEL.DEVICE": [Row("train.device")],
    "MODEL.PIXEL_MEAN": [Row("model.pixel_mean")],
    "MODEL.PIXEL_STD": [Row("model.pixel_std")],
    "MODEL.MASK_ON": [Row(MASK_HEAD, present), Row(f"{TRAIN_MAPPER}.use_instance_mask")],
    "MODEL.KEYPOINT_ON": [Row(f"{HEADS}.keypoint_head", present), Row(f"{TRAIN_MAPPER}.use_keypoint")],
    "MODEL.LOAD_PROPOSALS": [Row(RPN, lambda rpn: rpn is ABSENT or rpn is None)],
    # FPN
    "MODEL.FPN.IN_FEATURES": [Row("model.backbone.in_features")],
    "MODEL.FPN.OUT_CHANNELS": [
        Row("model.backbone.out_channels"), Row(f"{RPN}.head.in_channels"),
        Row(f"{BOX_HEAD}.input_shape", lambda shape: shape["channels"]),
        Row(f"{MASK_HEAD}.input_shape", lambda shape: shape["channels"], when=mask_on)],
    "MODEL.FPN.NORM": [Row("model.backbone.norm")],
    "MODEL.FPN.FUSE_TYPE": [Row("model.backbone.fuse_type")],
    # RPN
    "MODEL.PROPOSAL_GENERATOR.NAME": [Row(RPN, name_of)],
    "MODEL.PROPOSAL_GENERATOR.MIN_SIZE": [Row(f"{RPN}.min_box_size")],
    "MODEL.ANCHOR_GENERATOR.NAME": [Row(f"{RPN}.anchor_generator", name_of)],
    "MODEL.ANCHOR_GENERATOR.SIZES": [Row(f"{RPN}.anchor_generator.sizes", per_level, per_level)],
    "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS": [Row(f"{RPN}.anchor_generator.aspect_ratios", per_level, per_level)],
    "MODEL.ANCHOR_GENERATOR.OFFSET": [Row(f"{RPN}.anchor_generator.offset")],
    "MODEL.RPN.HEAD_NAME": [Row(f"{RPN}.head", name_of)],
    "MODEL.RPN.CONV_DIMS": [Row(f"{RPN}.head.conv_dims")],
    "MODEL.RPN.IN_FEATURES": [Row(f"{RPN}.in_features")],
    "MODEL.RPN.BOUNDARY_THRESH": [Row(f"{RPN}.anchor_boundary_thresh")],
    "MODEL.RPN.IOU_THRESHOLDS": [Row(f"{RPN}.anchor_matcher.thresholds")],
    "MODEL.RPN.IOU_LABELS": [Row(f"{RPN}.anchor_matcher.labels")],
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE": [Row(f"{RPN}.batch_size_per_image")],
    "MODEL.RPN.POSITIVE_FRACTION": [Row(f"{RPN}.positive_fraction")],
    "MODEL.RPN.BBOX_REG_LOSS_TYPE": [Row(f"{RPN}.box_reg_loss_type")],
    "MODEL.RPN.LOSS_WEIGHT": [Row(f"{RPN}.loss_weight", lambda w: loss_weights(w, "loss_rpn_cls")["loss_rpn_cls"])],
    "MODEL.RPN.BBOX_REG_LOSS_WEIGHT": [Row(f"{RPN}.loss_weight", lambda w: (
        lambda d: d["loss_rpn_loc"] / d["loss_rpn_cls"])(loss_weights(w, "loss_rpn_cls", "loss_rpn_loc")))],
    "MODEL.RPN.BBOX_REG_WEIGHTS": [Row(f"{RPN}.box2box_transform.weights", yacs=list)],
    "MODEL.RPN.SMOOTH_L1_BETA": [Row(f"{RPN}.smooth_l1_beta")],
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN": [Row(f"{RPN}.pre_nms_topk.0")],
    "MODEL.RPN.PRE_NMS_TOPK_TEST": [Row(f"{RPN}.pre_nms_topk.1")],
    "MODEL.RPN.POST_NMS_TOPK_TRAIN": [Row(f"{RPN}.post_nms_topk.0")],
    "MODEL.RPN.POST_NMS_TOPK_TEST": [Row(f"{RPN}.post_nms_topk.1")],
    "MODEL.RPN.NMS_THRESH": [Row(f"{RPN}.nms_thresh")],
    # ROI heads (cascade: every stage)
    "MODEL.ROI_HEADS.NAME": [Row(HEADS, name_of)],
    "MODEL.ROI_HEADS.NUM_CLASSES": [
        Row(f"{HEADS}.num_classes"), Row(f"{PREDICTOR}.num_classes"),
        Row(f"{MASK_HEAD}.num_classes",
            when=lambda c: c.MODEL.MASK_ON and not c.MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK)],
    "MODEL.ROI_HEADS.IN_FEATURES": [
        Row(f"{HEADS}.box_in_features"), Row(f"{HEADS}.mask_in_features", when=mask_on)],
    "MODEL.ROI_HEADS.IOU_THRESHOLDS": [Row(f"{HEADS}.proposal_matcher.thresholds", when=is_standard)],
    "MODEL.ROI_HEADS.IOU_LABELS": [Row(f"{HEADS}.proposal_matcher.labels", when=is_standard)],
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": [Row(f"{HEADS}.batch_size_per_image")],
    "MODEL.ROI_HEADS.POSITIVE_FRACTION": [Row(f"{HEADS}.positive_fraction")],
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST": [Row(f"{PREDICTOR}.test_score_thresh")],
    "MODEL.ROI_HEADS.NMS_THRESH_TEST": [Row(f"{PREDICTOR}.test_nms_thresh")],
    "MODEL.ROI_HEADS.PROPOSAL_APPEND_GT": [Row(f"{HEADS}.proposal_append_gt")],
    "TEST.DETECTIONS_PER_IMAGE": [Row(f"{PREDICTOR}.test_topk_per_image")],
    # box head and predictor
    "MODEL.ROI_BOX_HEAD.NAME": [Row(BOX_HEAD, name_of)],
    "MODEL.ROI_BOX_HEAD.NUM_CONV": [Row(f"{BOX_HEAD}.conv_dims", len)],
    "MODEL.ROI_BOX_HEAD.CONV_DIM": [Row(f"{BOX_HEAD}.conv_dims", one, when=lambda c: c.MODEL.ROI_BOX_HEAD.NUM_CONV)],
    "MODEL.ROI_BOX_HEAD.NUM_FC": [Row(f"{BOX_HEAD}.fc_dims", len)],
    "MODEL.ROI_BOX_HEAD.FC_DIM": [
        Row(f"{BOX_HEAD}.fc_dims", one, when=lambda c: c.MODEL.ROI_BOX_HEAD.NUM_FC),
        Row(f"{PREDICTOR}.input_shape", lambda shape: shape["channels"], when=lambda c: c.MODEL.ROI_BOX_HEAD.NUM_FC)],
    "MODEL.ROI_BOX_HEAD.NORM": [Row(f"{BOX_HEAD}.conv_norm")],
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": [
        Row(f"{HEADS}.box_pooler.output_size"),
        Row(f"{BOX_HEAD}.input_shape", lambda shape: [shape["height"], shape["width"]], lambda r: [r, r])],
    "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO": [Row(f"{HEADS}.box_pooler.sampling_ratio")],
    "MODEL.ROI_BOX_HEAD.POOLER_TYPE": [Row(f"{HEADS}.box_pooler.pooler_type")],
    "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG": [Row(f"{PREDICTOR}.cls_agnostic_bbox_reg")],
    "MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS": [Row(f"{PREDICTOR}.box2box_transform.weights", yacs=list, when=is_standard)],
    "MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA": [Row(f"{PREDICTOR}.smooth_l1_beta")],
    "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE": [Row(f"{PREDICTOR}.box_reg_loss_type")],
    "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT": [
        Row(f"{PREDICTOR}.loss_weight", lambda w: loss_weights(w, "loss_box_reg")["loss_box_reg"])],
    "MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES": [Row(f"{HEADS}.train_on_pred_boxes", when=is_standard)],
    "MODEL.ROI_BOX_HEAD.USE_FED_LOSS": [Row(f"{PREDICTOR}.use_fed_loss")],
    "MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE": [Row(f"{PREDICTOR}.use_sigmoid_ce")],
    "MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES": [Row(f"{PREDICTOR}.fed_loss_num_classes")],
    "MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS": [Row(
        f"{HEADS}.box_predictors", lambda ps: [p["box2box_transform"]["weights"] for p in ps], to_plain, is_cascade)],
    "MODEL.ROI_BOX_CASCADE_HEAD.IOUS": [Row(
        f"{HEADS}.proposal_matchers", lambda ms: [(m["thresholds"], m["labels"], m.get("allow_low_quality_matches"))
                                                 for m in ms],
        lambda ious: [([iou], [0, 1], False) for iou in ious], is_cascade)],
    # mask head
    "MODEL.ROI_MASK_HEAD.NAME": [Row(MASK_HEAD, name_of, when=mask_on)],
    "MODEL.ROI_MASK_HEAD.NUM_CONV": [Row(f"{MASK_HEAD}.conv_dims", lambda dims: len(dims) - 1, when=mask_on)],
    "MODEL.ROI_MASK_HEAD.CONV_DIM": [Row(f"{MASK_HEAD}.conv_dims", one, when=mask_on)],
    "MODEL.ROI_MASK_HEAD.NORM": [Row(f"{MASK_HEAD}.conv_norm", when=mask_on)],
    "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION": [
        Row(f"{HEADS}.mask_pooler.output_size", when=mask_on),
        Row(f"{MASK_HEAD}.input_shape", lambda shape: [shape["height"], shape["width"]], lambda r: [r, r], mask_on)],
    "MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO": [Row(f"{HEADS}.mask_pooler.sampling_ratio", when=mask_on)],
    "MODEL.ROI_MASK_HEAD.POOLER_TYPE": [Row(f"{HEADS}.mask_pooler.pooler_type", when=mask_on)],
    "MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK": [
        Row(f"{MASK_HEAD}.num_classes", lambda n: n == 1, when=mask_on)],
    # Panoptic FPN: semantic head and combination
    "MODEL.SEM_SEG_HEAD.NAME": [Row(SEM_SEG, name_of, when=is_panoptic)],
    "MODEL.SEM_SEG_HEAD.IN_FEATURES": [Row(f"{SEM_SEG}.input_shape", sorted, sorted, is_panoptic)],
    "MODEL.SEM_SEG_HEAD.IGNORE_VALUE": [Row(f"{SEM_SEG}.ignore_value", when=is_panoptic)],
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES": [Row(f"{SEM_SEG}.num_classes", when=is_panoptic)],
    "MODEL.SEM_SEG_HEAD.CONVS_DIM": [Row(f"{SEM_SEG}.conv_dims", when=is_panoptic)],
    "MODEL.SEM_SEG_HEAD.COMMON_STRIDE": [Row(f"{SEM_SEG}.common_stride", when=is_panoptic)],
    "MODEL.SEM_SEG_HEAD.NORM": [Row(f"{SEM_SEG}.norm", when=is_panoptic)],
    "MODEL.SEM_SEG_HEAD.LOSS_WEIGHT": [Row(f"{SEM_SEG}.loss_weight", when=is_panoptic)],
    "MODEL.PANOPTIC_FPN.COMBINE.OVERLAP_THRESH": [Row("model.combine_overlap_thresh", when=is_panoptic)],
    "MODEL.PANOPTIC_FPN.COMBINE.STUFF_AREA_LIMIT": [Row("model.combine_stuff_area_thresh", when=is_panoptic)],
    "MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH": [
        Row("model.combine_instances_score_thresh", when=is_panoptic)],
    "VIS_PERIOD": [Row("model.vis_period")],
    # input
    "INPUT.FORMAT": [Row("model.input_format"), Row(f"{TRAIN_MAPPER}.image_format"),
                     Row("dataloader.test.mapper.image_format")],
    "INPUT.MIN_SIZE_TRAIN": [Row(f"{RESIZE_TRAIN}.short_edge_length", yacs=list)],
    "INPUT.MIN_SIZE_TRAIN_SAMPLING": [Row(f"{RESIZE_TRAIN}.sample_style")],
    "INPUT.MAX_SIZE_TRAIN": [Row(f"{RESIZE_TRAIN}.max_size")],
    "INPUT.MIN_SIZE_TEST": [Row(f"{RESIZE_TEST}.short_edge_length")],
    "INPUT.MAX_SIZE_TEST": [Row(f"{RESIZE_TEST}.max_size")],
    "INPUT.RANDOM_FLIP": [Row("dataloader.train.mapper.augmentations[RandomFlip]", flip_mode)],
    "INPUT.MASK_FORMAT": [Row(f"{TRAIN_MAPPER}.instance_mask_format")],
    "INPUT.CROP.ENABLED": [
        Row(CROP, present),
        Row(f"{TRAIN_MAPPER}.recompute_boxes", when=mask_on),  # the yacs mapper: boxes from the cropped masks
        Row(f"{TRAIN_MAPPER}.recompute_boxes", yacs=lambda _: False, when=lambda c: not c.MODEL.MASK_ON)],
    "INPUT.CROP.TYPE": [Row(f"{CROP}.crop_type", when=crop_on)],
    "INPUT.CROP.SIZE": [Row(f"{CROP}.crop_size", when=crop_on)],
    # data
    "DATASETS.TRAIN": [Row("dataloader.train.dataset.names", lambda n: [n] if isinstance(n, str) else n, list)],
    "DATASETS.TEST": [Row("dataloader.test.dataset.names", lambda n: [n] if isinstance(n, str) else n, list)],
    "DATALOADER.NUM_WORKERS": [Row("dataloader.train.num_workers"), Row("dataloader.test.num_workers")],
    "DATALOADER.ASPECT_RATIO_GROUPING": [Row("dataloader.train.aspect_ratio_grouping")],
    "DATALOADER.SAMPLER_TRAIN": [Row("dataloader.train.sampler", lambda s: "TrainingSampler" if s is None else s)],
    "DATALOADER.FILTER_EMPTY_ANNOTATIONS": [Row("dataloader.train.dataset.filter_empty")],
    # solver
    "SOLVER.IMS_PER_BATCH": [Row("dataloader.train.total_batch_size")],
    "SOLVER.BASE_LR": [Row("optimizer.lr")],
    "SOLVER.MOMENTUM": [Row("optimizer.momentum")],
    "SOLVER.NESTEROV": [Row("optimizer.nesterov")],
    "SOLVER.WEIGHT_DECAY": [Row("optimizer.weight_decay")],
    "SOLVER.WEIGHT_DECAY_NORM": [Row("optimizer.params.weight_decay_norm")],
    "SOLVER.BIAS_LR_FACTOR": [Row("optimizer.params.bias_lr_factor")],
    "SOLVER.WEIGHT_DECAY_BIAS": [Row("optimizer.params.weight_decay_bias")],
    "SOLVER.LR_SCHEDULER_NAME": [Row(SCHEDULE, lambda s: "WarmupMultiStepLR" if (
        target_name(s), target_name(s["scheduler"])) == ("WarmupParamScheduler", "MultiStepParamScheduler") else s)],
    "SOLVER.MAX_ITER": [Row("train.max_iter"), Row(f"{SCHEDULE}.scheduler.milestones", lambda m: m[-1])],
    "SOLVER.STEPS": [Row(f"{SCHEDULE}.scheduler.milestones", lambda m: m[:-1], list)],
    "SOLVER.GAMMA": [Row(f"{SCHEDULE}.scheduler.values", lambda v: one([round(b / a, 12) for a, b in zip(v, v[1:])]))],
    "SOLVER.WARMUP_FACTOR": [Row(f"{SCHEDULE}.warmup_factor")],
    "SOLVER.WARMUP_ITERS": [Row(SCHEDULE, warmup_iters)],
    "SOLVER.WARMUP_METHOD": [Row(f"{SCHEDULE}.warmup_method")],
    "SOLVER.RESCALE_INTERVAL": [Row(f"{SCHEDULE}.rescale_interval")],
    "SOLVER.CHECKPOINT_PERIOD": [Row("train.checkpointer.period")],
    "SOLVER.AMP.ENABLED": [Row("train.amp.enabled")],
    # test, precise BN, test-time augmentation (a tta node: common/resnest_parts.py)
    "TEST.EVAL_PERIOD": [Row("train.eval_period")],
    "TEST.PRECISE_BN.ENABLED": [Row("train.precise_bn.enabled")],
    "TEST.PRECISE_BN.NUM_ITER": [Row("train.precise_bn.num_iter")],
    "TEST.AUG.ENABLED": [Row("tta", present)],
    "TEST.AUG.MIN_SIZES": [Row("tta.tta_mapper.min_sizes", yacs=list, when=tta_on)],
    "TEST.AUG.MAX_SIZE": [Row("tta.tta_mapper.max_size", when=tta_on)],
    "TEST.AUG.FLIP": [Row("tta.tta_mapper.flip", when=tta_on)],
    # run: read by detectron2's default_setup from either kind of config
    "OUTPUT_DIR": [Row("train.output_dir")],
    "SEED": [Row("train.seed", lambda s: -1 if s is ABSENT else s)],
    "CUDNN_BENCHMARK": [Row("train.cudnn_benchmark", lambda b: False if b is ABSENT else b)],
    "FLOAT32_PRECISION": [Row("train.float32_precision", lambda p: "" if p is ABSENT else p)],
}
# What detectron2's GeneralizedRCNNWithTTA reads from its yacs config: the tta node's must hold the same values.
for _key in ("MODEL.MASK_ON", "MODEL.KEYPOINT_ON", "MODEL.LOAD_PROPOSALS", "MODEL.ROI_HEADS.NUM_CLASSES",
             "MODEL.ROI_HEADS.NMS_THRESH_TEST", "TEST.DETECTIONS_PER_IMAGE"):
    TABLE[_key].append(Row(f"{TTA_CFG}.{_key}", when=tta_on))

#: yacs keys with no LazyConfig counterpart in these recipes: (the value they must have, why not compared). Each
#: prefix covers the keys under it.
NOT_COMPARED: Dict[str, tuple] = {
    "VERSION": (2, "the yacs file format's version"),
    "GLOBAL.HACK": (1.0, "unused by detectron2"),
    "MODEL.RESNETS": (None, "detectron2's ResNet; these recipes build ResNeSt (MODEL.RESNEST)"),
    "MODEL.RETINANET": (None, "RetinaNet heads; not in these recipes"),
    "MODEL.ROI_KEYPOINT_HEAD": (None, "keypoint head; MODEL.KEYPOINT_ON is False (compared)"),
    "TEST.KEYPOINT_OKS_SIGMAS": ([], "keypoint evaluation; MODEL.KEYPOINT_ON is False"),
    "MODEL.SEM_SEG_HEAD": (None, "compared for Panoptic FPN; no semantic head elsewhere"),
    "MODEL.PANOPTIC_FPN.INSTANCE_LOSS_WEIGHT": (1.0, "yacs scales the instance losses when it is not 1.0; "
                                                     "PanopticFPN has no such argument, so it must stay 1.0"),
    "MODEL.PANOPTIC_FPN.COMBINE.ENABLED": (True, "PanopticFPN always combines; yacs only warns when disabled"),
    "MODEL.ANCHOR_GENERATOR.ANGLES": (None, "rotated anchors only"),
    "MODEL.ROI_BOX_HEAD.FED_LOSS_FREQ_WEIGHT_POWER": (0.5, "federated loss only; USE_FED_LOSS is False (compared)"),
    "DATASETS.PROPOSAL_FILES_TRAIN": ((), "precomputed proposals; MODEL.LOAD_PROPOSALS is False (compared)"),
    "DATASETS.PROPOSAL_FILES_TEST": ((), "precomputed proposals; MODEL.LOAD_PROPOSALS is False (compared)"),
    "DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN": (2000, "precomputed proposals; MODEL.LOAD_PROPOSALS is False"),
    "DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST": (1000, "precomputed proposals; MODEL.LOAD_PROPOSALS is False"),
    "DATALOADER.REPEAT_THRESHOLD": (0.0, "RepeatFactorTrainingSampler only; SAMPLER_TRAIN is compared"),
    "DATALOADER.REPEAT_SQRT": (True, "RepeatFactorTrainingSampler only; SAMPLER_TRAIN is compared"),
    "SOLVER.BASE_LR_END": (0.0, "WarmupCosineLR only; LR_SCHEDULER_NAME is compared"),
    "SOLVER.NUM_DECAYS": (3, "WarmupStepWithFixedGammaLR only; LR_SCHEDULER_NAME is compared"),
    "SOLVER.REFERENCE_WORLD_SIZE": (0, "yacs auto-scaling to another number of GPUs, off (0); LazyConfig has none"),
    "SOLVER.CLIP_GRADIENTS.ENABLED": (False, "gradient clipping, off; detectron2's LazyConfig optimizer has none"),
    "SOLVER.CLIP_GRADIENTS": (None, "gradient clipping, off (SOLVER.CLIP_GRADIENTS.ENABLED False)"),
    "TEST.EXPECTED_RESULTS": ([], "yacs Trainer's self-check of the results; none set"),
}

#: What the LazyConfig comparison must cover, at least (the issue's list): every one of these keys is in TABLE.
REQUIRED = [
    "MODEL.RESNEST.NAME", "MODEL.RESNEST.NORM", "MODEL.BACKBONE.FREEZE_AT", "MODEL.RESNEST.OUT_FEATURES",
    "MODEL.RESNEST.DEFORM_ON_PER_STAGE", "MODEL.RESNEST.DEFORM_MODULATED", "MODEL.RESNEST.DEFORM_NUM_GROUPS",
    "MODEL.RESNEST.WEIGHTS", "MODEL.FPN.NORM", "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "MODEL.RPN.POST_NMS_TOPK_TRAIN",
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "MODEL.RPN.IOU_THRESHOLDS", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
    "MODEL.ROI_HEADS.IOU_THRESHOLDS", "MODEL.ROI_BOX_CASCADE_HEAD.IOUS", "MODEL.ROI_HEADS.NUM_CLASSES",
    "MODEL.ROI_BOX_HEAD.NUM_CONV", "MODEL.ROI_MASK_HEAD.NUM_CONV", "MODEL.ROI_BOX_HEAD.FC_DIM",
    "MODEL.ROI_BOX_HEAD.NORM", "MODEL.ROI_MASK_HEAD.NORM", "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION",
    "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO", "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION", "MODEL.PIXEL_MEAN",
    "MODEL.PIXEL_STD", "INPUT.FORMAT", "INPUT.MIN_SIZE_TRAIN", "INPUT.MAX_SIZE_TRAIN",
    "INPUT.MIN_SIZE_TRAIN_SAMPLING", "INPUT.MIN_SIZE_TEST", "INPUT.MAX_SIZE_TEST", "SOLVER.BASE_LR",
    "SOLVER.MOMENTUM", "SOLVER.WEIGHT_DECAY", "SOLVER.WEIGHT_DECAY_NORM", "SOLVER.STEPS", "SOLVER.MAX_ITER",
    "SOLVER.WARMUP_ITERS", "SOLVER.WARMUP_FACTOR", "SOLVER.IMS_PER_BATCH", "TEST.PRECISE_BN.ENABLED",
    "TEST.AUG.ENABLED", "DATASETS.TRAIN", "DATASETS.TEST",
]


def flat_keys(node: Any, prefix: str = "") -> Dict[str, Any]:
    """Every leaf key of a yacs CfgNode (or of a parsed yaml file) with its value."""
    out = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(flat_keys(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def not_compared(key: str) -> Optional[str]:
    """The NOT_COMPARED entry (the key itself or its closest prefix) covering ``key``, if any."""
    parts = key.split(".")
    return next((".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in NOT_COMPARED),
                None)


def written_keys(path: Path) -> List[str]:
    """The yacs keys a config file and its _BASE_ chain write."""
    data = yaml.safe_load(path.read_text())
    base = data.pop("_BASE_", None)
    return sorted(set(flat_keys(data)) | (set(written_keys(path.parent / base)) if base else set()))


# --- the checks -------------------------------------------------------------------------------------------------


def test_every_yacs_config_has_a_lazy_twin() -> None:
    leaves = sorted(p.with_suffix(".py") for p in ROOT.glob("COCO-*/*.yaml"))
    assert leaves == [p for p in TWINS if p.parent.name.startswith("COCO-")] and len(leaves) == 13
    assert all(p.with_suffix(".yaml").is_file() for p in TWINS)
    assert ROOT / "toy" / "faster_rcnn_toy.py" in TWINS


def test_the_table_covers_every_yacs_key() -> None:
    """Every key of detectron2's defaults (with MODEL.RESNEST) is compared or listed, with the reason, as having
    no counterpart; every key the config files write is compared unless it is one of those; and the keys the issue
    names are all in the table."""
    defaults = flat_keys(add_resnest_config(get_cfg()))
    assert [k for k in defaults if k not in TABLE and not_compared(k) is None] == []
    assert [k for k in TABLE if k not in defaults] == []  # no typo in the table
    assert [k for k in REQUIRED if k not in TABLE] == []
    assert {f"MODEL.RESNEST.{key}" for key in CONFIG_KEYS.values()} <= set(TABLE)  # every key build_resnest takes
    written = {k for p in TWINS for k in written_keys(p.with_suffix(".yaml"))}
    unused_but_written = {k for k in written if k not in TABLE}
    assert unused_but_written == {"MODEL.RESNETS.OUT_FEATURES", "VERSION"}  # Base-RCNN-FPN.yaml's, for ResNet


@pytest.mark.parametrize("path", TWINS, ids=IDS)
def test_twins_are_equal_key_by_key(path: Path) -> None:
    yacs_cfg, lazy_cfg = load_yaml(path.with_suffix(".yaml")), LazyConfig.load(str(path))
    yacs_values = flat_keys(yacs_cfg)
    differences, compared = [], 0
    for key, rows in TABLE.items():
        for row in rows:
            if not row.when(yacs_cfg):
                continue
            expected = to_plain(row.yacs(yacs_values[key]))
            found = to_plain(row.convert(lazy_value(lazy_cfg, row.lazy)))
            compared += 1
            if found != expected and not (isinstance(found, float) and math.isclose(found, expected)):
                differences.append((key, row.lazy, expected, found))
    assert differences == []
    assert compared > 120
    for key, value in yacs_values.items():  # the keys without counterpart hold the values that make them moot
        covering = not_compared(key)
        if covering and key not in TABLE and NOT_COMPARED[covering][0] is not None:
            assert to_plain(value) == to_plain(NOT_COMPARED[covering][0]), (key, value, NOT_COMPARED[covering][1])
    assert set(lazy_cfg) == {"dataloader", "lr_multiplier", "model", "optimizer", "train"} | (
        {"tta"} if yacs_cfg.TEST.AUG.ENABLED else set())


def canonical(augmentation: Any) -> tuple:
    """An augmentation as its type and arguments (lists for tuples); a fixed-size resize without its sampling style,
    which then makes no difference (the yacs test mapper says "choice", detectron2's LazyConfig "range")."""
    arguments = to_plain({k: v for k, v in vars(augmentation).items() if not k.startswith("_")})
    if isinstance(augmentation, T.ResizeShortestEdge) and len(set(arguments["short_edge_length"])) == 1:
        arguments = {k: v for k, v in arguments.items() if k not in ("sample_style", "is_range")}
    return type(augmentation).__name__, arguments


#: DatasetMapper attributes that only act on annotations, which a test-time mapper drops before reading them.
ANNOTATIONS_ONLY = ("use_instance_mask", "instance_mask_format", "use_keypoint", "keypoint_hflip_indices",
                    "recompute_boxes")


def mapper_state(mapper: DatasetMapper) -> Dict[str, Any]:
    """What a DatasetMapper does (the yacs test mapper enables masks with MODEL.MASK_ON, detectron2's LazyConfig one
    does not: no difference, as it drops the annotations)."""
    state = {k: v for k, v in vars(mapper).items()
             if k != "augmentations" and (mapper.is_train or k not in ANNOTATIONS_ONLY)}
    return {**state, "augmentations": [canonical(a) for a in mapper.augmentations.augs]}


@pytest.mark.parametrize("path", TWINS, ids=IDS)
def test_twins_are_equal_in_effect(path: Path) -> None:
    """What the two build from the config: the data mappers (augmentations in order, with their arguments), the LR
    multiplier at every milestone and around it, the optimizer's parameter groups, and the test-time augmentation
    wrapper (where TEST.AUG.ENABLED)."""
    yacs_cfg, lazy_cfg = load_yaml(path.with_suffix(".yaml")), LazyConfig.load(str(path))
    for is_train, mapper in ((True, lazy_cfg.dataloader.train.mapper), (False, lazy_cfg.dataloader.test.mapper)):
        assert mapper_state(instantiate(mapper)) == mapper_state(DatasetMapper(yacs_cfg, is_train=is_train))

    tiny = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    yacs_optimizer = build_optimizer(yacs_cfg, tiny)
    lazy_cfg.optimizer.params.model = tiny
    lazy_optimizer = instantiate(lazy_cfg.optimizer)

    def groups(optimizer: torch.optim.Optimizer) -> Dict[int, tuple]:
        return {id(p): (g["lr"], g["weight_decay"], g["momentum"], g["nesterov"], g["dampening"])
                for g in optimizer.param_groups for p in g["params"]}

    assert groups(lazy_optimizer) == groups(yacs_optimizer)
    max_iter = yacs_cfg.SOLVER.MAX_ITER
    yacs_multiplier = build_lr_scheduler(yacs_cfg, yacs_optimizer)._multiplier
    lazy_multiplier = instantiate(lazy_cfg.lr_multiplier)
    points = {0, 1, max_iter - 1} | {m + d for m in (*yacs_cfg.SOLVER.STEPS, yacs_cfg.SOLVER.WARMUP_ITERS)
                                     for d in (-1, 0, 1)}
    assert [lazy_multiplier(i / max_iter) for i in sorted(points)] == pytest.approx(
        [yacs_multiplier(i / max_iter) for i in sorted(points)], rel=1e-9)

    if yacs_cfg.TEST.AUG.ENABLED:
        lazy_cfg.model.backbone.bottom_up.weights = ""
        with torch.device("meta"):
            lazy_cfg.tta.model = instantiate(lazy_cfg.model)
        tta = instantiate(lazy_cfg.tta)
        reference = GeneralizedRCNNWithTTA(yacs_cfg, tta.model)
        assert isinstance(tta.tta_mapper, DatasetMapperTTA)
        assert to_plain(vars(tta.tta_mapper)) == to_plain(vars(reference.tta_mapper))
        assert tta.batch_size == reference.batch_size
        read = ["MODEL.MASK_ON", "MODEL.KEYPOINT_ON", "MODEL.LOAD_PROPOSALS", "MODEL.ROI_HEADS.NUM_CLASSES",
                "MODEL.ROI_HEADS.NMS_THRESH_TEST", "TEST.DETECTIONS_PER_IMAGE"]  # all GeneralizedRCNNWithTTA reads
        assert {k: flat_keys(tta.cfg)[k] for k in read} == {k: flat_keys(yacs_cfg)[k] for k in read}


def model_summary(model: torch.nn.Module) -> Dict[str, Any]:
    """Parameter and buffer names with shapes, module names with types, and the anchor strides and pooler scales
    (plain attributes, so not in the state dict)."""
    poolers = {name: [(p.output_size, p.spatial_scale, p.sampling_ratio, p.aligned) for p in m.level_poolers]
               for name, m in model.named_modules() if type(m).__name__ == "ROIPooler"}
    return {"tensors": {k: tuple(v.shape) for k, v in model.state_dict().items()},
            "modules": {n: type(m).__name__ for n, m in model.named_modules()},
            "anchor strides": model.proposal_generator.anchor_generator.strides, "poolers": poolers}


@pytest.mark.parametrize("path", TWINS, ids=IDS)
def test_twins_build_the_same_model(path: Path) -> None:
    """The instantiated LazyConfig model and the yacs ``build_model`` one (no ImageNet file: ``weights=""``) have
    the same parameters and buffers (names, shapes) and modules (names, types). Built on the meta device: shapes
    without memory or initialisation, so ResNeSt-200 builds in about a second."""
    yacs_cfg = load_yaml(path.with_suffix(".yaml"))
    yacs_cfg.merge_from_list(["MODEL.DEVICE", "meta", "MODEL.RESNEST.WEIGHTS", ""])
    lazy_cfg = LazyConfig.load(str(path))
    lazy_cfg.model.backbone.bottom_up.weights = ""
    with torch.device("meta"):
        yacs_model, lazy_model = build_model(yacs_cfg), instantiate(lazy_cfg.model)
    expected, found = model_summary(yacs_model), model_summary(lazy_model)
    assert len(found["tensors"]) > 200 and found == expected


def test_meta_build_equals_a_real_one() -> None:
    """The meta-device shortcut above hides nothing: the toy twin built for real on the CPU has the same summary,
    and runs an inference step of the same shape as its yacs twin."""
    path = ROOT / "toy" / "faster_rcnn_toy.py"
    lazy_cfg = LazyConfig.load(str(path))
    yacs_cfg = load_yaml(path.with_suffix(".yaml"))
    yacs_cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(0)
    real = instantiate(lazy_cfg.model).eval()
    with torch.device("meta"):
        meta = instantiate(lazy_cfg.model)
    assert model_summary(real) == model_summary(meta) == model_summary(build_model(yacs_cfg))
    with torch.no_grad():
        (output,) = real([{"image": torch.rand(3, 96, 96) * 255, "height": 96, "width": 96}])
    assert output["instances"].image_size == (96, 96)


# --- detectron2's own LazyConfig trainer ------------------------------------------------------------------------


def test_detectron2_lazyconfig_train_net_trains_and_evaluates_the_toy_config(tmp_path: Path) -> None:
    """detectron2's tools/lazyconfig_train_net.py (detectron2's source, kept by tools/setup_env.sh), which imports
    nothing of this project: the toy LazyConfig imports resnest_backbones itself (its backbone builder), which
    registers the toy COCO data. Three iterations of 2 images on the CPU, a checkpoint, a COCO evaluation."""
    if not LAZYCONFIG_TRAIN_NET.is_file():
        pytest.skip(f"detectron2's tools/ are not in this environment ({LAZYCONFIG_TRAIN_NET} is missing): "
                    "tools/setup_env.sh keeps them there, from DETECTRON2_SOURCE, when it builds detectron2")
    out = tmp_path / "out"
    proc = run_python([LAZYCONFIG_TRAIN_NET, "--config-file", ROOT / "toy" / "faster_rcnn_toy.py", "train.device=cpu",
                       f"train.output_dir={out}", "train.max_iter=3", "train.log_period=1",
                       "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0",
                       "dataloader.test.num_workers=0"],
                      env={"RESNEST_TOY_COCO": str(tmp_path / "toy_coco"), "CUDA_VISIBLE_DEVICES": "",
                           "OMP_NUM_THREADS": "1"}, timeout=600)
    log = proc.stdout + proc.stderr
    assert "Starting training from iteration 0" in log
    metrics = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert [m["iteration"] for m in metrics if "total_loss" in m] == [0, 1, 2]
    assert all(math.isfinite(m["total_loss"]) for m in metrics if "total_loss" in m)
    checkpoint = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    assert checkpoint["iteration"] == 2 and any(k.startswith("backbone.bottom_up.") for k in checkpoint["model"])
    copypaste = [line.split("copypaste: ", 1)[1] for line in log.splitlines() if "copypaste: " in line]
    assert copypaste[:2] == ["Task: bbox", "AP,AP50,AP75,APs,APm,APl"] and len(copypaste[2].split(",")) == 6
    assert any("bbox/AP50" in m for m in metrics)  # the evaluation after the last iteration, logged by the trainer
