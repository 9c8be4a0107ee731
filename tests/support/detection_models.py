"""MMDetection models for the mmdet adapter's tests: our eight configs beside mmdet's own bundled ones, built for
one CPU process (SyncBN as BN, no ImageNet download), with random weights and norm statistics, and their
detections on one seeded image."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, NamedTuple

import torch
from torch import Tensor, nn

from . import REPO_ROOT
from .checkpoints import to_openmmlab
from .numerics import randomize_norms

OURS = REPO_ROOT / "configs" / "mmdet"


class Pair(NamedTuple):
    ours: str     # configs/mmdet/<ours>
    theirs: str   # mmdet's configs/resnest/<theirs> (mmdet 3.3.0)
    masks: bool   # a mask model


def _pairs() -> List[Pair]:
    recipes = [("faster-rcnn", "ms-range", False), ("mask-rcnn", "ms", True), ("cascade-rcnn", "ms-range", False),
               ("cascade-mask-rcnn", "ms", True)]
    return [Pair(f"{algo}_{variant}_fpn_syncbn-backbone+head_{train}-1x_coco.py",
                 f"{algo}_{short}_fpn_syncbn-backbone+head_{train}-1x_coco.py", masks)
            for algo, train, masks in recipes for variant, short in (("resnest50d", "s50"), ("resnest101e", "s101"))]


#: The eight models: ours -> mmdet's own config of the same model.
PAIRS = _pairs()


def config_leaves(node: Any, path: str = "") -> Dict[str, Any]:
    """A config as ``{dotted.path: leaf value}`` (list items by index), without mmengine's ``_scope_`` marks."""
    if isinstance(node, dict):
        items = [(k, v) for k, v in node.items() if k != "_scope_"]
    elif isinstance(node, (list, tuple)):
        items = list(enumerate(node))
    else:
        return {path: node}
    flat: Dict[str, Any] = {}
    for key, value in items:
        flat.update(config_leaves(value, f"{path}.{key}" if path else str(key)))
    return flat if items else {path: node}


def to_mmdet(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """A detector's state dict in our keys -> mmdet's: the backbone renamed by the tests' own OpenMMLab table
    (support/checkpoints.py, independent of the package's converter), except that mmdet's ResLayer, unlike
    mmseg's, keeps the pooling slot in stage 1's stride-1 shortcut (``layer1.0.downsample.1``/``.2``, as ours)."""
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    pool_slot = re.compile(r"^(backbone\.layer1\.0\.downsample\.)([01])\.")
    out = {pool_slot.sub(lambda m: f"{m[1]}{int(m[2]) + 1}.", k): v
           for k, v in to_openmmlab(backbone).items() if k.startswith("backbone.")}
    out.update({k: v for k, v in state.items() if not k.startswith("backbone.")})
    return out


def mmdet_config_dir() -> Path:
    """mmdet's configs as the installed wheel bundles them."""
    import mmdet

    return Path(mmdet.__file__).parent / ".mim" / "configs" / "resnest"


def single_process(node: Any) -> Any:
    """Every ``SyncBN`` of a (nested) config turned into ``BN``, in place: one process has no group to sync."""
    if isinstance(node, dict):
        if node.get("type") == "SyncBN":
            node["type"] = "BN"
        for value in node.values():
            single_process(value)
    elif isinstance(node, list):
        for value in node:
            single_process(value)
    return node


def build_detector(config: Path, seed: int = 0) -> nn.Module:
    """The detector of ``config`` in eval mode: SyncBN as BN, the backbone's ``init_cfg`` dropped (nothing is
    downloaded), weights as seeded construction leaves them, norms randomised, classifier logits spread (so the
    scores are well apart and the detections do not hinge on rounding)."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    cfg = Config.fromfile(str(config))
    single_process(cfg.model)
    cfg.model.backbone.init_cfg = None
    init_default_scope("mmdet")
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    randomize_norms(model, seed=seed + 1)
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith("fc_cls"):
                module.weight.mul_(20.0)
    return model.eval()


def seeded_image(size: tuple = (96, 128), seed: int = 5) -> Tensor:
    """A seeded uint8 image (3 x H x W) with smooth structure (a gradient and rectangles) plus noise."""
    gen = torch.Generator().manual_seed(seed)
    h, w = size
    image = torch.linspace(0, 160, w).expand(3, h, w).clone()
    for _ in range(4):
        y, x = int(torch.randint(0, h - 24, (1,), generator=gen)), int(torch.randint(0, w - 24, (1,), generator=gen))
        image[:, y:y + 24, x:x + 24] = torch.rand(3, 1, 1, generator=gen) * 255
    return (image + torch.rand(3, h, w, generator=gen) * 30).clamp(0, 255).to(torch.uint8)


def detect(model: nn.Module, image: Tensor) -> Dict[str, Tensor]:
    """``model.test_step`` on one image: boxes, scores, labels (and masks) of its detections."""
    from mmdet.structures import DetDataSample

    h, w = image.shape[1:]
    sample = DetDataSample(metainfo=dict(img_id=0, img_path="test.png", img_shape=(h, w), ori_shape=(h, w),
                                         scale_factor=(1.0, 1.0)))
    with torch.no_grad():
        result = model.test_step(dict(inputs=[image], data_samples=[sample]))[0].pred_instances
    return {key: result[key] for key in ("bboxes", "scores", "labels", "masks") if key in result}


# ----------------------------------------------------------------- toy runs: --cfg-options of the mmdet tools
def data_options(root: Path) -> List[str]:
    """``--cfg-options`` that move the toy data (and the evaluator's annotation file) to ``root``."""
    loaders = [f"{loader}.dataset.data_root={root}" for loader in ("train_dataloader", "val_dataloader",
                                                                     "test_dataloader")]
    return [*loaders, *(f"{e}.ann_file={root}/annotations/instances_val.json" for e in ("val_evaluator",
                                                                                        "test_evaluator"))]


def small_data(root: Path) -> List[str]:
    """``data_options`` with a small toy set (the same generator, fewer images), for training and testing alike."""
    return [*data_options(root), *(f"{loader}.dataset.toy.{key}={value}" for key, value in (("num_train", 16),
            ("num_val", 8)) for loader in ("train_dataloader", "val_dataloader", "test_dataloader"))]


def small(iters: int, root: Path) -> List[str]:
    """A short schedule on the small toy set."""
    return ["--cfg-options", f"train_cfg.max_iters={iters}", f"train_cfg.val_interval={iters}",
            f"default_hooks.checkpoint.interval={iters}", "param_scheduler.0.end=2",
            f"param_scheduler.1.end={iters}", *small_data(root)]
