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
                     score: float) -> Tuple[float, float]:
    """Assert that two runs of one detector give the same detections, in any order: as many, each reference
    detection paired one-to-one with one of ours of its class whose box (``boxes``, N x 4 pixels) is within
    ``box_px`` pixels in every coordinate and whose score (``scores``) is within ``score``; ``masks`` (N x H x W
    booleans), when given, agree on 99.9 % of their pixels (a logit at the threshold may flip). Returns the
    largest box and score differences of the pairs (for reports)."""
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
        if "masks" in ref:
            assert (ours["masks"][j] == ref["masks"][i]).float().mean() >= 0.999, f"detection {i}: masks differ"
        free[j] = False
        worst_box, worst_score = max(worst_box, float(distance[j])), max(worst_score, gap)
    return worst_box, worst_score


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
