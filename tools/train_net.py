#!/usr/bin/env python
"""Train or evaluate a detectron2 model with a ResNeSt backbone (ResNeSt, Zhang et al., 2020).

detectron2's usual entry point: a yacs ``.yaml`` or LazyConfig ``.py`` file, ``--eval-only``, ``--resume``,
``--num-gpus``/``--num-machines``/``--machine-rank``/``--dist-url`` (multi-GPU and multi-node through
detectron2's ``launch``) and trailing overrides (``KEY VALUE`` for yacs, ``key=value`` for LazyConfig)::

    python tools/train_net.py --config-file configs/detectron2/COCO-Detection/faster_rcnn_S50_FPN_1x.yaml --num-gpus 8
    python tools/train_net.py --config-file configs/detectron2/toy/faster_rcnn_toy.yaml OUTPUT_DIR work_dirs/toy

Without CUDA it runs on the CPU, and ``--num-gpus N`` starts N CPU processes (gloo) whose "SyncBN" layers run
as :class:`resnest_backbones.layers.SyncBatchNorm` (torch's refuses CPU tensors); in a single process "SyncBN"
becomes plain "BN" (identical there). All of this is logged. The model logic lives in
:mod:`resnest_backbones.detectron2`::

    python tools/train_net.py --config-file configs/detectron2/toy/faster_rcnn_toy.yaml --num-gpus 2   # 2 CPU processes
"""
import argparse
import logging
import os
import sys
import weakref
from typing import Any, Dict, List

import detectron2.engine.defaults
import torch
from detectron2.config import CfgNode, LazyConfig, get_cfg, instantiate
from detectron2.engine import (AMPTrainer, DefaultTrainer, SimpleTrainer, default_argument_parser, default_setup,
                               default_writers, hooks, launch)
from detectron2.engine.defaults import create_ddp_model
from detectron2.data import MetadataCatalog
from detectron2.evaluation import (COCOEvaluator, COCOPanopticEvaluator, DatasetEvaluator, DatasetEvaluators,
                                   SemSegEvaluator, inference_on_dataset, print_csv_format, verify_results)
from detectron2.modeling import GeneralizedRCNNWithTTA
from detectron2.utils import comm
from omegaconf import OmegaConf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout, uninstalled
from resnest_backbones.detectron2 import ResNeStCheckpointer, add_resnest_config, replace_norm
from resnest_backbones.distributed import close_process_group, sync_on_cpu

logger = logging.getLogger("detectron2")


def adapt_to_machine(cfg: Any, device_node: Any, device_key: str) -> List[str]:
    """CPU when there is no CUDA; plain BN instead of SyncBN in a single process. Returns the log lines."""
    notes = []
    if not torch.cuda.is_available() and str(device_node[device_key]).startswith("cuda"):
        device_node[device_key] = "cpu"
        notes.append(f"CUDA is not available: device set to 'cpu' ({device_key})")
    if comm.get_world_size() == 1:
        changed = replace_norm(cfg, "SyncBN", "BN")
        if changed:
            notes.append("single process: SyncBN -> BN (the same computation here) for " + ", ".join(changed))
    return notes


def cpu_processes() -> bool:
    return comm.get_world_size() > 1 and not torch.cuda.is_available()


def prepare_model(model: torch.nn.Module) -> torch.nn.Module:
    """In CPU processes, torch's SyncBatchNorm layers (which refuse CPU tensors) become the project's."""
    if cpu_processes():
        logger.info(f"{comm.get_world_size()} CPU processes: {sync_on_cpu(model)}")
    return model


def create_ddp_model_on_any_device(model: torch.nn.Module, **kwargs: Any) -> torch.nn.Module:
    """detectron2's ``create_ddp_model`` gives DDP the local GPU as ``device_ids``, which DDP refuses for a CPU
    model; CPU models get ``device_ids=None``."""
    if cpu_processes():
        kwargs.setdefault("device_ids", None)
    return create_ddp_model(model, **kwargs)


def skip_imagenet_init(backbone_node: Any, key: str, checkpoint: str, eval_only: bool) -> List[str]:
    """Evaluating a whole-model file: the backbone builder need not fetch and load ImageNet weights first (the file
    replaces them all; ResNeStCheckpointer refuses one that covers the backbone in part). Returns the log lines."""
    if not (eval_only and checkpoint and backbone_node is not None and backbone_node.get(key)):
        return []
    backbone_node[key] = ""
    return [f"--eval-only from {checkpoint}: the backbone's ImageNet weights are not loaded first"]


def log_notes(notes: List[str]) -> None:
    for note in notes:
        logger.info(note)


class Trainer(DefaultTrainer):
    """detectron2's DefaultTrainer with COCO (and panoptic) evaluation, test-time augmentation when the config asks
    for it, the safe and strict ResNeSt checkpointer, and CPU processes."""

    @classmethod
    def build_model(cls, cfg: CfgNode) -> torch.nn.Module:
        return prepare_model(super().build_model(cfg))

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_folder: str = "",
                        instances_only: bool = False) -> DatasetEvaluator:
        """COCO box/mask AP; for a panoptic data set (``evaluator_type`` "coco_panoptic_seg", e.g.
        ``coco_2017_val_panoptic_separated``) also PQ and the semantic head's mIoU, unless ``instances_only``."""
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        coco = COCOEvaluator(dataset_name, output_dir=output_folder)
        if instances_only or MetadataCatalog.get(dataset_name).get("evaluator_type") != "coco_panoptic_seg":
            return coco
        return DatasetEvaluators([SemSegEvaluator(dataset_name, distributed=True, output_dir=output_folder),
                                  coco, COCOPanopticEvaluator(dataset_name, output_folder)])

    @classmethod
    def test_with_TTA(cls, cfg: CfgNode, model: torch.nn.Module) -> Dict[str, Any]:
        """``TEST.AUG.ENABLED`` (the Panoptic FPN 3x recipe): detectron2's multi-scale + flip test-time
        augmentation of the detections, evaluated with COCO AP (it augments instances only)."""
        logger.info("Running inference with test-time augmentation ...")
        evaluators = [cls.build_evaluator(cfg, name, os.path.join(cfg.OUTPUT_DIR, "inference_TTA", name), True)
                      for name in cfg.DATASETS.TEST]
        results = cls.test(cfg, GeneralizedRCNNWithTTA(cfg, model), evaluators)
        return {name + "_TTA": value for name, value in results.items()}

    def build_hooks(self) -> List[hooks.HookBase]:
        # Swap in the checkpointer that loads ImageNet ResNeSt files, before the hooks capture it.
        old = self.checkpointer
        self.checkpointer = ResNeStCheckpointer(old.model, old.save_dir, trainer=weakref.proxy(self))
        tta = [hooks.EvalHook(0, lambda: self.test_with_TTA(self.cfg, self.model))] if self.cfg.TEST.AUG.ENABLED else []
        return super().build_hooks() + tta


def main_yacs(args: argparse.Namespace) -> Any:
    cfg = add_resnest_config(get_cfg())
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    notes = adapt_to_machine(cfg, cfg.MODEL, "DEVICE")
    notes += skip_imagenet_init(cfg.MODEL.RESNEST, "WEIGHTS", cfg.MODEL.WEIGHTS, args.eval_only)
    cfg.freeze()
    default_setup(cfg, args)
    log_notes(notes)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        ResNeStCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        results = Trainer.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:
            results.update(Trainer.test_with_TTA(cfg, model))
        if comm.is_main_process():
            verify_results(cfg, results)
        return results
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def test_lazy(cfg: Any, model: torch.nn.Module) -> Dict[str, Any]:
    results = inference_on_dataset(model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator))
    print_csv_format(results)
    return results


def main_lazy(args: argparse.Namespace) -> Any:
    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
    notes = adapt_to_machine(cfg, cfg.train, "device")
    notes += skip_imagenet_init(OmegaConf.select(cfg, "model.backbone.bottom_up"), "weights",
                                cfg.train.init_checkpoint, args.eval_only)
    default_setup(cfg, args)
    log_notes(notes)
    model = prepare_model(instantiate(cfg.model).to(cfg.train.device))
    if args.eval_only:
        ResNeStCheckpointer(model).load(cfg.train.init_checkpoint)
        return test_lazy(cfg, create_ddp_model_on_any_device(model))
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)
    model = create_ddp_model_on_any_device(model, **cfg.train.ddp)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, train_loader, optimizer)
    checkpointer = ResNeStCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    precise_bn = cfg.train.get("precise_bn", {})
    main_process = comm.is_main_process()
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PreciseBN(cfg.train.eval_period, model, instantiate(cfg.dataloader.train), precise_bn.num_iter)
        if precise_bn.get("enabled", False) else None,
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if main_process else None,
        hooks.EvalHook(cfg.train.eval_period, lambda: test_lazy(cfg, model)),
        hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter), period=cfg.train.log_period)
        if main_process else None,
    ])
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)  # EvalHook also evaluates after the last iteration


def main(args: argparse.Namespace) -> Any:
    # DefaultTrainer wraps its model with the module-level name; point it at the CPU-aware version.
    detectron2.engine.defaults.create_ddp_model = create_ddp_model_on_any_device
    result = (main_lazy if args.config_file.endswith(".py") else main_yacs)(args)
    close_process_group()
    return result


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
