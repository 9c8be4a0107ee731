"""configs/mmdet: the eight models equal mmdet's own configs/resnest/* (as bundled in the installed mmdet 3.3.0)
key by key, except the backbone, whose own arguments are checked to describe the same network."""
from __future__ import annotations

import pytest
from support.frameworks import require

pytestmark = require("mmdet")  # a visible skip without mmdet, before its imports below

from mmengine.config import Config  # noqa: E402
from support.detection_models import OURS, PAIRS, Pair, config_leaves, mmdet_config_dir  # noqa: E402

from resnest_backbones.models import variant_kwargs  # noqa: E402

#: The top-level keys of mmdet's configs, all compared leaf by leaf (``model`` without its ``backbone``).
COMPARED = ("auto_scale_lr", "backend_args", "data_root", "dataset_type", "default_hooks", "default_scope",
            "env_cfg", "load_from", "log_level", "log_processor", "model", "norm_cfg", "optim_wrapper",
            "param_scheduler", "resume", "test_cfg", "test_dataloader", "test_evaluator", "test_pipeline",
            "train_cfg", "train_dataloader", "train_pipeline", "val_cfg", "val_dataloader", "val_evaluator",
            "vis_backends", "visualizer")
#: Ours only: the import of the adapter and the shared backbone definition (configs/mmdet/_base_).
OURS_ONLY = ("custom_imports", "checkpoint_file", "resnest_backbone")
#: mmdet's ResNeSt (depth, stem_channels) -> our variant.
VARIANTS = {(50, 64): "resnest50d", (101, 128): "resnest101e"}
LAYERS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
#: open-mmlab:// names -> the URLs mmengine resolves them to (mmengine/hub/openmmlab.json), served by OpenMMLab.
OPENMMLAB_FILES = {"open-mmlab://resnest50": "https://download.openmmlab.com/pretrain/third_party/resnest50_d2-7497a55b.pth",
                   "open-mmlab://resnest101":
                       "https://download.openmmlab.com/pretrain/third_party/resnest101_d2-f3b931b2.pth"}


def _configs(pair: Pair) -> tuple:
    return (Config.fromfile(str(OURS / pair.ours)).to_dict(),
            Config.fromfile(str(mmdet_config_dir() / pair.theirs)).to_dict())


@pytest.mark.parametrize("pair", PAIRS, ids=[p.ours.split("_fpn")[0] for p in PAIRS])
def test_every_key_but_the_backbone_equals_mmdet(pair: Pair) -> None:
    ours, theirs = _configs(pair)
    assert sorted(theirs) == sorted(COMPARED)
    assert sorted(ours) == sorted(COMPARED + OURS_ONLY)
    for cfg in (ours, theirs):
        for key in OURS_ONLY:
            cfg.pop(key, None)
        cfg["model"].pop("backbone")
    flat_ours, flat_theirs = config_leaves(ours), config_leaves(theirs)
    assert len(flat_theirs) > 250  # heads, pipelines, schedules...: the whole config, not a summary of it
    differing = sorted(k for k in set(flat_ours) | set(flat_theirs) if flat_ours.get(k, "<absent>") !=
                       flat_theirs.get(k, "<absent>"))
    assert not differing, [(k, flat_ours.get(k, "<absent>"), flat_theirs.get(k, "<absent>")) for k in differing]
    # the recipe facts of docs/reference.md section 4, as these keys hold them
    assert flat_ours["model.roi_head.bbox_head.type" if "cascade" not in pair.ours else
                     "model.roi_head.bbox_head.0.type"] == "Shared4Conv1FCBBoxHead"
    assert ours["model"]["data_preprocessor"]["mean"] == [123.68, 116.779, 103.939]
    assert ours["train_cfg"]["max_epochs"] == 12


@pytest.mark.parametrize("pair", PAIRS, ids=[p.ours.split("_fpn")[0] for p in PAIRS])
def test_backbone_arguments_describe_mmdets_network(pair: Pair) -> None:
    ours, theirs = (cfg["model"]["backbone"] for cfg in _configs(pair))
    assert theirs["type"] == "ResNeSt" and ours["type"] == "resnest_backbones.ResNeSt"
    variant = VARIANTS[(theirs["depth"], theirs["stem_channels"])]
    assert ours["variant"] == variant
    network = variant_kwargs(variant)
    assert network["layers"] == LAYERS[theirs["depth"]] and 2 * network["stem_width"] == theirs["stem_channels"]
    assert (network["radix"], network["cardinality"], network["bottleneck_width"]) == (theirs["radix"], 1, 64)
    assert network["avd"] == theirs["avg_down_stride"] and not network["avd_first"]  # AVD after the attention
    assert (theirs["reduction_factor"], theirs["num_stages"], theirs["style"]) == (4, 4, "pytorch")  # ours fixed
    for key in ("out_indices", "frozen_stages", "norm_cfg", "norm_eval"):
        assert ours[key] == theirs[key], key
    assert ours["init_cfg"] == dict(type="Pretrained", checkpoint=OPENMMLAB_FILES[theirs["init_cfg"]["checkpoint"]])
    assert theirs["init_cfg"]["type"] == "Pretrained"


def test_openmmlab_names_resolve_to_the_files_we_use() -> None:
    """mmengine's own table maps open-mmlab://resnest50/101 to the URLs our configs name."""
    from mmengine.runner.checkpoint import get_external_models

    table = get_external_models()
    for name, url in OPENMMLAB_FILES.items():
        assert table[name[len("open-mmlab://"):]] == url
