"""The suite's one detection comparison (support.numerics.match_detections / match_coco_results): tied scores in
any order pass, a real difference fails, and only a detection at the cut may go unpaired."""
from __future__ import annotations

import random

import pytest
import torch
from support.numerics import match_coco_results, match_detections

TOL = dict(box_px=1e-2, score=1e-4)


def tied_detections(n: int = 12, seed: int = 0) -> dict:
    """n detections of 2 classes whose scores tie in pairs (as after a few training iterations), boxes apart."""
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=gen) * 100
    return {"boxes": torch.cat([xy, xy + 10 + torch.rand(n, 2, generator=gen) * 20], dim=1),
            "scores": torch.tensor([0.5 - 0.01 * (k // 2) for k in range(n)]),
            "labels": torch.tensor([k % 2 for k in range(n)])}


def reordered(dets: dict, order: torch.Tensor, noise: float = 0.0) -> dict:
    out = {k: v[order].clone() for k, v in dets.items()}
    out["boxes"] += noise
    out["scores"] += noise / 100
    return out


@pytest.mark.parametrize("seed", range(5))
def test_shuffled_ties_pass(seed: int) -> None:
    ref = tied_detections(seed=seed)
    order = torch.randperm(len(ref["scores"]), generator=torch.Generator().manual_seed(seed))
    worst_box, worst_score = match_detections(reordered(ref, order, noise=1e-3), ref, **TOL)
    assert worst_box == pytest.approx(1e-3, abs=5e-5) and worst_score == pytest.approx(1e-5, abs=1e-6)


def test_tied_scores_with_boxes_swapped_between_classes_fail() -> None:
    """Same scores and classes, but two boxes exchanged between detections of different classes: a different
    result, which an index-free comparison must still catch."""
    ref = tied_detections()
    ours = {k: v.clone() for k, v in ref.items()}
    ours["boxes"][[0, 1]] = ours["boxes"][[1, 0]]  # detections 0 and 1 tie in score, classes 0 and 1
    with pytest.raises(AssertionError, match="no partner"):
        match_detections(ours, ref, **TOL)


@pytest.mark.parametrize("field,change", [("boxes", 0.5), ("scores", 1e-3)])
def test_a_real_difference_fails(field: str, change: float) -> None:
    ref = tied_detections()
    ours = {k: v.clone() for k, v in ref.items()}
    ours[field][3] += change  # detection 3 is far above the cut (score 0.49)
    with pytest.raises(AssertionError, match="no partner"):
        match_detections(ours, ref, **TOL)


def test_only_a_detection_at_the_cut_may_go_unpaired() -> None:
    ref = tied_detections()
    lowest = int(ref["scores"].argmin())
    keep = torch.tensor([k for k in range(len(ref["scores"])) if k != lowest])
    match_detections(reordered(ref, keep.flip(0)), ref, **TOL)  # a top-k / threshold edge moved by rounding
    with pytest.raises(AssertionError, match="no partner"):
        match_detections(reordered(ref, keep[1:]), ref, **TOL)  # detection 0, the highest score, lost


def test_masks_are_compared_on_the_pairs() -> None:
    ref = tied_detections(n=4)
    ref["masks"] = torch.zeros(4, 8, 8, dtype=torch.bool)
    for k in range(4):
        ref["masks"][k, k] = True
    order = torch.tensor([2, 0, 3, 1])
    match_detections(reordered(ref, order), ref, **TOL)
    ours = reordered(ref, order)
    ours["masks"][0] = ~ours["masks"][0]
    with pytest.raises(AssertionError, match="masks differ"):
        match_detections(ours, ref, **TOL)


def coco(dets: dict, image_id: int) -> list:
    return [{"image_id": image_id, "category_id": int(c), "score": float(s),
             "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]}
            for b, s, c in zip(dets["boxes"], dets["scores"], dets["labels"])]


def test_coco_results_in_any_order_across_images() -> None:
    expected = coco(tied_detections(seed=1), 7) + coco(tied_detections(seed=2), 9)
    found = list(expected)
    random.Random(0).shuffle(found)
    match_coco_results(found, expected, **TOL)
    moved = [dict(r, image_id=9) if i == 0 else r for i, r in enumerate(expected)]  # one detection on another image
    with pytest.raises(AssertionError, match="no partner"):
        match_coco_results(moved, expected, **TOL)
    with pytest.raises(AssertionError, match="nothing would be compared"):
        match_coco_results([], [], **TOL)
