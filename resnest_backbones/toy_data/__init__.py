"""Built-in toy data sets for the examples and tests of resnest_backbones (ResNeSt, Zhang et al., 2020).

Framework-free generators (numpy and Pillow only) that write small, deterministic data sets in the formats the
frameworks read natively, so every adapter trains and evaluates end to end on a CPU without downloads:

* :func:`make_toy_coco` -- COCO "instances" detection / instance segmentation of coloured shapes.
* :func:`make_own_sample` -- a sample that looks like a user's own data (docs/own_data.md).
* :func:`make_toy_ade20k`, :func:`make_toy_cityscapes` -- semantic segmentation in the ADE20K and Cityscapes
  directory layouts (MMSegmentation's dataset classes read them).

Command line: ``python tools/make_toy_data.py {coco,ade20k,cityscapes} --help``.
"""
from .coco import CATEGORIES as COCO_CATEGORIES
from .coco import make_toy_coco
from .own_sample import OWN_CATEGORIES, OWN_SEGMENTATION_CLASSES, make_own_sample
from .segmentation import ADE20K_TOY_CLASSES, CITYSCAPES_TOY_CLASSES, make_toy_ade20k, make_toy_cityscapes

__all__ = ["ADE20K_TOY_CLASSES", "CITYSCAPES_TOY_CLASSES", "COCO_CATEGORIES", "OWN_CATEGORIES",
           "OWN_SEGMENTATION_CLASSES", "make_own_sample", "make_toy_ade20k", "make_toy_cityscapes", "make_toy_coco"]
