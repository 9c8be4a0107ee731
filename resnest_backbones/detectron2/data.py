"""The toy COCO data set of :mod:`resnest_backbones.toy_data` in detectron2's catalogs.

Lets the toy configs (``configs/detectron2/toy/``) train and evaluate a ResNeSt (Zhang et al., 2020) detector
end to end on a CPU without downloads. The images are generated on first use, not at registration.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Union

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from ..toy_data import COCO_CATEGORIES, make_toy_coco

__all__ = ["TOY_COCO_DEFAULTS", "register_toy_coco"]

#: Generation parameters of the registered toy set (see :func:`resnest_backbones.toy_data.make_toy_coco`).
TOY_COCO_DEFAULTS: Dict[str, Any] = {"num_train": 256, "num_val": 64, "image_size": 128, "seed": 0}


def register_toy_coco(root: Union[str, os.PathLike, None] = None, prefix: str = "toy_coco", **params: Any) -> None:
    """Register ``{prefix}_train`` and ``{prefix}_val`` (COCO instances with boxes and polygon masks).

    Args:
        root: where the data is made on first use; default ``$RESNEST_TOY_COCO`` or ``data/toy_coco``
            (relative to the working directory).
        prefix: data-set name prefix.
        **params: :func:`~resnest_backbones.toy_data.make_toy_coco` arguments overriding
            :data:`TOY_COCO_DEFAULTS`.

    Registering a name again replaces the earlier registration (e.g. to point tests at a temporary root).
    """
    root = os.fspath(root if root is not None else os.environ.get("RESNEST_TOY_COCO", "data/toy_coco"))
    unknown = set(params) - set(TOY_COCO_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown toy data parameters {sorted(unknown)}; valid: {sorted(TOY_COCO_DEFAULTS)}")
    kwargs = {**TOY_COCO_DEFAULTS, **params}
    for split in ("train", "val"):
        name = f"{prefix}_{split}"

        def load(split: str = split, name: str = name) -> List[Dict[str, Any]]:
            paths = make_toy_coco(root, **kwargs)  # returns at once when the files already match
            return load_coco_json(str(paths[f"{split}_json"]), str(paths[f"{split}_images"]), name)

        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        DatasetCatalog.register(name, load)
        # COCOEvaluator reads json_file after the test loader has loaded the set, i.e. after it was made.
        MetadataCatalog.get(name).set(
            json_file=os.path.join(root, "annotations", f"instances_{split}.json"),
            image_root=os.path.join(root, split), evaluator_type="coco", thing_classes=list(COCO_CATEGORIES))
