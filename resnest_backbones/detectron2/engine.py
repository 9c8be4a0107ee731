"""Training and evaluation of detectron2 models with ResNeSt backbones (Zhang et al., 2020), on GPUs or CPUs.

What ``tools/train_net.py`` runs, for yacs (``.yaml``, through :class:`Trainer`, a ``DefaultTrainer``) and
LazyConfig (``.py``) configs alike:

* :func:`adapt_to_machine`: the device becomes ``cpu`` without CUDA; in a single process "SyncBN" becomes "BN"
  (the same computation there).
* In several CPU processes (gloo) torch's ``SyncBatchNorm`` layers, which refuse CPU tensors, become
  :class:`resnest_backbones.layers.SyncBatchNorm` (:func:`prepare_model`), and DDP gets no device ids
  (:func:`create_ddp_model_on_any_device`; detectron2's ``create_ddp_model`` passes the local GPU, which DDP
  refuses for a CPU model). Both routes call it explicitly: nothing of detectron2 is replaced.
* COCO (and panoptic) evaluation, test-time augmentation when the config enables it, and
  :class:`~resnest_backbones.detectron2.ResNeStCheckpointer` for every load and save.

Every adaptation is logged. Example (what the tool does in each process ``launch`` starts)::

    args = default_argument_parser().parse_args()
    launch(train_or_evaluate, args.num_gpus, args=(args,))
"""
from __future__ import annotations

import argparse
import logging
import os
import weakref
from typing import Any, Dict, List, Optional

import torch
from detectron2.config import CfgNode, instantiate
from detectron2.data import MetadataCatalog
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, default_setup, default_writers, hooks
from detectron2.engine.defaults import create_ddp_model
from detectron2.engine.train_loop import TrainerBase
from detectron2.evaluation import (
    COCOEvaluator,
    COCOPanopticEvaluator,
    DatasetEvaluator,
    DatasetEvaluators,
    SemSegEvaluator,
    inference_on_dataset,
    print_csv_format,
    verify_results,
)
from detectron2.modeling import GeneralizedRCNNWithTTA
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..accel import fuse_resnest_modules
from ..config_files import resolve_config
from ..distributed import close_process_group, exit_process, sync_on_cpu
from ..models.checkpoint import CheckpointError
from .checkpoint import ResNeStCheckpointer
from .config import imagenet_weights, is_lazy_config, load_config, replace_norm
from .own_data import class_layers, training_classes, use_own_data

__all__ = ["Trainer", "adapt_to_machine", "checkpointer_for", "cpu_processes", "create_ddp_model_on_any_device",
           "evaluate_lazy", "prepare_model", "run_lazy", "run_yacs", "skip_imagenet_init", "train_or_evaluate"]

logger = logging.getLogger("detectron2")


def adapt_to_machine(cfg: Any, device_node: Any, device_key: str) -> List[str]:
    """Fit a config to this machine, in place, so the GPU recipes also run on a CPU and in one process.

    ``device_node[device_key]`` (``cfg.MODEL`` / "DEVICE" for yacs, ``cfg.train`` / "device" for LazyConfig)
    becomes "cpu" when it names CUDA and there is none; with a single process, every "SyncBN" of ``cfg`` becomes
    "BN" (identical without other processes, and torch's SyncBatchNorm refuses to run without a group).
    Returns the lines to log, one per change.
    """
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
    """Whether this run is distributed over CPU processes (gloo), where SyncBN and DDP need the adaptations."""
    return comm.get_world_size() > 1 and not torch.cuda.is_available()


def prepare_model(model: torch.nn.Module) -> torch.nn.Module:
    """In CPU processes, torch's SyncBatchNorm layers (which refuse CPU tensors) become the project's, in place;
    the count is logged. Elsewhere the model is returned unchanged."""
    if cpu_processes():
        logger.info(f"{comm.get_world_size()} CPU processes: {sync_on_cpu(model)}")
    return model


def create_ddp_model_on_any_device(model: torch.nn.Module, **kwargs: Any) -> torch.nn.Module:
    """detectron2's ``create_ddp_model`` (DDP when there are several processes), except that a CPU model gets
    ``device_ids=None``: detectron2 passes the local GPU, which DDP refuses for a CPU model."""
    if cpu_processes():
        kwargs.setdefault("device_ids", None)
    return create_ddp_model(model, **kwargs)


def skip_imagenet_init(cfg: Any, checkpoint: str, eval_only: bool) -> List[str]:
    """Evaluating a whole-model file: the backbone builder need not fetch and load ImageNet weights first (the file
    replaces them all; ResNeStCheckpointer refuses one that covers the backbone in part). Clears the config's
    ImageNet weights (:func:`~.config.imagenet_weights`) in that case, in place, and returns the lines to log."""
    node, key = imagenet_weights(cfg)
    if not (eval_only and checkpoint and node is not None and node.get(key)):
        return []
    node[key] = ""
    return [f"--eval-only from {checkpoint}: the backbone's ImageNet weights are not loaded first"]


def checkpointer_for(cfg: Any, model: torch.nn.Module, save_dir: str = "", *, training: bool = False,
                     **checkpointables: Any) -> ResNeStCheckpointer:
    """The checkpointer of a run of ``cfg``: it knows the model's class layers (a file of another class count is
    an error naming both counts, or, when ``training`` starts from it, fine-tunes) and writes the training set's
    class names into every checkpoint."""
    return ResNeStCheckpointer(model, save_dir, class_layers=lambda: class_layers(cfg), fine_tune=training,
                               classes=training_classes(cfg) if training else None, **checkpointables)


def _prepare_config(args: argparse.Namespace) -> Any:
    """The config of ``args`` with the user's data (``--train-data``/``--val-data``) and this machine's
    adaptations, after detectron2's ``default_setup``; every change logged."""
    cfg = load_config(args.config_file, args.opts)
    notes = use_own_data(cfg, getattr(args, "train_data", None), getattr(args, "val_data", None))
    lazy = not isinstance(cfg, CfgNode)
    notes += adapt_to_machine(cfg, *((cfg.train, "device") if lazy else (cfg.MODEL, "DEVICE")))
    notes += skip_imagenet_init(cfg, cfg.train.init_checkpoint if lazy else cfg.MODEL.WEIGHTS, args.eval_only)
    if not lazy:
        cfg.freeze()
    default_setup(cfg, args)
    _log(notes)
    return cfg


def _log(notes: List[str]) -> None:
    for note in notes:
        logger.info(note)


class Trainer(DefaultTrainer):
    """detectron2's DefaultTrainer with COCO (and panoptic) evaluation, test-time augmentation when the config asks
    for it, the safe and strict ResNeSt checkpointer, and CPU processes."""

    def __init__(self, cfg: CfgNode) -> None:
        """Builds what ``DefaultTrainer.__init__`` builds, through the same overridable ``build_*`` methods, but
        wraps the model with :func:`create_ddp_model_on_any_device`: DefaultTrainer calls detectron2's module-level
        ``create_ddp_model`` with no hook to change it, and that one fails for CPU processes. The checkpointer is
        :class:`ResNeStCheckpointer` (reads ImageNet ResNeSt files, loads strictly and safely) from the start."""
        TrainerBase.__init__(self)  # not DefaultTrainer.__init__: that one would wrap the model itself
        if not logger.isEnabledFor(logging.INFO):  # used without default_setup
            setup_logger()
        cfg = self.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model_on_any_device(model, broadcast_buffers=False)
        # DefaultTrainer forwards iter, data_loader, model, optimizer... and run_step/state_dict to _trainer.
        self._trainer = (AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer)(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = checkpointer_for(cfg, model, cfg.OUTPUT_DIR, training=True, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

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
        # The wrapper in the model's mode: detectron2's inference_context puts a module back in the mode it found it
        # in, and a new wrapper is in training mode, which a fused (inference-only) model refuses.
        results = cls.test(cfg, GeneralizedRCNNWithTTA(cfg, model).train(model.training), evaluators)
        return {name + "_TTA": value for name, value in results.items()}

    def build_hooks(self) -> List[Optional[hooks.HookBase]]:
        """DefaultTrainer's hooks, plus a final test-time-augmented evaluation when the config enables it."""
        tta = [hooks.EvalHook(0, lambda: self.test_with_TTA(self.cfg, self.model))] if self.cfg.TEST.AUG.ENABLED else []
        return super().build_hooks() + tta


def fuse_unless_told_not_to(model: torch.nn.Module, args: argparse.Namespace) -> torch.nn.Module:
    """``--eval-only`` evaluates the ResNeSt fused for inference (batch norms folded into the convolutions: faster,
    the same outputs to ~1e-6) unless ``args.no_fuse`` (train_net.py's ``--no-fuse``); the weights are loaded."""
    if getattr(args, "no_fuse", False):
        logger.info("--no-fuse: evaluating the model as built")
    else:
        logger.info("Evaluating with %d ResNeSt fused for inference (--no-fuse runs the model as built)",
                    fuse_resnest_modules(model))
    return model


def run_yacs(args: argparse.Namespace) -> Any:
    """A yacs config (``args.config_file``, overrides ``args.opts``): train with :class:`Trainer` (``--resume``
    continues from the output directory's last checkpoint), or with ``args.eval_only`` evaluate
    ``MODEL.WEIGHTS``. Returns the evaluation results."""
    cfg = _prepare_config(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        checkpointer_for(cfg, model, cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        fuse_unless_told_not_to(model, args)
        results = Trainer.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:
            results.update(Trainer.test_with_TTA(cfg, model))
        if comm.is_main_process():
            verify_results(cfg, results)
        return results
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def evaluate_lazy(cfg: Any, model: torch.nn.Module) -> Dict[str, Any]:
    """Evaluate ``model`` on a LazyConfig's ``dataloader.test`` with its ``dataloader.evaluator``; logs the
    results in detectron2's copy-paste format and returns them."""
    results = inference_on_dataset(model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator))
    print_csv_format(results)
    return results


def run_lazy(args: argparse.Namespace) -> Optional[Dict[str, Any]]:
    """A LazyConfig (``args.config_file``, ``key=value`` overrides in ``args.opts``): train from
    ``train.init_checkpoint`` (or resume) with periodic checkpoints, PreciseBN when ``train.precise_bn`` enables
    it and evaluation every ``train.eval_period`` and at the end; or with ``args.eval_only`` evaluate
    ``train.init_checkpoint``. Returns the evaluation results of ``--eval-only``, else None."""
    cfg = _prepare_config(args)
    model = prepare_model(instantiate(cfg.model).to(cfg.train.device))
    if args.eval_only:
        checkpointer_for(cfg, model).load(cfg.train.init_checkpoint)
        model = create_ddp_model_on_any_device(fuse_unless_told_not_to(model, args))
        return evaluate_lazy(cfg, model.eval())  # a new DDP wrapper is in training mode (see test_with_TTA)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)
    model = create_ddp_model_on_any_device(model, **cfg.train.ddp)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, train_loader, optimizer)
    checkpointer = checkpointer_for(cfg, model, cfg.train.output_dir, training=True, trainer=trainer)
    precise_bn = cfg.train.get("precise_bn", {})
    main_process = comm.is_main_process()
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PreciseBN(cfg.train.eval_period, model, instantiate(cfg.dataloader.train), precise_bn.num_iter)
        if precise_bn.get("enabled", False) else None,
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if main_process else None,
        hooks.EvalHook(cfg.train.eval_period, lambda: evaluate_lazy(cfg, model)),
        hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter), period=cfg.train.log_period)
        if main_process else None,
    ])
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)  # EvalHook also evaluates after the last iteration
    return None


def train_or_evaluate(args: argparse.Namespace) -> Any:
    """What each process runs, given detectron2's ``default_argument_parser`` arguments: the LazyConfig route for
    a ``.py`` config, the yacs route otherwise; then the process group (if any) is closed cleanly and, in a
    distributed run, the process ends there (:func:`resnest_backbones.distributed.exit_process`; ``launch``'s
    workers have nothing left to do)."""
    args.config_file = resolve_config(args.config_file)  # a file, or a packaged config's name
    try:
        result = (run_lazy if is_lazy_config(args.config_file) else run_yacs)(args)
    except CheckpointError as error:  # a refused, corrupt or misfitting file: its message says what to do
        raise SystemExit(f"[train_net] error: {error}") from None
    if close_process_group():
        exit_process(0)
    return result
