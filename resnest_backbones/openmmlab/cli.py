"""Command line of the OpenMMLab tools, ``tools/mmseg_train.py`` / ``tools/mmseg_test.py`` and
``tools/mmdet_train.py`` / ``tools/mmdet_test.py``: :func:`train_tool` and :func:`test_tool` are the tools' whole
``main`` (each tool passes its name, help texts and its framework's parts: metrics printer, checkpoint check,
converter of released files, ``--toy``; :mod:`resnest_backbones.mmseg.cli`, :mod:`resnest_backbones.mmdet.cli`);
arguments, the config with the command line applied, test-time augmentation, AMP's device check.

The tools train/evaluate OpenMMLab models with ResNeSt backbones (Zhang et al., 2020) through mmengine's
``Runner`` (:mod:`.engine`), with the command line of mmseg's and mmdet's own ``tools/train.py``/``tools/test.py``;
whole-model checkpoints are read safely and loaded strictly (:mod:`.checkpoint`).
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
from typing import Any, Callable, Dict, Iterator, List, Optional, Protocol

from mmengine.config import Config, DictAction
from mmengine.runner.checkpoint import find_latest_checkpoint

from ..config_files import load_openmmlab_config, resolve_config
from ..distributed import close_process_group, exit_process
from ..models.checkpoint import CheckpointError
from ..own_data import DataError, data_error_message
from .checkpoint import Converter
from .engine import FuseForInference, MetricsHook, build_runner

__all__ = ["add_common_arguments", "find_types", "load_config", "require_cuda_for_amp", "test_tool", "train_tool",
           "use_tta"]

#: ``print_metrics(tool, metrics)``: the tool's closing lines.
MetricsPrinter = Callable[[str, Optional[Dict[str, float]]], None]
#: ``check(path, tool)``: checks a checkpoint file before anything is built (e.g. the SHA-256 prefix of its name).
CheckpointCheck = Callable[[Optional[str], str], None]
#: ``toy(cfg)``: the config's model at toy scale on the built-in toy data (the tools' ``--toy``).
ToyCounterpart = Callable[[Config], Config]


class OwnData(Protocol):
    """A framework's ``--train-data`` / ``--val-data`` (:mod:`resnest_backbones.mmdet.own_data`,
    :mod:`resnest_backbones.mmseg.own_data`)."""

    def add_data_arguments(self, parser: argparse.ArgumentParser, training: bool) -> None: ...

    def use_own_data(self, cfg: Config, args: argparse.Namespace) -> List[str]: ...


def _no_check(path: Optional[str], tool: str) -> None:
    """The default :data:`CheckpointCheck`: nothing to check before loading."""


def add_common_arguments(parser: argparse.ArgumentParser, toy: Optional[ToyCounterpart] = None) -> None:
    """Arguments shared by both tools (names as in mmseg's tools), and ``--toy`` where the tool has ``toy``."""
    if toy is not None:
        parser.add_argument("--toy", action="store_true",
                            help="the config's model at toy scale on the built-in toy data, before --cfg-options "
                                 f"(a CPU run of minutes; {toy.__module__})")
    parser.add_argument("--work-dir", help="directory for logs and checkpoints (default: work_dirs/<config name>)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default=None,
                        help="override config entries, e.g. train_cfg.max_iters=100 model.backbone.with_cp=True")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none",
                        help="none: one process; pytorch: under torchrun; slurm: under srun")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0, help=argparse.SUPPRESS)


def find_types(node: Any, wanted: str) -> Iterator[Any]:
    """Every dict in a (nested) config whose ``type`` is ``wanted``."""
    if isinstance(node, dict):
        if node.get("type") == wanted:
            yield node
        for value in node.values():
            yield from find_types(value, wanted)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from find_types(value, wanted)


def load_config(args: argparse.Namespace, tool: str, toy: Optional[ToyCounterpart] = None,
                own_data: Optional[OwnData] = None) -> Config:
    """Read the config (running its ``custom_imports``; its bases may name ours, ``resnest_backbones::NAME``), make
    it its toy counterpart with ``--toy``, point it at the user's data (``--train-data``/``--val-data``), apply the
    command line, explain single-process SyncBN."""
    if "LOCAL_RANK" not in os.environ:
        os.environ["LOCAL_RANK"] = str(args.local_rank)
    args.config = resolve_config(args.config)  # a file, or a packaged config's name
    cfg = load_openmmlab_config(args.config)  # bases may name ours: resnest_backbones::NAME
    if getattr(args, "toy", False):
        cfg = toy(cfg)
    for note in own_data.use_own_data(cfg, args) if own_data is not None else ():
        print(f"[{tool}] {note}", flush=True)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = osp.join("work_dirs", osp.splitext(osp.basename(args.config))[0])
    if args.launcher == "none" and any(True for _ in find_types(cfg.model, "SyncBN")):
        # torch's SyncBatchNorm needs a process group (and GPUs); mmengine's Runner swaps it for plain BN when
        # it does not wrap the model for distributed training. Say so, since the statistics then differ.
        print(f"[{tool}] --launcher none: the config's SyncBN layers run as plain BatchNorm in this single process "
              f"(mmengine reverts them); use --launcher pytorch/slurm for synchronised statistics", flush=True)
    return cfg


def use_tta(cfg: Config, tool: str) -> None:
    """Evaluate with the config's test-time augmentation (as mmseg's ``tools/test.py --tta`` does): the test set
    goes through ``tta_pipeline`` and the model is wrapped in ``tta_model``, which merges the views."""
    missing = [key for key in ("tta_pipeline", "tta_model") if cfg.get(key) is None]
    if missing:
        raise SystemExit(f"[{tool}] --tta: the config defines no {' and no '.join(missing)}; use a config with "
                         f"test-time augmentation (e.g. configs/mmseg/paper/*) or drop --tta")
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


def require_cuda_for_amp(tool: str, amp: bool) -> None:
    """mmengine's ``AmpOptimWrapper`` needs a CUDA (or NPU/MLU) device; fail early with a clear message."""
    import torch

    if amp and not torch.cuda.is_available():
        raise SystemExit(f"[{tool}] --amp needs a CUDA device (mmengine's AmpOptimWrapper); run without --amp on CPU")


def _run(tool: str, action: Callable[[], Any]) -> Any:
    """``action()``, a refused, corrupt or partial checkpoint, or data that does not fit, turned into the tool's exit
    with the error's message (it says what to do)."""
    try:
        return action()
    except CheckpointError as error:
        raise SystemExit(f"[{tool}] error: {error}") from None
    except DataError as error:
        raise SystemExit(f"[{tool}] error: {data_error_message(error)}") from None


def _checked_runner(cfg: Config, tool: str, checkpoint: Optional[str], check: CheckpointCheck,
                    convert: Optional[Converter]) -> Any:
    """The config's runner (loading through ``convert``), once ``check`` has passed ``checkpoint`` (before anything
    is built: a bad download fails at once)."""
    def build() -> Any:
        check(checkpoint, tool)
        return build_runner(cfg, tool, convert)

    return _run(tool, build)


def _finish() -> None:
    """A distributed run ends here, without the teardown race (see ``resnest_backbones.distributed.exit_process``)."""
    if close_process_group():
        exit_process(0)


def _resume_or_start(cfg: Config, tool: str) -> None:
    """``--resume`` continues from the work directory's last checkpoint, never from ``load_from`` (mmengine would
    resume from ``load_from`` when both are set; mmdet's own tool clears it); with no checkpoint there yet, the
    training starts (from ``load_from``, if set)."""
    if not cfg.resume:
        return
    latest = find_latest_checkpoint(cfg.work_dir)
    if latest is None:
        cfg.resume = False
        print(f"[{tool}] --resume: no checkpoint in {cfg.work_dir} yet: starting the training"
              + (f" from load_from={cfg.load_from}" if cfg.get("load_from") else ""), flush=True)
    else:
        if cfg.get("load_from"):
            print(f"[{tool}] --resume: continuing from {latest}; load_from={cfg.load_from} is not used", flush=True)
        cfg.load_from = None


def train_tool(argv: Optional[List[str]], *, tool: str, description: str, config_help: str,
               print_metrics: MetricsPrinter, check_checkpoint: CheckpointCheck = _no_check,
               toy: Optional[ToyCounterpart] = None, convert: Optional[Converter] = None,
               own_data: Optional[OwnData] = None) -> None:
    """``tools/<framework>_train.py``: train the config (``--resume``, ``--amp``, the common arguments, the user's
    data where ``own_data``), evaluate the final model when the schedule did not end on a validation, print its
    metrics. ``load_from`` starts the training (fine-tuning when its class count differs) and, like ``--resume``
    files, is loaded through ``convert`` where given."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("config", help=config_help)
    parser.add_argument("--resume", action="store_true", help="resume from the latest checkpoint in the work dir")
    parser.add_argument("--amp", action="store_true", help="automatic mixed precision (CUDA)")
    add_common_arguments(parser, toy)
    if own_data is not None:
        own_data.add_data_arguments(parser, training=True)
    args = parser.parse_args(argv)
    cfg = load_config(args, tool, toy, own_data)
    require_cuda_for_amp(tool, args.amp)
    if args.amp:
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.loss_scale = "dynamic"
    cfg.resume = args.resume or cfg.get("resume", False)
    _resume_or_start(cfg, tool)
    runner = _checked_runner(cfg, tool, cfg.get("load_from"), check_checkpoint, convert)
    runner.fine_tune = True  # load_from starts this training
    hook = MetricsHook()
    runner.register_hook(hook)
    _run(tool, runner.train)
    if runner.val_loop is not None and hook.iteration != runner.iter:
        runner.val_loop.run()  # the schedule did not end on a validation: evaluate the final model
    if runner.rank == 0:
        print_metrics(tool, hook.metrics)
    _finish()


def test_tool(argv: Optional[List[str]], *, tool: str, description: str, checkpoint_help: str,
              print_metrics: MetricsPrinter, check_checkpoint: CheckpointCheck = _no_check, tta: bool = False,
              toy: Optional[ToyCounterpart] = None, convert: Optional[Converter] = None,
              own_data: Optional[OwnData] = None) -> None:
    """``tools/<framework>_test.py``: evaluate a whole-model checkpoint (loaded exactly, through ``convert`` where
    given) with the config's test set, or the user's (``--val-data`` where ``own_data``; ``--tta`` where ``tta``),
    print the metrics."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("config", help="config file")
    parser.add_argument("checkpoint", help=checkpoint_help)
    if tta:
        parser.add_argument("--tta", action="store_true",
                            help="test-time augmentation: the config's tta_pipeline and tta_model (multi-scale + flip)")
    parser.add_argument("--no-fuse", action="store_true",
                        help="evaluate the model as built; by default the ResNeSt runs fused for inference (batch "
                             "norms folded into the convolutions: faster, the same outputs to ~1e-6)")
    add_common_arguments(parser, toy)
    if own_data is not None:
        own_data.add_data_arguments(parser, training=False)
    args = parser.parse_args(argv)
    cfg = load_config(args, tool, toy, own_data)
    if tta and args.tta:
        use_tta(cfg, tool)
    cfg.load_from = args.checkpoint
    runner = _checked_runner(cfg, tool, args.checkpoint, check_checkpoint, convert)
    if not args.no_fuse:
        runner.register_hook(FuseForInference(tool), priority="VERY_HIGH")
    metrics = _run(tool, runner.test)
    if runner.rank == 0:
        print_metrics(tool, metrics)
    _finish()
