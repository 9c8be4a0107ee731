"""Run a trained ResNeSt model (Zhang et al., 2020, "ResNeSt: Split-Attention Networks") on images and draw what
it predicts: the library behind ``tools/predict.py`` and the pictures of ``tools/demo.py``.

Four kinds of models, each drawn with its framework's own tools:

- detectron2 (a yacs ``.yaml`` or LazyConfig ``.py`` config): detectron2's ``Visualizer`` (boxes, masks,
  panoptic segments) -- :mod:`resnest_backbones.detectron2.predict`;
- MMSegmentation (a ``configs/mmseg`` ``.py`` config): mmseg's ``SegLocalVisualizer`` overlay --
  :mod:`resnest_backbones.mmseg.predict`;
- MMDetection (a ``configs/mmdet`` ``.py`` config): mmdet's ``DetLocalVisualizer`` (boxes, labels, masks) --
  :mod:`resnest_backbones.mmdet.predict`;
- torchvision (``tools/torchvision_train.py --output model.pth``): ``draw_bounding_boxes`` --
  :mod:`resnest_backbones.torchvision.predict`.

A predictor is a callable taking an RGB ``uint8`` array ``(H, W, 3)`` and returning the same-sized RGB array with
the predictions drawn. Which framework builds it, and how: its row of the one table,
:data:`resnest_backbones.frameworks.FRAMEWORKS`. Frameworks are imported only when their predictor is built (and
mmengine, to tell an OpenMMLab config's framework, only for such a config).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps

from .config_files import resolve_config
from .frameworks import FRAMEWORKS as TABLE
from .frameworks import Framework, framework_of_config
from .types import PathLike, Predictor

__all__ = ["FRAMEWORKS", "IMAGE_SUFFIXES", "Predictor", "detect_framework", "list_images", "load_predictor",
           "predict_images", "read_image"]

#: The frameworks' names (resnest_backbones.frameworks.FRAMEWORKS, the one table).
FRAMEWORKS = tuple(TABLE)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def list_images(inputs: Sequence[PathLike]) -> List[Path]:
    """The image files named by ``inputs`` (files, or folders whose image files, subfolders' included, are taken in
    path order).

    Raises:
        FileNotFoundError: an input does not exist, or no image was found.
    """
    images: List[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            images += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif path.is_file():
            images.append(path)
        else:
            raise FileNotFoundError(f"input {path} does not exist (give image files or folders of images)")
    if not images:
        raise FileNotFoundError(f"no image found in {[os.fspath(i) for i in inputs]} (image files end in "
                                f"{', '.join(IMAGE_SUFFIXES)})")
    return images


def read_image(path: PathLike) -> np.ndarray:
    """An image file as an RGB ``uint8`` array ``(H, W, 3)``, upright by its EXIF orientation (as detectron2 and
    mmcv read images for training)."""
    try:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except OSError as error:
        raise ValueError(f"cannot read {path} as an image: {error}") from None


def _row(framework: str) -> Framework:
    if framework not in TABLE:
        raise ValueError(f"unknown framework {framework!r}; choose one of {', '.join(FRAMEWORKS)}")
    return TABLE[framework]


def detect_framework(config: Optional[PathLike], framework: Optional[str] = None) -> str:
    """Which framework runs ``config``: ``framework`` when given; else the one its loaded config names
    (:func:`~resnest_backbones.frameworks.framework_of_config`: a ``.yaml`` is detectron2's; a ``.py`` OpenMMLab
    config is mmseg's or mmdet's by its ``default_scope``, ``custom_imports`` or ``_base_`` files, ours named
    ``resnest_backbones::NAME`` included; a LazyConfig is detectron2's).

    Raises:
        ValueError: unknown framework or config type, or a config whose framework cannot be told.
        FileNotFoundError: the config does not exist, or names a base ``resnest_backbones::NAME`` that does not.
    """
    if framework is not None:
        if _row(framework).config_formats and config is None:
            raise ValueError(f"--framework {framework} needs a config file")
        return framework
    if config is None:
        raise ValueError("give a config file (detectron2 .yaml/.py, mmseg/mmdet .py) or --framework torchvision")
    path = Path(resolve_config(config))  # a file, or a packaged config's name
    if path.suffix not in (".yaml", ".yml", ".py"):
        raise ValueError(f"unknown config type {path.name}: detectron2 configs are .yaml or .py (LazyConfig), "
                         f"mmseg/mmdet configs .py; for torchvision give --framework torchvision")
    return framework_of_config(path)


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
    row = _row(framework)
    if row.score_threshold:
        options["score_threshold"] = score_threshold
    options.update(device=device or ("cuda" if torch.cuda.is_available() else "cpu"), fused=fused)
    if not row.config_formats:
        return row.predictor_factory()(weights, **options)
    if config is None:
        raise ValueError(f"{framework} needs a config file")
    return row.predictor_factory()(resolve_config(config), weights, **options)


def predict_images(predictor: Predictor, images: Sequence[PathLike], output_dir: PathLike,
                   progress: bool = True) -> List[Path]:
    """Run ``predictor`` on every image and write the drawn results as PNGs (same size, same stem) into
    ``output_dir``, in the subfolders the images have below their common folder (``cam1/frame.jpg`` ->
    ``cam1/frame.png``), with a progress bar. Returns the written paths."""
    from tqdm import tqdm

    out = Path(output_dir)
    images = list(images)
    root = Path(os.path.commonpath([Path(p).resolve().parent for p in images])) if images else out
    written: List[Path] = []
    taken = set()
    for path in tqdm(images, desc="predict", unit="image", disable=not progress):
        image = read_image(path)
        drawn = np.asarray(predictor(image))
        if drawn.shape != image.shape:  # a drawing bug, not the user's: say what happened
            raise RuntimeError(f"{path}: the drawn image is {drawn.shape}, the input {image.shape}")
        folder = out / Path(path).resolve().parent.relative_to(root)
        target, copy = folder / f"{Path(path).stem}.png", 1
        while target in taken:  # frame.jpg and frame.png in one folder
            copy += 1
            target = folder / f"{Path(path).stem}_{copy}.png"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(drawn.astype(np.uint8)).save(target)
        taken.add(target)
        written.append(target)
    return written
