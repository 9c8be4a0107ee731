"""Numerical helpers of the parity and acceleration tests: norms that make every tensor matter, the relative
difference the tolerances are stated in, a seeded test image, and the activation memory autograd keeps."""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every batch norm random affine parameters and running statistics.

    Freshly initialised norms are the identity in eval mode, which would let a wrong norm placement or key
    mapping pass a parity test; random statistics make every tensor matter. The last norm of each residual
    branch (``bn3``) gets a small scale, as in trained networks: with unit scales a random 200-layer network
    is chaotic (a 1e-7 relative change of the input moves the output by percents), so float rounding of any
    correct implementation would fail the comparison.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, _BatchNorm):
                n = module.num_features
                scale = 0.1 if name.endswith("bn3") else 1.0
                module.weight.copy_((torch.rand(n, generator=gen) * 0.5 + 0.75) * scale)
                module.bias.copy_(torch.randn(n, generator=gen) * 0.1)
                module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
    return model


def max_rel_diff(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """max|ours - ref| / max|ref| (the parity target of docs/testing.md is <= 1e-5)."""
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return ((ours - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()


def random_image(size: int = 64, batch: int = 2, seed: int = 1) -> torch.Tensor:
    """A seeded standard-normal batch of square RGB images: the same input on every run and every machine."""
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def max_rel_diff_outputs(ours: Union[torch.Tensor, Dict[str, torch.Tensor]],
                         ref: Union[torch.Tensor, Dict[str, torch.Tensor]]) -> float:
    """``max_rel_diff`` over a model's outputs, a dict of feature maps (the same keys required) or one logits
    tensor: the largest of the per-output figures, so no output hides behind a larger one."""
    ours, ref = ({"logits": o} if isinstance(o, torch.Tensor) else o for o in (ours, ref))
    assert ours.keys() == ref.keys(), (sorted(ours), sorted(ref))
    return max(max_rel_diff(ours[k], ref[k]) for k in ref)

def match_detections(ours: Dict[str, torch.Tensor], ref: Dict[str, torch.Tensor], *, box_px: float,
                     score: float, at_least_one: bool = True) -> Tuple[float, float]:
    """Assert that two runs of one detector give the same detections, in any order: each reference detection
    paired one-to-one with one of ours of its class whose box (``boxes``, N x 4 pixels) is within ``box_px`` pixels
    in every coordinate and whose score (``scores``) is within ``score``; ``masks`` (N x H x W booleans), when
    given, agree on 99.9 % of their pixels (a logit at the threshold may flip). Pairs are made nearest box first,
    so tied scores in any order pass.

    A detection may go unpaired only at the cut: its score within ``score`` of the lowest score its side kept (a
    score threshold or a top-k limit that rounding moves by one detection). Anything else unpaired fails.
    Returns the largest box and score differences of the pairs (for reports)."""
    n_ours, n_ref = len(ours["scores"]), len(ref["scores"])
    assert n_ref > 0 or not at_least_one, "no reference detections: nothing would be compared"
    if n_ours == 0 or n_ref == 0:
        _assert_at_cut(ours, torch.ones(n_ours, dtype=torch.bool), score, "ours")
        _assert_at_cut(ref, torch.ones(n_ref, dtype=torch.bool), score, "reference")
        return 0.0, 0.0
    boxes = (ours["boxes"].double()[:, None, :] - ref["boxes"].double()[None, :, :]).abs().amax(dim=2)
    gaps = (ours["scores"].double()[:, None] - ref["scores"].double()[None, :]).abs()
    fits = (ours["labels"][:, None] == ref["labels"][None, :]) & (boxes <= box_px) & (gaps <= score)
    cost = torch.where(fits, boxes, torch.full_like(boxes, float("inf")))
    free_ours = torch.ones(n_ours, dtype=torch.bool)
    free_ref = torch.ones(n_ref, dtype=torch.bool)
    worst_box = worst_score = 0.0
    for flat in cost.flatten().argsort().tolist():  # nearest pairs first
        j, i = divmod(flat, n_ref)
        if not torch.isfinite(cost[j, i]):
            break
        if free_ours[j] and free_ref[i]:
            if "masks" in ref:
                assert (ours["masks"][j] == ref["masks"][i]).float().mean() >= 0.999, f"detection {i}: masks differ"
            free_ours[j] = free_ref[i] = False
            worst_box, worst_score = max(worst_box, float(boxes[j, i])), max(worst_score, float(gaps[j, i]))
    _assert_at_cut(ours, free_ours, score, "ours")
    _assert_at_cut(ref, free_ref, score, "reference")
    return worst_box, worst_score


def _assert_at_cut(side: Dict[str, torch.Tensor], unpaired: torch.Tensor, score: float, name: str) -> None:
    """Unpaired detections of one side are allowed only at its cut (see match_detections)."""
    if not bool(unpaired.any()):
        return
    lowest = float(side["scores"].min())
    away = unpaired & (side["scores"].double() > lowest + score)
    assert not bool(away.any()), (
        f"{int(unpaired.sum())} of {name}'s detections have no partner (class, box and score); above the cut "
        f"(lowest kept score {lowest:.6f}): " + "; ".join(
            f"class {int(side['labels'][k])} score {float(side['scores'][k]):.6f} box {side['boxes'][k].tolist()}"
            for k in away.nonzero().flatten().tolist()[:5]))


def coco_results_by_image(results: List[Dict]) -> Dict[int, Dict[str, torch.Tensor]]:
    """COCO result entries (image_id, category_id, bbox as x, y, w, h, score) as match_detections' tensors per
    image (boxes as x0, y0, x1, y1)."""
    images: Dict[int, Dict[str, list]] = {}
    for r in results:
        image = images.setdefault(r["image_id"], {"boxes": [], "scores": [], "labels": []})
        x, y, w, h = r["bbox"]
        image["boxes"].append([x, y, x + w, y + h])
        image["scores"].append(r["score"])
        image["labels"].append(r["category_id"])
    return {k: {"boxes": torch.tensor(v["boxes"], dtype=torch.float64).reshape(-1, 4),
                "scores": torch.tensor(v["scores"], dtype=torch.float64),
                "labels": torch.tensor(v["labels"], dtype=torch.int64)} for k, v in images.items()}


def match_coco_results(found: List[Dict], expected: List[Dict], *, box_px: float, score: float) -> None:
    """match_detections per image over two lists of COCO results (any order in and across images); the
    expected side must hold some detections."""
    assert expected, "no expected detections: nothing would be compared"
    ours, ref = coco_results_by_image(found), coco_results_by_image(expected)
    empty = {"boxes": torch.zeros(0, 4, dtype=torch.float64), "scores": torch.zeros(0, dtype=torch.float64),
             "labels": torch.zeros(0, dtype=torch.int64)}
    for image in sorted(set(ours) | set(ref)):
        match_detections(ours.get(image, empty), ref.get(image, empty), box_px=box_px, score=score,
                         at_least_one=False)


def saved_bytes(model: nn.Module, x: Tensor) -> int:
    """Bytes of distinct non-parameter tensor storages autograd keeps for backward (deterministic, no timing)."""
    storages: Dict[int, int] = {}
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    del out
    return sum(storages.values())


def train_like_reference(fast: nn.Module, plain: nn.Module, x: Tensor, buffers_rtol: Optional[float] = None) -> int:
    """One backward of ``fast`` (memory-saving modules) and of ``plain`` (reference modules, same values) on
    ``x``; asserts equal gradients and equal buffers (running statistics, ``num_batches_tracked``) afterwards:
    bit-identical, or within ``buffers_rtol`` where the forward values differ by rounding (synchronised norms).

    Returns how often the memory-saving ``bn_relu_conv`` op ran in ``fast``'s forward (0: it never engaged).
    """
    from resnest_backbones.accel import ops

    def train_step(model: nn.Module) -> List[Optional[Tensor]]:
        out = model(x)
        outputs = out.values() if isinstance(out, dict) else [out]
        sum((v.double() ** 2).mean() for v in outputs).backward()
        return [p.grad for p in model.parameters()]

    calls = [0]
    original = ops._BNReLUConv.apply

    def counting(*args):
        calls[0] += 1
        return original(*args)

    ops._BNReLUConv.apply = counting
    try:
        grads_fast = train_step(fast)
    finally:
        ops._BNReLUConv.apply = original
    grads_plain = train_step(plain)
    for (name, _), gf, gp in zip(plain.named_parameters(), grads_fast, grads_plain):
        assert (gf is None) == (gp is None), name
        if gp is not None:
            assert torch.allclose(gf, gp, rtol=1e-9, atol=1e-12), name
    for (name, bp), bf in zip(plain.named_buffers(), fast.buffers()):
        if buffers_rtol is None:
            assert torch.equal(bp, bf), name  # running statistics and num_batches_tracked updated identically
        else:
            torch.testing.assert_close(bf, bp, rtol=buffers_rtol, atol=buffers_rtol, msg=name)
    return calls[0]
