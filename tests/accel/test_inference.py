"""Fused inference mode (resnest_backbones/accel/inference.py: batch norms folded into the convolutions) and
torch.compile keep ResNeSt's numbers (Zhang et al., 2020). The memory-saving training ops are tested in
test_accel.py and test_accel_norms.py, channels_last in models/test_model.py. No timings here: speed is measured
by tools/benchmark.py, never asserted in tests.
"""
from __future__ import annotations

import copy

import pytest
import torch
from support.numerics import max_rel_diff, max_rel_diff_outputs, random_image, randomize_norms
from torch import nn

import resnest_backbones as rb
from resnest_backbones.accel import InferenceOnly, fusable_pairs, fuse_for_inference, fuse_resnest_modules

CL = torch.channels_last


# --------------------------------------------------------------------------------------- inference mode
@pytest.mark.parametrize("name, kwargs", [
    ("resnest14d", {"num_classes": 10}),
    ("resnest14d", {"output_stride": 8}),
    ("resnest50_fast_4s2x40d", {"output_stride": 16, "out_features": ["stem", "res2", "res3", "res4"]}),
    ("resnest50_fast_1s1x64d", {}),  # radix 1: sigmoid gate
    ("resnest26d", {"output_stride": 16, "avd_dilated": False}),
])
def test_fused_inference_matches_eval(name: str, kwargs: dict) -> None:
    torch.manual_seed(0)
    model = randomize_norms(rb.create_model(name, **kwargs)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = fuse_for_inference(model)
    x = random_image(96)
    with torch.no_grad():
        expected, got = model(x), fast(x)
    assert max_rel_diff_outputs(got, expected) <= 1e-4
    # Every batch norm is folded, and the original model is untouched (the copy is the only change).
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert len(fusable_pairs(model)) == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_fused_inference_is_inference_only() -> None:
    fast = fuse_for_inference(rb.create_model("resnest14d"))
    assert not fast.training and not any(p.requires_grad for p in fast.parameters())
    with pytest.raises(RuntimeError, match="inference only"):
        fast.train()
    fast.eval()  # allowed
    with pytest.raises(TypeError, match="ResNeSt"):
        fuse_for_inference(nn.Conv2d(3, 3, 1))


def test_fuse_resnest_modules_in_a_whole_model() -> None:
    """In place, inside a larger model: the backbone becomes its fused copy, the rest stays, outputs equal."""
    torch.manual_seed(0)
    whole = nn.Sequential(randomize_norms(rb.create_model("resnest14d", num_classes=5)), nn.Softmax(dim=1))
    head = whole[1]
    x = random_image(64)
    with torch.no_grad():
        expected = whole.eval()(x)
        assert fuse_resnest_modules(whole.train()) == 1
        got = whole(x)
    assert not whole.training and whole[1] is head and isinstance(whole[0], InferenceOnly)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in whole.modules())
    assert max_rel_diff_outputs(got, expected) <= 1e-4
    assert fuse_resnest_modules(whole) == 0  # already fused
    with pytest.raises(RuntimeError, match="inference only"):
        whole.train()
    assert not any(m.training for m in whole.modules())  # refused before anything switched
    with pytest.raises(ValueError, match="holds no ResNeSt"):
        fuse_resnest_modules(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="use fuse_for_inference"):
        fuse_resnest_modules(rb.create_model("resnest14d"))


def test_fused_inference_channels_last() -> None:
    torch.manual_seed(0)
    model = randomize_norms(rb.create_model("resnest14d")).eval().to(memory_format=CL)
    fast = fuse_for_inference(model)
    x = random_image(96).contiguous(memory_format=CL)
    with torch.no_grad():
        expected, got = model(x), fast(x)
    assert max_rel_diff_outputs(got, expected) <= 1e-4
    assert all(v.is_contiguous(memory_format=CL) for v in got.values())


def test_fold_keeps_groupnorm() -> None:
    model = rb.create_model("resnest14d", norm_layer=lambda c: nn.GroupNorm(8 if c % 8 == 0 else 1, c)).eval()
    fast = fuse_for_inference(model)
    assert fusable_pairs(model) == []
    x = random_image()
    with torch.no_grad():
        assert max_rel_diff_outputs(fast(x), model(x)) == 0.0


# ------------------------------------------------------------------------------------------ torch.compile
@pytest.mark.slow
def test_torch_compile_matches_eager() -> None:
    torch.manual_seed(0)
    model = randomize_norms(rb.create_model("resnest14d", num_classes=10)).eval()
    compiled = torch.compile(model)
    x = random_image(64)
    with torch.no_grad():
        assert max_rel_diff_outputs(compiled(x), model(x)) <= 1e-4
        fast = torch.compile(fuse_for_inference(model))
        assert max_rel_diff_outputs(fast(x), model(x)) <= 1e-4


@pytest.mark.slow
def test_torch_compile_trains_like_eager() -> None:
    """A compiled training step gives the eager memory-saving step's loss, gradients and running statistics, in one
    graph (no break), channels_last as the benchmark runs it. Under compile the eager ops stand aside (the
    partitioner recomputes elementwise maps itself) and each bottleneck's ``bn3(conv3(...))`` is the custom op that
    keeps no conv3 output (accel/compiled.py)."""
    torch.manual_seed(0)
    # float64: in float32 the compiler's reordered sums alone move the stem's gradients by ~5e-4 of their largest
    # (measured with and without the custom op), which would hide a wrong formula.
    eager = randomize_norms(rb.create_model("resnest14d", num_classes=10)).train().double().to(memory_format=CL)
    compiled_model = copy.deepcopy(eager)
    x = random_image(64, batch=4).double().contiguous(memory_format=CL)
    target = torch.tensor([1, 4, 7, 9])

    def step(model: nn.Module) -> torch.Tensor:
        loss = nn.functional.cross_entropy(model(x), target)
        loss.backward()
        return loss.detach()

    explanation = torch._dynamo.explain(compiled_model)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    blocks = sum(isinstance(m, rb.models.resnest.Bottleneck) and isinstance(m.avd_last, nn.Identity)
                 for m in eager.modules())  # (a strided block pools between split attention and conv3)
    assert blocks >= 1
    assert explanation.graphs[0].code.count("resnest_backbones.projection_bn") == blocks
    compiled_model.load_state_dict(eager.state_dict())  # explain() ran a training forward: statistics moved
    loss_eager, loss_compiled = step(eager), step(torch.compile(compiled_model))
    assert torch.allclose(loss_compiled, loss_eager, rtol=1e-10)
    # Gradients that are zero in exact arithmetic (a bias before a batch norm) are rounding noise in both runs, so
    # the absolute tolerance is a fraction of the model's largest gradient.
    scale = max(p.grad.abs().max().item() for p in eager.parameters())
    for (name, p_eager), p_compiled in zip(eager.named_parameters(), compiled_model.parameters()):
        torch.testing.assert_close(p_compiled.grad, p_eager.grad, rtol=1e-8, atol=1e-10 * scale, msg=name)
    for (name, b_eager), b_compiled in zip(eager.named_buffers(), compiled_model.buffers()):
        assert max_rel_diff(b_compiled.double(), b_eager.double()) <= 1e-10, name


@pytest.mark.parametrize("route", ["gram", "recompute"])
def test_projection_bn_custom_op(route: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The op that keeps no conv3 output under torch.compile: its schema, fake kernel and autograd registration
    (``torch.library.opcheck``), and its gradients against the plain ``batch_norm(conv2d(...))`` through either
    backward route."""
    from resnest_backbones.accel import compiled, ops

    monkeypatch.setattr(ops, "GRAM_MIN_POSITIONS_PER_CHANNEL", 0 if route == "gram" else 10**9)
    gen = torch.Generator().manual_seed(0)
    c = torch.randn(3, 4, 5, 6, dtype=torch.double, generator=gen).contiguous(memory_format=CL).requires_grad_()
    weight = torch.randn(7, 4, 1, 1, dtype=torch.double, generator=gen, requires_grad=True)
    gamma = (torch.rand(7, dtype=torch.double, generator=gen) + 0.5).requires_grad_()
    beta = torch.randn(7, dtype=torch.double, generator=gen, requires_grad=True)
    stats = (torch.zeros(7, dtype=torch.double), torch.ones(7, dtype=torch.double))
    args = (c, weight, gamma, beta, *stats, 0.1, 1e-5)
    torch.library.opcheck(compiled._projection_bn, args)
    out, _, _, new_mean, new_var = compiled._projection_bn(*args)
    running = stats[0].clone(), stats[1].clone()
    plain = nn.functional.batch_norm(nn.functional.conv2d(c, weight), *running, gamma, beta, True, 0.1, 1e-5)
    assert torch.allclose(out, plain, rtol=1e-12, atol=1e-12)
    assert torch.allclose(new_mean, running[0]) and torch.allclose(new_var, running[1])
    assert torch.equal(stats[0], torch.zeros(7, dtype=torch.double))  # functional: the inputs are left alone
    probe = torch.randn(plain.shape, dtype=torch.double, generator=gen)
    inputs = (c, weight, gamma, beta)
    for ours, ref in zip(torch.autograd.grad((out * probe).sum(), inputs),
                         torch.autograd.grad((plain * probe).sum(), inputs)):
        assert torch.allclose(ours, ref, rtol=1e-10, atol=1e-12)
