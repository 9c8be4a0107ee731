"""How weights reach a detectron2 model with a ResNeSt backbone (ResNeSt, Zhang et al., 2020).

* ImageNet weights named by a config reach the backbone through every standard entry point: detectron2's own
  LazyConfig flow (``LazyConfig.load``, ``instantiate(cfg.model)``, ``DetectionCheckpointer(model).load(
  cfg.train.init_checkpoint)``), ``build_model`` on a yacs config (any trainer), and ``tools/train_net.py``;
* the official detectron2 wrapper's whole-model layout (DCN offsets as ``conv2_offset``) loads through
  ``DetectionCheckpointer``, ``ResNeStCheckpointer`` and ``load_state_dict`` and gives the same detections;
* no checkpoint runs code when read, and no checkpoint initialises the backbone in part without an error.

Tests never use the network: URLs are ``file://`` or already in a temporary torch hub cache. Skipped, visibly,
without detectron2.
"""
from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch
from support.frameworks import require
from torch import nn

pytestmark = require("detectron2")  # a visible skip without detectron2, before its imports below

from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.config import LazyConfig, get_cfg, instantiate  # noqa: E402
from detectron2.data import DatasetCatalog, DatasetMapper  # noqa: E402
from detectron2.engine import DefaultTrainer  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from support import REPO_ROOT  # noqa: E402
from support.checkpoints import to_detectron2_wrapper  # noqa: E402
from support.numerics import max_rel_diff_outputs, random_image, randomize_norms  # noqa: E402
from support.official_d2 import official_backbone  # noqa: E402
from support.processes import run_python, run_tool  # noqa: E402

import resnest_backbones as rb  # noqa: E402
import resnest_backbones.models.hub as rb_hub  # noqa: E402
from resnest_backbones.detectron2 import ResNeStCheckpointer, add_resnest_config, register_toy_coco  # noqa: E402

_DOWNLOAD = torch.hub.download_url_to_file  # the real one, whatever a fixture patches later
REPO = REPO_ROOT
ROOT = REPO / "configs" / "detectron2"
LEAVES = sorted(p for p in ROOT.rglob("*.yaml") if not p.name.startswith("Base-") and "toy" not in p.parts)
LAZY = sorted(ROOT.glob("COCO-*/*.py"))
TOY = ROOT / "toy" / "faster_rcnn_toy.yaml"
# Shrunk for speed: 128-pixel inputs, few proposals; every detection kept so that they can be compared.
SMALL = ["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128",
         "MODEL.RPN.PRE_NMS_TOPK_TEST", "100", "MODEL.RPN.POST_NMS_TOPK_TEST", "32",
         "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]


@pytest.fixture(scope="module", autouse=True)
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("toy_coco")
    register_toy_coco(root, num_train=2, num_val=1, image_size=96)
    return root


def load_yaml(path: Path, *opts: str):
    cfg = add_resnest_config(get_cfg())
    cfg.merge_from_file(str(path))
    cfg.merge_from_list(list(opts))
    return cfg


def imagenet_state(variant: str, seed: int = 0) -> Dict[str, torch.Tensor]:
    """A stand-in for a published ImageNet file: random weights, random norm statistics, the 1000-class head."""
    torch.manual_seed(seed)
    return randomize_norms(rb.create_model(variant, num_classes=1000), seed=seed).state_dict()


def assert_backbone_equals(backbone: nn.Module, state: Dict[str, torch.Tensor]) -> None:
    """Every tensor of the ImageNet file (but its classifier) is in the backbone, and every backbone tensor but
    the deformable convs' offset predictors (in no ImageNet file) came from the file."""
    ours = backbone.state_dict()
    expected = {k: v for k, v in state.items() if not k.startswith("fc.") and k in ours}
    assert [k for k in state if not k.startswith("fc.") and k not in ours and "num_batches_tracked" not in k] == []
    assert [k for k in ours if k not in expected and "conv_offset" not in k] == []
    different = [k for k, v in expected.items() if not torch.equal(ours[k], v)]
    assert different == [], different[:5]


# ------------------------------------------------------------------------------- ImageNet weights
@pytest.fixture()
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """torch hub's cache in a temporary folder; any download other than file:// fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    def download(url: str, dst: str, *args, **kwargs) -> None:
        assert url.startswith("file://"), f"tests never use the network, but {url} was requested"
        _DOWNLOAD(url, dst, *args, **kwargs)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    return Path(torch.hub.get_dir()) / "checkpoints"


@pytest.mark.parametrize("use_checkpointer", [True, False], ids=["init_checkpoint-empty", "no-checkpointer"])
def test_lazyconfig_flow_of_detectron2_tool_starts_from_imagenet(offline_hub: Path, tmp_path: Path,
                                                                 use_checkpointer: bool) -> None:
    """What detectron2's tools/lazyconfig_train_net.py does, with the weights' URL pointing at a local file."""
    state = imagenet_state("resnest50d")
    torch.save(state, tmp_path / "resnest50_imagenet.pth")
    cfg = LazyConfig.load(str(ROOT / "COCO-Detection" / "faster_rcnn_S50_FPN_1x.py"))
    cfg.model.backbone.bottom_up.weights = (tmp_path / "resnest50_imagenet.pth").as_uri()
    model = instantiate(cfg.model)
    if use_checkpointer:
        DetectionCheckpointer(model).load(cfg.train.init_checkpoint)
    assert_backbone_equals(model.backbone.bottom_up, state)
    assert (offline_hub / "resnest50_imagenet.pth").is_file()  # downloaded into torch hub's cache, once


@pytest.fixture(scope="module")
def published_home(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, Dict[str, Dict[str, torch.Tensor]]]:
    """A torch home whose hub cache holds stand-ins for the official ImageNet files under their published names."""
    home = tmp_path_factory.mktemp("torch_home")
    files = {"resnest50-528c19ca.pth": "resnest50d", "resnest101-22405ba7.pth": "resnest101e",
             "resnest200-75117900.pth": "resnest200e"}
    (home / "hub" / "checkpoints").mkdir(parents=True)
    states = {}
    for seed, (name, variant) in enumerate(files.items()):
        states[name] = imagenet_state(variant, seed)
        torch.save(states[name], home / "hub" / "checkpoints" / name)
    return home, states


@pytest.fixture()
def published_files(published_home, monkeypatch: pytest.MonkeyPatch) -> Tuple[Dict[str, Dict[str, torch.Tensor]],
                                                                             List[str]]:
    """``(states by file name, names whose hash check was asked for)``: the stand-ins are in torch hub's cache;
    their hash check (which random stand-ins cannot pass) is recorded instead of made; no download happens."""
    home, states = published_home
    monkeypatch.setenv("TORCH_HOME", str(home))
    checked: List[str] = []
    monkeypatch.setattr(rb_hub, "verify_hash", lambda path: checked.append(Path(path).name))

    def no_network(url: str, *args, **kwargs) -> None:
        raise AssertionError(f"tests never use the network, but {url} was requested")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return states, checked


@pytest.mark.parametrize("path", LEAVES, ids=lambda p: p.stem)
def test_yaml_config_weights_reach_the_backbone(path: Path, published_files) -> None:
    """build_model alone (so any trainer, detectron2's DefaultTrainer included) loads the file the config names."""
    states, checked = published_files
    cfg = load_yaml(path, "MODEL.DEVICE", "cpu")
    name = cfg.MODEL.RESNEST.WEIGHTS.rsplit("/", 1)[-1]
    assert cfg.MODEL.WEIGHTS == "" and name in states
    model = build_model(cfg)
    assert_backbone_equals(model.backbone.bottom_up, states[name])
    assert checked == [name]


@pytest.mark.parametrize("path", LAZY, ids=lambda p: p.stem)
def test_lazy_config_weights_reach_the_backbone(path: Path, published_files) -> None:
    states, checked = published_files
    cfg = LazyConfig.load(str(path))
    name = cfg.model.backbone.bottom_up.weights.rsplit("/", 1)[-1]
    assert cfg.train.init_checkpoint == "" and name in states
    model = instantiate(cfg.model)
    DetectionCheckpointer(model).load(cfg.train.init_checkpoint)  # as lazyconfig_train_net.py does
    assert_backbone_equals(model.backbone.bottom_up, states[name])
    assert checked == [name]


def test_detectron2s_own_get_cfg_cannot_read_the_yaml_configs() -> None:
    """Documented: yacs configs need add_resnest_config (tools/train_net.py); detectron2's own train_net.py fails
    at once, naming the key, instead of training something else."""
    with pytest.raises(KeyError, match="MODEL.RESNEST"):
        get_cfg().merge_from_file(str(ROOT / "COCO-Detection" / "faster_rcnn_S50_FPN_1x.yaml"))


def test_weights_that_do_not_fit_are_an_error(tmp_path: Path) -> None:
    state = imagenet_state("resnest14d")
    torch.save({k: v for k, v in state.items() if not k.startswith("layer3.")}, tmp_path / "partial.pth")
    with pytest.raises(rb.CheckpointError, match="missing"):
        build_model(load_yaml(TOY, "MODEL.DEVICE", "cpu", "MODEL.RESNEST.WEIGHTS", str(tmp_path / "partial.pth")))
    with pytest.raises(rb.CheckpointError, match="does not exist"):
        build_model(load_yaml(TOY, "MODEL.DEVICE", "cpu", "MODEL.RESNEST.WEIGHTS", str(tmp_path / "absent.pth")))


def _run_train_net(args: List[str], data_root: Path) -> str:
    env = {"RESNEST_TOY_COCO": str(data_root), "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    return run_tool([REPO / "tools" / "train_net.py", *args], env=env, timeout=900)


def _final_backbone(out: Path) -> Dict[str, torch.Tensor]:
    model = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)["model"]
    prefix = "backbone.bottom_up."
    return {k[len(prefix):]: v for k, v in model.items() if k.startswith(prefix)}


@pytest.mark.parametrize("kind", ["yacs", "lazy"])
def test_train_net_starts_from_the_imagenet_weights(kind: str, tmp_path: Path, toy_data: Path) -> None:
    """tools/train_net.py, one iteration at learning rate 0 with every backbone norm frozen: the saved model's
    backbone is the ImageNet file (a file:// URL), tensor for tensor."""
    out = tmp_path / "out"
    if kind == "yacs":
        state = imagenet_state("resnest14d")
        torch.save(state, tmp_path / "resnest14d_imagenet.pth")
        args = ["--config-file", str(TOY), "OUTPUT_DIR", str(out), "MODEL.RESNEST.WEIGHTS",
                (tmp_path / "resnest14d_imagenet.pth").as_uri(), "MODEL.BACKBONE.FREEZE_AT", "5",
                "SOLVER.BASE_LR", "0.0", "SOLVER.MAX_ITER", "1", "SOLVER.IMS_PER_BATCH", "2",
                "TEST.PRECISE_BN.ENABLED", "False"]
    else:
        state = imagenet_state("resnest50d")
        torch.save(state, tmp_path / "resnest50_imagenet.pth")
        args = ["--config-file", str(ROOT / "COCO-Detection" / "faster_rcnn_S50_FPN_1x.py"),
                f"model.backbone.bottom_up.weights={(tmp_path / 'resnest50_imagenet.pth').as_uri()}",
                "model.backbone.bottom_up.freeze_at=5", "optimizer.lr=0.0", "train.max_iter=1",
                f"train.output_dir={out}", "train.precise_bn.enabled=False", "model.roi_heads.num_classes=3",
                "dataloader.train.dataset.names=toy_coco_train", "dataloader.test.dataset.names=toy_coco_val",
                "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0",
                "dataloader.test.num_workers=0",
                "dataloader.train.mapper.augmentations.0.short_edge_length=[96,96]",
                "dataloader.train.mapper.augmentations.0.max_size=96",
                "dataloader.test.mapper.augmentations.0.short_edge_length=96",
                "dataloader.test.mapper.augmentations.0.max_size=96",
                "model.proposal_generator.pre_nms_topk=[200,100]", "model.proposal_generator.post_nms_topk=[64,32]",
                "model.roi_heads.batch_size_per_image=32"]
    _run_train_net(args, toy_data)
    saved = _final_backbone(out)
    expected = {k: v for k, v in state.items() if not k.startswith("fc.") and k in saved}
    assert [k for k in state if not k.startswith("fc.") and "num_batches" not in k and k not in saved] == []
    assert [k for k, v in expected.items() if not torch.equal(saved[k], v)] == []


# --------------------------------------------------------------- official wrapper's whole models
def randomize_all_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random affine parameters and statistics in every norm, detectron2's FrozenBatchNorm2d included."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            stats = getattr(module, "running_var", None)
            if isinstance(stats, torch.Tensor) and getattr(module, "weight", None) is not None:
                n = stats.numel()
                scale = 0.1 if name.endswith("bn3") else 1.0
                module.weight.copy_((torch.rand(n, generator=gen) * 0.5 + 0.75) * scale)
                module.bias.copy_(torch.randn(n, generator=gen) * 0.1)
                module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                stats.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
    return model


ZOO_BACKBONE = "backbone.bottom_up."


def to_official_zoo_layout(state: Dict[str, torch.Tensor], deform_groups: int = 1) -> Dict[str, torch.Tensor]:
    """A whole detector in the official wrapper's layout (docs/reference.md sections 1 and 4): backbone under
    ``backbone.bottom_up.`` in the wrapper's names with DCN offsets beside split attention in the official
    (grouped) shape, the rest as is."""
    prefix = ZOO_BACKBONE
    backbone = to_detectron2_wrapper({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)},
                                     deform_groups)
    return {**{k: v for k, v in state.items() if not k.startswith(prefix)},
            **{prefix + k: v for k, v in backbone.items()}}


def detect(model: nn.Module, image: torch.Tensor) -> Dict[str, torch.Tensor]:
    with torch.no_grad():
        instances = model.eval()([{"image": image, "height": 96, "width": 96}])[0]["instances"]
    return {"boxes": instances.pred_boxes.tensor, "scores": instances.scores, "classes": instances.pred_classes}


# The toy model, then one config per distinct backbone/head combination: DCNv2, cascade + mask, the S-200 3x
# configs (DCNv2 too) and Panoptic FPN; the other leaves differ from these only in depth.
# (The three S-200 cases take 50-90 s each on 2 cores, so they run with the slow tests.)
WRAPPER_CASES = [TOY, *(pytest.param(p, marks=pytest.mark.slow) if "S200" in p.stem else p for p in LEAVES
                        if p.stem.startswith(("faster_rcnn_S50_FPN_DCNv2", "cascade_mask_rcnn_S50",
                                              "cascade_mask_rcnn_S200", "panoptic")))]


@pytest.mark.parametrize("path", WRAPPER_CASES, ids=lambda p: getattr(p, "stem", None))
def test_official_zoo_layout_loads_through_every_checkpointer(path: Path, tmp_path: Path) -> None:
    cfg = load_yaml(path, *SMALL, "MODEL.RESNEST.WEIGHTS", "", "MODEL.RESNEST.NORM", "BN")
    torch.manual_seed(0)
    source = randomize_all_norms(build_model(cfg)).eval()
    dcn, groups = any(cfg.MODEL.RESNEST.DEFORM_ON_PER_STAGE), cfg.MODEL.RESNEST.DEFORM_NUM_GROUPS
    if dcn:  # offsets of about a pixel, so that a lost or misread offset conv changes features and detections
        with torch.no_grad():
            for name, p in source.named_parameters():
                if "conv_offset" in name:
                    p.normal_(0, 0.02 if name.endswith("weight") else 0.5)
    zoo = to_official_zoo_layout(source.state_dict(), groups)  # checks the official offset shapes
    assert any(".conv2_offset." in k for k in zoo) == dcn
    if dcn and cfg.MODEL.RESNEST.NAME == "resnest50d":
        assert zoo[ZOO_BACKBONE + "res3.0.conv2_offset.weight"].shape == (54, 64, 3, 3)
    # The official wrapper's backbone computed from the zoo file's tensors (support.official_d2).
    x = random_image(128, batch=1)
    with torch.no_grad():
        official = official_backbone({k[len(ZOO_BACKBONE):]: v for k, v in zoo.items() if k.startswith(ZOO_BACKBONE)},
                                     x, deform_groups=groups)
    features = list(source.backbone.bottom_up.out_features)
    official = {k: official[k] for k in features}
    torch.save({"model": zoo, "iteration": 270000}, tmp_path / "zoo.pth")
    mapper = DatasetMapper(cfg, is_train=False)
    image = mapper(copy.deepcopy(DatasetCatalog.get("toy_coco_val")[0]))["image"]
    expected = detect(source, image)
    assert len(expected["scores"]) > 0
    loaders = {
        "DetectionCheckpointer": lambda m: DetectionCheckpointer(m).load(str(tmp_path / "zoo.pth")),
        "ResNeStCheckpointer": lambda m: ResNeStCheckpointer(m).load(str(tmp_path / "zoo.pth")),
        "load_state_dict": lambda m: m.load_state_dict(
            torch.load(tmp_path / "zoo.pth", weights_only=True)["model"], strict=True),
    }
    for name, load in loaders.items():
        torch.manual_seed(1)
        model = build_model(cfg)
        load(model)
        ours, theirs = model.state_dict(), source.state_dict()
        assert [k for k in theirs if not torch.equal(ours[k], theirs[k])] == [], name
        with torch.no_grad():
            assert max_rel_diff_outputs(model.backbone.bottom_up.eval()(x), official) <= 1e-5, name
        got = detect(model, image)
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=f"{name}: {key}")


def test_official_dcn_imagenet_layout_and_partial_zoo_files(tmp_path: Path) -> None:
    """Offsets under every group count/modulation map; a wrapper file missing one offset is an error naming it."""
    for modulated, groups in [(True, 2), (False, 1), (False, 4)]:
        kwargs = dict(deform_stages=[False, True, True, True], deform_modulated=modulated, deform_groups=groups)
        source = rb.create_model("resnest14d", **kwargs)
        with torch.no_grad():
            for p in source.parameters():
                p.normal_()
        wrapper = to_detectron2_wrapper(source.state_dict(), groups)
        target = rb.create_model("resnest14d", **kwargs)
        report = rb.load_checkpoint(target, wrapper)
        assert not report.initialised and report.ok
        assert all(torch.equal(target.state_dict()[k], v) for k, v in source.state_dict().items())
        target = rb.create_model("resnest14d", **kwargs)
        target.load_state_dict(wrapper)  # the module's own pre-hook
        assert all(torch.equal(target.state_dict()[k], v) for k, v in source.state_dict().items())
    wrapper.pop("res4.0.conv2_offset.weight")
    with pytest.raises(RuntimeError, match=r"layer3\.0\.conv2\.conv\.conv_offset\.weight"):
        rb.create_model("resnest14d", **kwargs).load_state_dict(wrapper, strict=False)


# ----------------------------------------------------------------------------- safety and strictness
class _WritesMarker:
    """Unpickled unsafely, this object's ``__reduce__`` writes a marker file (stands in for any code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def _malicious_files(tmp_path: Path) -> Dict[str, Path]:
    marker = tmp_path / "marker"
    torch.save({"model": {"backbone.bottom_up.conv1.0.weight": torch.zeros(1), "evil": _WritesMarker(marker)}},
               tmp_path / "evil.pth")
    with open(tmp_path / "evil.pkl", "wb") as handle:  # detectron2's .pkl format: numpy arrays
        pickle.dump({"model": {"backbone.bottom_up.conv1.0.weight": np.zeros(1, np.float32),
                               "evil": _WritesMarker(marker)}, "__author__": "someone"}, handle)
    return {"pth": tmp_path / "evil.pth", "pkl": tmp_path / "evil.pkl"}


@pytest.mark.parametrize("suffix", ["pth", "pkl"])
def test_malicious_checkpoint_is_refused_and_runs_nothing(suffix: str, tmp_path: Path) -> None:
    path = _malicious_files(tmp_path)[suffix]
    model = build_model(load_yaml(TOY, "MODEL.DEVICE", "cpu"))
    with pytest.raises(rb.CheckpointError, match="refused to load .*exec"):
        ResNeStCheckpointer(model).load(str(path))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "last_checkpoint").write_text(f"../{path.name}")  # resume reads it the same way
    with pytest.raises(rb.CheckpointError, match="refused to load"):
        ResNeStCheckpointer(model, save_dir=str(tmp_path / "out")).resume_or_load("", resume=True)
    assert not (tmp_path / "marker").exists()


def test_train_net_refuses_a_malicious_checkpoint(tmp_path: Path, toy_data: Path) -> None:
    path = _malicious_files(tmp_path)["pth"]
    proc = run_python([REPO / "tools" / "train_net.py", "--config-file", TOY, "--eval-only", "OUTPUT_DIR",
                       tmp_path / "out", "MODEL.WEIGHTS", path],
                      env=dict(RESNEST_TOY_COCO=str(toy_data), CUDA_VISIBLE_DEVICES=""), timeout=600, check=False)
    assert proc.returncode != 0 and "[train_net] error: refused to load" in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr  # the message says what to do
    assert not (tmp_path / "marker").exists()


def test_whole_model_checkpoint_covering_the_backbone_in_part_is_an_error(tmp_path: Path) -> None:
    model = build_model(load_yaml(TOY, "MODEL.DEVICE", "cpu"))
    state = model.state_dict()
    partial = {k: v for k, v in state.items() if not k.startswith("backbone.bottom_up.layer3.")}
    torch.save({"model": partial}, tmp_path / "partial.pth")
    with pytest.raises(rb.CheckpointError, match=r"missing \(backbone\.bottom_up\.layer3\.0\."):
        ResNeStCheckpointer(model).load(str(tmp_path / "partial.pth"))
    extra = dict(state, **{"backbone.bottom_up.layer1.0.conv2.extra": torch.zeros(1)})
    torch.save({"model": extra}, tmp_path / "extra.pth")
    with pytest.raises(rb.CheckpointError, match=r"unexpected \(backbone\.bottom_up\.layer1\.0\.conv2\.extra"):
        ResNeStCheckpointer(model).load(str(tmp_path / "extra.pth"))
    wrapper = to_official_zoo_layout(state)
    torch.save({"model": {k: v for k, v in wrapper.items() if not k.startswith("backbone.bottom_up.res4.")}},
               tmp_path / "partial_zoo.pth")
    with pytest.raises(rb.CheckpointError, match=r"layer3\.0\.conv1\.weight"):
        ResNeStCheckpointer(model).load(str(tmp_path / "partial_zoo.pth"))


def test_detectron2_training_checkpoints_resume_with_the_safe_loader(tmp_path: Path) -> None:
    """What detectron2's DefaultTrainer saves (model, optimizer, scheduler, hooks, iteration) reads back with
    weights_only=True: resuming needs no unsafe unpickling."""
    cfg = load_yaml(TOY, "MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(tmp_path), "SOLVER.IMS_PER_BATCH", "2",
                    "DATALOADER.NUM_WORKERS", "0")
    trainer = DefaultTrainer(cfg)
    trainer.iter = 7
    trainer.checkpointer.save("model_0000007", iteration=7)
    fresh = DefaultTrainer(cfg)
    checkpointer = ResNeStCheckpointer(fresh.model, str(tmp_path), trainer=fresh)
    extra = checkpointer.resume_or_load("", resume=True)
    assert extra["iteration"] == 7 and fresh.iter == 7
    theirs = trainer.model.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in fresh.model.state_dict().items())


def test_train_net_eval_only_of_a_whole_model_skips_imagenet_and_runs_tta(tmp_path: Path, toy_data: Path) -> None:
    """--eval-only MODEL.WEIGHTS <whole model>: the backbone's ImageNet file is not needed (here it does not even
    exist), and TEST.AUG.ENABLED (the Panoptic FPN 3x recipe) adds detectron2's test-time augmentation."""
    torch.manual_seed(0)
    DetectionCheckpointer(build_model(load_yaml(TOY, "MODEL.DEVICE", "cpu")), save_dir=str(tmp_path)).save("trained")
    log = _run_train_net(["--config-file", str(TOY), "--eval-only", "OUTPUT_DIR", str(tmp_path / "out"),
                          "MODEL.WEIGHTS", str(tmp_path / "trained.pth"), "MODEL.RESNEST.WEIGHTS",
                          str(tmp_path / "absent-imagenet.pth"), "TEST.AUG.ENABLED", "True", "TEST.AUG.MIN_SIZES",
                          "(96, 128)", "TEST.AUG.MAX_SIZE", "256"], toy_data)
    assert "the backbone's ImageNet weights are not loaded first" in log
    assert "Running inference with test-time augmentation" in log
    assert (tmp_path / "out" / "inference_TTA" / "toy_coco_val" / "coco_instances_results.json").is_file()


def test_train_net_evaluates_panoptic_data_sets_with_the_panoptic_evaluators(tmp_path: Path) -> None:
    """A data set of detectron2's "coco_panoptic_seg" type (coco_2017_val_panoptic_separated) gets PQ, mIoU and
    COCO AP; TTA only the COCO AP (it augments instances only). Construction only: scoring needs panopticapi."""
    from detectron2.data import MetadataCatalog
    from detectron2.evaluation import COCOEvaluator, COCOPanopticEvaluator, DatasetEvaluators, SemSegEvaluator

    from resnest_backbones.detectron2.engine import Trainer  # what tools/train_net.py runs
    DatasetCatalog.get("toy_coco_val")  # makes the toy files, whose instances json the fake panoptic set reuses
    name = "toy_panoptic_separated_for_test"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: [])
        MetadataCatalog.get(name).set(
            evaluator_type="coco_panoptic_seg", json_file=MetadataCatalog.get("toy_coco_val").json_file,
            stuff_classes=["things", "background"], ignore_label=255, thing_dataset_id_to_contiguous_id={1: 0},
            stuff_dataset_id_to_contiguous_id={0: 0, 2: 1})
    cfg = load_yaml(ROOT / "toy" / "panoptic_fpn_toy.yaml", "OUTPUT_DIR", str(tmp_path))
    evaluator = Trainer.build_evaluator(cfg, name)
    assert isinstance(evaluator, DatasetEvaluators)
    assert [type(e) for e in evaluator._evaluators] == [SemSegEvaluator, COCOEvaluator, COCOPanopticEvaluator]
    assert isinstance(Trainer.build_evaluator(cfg, name, str(tmp_path / "tta"), True), COCOEvaluator)
    assert isinstance(Trainer.build_evaluator(cfg, "toy_coco_val"), COCOEvaluator)
