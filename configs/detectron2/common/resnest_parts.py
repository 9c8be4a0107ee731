"""The steps that turn common/resnest_rcnn_fpn.py into each ResNeSt recipe (LazyConfig; ResNeSt, Zhang et al.,
2020), one function per difference between the yacs configs, applied in place by the leaves: box-only, cascade
heads, DCNv2, the Mask R-CNN training sizes, random crop, a multi-step schedule, test-time augmentation. Where a
yacs key has no LazyConfig counterpart, the function says how it gets the same effect.
"""
import copy

import detectron2.data.transforms as T
from detectron2 import model_zoo
from detectron2.config import CfgNode
from detectron2.config import LazyCall as L
from detectron2.modeling import GeneralizedRCNNWithTTA
from detectron2.modeling.test_time_augmentation import DatasetMapperTTA
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler


def without_masks(model, dataloader):
    """Drop the mask branch, and the masks from the training data (box-only recipes: MODEL.MASK_ON False)."""
    for key in ("mask_in_features", "mask_pooler", "mask_head"):
        model.roi_heads.pop(key)
    dataloader.train.mapper.use_instance_mask = False


def cascade(model):
    """Base-ResNeSt-Cascade-RCNN-FPN.yaml: detectron2's three cascade stages (IoU 0.5/0.6/0.7, class-agnostic box
    regression, its per-stage box weights), each with the ResNeSt box head; 2000 RPN proposals per image in
    training. The mask branch, if any, stays as it is."""
    zoo = model_zoo.get_config("common/models/cascade_rcnn.py").model.roi_heads
    head = model.roi_heads.pop("box_head")
    for key in ("box_predictor", "proposal_matcher"):
        model.roi_heads.pop(key)
    model.roi_heads.update(_target_=zoo._target_, box_heads=[copy.deepcopy(head) for _ in range(3)],
                           box_predictors=zoo.box_predictors, proposal_matchers=zoo.proposal_matchers)
    model.proposal_generator.post_nms_topk = (2000, 1000)


def with_dcnv2(model):
    """Modulated deformable convolutions (DCNv2, 2 deformable groups) in res3-res5: MODEL.RESNEST.DEFORM_* of the
    yacs twins, which the yacs route passes to build_resnest under these names (backbone.CONFIG_KEYS)."""
    model.backbone.bottom_up.update(deform_stages=[False, True, True, True], deform_modulated=True, deform_groups=2)


def mask_rcnn_sizes(dataloader):
    """The Mask R-CNN 1x recipes' training sizes: short side one of 640, 672, ..., 800 (a choice, not a range)."""
    dataloader.train.mapper.augmentations[0].update(
        short_edge_length=(640, 672, 704, 736, 768, 800), sample_style="choice")


def random_crop(dataloader):
    """INPUT.CROP.ENABLED with detectron2's defaults (TYPE relative_range, SIZE 0.9 x 0.9): as the yacs mapper does,
    the crop comes first and, masks being on, the boxes are recomputed from the cropped masks."""
    dataloader.train.mapper.augmentations.insert(
        0, L(T.RandomCrop)(crop_type="relative_range", crop_size=(0.9, 0.9)))
    dataloader.train.mapper.recompute_boxes = True


def lr_schedule(steps, max_iter, warmup_iters=1000):
    """The yacs WarmupMultiStepLR (SOLVER.STEPS, MAX_ITER, WARMUP_ITERS; detectron2's GAMMA 0.1, linear warm-up from
    WARMUP_FACTOR 0.001) as a LazyConfig lr_multiplier, its milestones ending at max_iter as coco_schedule.py
    writes them. detectron2's lr_multiplier_3x decays at 210k/250k, not at the recipes' 240k/255k."""
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(values=[0.1 ** k for k in range(len(steps) + 1)],
                                             milestones=[*steps, max_iter]),
        warmup_length=warmup_iters / max_iter, warmup_method="linear", warmup_factor=0.001)


def test_time_augmentation(mask_on, min_sizes=(400, 500, 600, 700, 800, 900, 1000, 1100, 1200), max_size=4000,
                           flip=True):
    """TEST.AUG as a LazyConfig node (``tta``): detectron2's GeneralizedRCNNWithTTA with the DatasetMapperTTA of
    TEST.AUG.MIN_SIZES/MAX_SIZE/FLIP. The wrapper reads a yacs CfgNode, so the few keys it reads are built here
    from this config's own values. A trainer sets ``tta.model`` to the trained model, instantiates ``tta`` and
    evaluates it on ``dataloader.test`` (instances only, as the yacs Trainer.test_with_TTA does): neither
    detectron2's lazyconfig_train_net.py nor the LazyConfig route of tools/train_net.py does that on its own."""
    # By name: omegaconf cannot hold the dict classes themselves (CfgNode is one) as a _target_.
    as_dict, as_cfg_node = L("builtins.dict"), L(f"{CfgNode.__module__}.{CfgNode.__qualname__}")
    return L(GeneralizedRCNNWithTTA)(
        cfg=as_cfg_node(init_dict=as_dict(
            MODEL=as_dict(MASK_ON=mask_on, KEYPOINT_ON=False, LOAD_PROPOSALS=False,
                          ROI_HEADS=as_dict(NUM_CLASSES="${model.roi_heads.num_classes}", NMS_THRESH_TEST=0.5)),
            TEST=as_dict(DETECTIONS_PER_IMAGE=100))),
        model=None, tta_mapper=L(DatasetMapperTTA)(min_sizes=list(min_sizes), max_size=max_size, flip=flip),
        batch_size=3)
