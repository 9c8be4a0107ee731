"""Configs by name (resnest_backbones.config_file): in the checkout, in the tools, and inside the built wheel --
every config is packaged and loads from an installed copy outside the checkout, and detectron2's train_net.py
trains from a packaged name there."""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from support import REPO_ROOT

import resnest_backbones as rb
from resnest_backbones.config_files import resolve_config
from resnest_backbones.predict import detect_framework

CONFIGS = REPO_ROOT / "configs"
TOY_ADE = "mmseg/toy/deeplabv3_resnest14d-d8_toy-ade.py"


def test_every_config_has_a_name_that_finds_it() -> None:
    on_disk = sorted(p.relative_to(CONFIGS).as_posix() for p in CONFIGS.rglob("*") if p.suffix in (".py", ".yaml"))
    assert rb.list_configs() == on_disk and len(on_disk) > 40
    assert all(Path(rb.config_file(name)) == CONFIGS / name for name in on_disk)
    assert rb.config_file(f"configs/{TOY_ADE}") == str(CONFIGS / TOY_ADE)  # the repository path works too
    assert resolve_config(CONFIGS / TOY_ADE) == str(CONFIGS / TOY_ADE)  # an existing file stays itself


def test_unknown_name_says_what_it_may_have_meant() -> None:
    with pytest.raises(FileNotFoundError, match=r"did you mean detectron2/COCO-Detection/faster_rcnn_S50_FPN_1x\.yaml"):
        rb.config_file("detectron2/COCO-Detection/faster_rcnn_S50_FPN_1.yaml")
    with pytest.raises(FileNotFoundError, match="neither a config file nor a packaged config name"):
        resolve_config("no/such/config.py")


@pytest.mark.mmseg
def test_tools_take_a_name() -> None:
    from resnest_backbones.openmmlab.cli import load_config

    assert detect_framework(TOY_ADE) == "mmseg"
    assert detect_framework("detectron2/toy/faster_rcnn_toy.yaml") == "detectron2"
    args = argparse.Namespace(config=TOY_ADE, cfg_options=None, work_dir=None, launcher="none", local_rank=0)
    cfg = load_config(args, "test")
    assert cfg.model.backbone.variant == "resnest14d" and args.config == str(CONFIGS / TOY_ADE)
    assert cfg.work_dir.endswith("deeplabv3_resnest14d-d8_toy-ade")


#: Loads every packaged config the way its framework does, from an installed copy; prints one line per config.
LOAD_ALL = """
import sys
from pathlib import Path
import resnest_backbones as rb
site = Path(sys.argv[1]).resolve()
assert Path(rb.__file__).resolve().is_relative_to(site), rb.__file__
for name in rb.list_configs():
    path = rb.config_file(name)
    assert Path(path).resolve().is_relative_to(site), path
    if name.startswith("detectron2/"):
        from resnest_backbones.detectron2.config import load_config
        load_config(name)
    else:
        from mmengine.config import Config
        Config.fromfile(path)
    print("loaded", name)
"""


@pytest.mark.detectron2
@pytest.mark.mmseg
@pytest.mark.mmdet
def test_wheel_ships_every_config_and_an_installed_copy_runs_them(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: building must not write into the checkout others are testing in
    source.mkdir()
    for part in ("setup.py", "README.md", "resnest_backbones", "configs"):
        copy = shutil.copytree if (REPO_ROOT / part).is_dir() else shutil.copy2
        copy(REPO_ROOT / part, source / part, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                                 if copy is shutil.copytree else {}))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)],
                   check=True, cwd=tmp_path, timeout=300)
    wheel = next((tmp_path / "dist").glob("resnest_backbones-*.whl"))
    packaged = sorted(name[len("resnest_backbones/configs/"):] for name in zipfile.ZipFile(wheel).namelist()
                      if name.startswith("resnest_backbones/configs/"))
    assert packaged == rb.list_configs()
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, timeout=300)
    outside = tmp_path / "elsewhere"  # neither the checkout nor its parent
    (outside / "tools").mkdir(parents=True)
    env = {"PYTHONPATH": str(site), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin",
           "RESNEST_TOY_COCO": str(tmp_path / "toy_coco"), "HOME": str(tmp_path)}
    loaded = subprocess.run([sys.executable, "-c", LOAD_ALL, str(site)], cwd=outside, env=env, capture_output=True,
                            text=True, timeout=600)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.count("loaded ") == len(packaged)
    # detectron2's entry point, as a user who installed the wheel runs it: a packaged name, no checkout anywhere
    shutil.copy2(REPO_ROOT / "tools" / "train_net.py", outside / "tools" / "train_net.py")
    run = subprocess.run([sys.executable, "tools/train_net.py", "--config-file", "detectron2/toy/faster_rcnn_toy.yaml",
                          "OUTPUT_DIR", str(tmp_path / "out"), "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2",
                          "TEST.PRECISE_BN.ENABLED", "False", "DATASETS.TEST", "()"],
                         cwd=outside, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert (tmp_path / "out" / "model_final.pth").is_file()
    assert str(site / "resnest_backbones" / "configs" / "detectron2" / "toy") in run.stdout + run.stderr

