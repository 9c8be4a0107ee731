"""Built-in toy data sets for the examples and tests of resnest_backbones (ResNeSt, Zhang et al., 2020).

Framework-free generators (numpy and Pillow only) that write small, deterministic data sets in the formats the
frameworks read natively, so every adapter trains and evaluates end to end on a CPU without downloads:

* :func:`make_toy_coco` -- COCO "instances" detection / instance segmentation of coloured shapes.
"""
from .coco import CATEGORIES as COCO_CATEGORIES
from .coco import make_toy_coco

__all__ = ["COCO_CATEGORIES", "make_toy_coco"]
