"""Shared by the whole-model export tests (``docs/deploy.md``): the comparison of two runs of one detector, as a
fixture (test directories are not packages, so helpers come as fixtures here), and why the tolerances are what
they are.

A traced or scripted module runs the same ATen kernels as eager PyTorch, so it gives the same detections to
rounding at most (measured: bit-identical). onnxruntime runs its own kernels, whose float32 sums round
differently; the fused copy folds each batch norm into its convolution, which rounds differently too (measured,
either: scores within 4e-6, boxes within 2e-5 px on 128-px images, segmentation logits within 1e-6 relative).
The modules' bounds (boxes 1e-2 px, scores 1e-4, logits 1e-4 relative; 1e-3 px and 1e-5 for the same runtime)
leave a margin of >= 25x over those measurements, yet stay below the score margins that decide which detections
exist (each detection test's model keeps every score >= 8e-4 away from its threshold).
"""
from __future__ import annotations

from typing import Callable, Dict, Tuple

import pytest
import torch
from torch import Tensor

Detections = Dict[str, Tensor]  # boxes (N x 4, pixels), scores (N), labels (N)


def match_detections(ours: Detections, ref: Detections, box_px: float, score: float) -> Tuple[float, float]:
    """Assert that ``ours`` and ``ref`` hold the same detections, in any order: as many, each reference detection
    paired one-to-one with one of ours of its class whose box is within ``box_px`` pixels (every coordinate) and
    whose score is within ``score``. Returns the largest box and score differences of the pairs (for reports)."""
    n_ours, n_ref = len(ours["scores"]), len(ref["scores"])
    assert n_ours == n_ref > 0, f"{n_ours} detections vs {n_ref} (expected the same number, at least one)"
    free = torch.ones(n_ours, dtype=torch.bool)
    worst_box = worst_score = 0.0
    for i in range(n_ref):
        distance = (ours["boxes"].double() - ref["boxes"][i].double()).abs().amax(dim=1)
        distance[~free | (ours["labels"] != ref["labels"][i])] = float("inf")
        j = int(distance.argmin())
        assert distance[j] <= box_px, (f"detection {i} (class {int(ref['labels'][i])}, box "
                                       f"{ref['boxes'][i].tolist()}): the nearest free box of its class is "
                                       f"{float(distance[j])} px away (> {box_px})")
        gap = abs(float(ours["scores"][j]) - float(ref["scores"][i]))
        assert gap <= score, f"detection {i}: score {float(ours['scores'][j])} vs {float(ref['scores'][i])}"
        free[j] = False
        worst_box, worst_score = max(worst_box, float(distance[j])), max(worst_score, gap)
    return worst_box, worst_score


@pytest.fixture(scope="session")
def same_detections() -> Callable[..., Tuple[float, float]]:
    """:func:`match_detections`, for the test modules."""
    return match_detections
