"""Run a trained ResNeSt model (Zhang et al., 2020, "ResNeSt: Split-Attention Networks") on images and draw what
it predicts: the library behind ``tools/predict.py`` and the pictures of ``tools/demo.py``.

Four kinds of models, each drawn with its framework's own tools:

- detectron2 (a yacs ``.yaml`` or LazyConfig ``.py`` config): detectron2's ``Visualizer`` (boxes, masks,
  panoptic segments) -- :mod:`resnest_backbones.detectron2.predict`;
- MMSegmentation (a ``configs/mmseg`` ``.py`` config): mmseg's ``SegLocalVisualizer`` overlay --
  :mod:`resnest_backbones.mmseg.predict`;
- MMDetection (a ``configs/mmdet`` ``.py`` config): mmdet's ``DetLocalVisualizer`` (boxes, labels, masks) --
  :mod:`resnest_backbones.mmdet.predict`;
- torchvision (``tools/torchvision_train.py --output model.pth``): ``draw_bounding_boxes`` -- here.

A predictor is a callable taking an RGB ``uint8`` array ``(H, W, 3)`` and returning the same-sized RGB array with
the predictions drawn. Frameworks are imported only when their predictor is built.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from .accel import fuse_resnest_modules
from .config_files import resolve_config
from .models.checkpoint import CheckpointError, LoadReport, read_checkpoint
from .models.checkpoint.report import is_counter
from .models.hub import local_weights

__all__ = ["FRAMEWORKS", "IMAGE_SUFFIXES", "Predictor", "detect_framework", "list_images", "load_predictor",
           "predict_images", "read_image", "torchvision_predictor"]

PathLike = Union[str, os.PathLike]
#: RGB uint8 (H, W, 3) -> RGB uint8 (H, W, 3) with the predictions drawn.
Predictor = Callable[[np.ndarray], np.ndarray]
FRAMEWORKS = ("detectron2", "mmseg", "mmdet", "torchvision")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def list_images(inputs: Sequence[PathLike]) -> List[Path]:
    """The image files named by ``inputs`` (files, or folders whose image files are taken in name order).

    Raises:
        FileNotFoundError: an input does not exist, or no image was found.
    """
    images: List[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            images += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif path.is_file():
            images.append(path)
        else:
            raise FileNotFoundError(f"input {path} does not exist (give image files or folders of images)")
    if not images:
        raise FileNotFoundError(f"no image found in {[os.fspath(i) for i in inputs]} (image files end in "
                                f"{', '.join(IMAGE_SUFFIXES)})")
    return images


def read_image(path: PathLike) -> np.ndarray:
    """An image file as an RGB ``uint8`` array ``(H, W, 3)``."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except OSError as error:
        raise ValueError(f"cannot read {path} as an image: {error}") from None


def detect_framework(config: Optional[PathLike], framework: Optional[str] = None) -> str:
    """Which framework runs ``config``: ``framework`` when given; else a ``.yaml`` is detectron2's, a ``.py``
    under a ``detectron2``/``mmseg``/``mmdet`` folder is that framework's, and otherwise its text decides (OpenMMLab
    configs build on ``_base_``/``custom_imports``: mmdet's name ``resnest_backbones.mmdet`` or ``mmdet::`` bases,
    the others are mmseg's; LazyConfigs import their parts).

    Raises:
        ValueError: unknown framework or config type.
        FileNotFoundError: the config does not exist.
    """
    if framework is not None:
        if framework not in FRAMEWORKS:
            raise ValueError(f"unknown framework {framework!r}; choose one of {', '.join(FRAMEWORKS)}")
        if framework != "torchvision" and config is None:
            raise ValueError(f"--framework {framework} needs a config file")
        return framework
    if config is None:
        raise ValueError("give a config file (detectron2 .yaml/.py, mmseg/mmdet .py) or --framework torchvision")
    path = Path(resolve_config(config))  # a file, or a packaged config's name
    if path.suffix in (".yaml", ".yml"):
        return "detectron2"
    if path.suffix != ".py":
        raise ValueError(f"unknown config type {path.name}: detectron2 configs are .yaml or .py (LazyConfig), "
                         f"mmseg/mmdet configs .py; for torchvision give --framework torchvision")
    for name in ("detectron2", "mmseg", "mmdet"):
        if name in path.resolve().parts:
            return name
    text = path.read_text()
    if "_base_" in text or "custom_imports" in text:
        return "mmdet" if "resnest_backbones.mmdet" in text or "mmdet::" in text else "mmseg"
    if "import" in text:
        return "detectron2"
    raise ValueError(f"cannot tell which framework {path} is for; give --framework detectron2, mmseg or mmdet")


def load_torchvision_model(weights: PathLike, *, variant: str = "resnest14d", image_size: int = 128,
                           score_threshold: float = 0.5, device: Union[str, torch.device] = "cpu",
                           fused: bool = True) -> torch.nn.Module:
    """The toy Faster R-CNN of ``tools/torchvision_train.py`` loaded from its ``--output`` file, in eval mode.

    Args:
        weights: the file (path or URL) ``torchvision_train.py --output`` wrote.
        variant, image_size: as given to ``torchvision_train.py`` (its defaults here too).
        score_threshold: the heads keep detections scoring at least this (lowered from the model's only).
        device: where the model runs.
        fused: run with the ResNeSt fused for inference (:func:`~resnest_backbones.fuse_resnest_modules`: batch
            norms folded, faster, same outputs to ~1e-6); ``False`` runs the model as built.

    Raises:
        CheckpointError: the file is missing, unreadable, or not a model of this variant.
    """
    from .torchvision import toy_faster_rcnn

    path = local_weights(weights)
    state = read_checkpoint(path)  # a state dict, or one under model/state_dict
    key = "roi_heads.box_predictor.cls_score.weight"
    if key not in state:
        raise CheckpointError(f"{path} is not a torchvision Faster R-CNN saved by tools/torchvision_train.py "
                              f"--output (no {key})")
    model = toy_faster_rcnn(variant, state[key].shape[0], image_size,
                            frozen_norm=not any(is_counter(k) for k in state))
    problem = f"{path} does not fit the toy Faster R-CNN with a {variant} backbone (give the --variant it was " \
              f"trained with)"
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # torch raises on mis-shaped tensors whatever ``strict`` says
        raise CheckpointError(f"{problem}: {str(error)[:2000]}") from None
    report = LoadReport.from_incompatible("torchvision Faster R-CNN", model.state_dict(), result.missing_keys,
                                          result.unexpected_keys)
    if not report.ok:
        raise report.error(problem, "The file holds another model, or only part of one.")
    model.roi_heads.score_thresh = min(model.roi_heads.score_thresh, score_threshold)
    model.to(device).eval()
    if fused:
        fuse_resnest_modules(model)
    return model


def torchvision_predictor(weights: PathLike, *, variant: str = "resnest14d", image_size: int = 128,
                          class_names: Optional[Sequence[str]] = None, score_threshold: float = 0.5,
                          max_detections: Optional[int] = None, device: Union[str, torch.device] = "cpu",
                          fused: bool = True) -> Predictor:
    """A predictor (RGB image -> the image with the detections drawn) of the toy Faster R-CNN of
    ``tools/torchvision_train.py``; see :func:`load_torchvision_model` for the arguments it passes on.

    Args:
        class_names: names of the classes 1..N (default: the toy COCO categories when their number fits).
        score_threshold: boxes scoring below are not drawn.
        max_detections: draw at most this many (the best-scoring) boxes per image; default: all.
    """
    from torchvision.utils import draw_bounding_boxes

    from .toy_data import COCO_CATEGORIES

    model = load_torchvision_model(weights, variant=variant, image_size=image_size, score_threshold=score_threshold,
                                   device=device, fused=fused)
    num_classes = model.roi_heads.box_predictor.cls_score.out_features
    if class_names is None:
        class_names = COCO_CATEGORIES if len(COCO_CATEGORIES) == num_classes - 1 else \
            [str(i) for i in range(1, num_classes)]
    names = ["background", *class_names]

    def predict(image: np.ndarray) -> np.ndarray:
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)  # a writable copy
        with torch.no_grad():
            output = model([pixels.to(device, torch.float32) / 255.0])[0]
        keep = torch.nonzero(output["scores"] >= score_threshold).flatten()[:max_detections]  # sorted by score
        boxes, labels, scores = output["boxes"][keep].cpu(), output["labels"][keep], output["scores"][keep]
        if not len(boxes):
            return image.copy()
        text = [f"{names[int(c)] if int(c) < len(names) else int(c)} {s:.2f}" for c, s in zip(labels, scores)]
        drawn = draw_bounding_boxes(pixels, boxes, labels=text, width=2)
        return drawn.permute(1, 2, 0).numpy()

    return predict


def load_predictor(framework: str, config: Optional[PathLike], weights: PathLike, *, score_threshold: float = 0.5,
                   device: Optional[str] = None, fused: bool = True, **options: Any) -> Predictor:
    """Build the predictor of ``framework`` (see :func:`detect_framework`) from ``config`` and ``weights``.

    Args:
        framework: ``detectron2``, ``mmseg``, ``mmdet`` or ``torchvision``.
        config: the config file (not used for torchvision).
        weights: a whole-model checkpoint: path or ``http(s)://``/``file://`` URL.
        score_threshold: detections scoring below are not drawn (detectron2, mmdet, torchvision).
        device: ``cuda``/``cpu``; default CUDA when available.
        fused: run with the ResNeSt fused for inference (the default; ``False``: the model as built).
        **options: torchvision: ``variant``, ``image_size``, ``class_names``; detectron2: ``opts`` (config
            overrides as on train_net.py's command line).
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if framework == "torchvision":
        return torchvision_predictor(weights, score_threshold=score_threshold, device=device, fused=fused,
                                     **options)
    if config is None:
        raise ValueError(f"{framework} needs a config file")
    config = resolve_config(config)
    if framework == "detectron2":
        from .detectron2.predict import detectron2_predictor
        return detectron2_predictor(config, weights, score_threshold=score_threshold, device=device, fused=fused,
                                    **options)
    if framework == "mmseg":
        from .mmseg.predict import MMSegPredictor
        return MMSegPredictor(config, weights, device=device, fused=fused, **options)
    if framework == "mmdet":
        from .mmdet.predict import MMDetPredictor
        return MMDetPredictor(config, weights, score_threshold=score_threshold, device=device, fused=fused,
                              **options)
    raise ValueError(f"unknown framework {framework!r}; choose one of {', '.join(FRAMEWORKS)}")


def predict_images(predictor: Predictor, images: Sequence[PathLike], output_dir: PathLike,
                   progress: bool = True) -> List[Path]:
    """Run ``predictor`` on every image and write the drawn results as PNGs (same size, same stem) into
    ``output_dir``, with a progress bar. Returns the written paths."""
    from tqdm import tqdm

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: List[Path] = []
    stems: Dict[str, int] = {}
    for path in tqdm(list(images), desc="predict", unit="image", disable=not progress):
        image = read_image(path)
        drawn = np.asarray(predictor(image))
        if drawn.shape != image.shape:  # a drawing bug, not the user's: say what happened
            raise RuntimeError(f"{path}: the drawn image is {drawn.shape}, the input {image.shape}")
        stem = Path(path).stem
        stems[stem] = stems.get(stem, 0) + 1  # two inputs of the same name from different folders
        target = out / (f"{stem}.png" if stems[stem] == 1 else f"{stem}_{stems[stem]}.png")
        Image.fromarray(drawn.astype(np.uint8)).save(target)
        written.append(target)
    return written
