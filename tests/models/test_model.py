"""The core ResNeSt model: declared shapes, every variant and output stride, freezing, options, bad input."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from support.numerics import max_rel_diff_outputs, random_image, randomize_norms
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import resnest_backbones as rb
from resnest_backbones.models import Bottleneck

SMALL = "resnest14d"


def _batch(size=64, batch=2, seed=0):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", rb.list_variants())
@pytest.mark.parametrize("output_stride", [32, 16, 8])
def test_declared_shapes_equal_outputs(name: str, output_stride: int) -> None:
    model = rb.create_model(name, output_stride=output_stride, out_features=["stem", "res2", "res3", "res4", "res5"])
    model.eval()
    size = 64
    with torch.no_grad():
        feats = model.forward_features(_batch(size, 1))
    assert list(feats) == model.out_features == ["stem", "res2", "res3", "res4", "res5"]
    for key, info in model.out_feature_info.items():
        assert feats[key].shape[1] == info.channels, key
        assert feats[key].shape[-1] == math.ceil(size / info.stride), key
    assert model.feature_info["res5"].stride == output_stride


@pytest.mark.parametrize("name", rb.list_variants())
def test_backward_reaches_every_parameter(name: str) -> None:
    model = rb.create_model(name, num_classes=10).train()
    model(_batch(32)).logsumexp(1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


@pytest.mark.parametrize("name", [n for n, v in rb.VARIANTS.items() if v.params_m is not None])
def test_parameter_counts_match_the_published_table(name: str) -> None:
    # timm's published two-decimal counts (Variant.params_m); exact equality with the official and timm models
    # themselves is checked in test_parity.py. The paper's one-decimal counts of the resnest50_fast_* models
    # (Variant.paper_params_m) are rounded by the paper and not compared.
    model = rb.create_model(name, num_classes=1000)
    assert round(rb.models.count_parameters(model) / 1e6, 2) == rb.VARIANTS[name].params_m


def test_published_metadata_is_complete() -> None:
    # Every variant has a published count and top-1, from exactly one source (timm's exact count or the paper's).
    for name, variant in rb.VARIANTS.items():
        assert variant.published_params_m() is not None and variant.top1 is not None, name
        assert (variant.params_m is None) is (variant.paper_params_m is not None), name


def test_eval_sizes_are_timms() -> None:
    # The evaluation crop of each model timm publishes is timm's test input size (the official zoo's crop).
    timm = pytest.importorskip("timm", reason="timm is not installed")
    published = [n for n in rb.VARIANTS if timm.models.get_pretrained_cfg(n) is not None]
    assert len(published) == 8
    for name in published:
        cfg = timm.models.get_pretrained_cfg(name)
        assert (cfg.test_input_size or cfg.input_size)[-1] == rb.VARIANTS[name].eval_size, name


def test_aliases_and_unknown_names() -> None:
    assert rb.models.resolve_variant("resnest50") == "resnest50d"
    assert rb.models.resolve_variant("resnest50_fast_4s2x40d") == "resnest50d_4s2x40d"
    with pytest.raises(ValueError, match="unknown ResNeSt variant 'resnest51'.*resnest50d"):
        rb.create_model("resnest51")


def test_head_returns_logits() -> None:
    model = rb.create_model(SMALL, num_classes=7).eval()
    assert model(_batch()).shape == (2, 7)
    assert isinstance(rb.create_model(SMALL).eval()(_batch()), dict)


def test_unrequested_stages_are_not_built() -> None:
    model = rb.create_model(SMALL, out_features=["res3"])
    assert isinstance(model.layer3, nn.Identity) and isinstance(model.layer4, nn.Identity)
    assert not any(k.startswith(("layer3.", "layer4.")) for k in model.state_dict())
    assert list(model.forward_features(_batch())) == ["res3"]


@pytest.mark.parametrize("bad", [[], ["res6"], ["p2"]])
def test_invalid_out_features(bad) -> None:
    with pytest.raises(ValueError, match="out_features"):
        rb.create_model(SMALL, out_features=bad)


def test_bad_input_says_what_to_do() -> None:
    model = rb.create_model(SMALL).eval()
    with pytest.raises(ValueError, match="4-D.*unsqueeze"):
        model(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="expected 3 input channels, got 1"):
        model(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="output_stride"):
        rb.create_model(SMALL, output_stride=4)
    with pytest.raises(ValueError, match="freeze_at"):
        rb.create_model(SMALL, freeze_at=6)


def test_odd_input_sizes() -> None:
    model = rb.create_model(SMALL).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 3, 333, 517))
    h, w = 333, 517
    for stage, stride in (("res2", 4), ("res3", 8), ("res4", 16), ("res5", 32)):
        # every stride-2 step (conv, max pool, AVD, shortcut pool) rounds up
        eh, ew = h, w
        for _ in range(int(math.log2(stride))):
            eh, ew = math.ceil(eh / 2), math.ceil(ew / 2)
        assert feats[stage].shape[-2:] == (eh, ew), stage


def _bn_state(module: nn.Module) -> dict:
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k}


@pytest.mark.parametrize("freeze_at", range(6))
def test_freezing(freeze_at: int) -> None:
    model = rb.create_model(SMALL, freeze_at=freeze_at).train()
    parts = [nn.ModuleList([model.conv1, model.bn1])] + [getattr(model, f"layer{i}") for i in range(1, 5)]
    frozen, trained = parts[:freeze_at], parts[freeze_at:]
    before = [_bn_state(p) for p in parts]
    loss = sum(f.mean() for f in model(_batch()).values())
    assert loss.requires_grad is (freeze_at < 5)
    if loss.requires_grad:
        loss.backward()
    for part, stats in zip(parts, before):
        is_frozen = any(part is f for f in frozen)
        for param in part.parameters():
            assert param.requires_grad is not is_frozen
            assert (param.grad is None) is is_frozen
        changed = any(not torch.equal(v, _bn_state(part)[k]) for k, v in stats.items())
        assert changed is not is_frozen
        assert all(not m.training for m in part.modules() if isinstance(m, _BatchNorm)) is is_frozen
    assert len(frozen) + len(trained) == 5


def test_norm_eval_keeps_statistics() -> None:
    model = rb.create_model(SMALL, norm_eval=True).train()
    stats = _bn_state(model)
    model(_batch())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())
    assert model.training and model.layer1.training
    assert not any(m.training for m in model.modules() if isinstance(m, _BatchNorm))


def test_batch_of_one_in_training_fails_up_front() -> None:
    model = rb.create_model(SMALL).train()
    with pytest.raises(ValueError, match="batch size 1"):
        model(_batch(batch=1))
    rb.create_model(SMALL, norm_eval=True).train()(_batch(batch=1))  # frozen statistics tolerate it
    gn = rb.create_model(SMALL, norm_layer=lambda c: nn.GroupNorm(8, c)).train()
    gn(_batch(batch=1))


def test_zero_init_last() -> None:
    model = rb.create_model(SMALL, zero_init_last=True)
    blocks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert blocks and all(torch.count_nonzero(b.bn3.weight) == 0 for b in blocks)


def test_drop_block_is_train_only_and_drops() -> None:
    torch.manual_seed(0)
    model = rb.create_model(SMALL, drop_block_prob=0.3, drop_block_stages=(True, True, True, True))
    x = _batch()
    model.eval()
    with torch.no_grad():
        a, b = model(x)["res5"], model(x)["res5"]
    assert torch.equal(a, b)
    drop = model.layer1[0].drop_block1.train()
    y = drop(torch.ones(4, 8, 32, 32))
    dropped = (y == 0).float().mean().item()
    assert 0.15 < dropped < 0.45  # about drop_prob of the area, in 3x3 blocks
    assert torch.allclose(y.mean(), torch.tensor(1.0), atol=1e-5)  # rescaled to keep the expectation


def test_activation_checkpointing_gives_the_same_gradients() -> None:
    torch.manual_seed(0)
    plain = rb.create_model(SMALL, num_classes=5).train()
    cp = rb.create_model(SMALL, num_classes=5, with_cp=True).train()
    cp.load_state_dict(plain.state_dict())
    x = _batch()
    for model in (plain, cp):
        model(x).sum().backward()
    for (name, p), q in zip(plain.named_parameters(), cp.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-6), name


def test_dcnv1_with_zero_offsets_is_the_plain_conv() -> None:
    torch.manual_seed(0)
    plain = rb.create_model(SMALL).eval()
    dcn = rb.create_model(SMALL, deform_stages=(False, True, True, True), deform_modulated=False,
                          deform_groups=2).eval()
    report = rb.load_checkpoint(dcn, plain.state_dict())
    assert report.ok and report.initialised and all("conv_offset" in k for k in report.initialised)
    x = _batch()
    with torch.no_grad():
        assert torch.allclose(dcn(x)["res5"], plain(x)["res5"], rtol=1e-4, atol=1e-5)
    dcn.train()
    dcn(x)["res5"].sum().backward()
    assert dcn.layer2[0].conv2.conv.conv_offset.weight.grad is not None


def test_torchscript_matches_eager() -> None:
    model = rb.create_model(SMALL, num_classes=3).eval()
    scripted = torch.jit.script(model)
    x = _batch()
    with torch.no_grad():
        assert torch.allclose(scripted(x), model(x), atol=1e-6)


@pytest.mark.parametrize("name", ["resnest14d", "resnest50_fast_4s2x40d"])
def test_channels_last_matches_contiguous(name: str) -> None:
    torch.manual_seed(0)
    model = randomize_norms(rb.create_model(name, out_features=["stem", "res2", "res3", "res4", "res5"])).eval()
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x = random_image(96)
    with torch.no_grad():
        expected, got = model(x), model_cl(x.contiguous(memory_format=torch.channels_last))
    assert max_rel_diff_outputs(got, expected) <= 1e-5
    # channels_last survives the whole network (split attention used to fall back to NCHW).
    assert all(v.is_contiguous(memory_format=torch.channels_last) for v in got.values())
