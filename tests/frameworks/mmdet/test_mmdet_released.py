"""mmdet's released ResNeSt detectors run identically in our configs, loaded as they are by mmengine's loader.

For each of the eight models, mmdet's own detector (mmdet's bundled config, mmdet's ``ResNeSt`` class; SyncBN as
BN in one process, no ImageNet download) gets random weights and norm statistics and is saved as mmdet saves a
checkpoint (``{"meta", "state_dict"}``, OpenMMLab backbone keys under ``backbone.``); our config's detector, built
with other random weights, loads that file through mmengine's ``load_checkpoint`` (strict) with no conversion
step (the backbone's ``load_state_dict`` pre-hook renames the keys): every tensor arrives, and the detections
(boxes, scores, labels; masks for the mask models) on the same image equal mmdet's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest
import torch
from support.frameworks import require

pytestmark = require("mmdet")  # a visible skip without mmdet, before its imports below

from mmengine.runner import load_checkpoint  # noqa: E402
from support.detection_models import OURS, PAIRS, Pair, build_detector, detect, mmdet_config_dir, seeded_image, to_mmdet  # noqa: E402
from support.numerics import max_rel_diff  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from resnest_backbones.models import CheckpointError  # noqa: E402
from resnest_backbones.openmmlab import OpenMMLabResNeSt  # noqa: E402

#: max |ours - mmdet's| / max |mmdet's| over the detectors' outputs (same weights, two implementations of the
#: backbone). The backbones agree to 1e-5 (the parity target, tests/frameworks/mmseg); the heads carry that through
#: FPN, RoIAlign and up to three cascade stages: measured on 2026-12-07, boxes <= 1.0e-6 and scores <= 2.7e-6 for
#: the one-stage heads, scores 1.4e-5 for the S-101 cascades on an Intel Xeon (under 1e-5 on the AMD EPYC machine),
#: from float32 sums taken in another order. 5e-5 leaves 3.5x that.
TOL = 5e-5
MIN_DETECTIONS = 10  # the comparison has detections to compare


def _params() -> list:
    # Faster and Mask R-CNN S-50 run by default; S-101 and the cascades (a few seconds more each) with -m slow.
    return [pytest.param(p, id=p.ours.split("_fpn")[0],
                         marks=[pytest.mark.slow] if ("resnest101e" in p.ours or "cascade" in p.ours) else [])
            for p in PAIRS]


def _save_as_mmdet(model: nn.Module, path: Path) -> Path:
    """``{"meta", "state_dict"}`` as mmdet's CheckpointHook writes it (plain metadata: readable weights-only)."""
    meta = {"mmdet_version": "3.3.0", "dataset_meta": {"classes": [f"c{i}" for i in range(80)]}, "epoch": 12}
    torch.save({"meta": meta, "state_dict": model.state_dict()}, path)
    return path


@pytest.mark.parametrize("pair", _params())
def test_released_layout_loads_strictly_and_detects_as_mmdet(tmp_path: Path, pair: Pair) -> None:
    theirs = build_detector(mmdet_config_dir() / pair.theirs, seed=0)
    assert type(theirs.backbone).__module__.startswith("mmdet.") and type(theirs.backbone).__name__ == "ResNeSt"
    path = _save_as_mmdet(theirs, tmp_path / f"{pair.theirs[:-3]}.pth")

    ours = build_detector(OURS / pair.ours, seed=1)  # other weights: only the load can make the outputs equal
    assert isinstance(ours.backbone, OpenMMLabResNeSt)
    load_checkpoint(ours, str(path), map_location="cpu", strict=True)

    # every tensor arrived: the loaded state is mmdet's, key for key, and nothing is left over on either side
    loaded, reference = to_mmdet(ours.state_dict()), theirs.state_dict()
    assert sorted(loaded) == sorted(reference)
    assert not [k for k in reference if not torch.equal(loaded[k], reference[k])]

    image = seeded_image()
    ref, out = detect(theirs, image), detect(ours, image)
    assert sorted(out) == sorted(ref) == sorted(["bboxes", "scores", "labels"] + (["masks"] if pair.masks else []))
    assert len(ref["scores"]) >= MIN_DETECTIONS, len(ref["scores"])
    assert len(out["scores"]) == len(ref["scores"])
    order = _same_detections(out, ref)
    out = {key: value[order] for key, value in out.items()}
    assert torch.equal(out["labels"], ref["labels"])
    diffs = {key: max_rel_diff(out[key], ref[key]) for key in ("bboxes", "scores")}
    if pair.masks:
        assert out["masks"].shape == ref["masks"].shape == (len(ref["scores"]), *image.shape[1:])
        assert out["masks"].any(), "no mask pixel: the comparison would not test the masks"
        diffs["masks"] = (out["masks"] != ref["masks"]).float().mean().item()  # binary: the share of flipped pixels
    moved = int((order != torch.arange(len(order))).sum())
    print(f"{pair.ours}: {len(ref['scores'])} detections ({moved} listed in another order), max rel diff " +
          ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
    assert max(diffs.values()) <= TOL, diffs


def _same_detections(out: Dict[str, Tensor], ref: Dict[str, Tensor]) -> Tensor:
    """The order of ``out``'s detections that lists them as ``ref`` does: each of ``ref``'s detections is matched
    to ``out``'s of the same class with the nearest box, and every one of ``out``'s must be matched exactly once.

    The detectors list detections by score; two of almost equal scores (within rounding) may come in either
    order, which is not a difference of the models. Anything else (another box, class or number) still fails.
    """
    scale = ref["bboxes"].abs().max()
    distance = (out["bboxes"][None] - ref["bboxes"][:, None]).abs().amax(-1) / scale  # ref x out
    distance[ref["labels"][:, None] != out["labels"][None]] = float("inf")
    order = distance.argmin(1)
    assert sorted(order.tolist()) == list(range(len(order))), "the detections differ, not only their order"
    return order


def _partial(tmp_path: Path, drop: str) -> Path:
    theirs = build_detector(mmdet_config_dir() / PAIRS[0].theirs)
    state = theirs.state_dict()
    assert drop in state
    del state[drop]
    path = tmp_path / "partial.pth"
    torch.save({"meta": {}, "state_dict": state}, path)
    return path


def test_partial_backbone_is_an_error_naming_the_keys_even_unstrict(tmp_path: Path) -> None:
    """mmengine's ``load_from`` and mmdet's ``tools/test.py`` load with ``strict=False`` (a partial file would be a
    log line); the backbone's pre-hook makes a partial backbone an error naming the tensors, either way."""
    path = _partial(tmp_path, "backbone.layer3.2.conv2.fc1.weight")
    ours = build_detector(OURS / PAIRS[0].ours)
    for strict in (True, False):
        with pytest.raises(CheckpointError, match=r"1 missing.*\n.*backbone\.layer3\.2\.conv2\.fc1\.weight"):
            load_checkpoint(ours, str(path), map_location="cpu", strict=strict)


def test_partial_head_is_an_error_naming_the_key(tmp_path: Path) -> None:
    path = _partial(tmp_path, "roi_head.bbox_head.fc_cls.weight")
    ours = build_detector(OURS / PAIRS[0].ours)
    with pytest.raises(RuntimeError, match=r"missing keys in source state_dict: roi_head\.bbox_head\.fc_cls\.weight"):
        load_checkpoint(ours, str(path), map_location="cpu", strict=True)


def test_s50_file_in_s101_config_is_an_error(tmp_path: Path) -> None:
    theirs = build_detector(mmdet_config_dir() / PAIRS[0].theirs)  # Faster R-CNN S-50
    path = _save_as_mmdet(theirs, tmp_path / "s50.pth")
    ours = build_detector(OURS / PAIRS[1].ours)  # Faster R-CNN S-101
    with pytest.raises(CheckpointError,
                       match=r"resnest101e.*\n.*\d+ missing.*\n.*missing in checkpoint: backbone\.layer3\."):
        load_checkpoint(ours, str(path), map_location="cpu", strict=False)
