"""A COCO "instances" file as a torchvision detection dataset (json + Pillow; no pycocotools)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
from torch import Tensor

from ..own_data import category_names, read_coco
from ..predict import read_image
from ..types import PathLike

__all__ = ["CocoBoxes", "Target"]

Target = Dict[str, Tensor]


class CocoBoxes(torch.utils.data.Dataset):
    """Images (float ``(3, H, W)`` in 0..1: torchvision's detectors normalise internally; grayscale and RGBA files
    become RGB, photos are turned upright by their EXIF orientation as detectron2 and mmcv read them) and box
    targets (``boxes`` as x1y1x2y2, ``labels``, ``image_id``) of a COCO "instances" JSON file, checked when read
    (:func:`resnest_backbones.own_data.read_coco`: a clear error naming the entry).

    Labels are 1..K, the categories in id order (0 is torchvision's background), whatever the file's ids (3 and 9
    become 1 and 2): :attr:`classes` names them, :attr:`category_ids` maps them back. Crowd regions
    (``iscrowd: 1``) are not objects to detect: they are left out of the targets, and COCO evaluation ignores
    detections on them. Images without objects are kept (torchvision's detectors train on them as background)."""

    def __init__(self, image_dir: PathLike, json_path: PathLike) -> None:
        data = read_coco(json_path, image_dir)
        self.image_dir = Path(image_dir)
        self.json_path = Path(json_path)
        #: The class names, label 1 first.
        self.classes: List[str] = category_names(data)
        #: The COCO category id of label i + 1.
        self.category_ids: List[int] = sorted(c["id"] for c in data["categories"])
        self._label = {cid: i + 1 for i, cid in enumerate(self.category_ids)}
        self.images: List[Dict[str, Any]] = data["images"]
        #: Each image's objects (crowd regions left out).
        self.annotations: Dict[Any, List[Dict[str, Any]]] = {image["id"]: [] for image in self.images}
        for ann in data["annotations"]:
            if not ann.get("iscrowd"):
                self.annotations[ann["image_id"]].append(ann)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Tuple[Tensor, Target]:
        info = self.images[index]
        pixels = read_image(self.image_dir / info["file_name"]).astype(np.float32)
        image = torch.from_numpy(pixels / 255.0).permute(2, 0, 1)
        anns = self.annotations[info["id"]]
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)],
                             dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor([self._label[a["category_id"]] for a in anns], dtype=torch.int64)
        return image, {"boxes": boxes, "labels": labels, "image_id": torch.tensor(info["id"])}
