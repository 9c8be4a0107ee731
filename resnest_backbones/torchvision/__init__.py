"""torchvision adapter: ResNeSt-FPN backbones for torchvision's detection models, and the toy experiment.

* :mod:`.backbone`: :func:`resnest_fpn_backbone` / :class:`ResNeStBackboneWithFPN` (the adapter itself);
* :mod:`.toy`: :func:`toy_faster_rcnn`, the Faster R-CNN sized for the toy COCO data;
* :mod:`.data`: :class:`CocoBoxes`, a COCO "instances" file as a detection dataset;
* :mod:`.engine`: a plain training loop and the COCO evaluation (``tools/torchvision_train.py``);
* :mod:`.toy_target`: its toy training (accuracy target, demo section), read without importing this package.

Imports of the real ``torchvision`` inside are absolute, so the subpackage's name does not shadow it.
"""
from .backbone import ResNeStBackboneWithFPN, Weights, resnest_fpn_backbone
from .data import CocoBoxes
from .toy import toy_faster_rcnn

__all__ = ["CocoBoxes", "ResNeStBackboneWithFPN", "Weights", "resnest_fpn_backbone", "toy_faster_rcnn"]
