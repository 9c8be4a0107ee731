"""The toy counterpart of any MMDetection config with a ResNeSt backbone (Zhang et al., 2020): the same detector
structure at toy scale on the built-in toy COCO data, for a CPU run of a few minutes (``tools/mmdet_train.py CONFIG
--toy``, ``tools/mmdet_test.py CONFIG CHECKPOINT --toy``).

The toy settings are the toy Faster R-CNN's (``configs/mmdet/toy/faster-rcnn_resnest14d_fpn_toy-coco.py``, the
one place they are written): its data, schedule and runtime, its backbone, neck and RPN, its RPN proposal counts and
RoI sample size, and its head widths and class count, which are set in every RoI head of the config (one stage or a
cascade's three; box and mask heads). Everything else stays the config's own: the RoI head types, stages, losses,
norms, assigners and test settings. A model with a mask head loads and evaluates masks.
"""
from __future__ import annotations

from typing import Any, Dict

from mmengine.config import Config

from ..config_files import config_file

__all__ = ["TOY_CONFIG", "toy_counterpart"]

#: The toy Faster R-CNN config (a name for :func:`~resnest_backbones.config_file`), whose settings every toy takes.
TOY_CONFIG = "mmdet/toy/faster-rcnn_resnest14d_fpn_toy-coco.py"
#: Keys of the toy config taken whole: data, evaluation, schedule and runtime.
_RUN_KEYS = ("custom_imports", "train_dataloader", "val_dataloader", "test_dataloader", "val_evaluator",
             "test_evaluator", "optim_wrapper", "param_scheduler", "train_cfg", "default_hooks", "log_processor",
             "env_cfg", "randomness")
#: Widths set wherever they occur in the RoI heads (extractors, box heads, mask heads).
_HEAD_WIDTHS = ("in_channels", "out_channels", "conv_out_channels", "fc_out_channels", "num_classes")


def _set_everywhere(node: Any, values: Dict[str, Any]) -> None:
    """Set each of ``values`` in every dict of a nested config that has that key."""
    if isinstance(node, dict):
        node.update({key: value for key, value in values.items() if key in node})
        for child in node.values():
            _set_everywhere(child, values)
    elif isinstance(node, (list, tuple)):
        for child in node:
            _set_everywhere(child, values)


def toy_counterpart(cfg: Config) -> Config:
    """``cfg`` (a detector config with a ResNeSt backbone) at toy scale on the toy COCO data; returns ``cfg``."""
    toy = Config.fromfile(config_file(TOY_CONFIG))
    for key in _RUN_KEYS:
        cfg[key] = toy[key]
    model, small = cfg.model, toy.model
    model.backbone, model.neck, model.rpn_head = small.backbone, small.neck, small.rpn_head
    box = small.roi_head.bbox_head
    _set_everywhere(model.roi_head, dict({key: box[key] for key in _HEAD_WIDTHS if key in box},
                                         out_channels=small.roi_head.bbox_roi_extractor.out_channels))
    model.train_cfg.rpn_proposal = small.train_cfg.rpn_proposal
    stages = model.train_cfg.rcnn
    for stage in stages if isinstance(stages, list) else [stages]:  # a cascade has one per stage
        stage.sampler.num = small.train_cfg.rcnn.sampler.num
    model.test_cfg.rpn = small.test_cfg.rpn
    if "mask_head" in model.roi_head:
        for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
            for step in loader.dataset.pipeline:
                if step.type == "LoadAnnotations":
                    step.with_mask = True
        for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
            evaluator.metric = ["bbox", "segm"]
    return cfg
