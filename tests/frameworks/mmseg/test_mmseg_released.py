"""Released ResNeSt segmentation models load, as they are, into this project's mmseg configs and compute the same.

* The paper's models (PyTorch-Encoding, ``deeplab_resnest{50,101,200,269}_ade-<sha1>.pth``): the test writes that
  layout itself from the facts in docs/reference.md section 4 (keys and shapes, random values and norm statistics),
  converts it, loads it strictly into the paper config's model and checks the decode and auxiliary heads against
  an independent ``torch.nn.functional`` computation of PyTorch-Encoding's heads from the file's own tensors.
* mmseg's own models (DeepLabV3 S-101, ADE20K and Cityscapes): built from mmseg's own config with mmseg's own
  classes, randomised, saved as mmseg saves them, converted and loaded into our mmseg-family S-101 configs: the
  logits must equal mmseg's.

Criterion everywhere: max|ours - reference| <= 1e-5 * max|reference|.
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import torch
from support.frameworks import require
from torch import Tensor
from torch.nn import functional as F

pytestmark = require("mmseg")  # a visible skip without mmseg, before its imports below

from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.runner import load_checkpoint  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402
from support import REPO_ROOT  # noqa: E402
from support.numerics import max_rel_diff, randomize_norms  # noqa: E402
from support.processes import run_python  # noqa: E402

import resnest_backbones as rb  # noqa: E402
from resnest_backbones.mmseg.convert import maybe_convert_released, read_released_segmentor  # noqa: E402

ROOT = REPO_ROOT
PAPER = ROOT / "configs" / "mmseg" / "paper"
TOL = 1e-5

# ------------------------------------------------------------------ PyTorch-Encoding's layout, from the facts
# docs/reference.md sections 1 and 4: the official ResNeSt keys under ``pretrained.`` (fc removed), DeepLabV3Head under
# ``head.`` (ASPP at 2048 // 8 = 256 channels), FCNHead under ``auxlayer.`` (1024 // 4 = 256 channels).
DEPTHS = {  # depth: (layers, stem width)
    50: ((3, 4, 6, 3), 32),
    101: ((3, 4, 23, 3), 64),
    200: ((3, 24, 36, 3), 64),
    269: ((3, 30, 48, 8), 64),
}
NUM_CLASSES = 150


def _bn(prefix: str, n: int) -> Dict[str, Tuple[int, ...]]:
    return {f"{prefix}.{leaf}": (n,) for leaf in ("weight", "bias", "running_mean", "running_var")} | \
        {f"{prefix}.num_batches_tracked": ()}


def pytorch_encoding_shapes(depth: int) -> Dict[str, Tuple[int, ...]]:
    """Every key and shape of ``deeplab_resnest<depth>_ade`` (radix 2, cardinality 1, width 64, deep stem)."""
    layers, stem = DEPTHS[depth]
    shapes: Dict[str, Tuple[int, ...]] = {}
    b = "pretrained."
    shapes[b + "conv1.0.weight"] = (stem, 3, 3, 3)
    shapes |= _bn(b + "conv1.1", stem)
    shapes[b + "conv1.3.weight"] = (stem, stem, 3, 3)
    shapes |= _bn(b + "conv1.4", stem)
    shapes[b + "conv1.6.weight"] = (2 * stem, stem, 3, 3)
    shapes |= _bn(b + "bn1", 2 * stem)
    inplanes = 2 * stem
    for stage, blocks in enumerate(layers):
        planes = 64 * 2 ** stage
        width = planes  # int(planes * 64 / 64) * cardinality 1
        inter = max(width * 2 // 4, 32)  # radix 2, reduction 4
        for i in range(blocks):
            p = f"{b}layer{stage + 1}.{i}."
            shapes[p + "conv1.weight"] = (width, inplanes, 1, 1)
            shapes |= _bn(p + "bn1", width)
            shapes[p + "conv2.conv.weight"] = (2 * width, width // 2, 3, 3)  # groups = radix * cardinality
            shapes |= _bn(p + "conv2.bn0", 2 * width)
            shapes[p + "conv2.fc1.weight"], shapes[p + "conv2.fc1.bias"] = (inter, width, 1, 1), (inter,)
            shapes |= _bn(p + "conv2.bn1", inter)
            shapes[p + "conv2.fc2.weight"], shapes[p + "conv2.fc2.bias"] = (2 * width, inter, 1, 1), (2 * width,)
            shapes[p + "conv3.weight"] = (4 * planes, width, 1, 1)
            shapes |= _bn(p + "bn3", 4 * planes)
            if i == 0:  # downsample.0 is the (parameter-free) average pool
                shapes[p + "downsample.1.weight"] = (4 * planes, inplanes, 1, 1)
                shapes |= _bn(p + "downsample.2", 4 * planes)
            inplanes = 4 * planes
    h = "head."
    for branch in ("b0", "b1", "b2", "b3"):
        k = 1 if branch == "b0" else 3
        shapes[f"{h}aspp.{branch}.0.weight"] = (256, 2048, k, k)
        shapes |= _bn(f"{h}aspp.{branch}.1", 256)
    shapes[h + "aspp.b4.gap.1.weight"] = (256, 2048, 1, 1)
    shapes |= _bn(h + "aspp.b4.gap.2", 256)
    shapes[h + "aspp.project.0.weight"] = (256, 1280, 1, 1)
    shapes |= _bn(h + "aspp.project.1", 256)
    shapes[h + "block.0.weight"] = (256, 256, 3, 3)
    shapes |= _bn(h + "block.1", 256)
    shapes[h + "block.4.weight"], shapes[h + "block.4.bias"] = (NUM_CLASSES, 256, 1, 1), (NUM_CLASSES,)
    shapes["auxlayer.conv5.0.weight"] = (256, 1024, 3, 3)
    shapes |= _bn("auxlayer.conv5.1", 256)
    shapes["auxlayer.conv5.4.weight"], shapes["auxlayer.conv5.4.bias"] = (NUM_CLASSES, 256, 1, 1), (NUM_CLASSES,)
    return shapes


def random_state(shapes: Dict[str, Tuple[int, ...]], seed: int = 0) -> Dict[str, Tensor]:
    """Random weights (fan-in scaled) and random norm statistics; ``bn3`` scaled down as in trained networks."""
    gen = torch.Generator().manual_seed(seed)
    state: Dict[str, Tensor] = {}
    for key, shape in shapes.items():
        leaf = key.rsplit(".", 1)[1]
        if leaf == "num_batches_tracked":
            state[key] = torch.tensor(7)
        elif len(shape) == 4:
            state[key] = torch.randn(shape, generator=gen) * math.sqrt(2.0 / math.prod(shape[1:]))
        elif leaf == "running_var":
            state[key] = torch.rand(shape, generator=gen) * 0.5 + 0.75
        elif leaf == "weight":  # norm scale
            state[key] = (torch.rand(shape, generator=gen) * 0.5 + 0.75) * (0.1 if ".bn3." in key else 1.0)
        else:  # norm bias, running mean, conv biases
            state[key] = torch.randn(shape, generator=gen) * 0.1
    return state


def _with_hash(tmp_path: Path, obj: object, stem: str, algorithm: str) -> Path:
    raw = tmp_path / "raw.pth"
    torch.save(obj, raw)
    digest = hashlib.new(algorithm, raw.read_bytes()).hexdigest()
    path = tmp_path / f"{stem}-{digest[:8]}.pth"
    raw.rename(path)
    return path


def build(config: Path, **options: object) -> torch.nn.Module:
    """The config's segmentor, without its ImageNet init, in eval mode."""
    cfg = Config.fromfile(str(config))
    cfg.merge_from_dict({"model.backbone.init_cfg": None, **options})
    init_default_scope(cfg.get("default_scope", "mmseg"))
    return MODELS.build(cfg.model).eval()


# ------------------------------------------------------------- the independent computation of the heads
def _bn_eval(x: Tensor, s: Dict[str, Tensor], p: str) -> Tensor:
    return F.batch_norm(x, s[p + ".running_mean"], s[p + ".running_var"], s[p + ".weight"], s[p + ".bias"],
                        training=False, eps=1e-5)


def _cbr(x: Tensor, s: Dict[str, Tensor], conv: str, bn: str, dilation: int = 1) -> Tensor:
    weight = s[conv + ".weight"]
    padding = dilation if weight.shape[-1] == 3 else 0
    return F.relu(_bn_eval(F.conv2d(x, weight, padding=padding, dilation=dilation), s, bn))


def reference_deeplabv3_head(c4: Tensor, s: Dict[str, Tensor]) -> Tensor:
    """PyTorch-Encoding's DeepLabV3Head in eval mode, from docs/reference.md section 4 and the file's own tensors."""
    feats = [_cbr(c4, s, "head.aspp.b0.0", "head.aspp.b0.1")]
    for branch, rate in (("b1", 12), ("b2", 24), ("b3", 36)):
        feats.append(_cbr(c4, s, f"head.aspp.{branch}.0", f"head.aspp.{branch}.1", rate))
    pooled = _cbr(F.adaptive_avg_pool2d(c4, 1), s, "head.aspp.b4.gap.1", "head.aspp.b4.gap.2")
    feats.append(F.interpolate(pooled, c4.shape[2:], mode="bilinear", align_corners=True))
    x = _cbr(torch.cat(feats, 1), s, "head.aspp.project.0", "head.aspp.project.1")  # Dropout2d: identity in eval
    x = _cbr(x, s, "head.block.0", "head.block.1")  # Dropout: identity in eval
    return F.conv2d(x, s["head.block.4.weight"], s["head.block.4.bias"])


def reference_fcn_head(c3: Tensor, s: Dict[str, Tensor]) -> Tensor:
    x = _cbr(c3, s, "auxlayer.conv5.0", "auxlayer.conv5.1")
    return F.conv2d(x, s["auxlayer.conv5.4.weight"], s["auxlayer.conv5.4.bias"])


# ---------------------------------------------------------------------------------------------- tests (a)
PAPER_CONFIGS = {50: "resnest50d", 101: "resnest101e", 200: "resnest200e", 269: "resnest269e"}


@pytest.mark.parametrize("depth", [pytest.param(d, marks=[pytest.mark.slow] if d >= 200 else [])
                                   for d in PAPER_CONFIGS])
def test_pytorch_encoding_file_loads_and_heads_match(tmp_path: Path, depth: int) -> None:
    state = random_state(pytorch_encoding_shapes(depth), seed=depth)
    src = _with_hash(tmp_path, state, f"deeplab_resnest{depth}_ade", "sha1")  # PE names files by SHA-1
    config = PAPER / f"deeplabv3_{PAPER_CONFIGS[depth]}-d8_paper_4xb4-180e_ade20k-480x480.py"
    model = build(config)
    dst = tmp_path / "converted.pth"
    result = run_python([ROOT / "tools/convert_weights.py", src, dst, "--to", "mmseg", "--config", config])
    assert "sha1:" in result.stdout and "verified" in result.stdout
    load_checkpoint(model, str(dst), map_location="cpu", strict=True)

    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        feats = model.backbone(x)
        ours, ours_aux = model.decode_head(feats), model.auxiliary_head(feats)
        ref, ref_aux = reference_deeplabv3_head(feats[3], state), reference_fcn_head(feats[2], state)
        # the backbone holds the file's tensors too
        assert torch.equal(model.backbone.state_dict()["layer3.0.conv2.fc1.weight"],
                           state["pretrained.layer3.0.conv2.fc1.weight"])
    diffs = max_rel_diff(ours, ref), max_rel_diff(ours_aux, ref_aux)
    print(f"S-{depth}: decode head max rel diff {diffs[0]:.2e}, auxiliary head {diffs[1]:.2e}")
    assert max(diffs) <= TOL, diffs
    assert tuple(ours.shape) == (1, NUM_CLASSES, 8, 8)  # output stride 8


def test_wrong_depth_head_or_classes_fail_naming_keys(tmp_path: Path) -> None:
    config = PAPER / "deeplabv3_resnest50d-d8_paper_4xb4-180e_ade20k-480x480.py"
    expected = build(config).state_dict()
    cases: List[Tuple[Dict[str, Tensor], List[str]]] = []
    deeper = random_state(pytorch_encoding_shapes(101))  # an S-101 file for the S-50 config
    cases.append((deeper, ["a different depth", "unexpected in the file: backbone.layer3.10."]))
    classes = random_state(pytorch_encoding_shapes(50))
    classes["head.block.4.weight"], classes["head.block.4.bias"] = torch.zeros(19, 256, 1, 1), torch.zeros(19)
    cases.append((classes, ["19 classes in the file, 150 in the config", "decode_head.conv_seg.weight"]))
    for state, words in cases:
        path = tmp_path / "file.pth"
        torch.save(state, path)
        with pytest.raises(rb.CheckpointError) as error:
            maybe_convert_released(path, tmp_path / "work", expected=expected)
        for word in words:
            assert word in str(error.value), str(error.value)
    # an mmseg-family (ASPPHead) model into the paper config: the head is named
    mmseg_like = {"backbone." + k: v for k, v in rb.create_model("resnest50d").state_dict().items()
                  if not k.startswith("fc.")}
    mmseg_like["decode_head.bottleneck.conv.weight"] = torch.zeros(512, 2560, 3, 3)
    mmseg_like["decode_head.conv_seg.weight"] = torch.zeros(150, 512, 1, 1)
    from resnest_backbones.mmseg.convert import check_state_dict

    with pytest.raises(rb.CheckpointError, match="mmseg's ASPPHead.*the paper's DeepLabV3Head"):
        check_state_dict(mmseg_like, expected)


def test_hash_algorithm_by_family(tmp_path: Path) -> None:
    from resnest_backbones.models.file_hash import hash_algorithm, verify_hash

    assert hash_algorithm("deeplab_resnest101_ade-06ca799c.pth") == "sha1"
    assert hash_algorithm("resnest101-22405ba7.pth") == "sha256"
    assert hash_algorithm("deeplabv3_s101-d8_512x512_160k_ade20k_20200807_144503-17ecabe5.pth") == "sha256"
    assert hash_algorithm("fcn_s101-d8_512x512_160k_ade20k_20200807_145416-d3160329.pth") == "sha256"
    pe = _with_hash(tmp_path, {"x": torch.zeros(2)}, "deeplab_resnest50_ade", "sha1")
    assert verify_hash(pe)[1] == "sha1"
    corrupt = tmp_path / "deeplab_resnest50_ade-00000000.pth"
    pe.rename(corrupt)
    with pytest.raises(rb.CheckpointError, match="SHA-1.*download it again"):
        verify_hash(corrupt)


# ---------------------------------------------------------------------------------------------- tests (b)
MMSEG_CONFIGS = Path(importlib.util.find_spec("mmseg").origin).parent / ".mim" / "configs"
MMSEG_S101 = {  # dataset: (mmseg's own config, our config, classes, released file name stem)
    "ade20k": (MMSEG_CONFIGS / "resnest/resnest_s101-d8_deeplabv3_4xb4-160k_ade20k-512x512.py",
               "deeplabv3_resnest101e-d8_4xb4-160k_ade20k-512x512.py", 150,
               "deeplabv3_s101-d8_512x512_160k_ade20k_20200807_144503"),
    "cityscapes": (MMSEG_CONFIGS / "resnest/resnest_s101-d8_deeplabv3_4xb2-80k_cityscapes-512x1024.py",
                   "deeplabv3_resnest101e-d8_4xb2-80k_cityscapes-512x1024.py", 19,
                   "deeplabv3_s101-d8_512x1024_80k_cityscapes_20200807_144429"),
}


def _mmseg_model(config: Path) -> torch.nn.Module:
    cfg = Config.fromfile(str(config))
    cfg.model.pretrained = None  # open-mmlab://resnest101 would be downloaded
    init_default_scope("mmseg")
    model = MODELS.build(cfg.model)
    assert type(model.backbone).__module__.startswith("mmseg.")  # mmseg's own ResNeSt
    return model


@pytest.mark.parametrize("dataset", list(MMSEG_S101))
def test_mmseg_released_s101_gives_mmseg_logits(tmp_path: Path, dataset: str) -> None:
    theirs_cfg, ours_cfg, classes, stem = MMSEG_S101[dataset]
    theirs = randomize_norms(_mmseg_model(theirs_cfg), seed=3).eval()
    assert theirs.decode_head.num_classes == classes
    meta = {"mmseg_version": "0.5.0", "CLASSES": [f"c{i}" for i in range(classes)]}
    src = _with_hash(tmp_path, {"meta": meta, "state_dict": theirs.state_dict()}, stem, "sha256")

    ours = build(ROOT / "configs" / "mmseg" / ours_cfg)
    converted = maybe_convert_released(src, tmp_path / "work", expected=ours.state_dict())
    assert converted != str(src) and read_released_segmentor(src).source_format == "mmseg"
    load_checkpoint(ours, converted, map_location="cpu", strict=True)

    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref_feats, our_feats = theirs.extract_feat(x), ours.extract_feat(x)
        ref, out = theirs.decode_head(ref_feats), ours.decode_head(our_feats)
        ref_aux, out_aux = theirs.auxiliary_head(ref_feats), ours.auxiliary_head(our_feats)
    diffs = max_rel_diff(out, ref), max_rel_diff(out_aux, ref_aux)
    print(f"mmseg S-101 {dataset}: decode logits max rel diff {diffs[0]:.2e}, auxiliary {diffs[1]:.2e}")
    assert max(diffs) <= TOL, diffs
    # our own files pass through unchanged
    assert maybe_convert_released(converted, tmp_path / "work2") == converted
    # the in-memory conversion (for a loader that has read the file) gives the same tensors
    from resnest_backbones.mmseg.convert import convert_if_released

    in_memory, fmt = convert_if_released(torch.load(src, weights_only=True)["state_dict"], src)
    assert fmt == "mmseg" and set(in_memory) == set(ours.state_dict())
    assert convert_if_released(ours.state_dict())[1] is None


def _without_scope(node: object) -> object:
    """A config as plain data without the ``_scope_`` marks mmengine adds to configs read through ``mmseg::``."""
    if isinstance(node, dict):
        return {k: _without_scope(v) for k, v in node.items() if k != "_scope_"}
    if isinstance(node, (list, tuple)):
        return [_without_scope(v) for v in node]
    return node


def test_mmseg_family_configs_equal_mmseg_configs() -> None:
    """Everything but the backbone (same network, other class) and the ImageNet file equals mmseg's own configs."""
    for theirs_cfg, ours_cfg, _, _ in MMSEG_S101.values():
        theirs = _without_scope(Config.fromfile(str(theirs_cfg)).to_dict())
        ours = _without_scope(Config.fromfile(str(ROOT / "configs" / "mmseg" / ours_cfg)).to_dict())
        for cfg in (theirs, ours):
            for key in ("backbone", "pretrained"):
                cfg["model"].pop(key)
            for key in ("custom_imports", "checkpoint_file", "resnest_backbone"):
                cfg.pop(key, None)
        differing = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        assert not differing, differing
        # the backbone: mmseg's ResNeSt-101 arguments, in our terms
        backbone = Config.fromfile(str(ROOT / "configs" / "mmseg" / ours_cfg)).model.backbone
        assert (backbone.variant, backbone.avd_dilated, tuple(backbone.strides), tuple(backbone.dilations),
                backbone.contract_dilation, backbone.norm_cfg.type, backbone.norm_eval) == \
            ("resnest101e", False, (1, 2, 1, 1), (1, 1, 2, 4), True, "SyncBN", False)
