"""Shared test helpers (imported by the test modules; no fixtures with side effects)."""
from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from resnest_backbones.layers.stem import CONV_A, CONV_B, CONV_C, NORM_A, NORM_B, STEM_INDICES, stem_key


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


# Foreign checkpoint layouts, written from the official keys as docs/reference.md section 1 (key layouts) has them,
# independently of the package's converter (so the converter is tested against them, not against itself).
_D2_STEM = {stem_key(CONV_A): "stem.conv1_1.", stem_key(NORM_A): "stem.conv1_1.norm.",
            stem_key(CONV_B): "stem.conv1_2.", stem_key(NORM_B): "stem.conv1_2.norm.",
            stem_key(CONV_C): "stem.conv1_3.", "bn1.": "stem.conv1_3.norm."}
# OpenMMLab's stem Sequential uses the same child indices and holds the network's bn1 as its 8th layer.
_MMLAB_STEM = {**{stem_key(i): f"stem.{i}." for i in STEM_INDICES}, "bn1.": "stem.7."}


def _rename(state: dict, stem: dict, block_key, skip=lambda key: False) -> dict:
    """Rename stem keys by prefix table and every other key with ``block_key(key)``; drop the classifier."""
    out = {}
    for key, value in state.items():
        if skip(key) or key.startswith("fc."):
            continue
        prefix = next((old for old in stem if key.startswith(old)), None)
        out[stem[prefix] + key[len(prefix):] if prefix else block_key(key)] = value
    return out


def to_detectron2_wrapper(state: dict) -> dict:
    """Official keys -> the official detectron2 wrapper's keys (bare; FrozenBN: no num_batches_tracked).

    Only the block's own norms are renamed (``layerN.i.bn1`` -> ``resM.i.conv1.norm``); split attention keeps
    ``conv2.bn0``/``conv2.bn1`` in that format.
    """
    def block_key(key: str) -> str:
        key = re.sub(r"^layer(\d)\.", lambda m: f"res{int(m.group(1)) + 1}.", key)
        key = re.sub(r"^(res\d\.\d+)\.bn([13])\.", r"\1.conv\2.norm.", key)
        return key.replace(".downsample.1.", ".shortcut.").replace(".downsample.2.", ".shortcut.norm.")

    return _rename(state, _D2_STEM, block_key, skip=lambda key: key.endswith("num_batches_tracked"))


def to_openmmlab(state: dict, norm_abbr: str = "bn") -> dict:
    """Official keys -> mmseg/mmdet ResNeSt keys inside a full segmentor (``backbone.`` prefix, a head key)."""
    def block_key(key: str) -> str:
        key = re.sub(r"\.bn([013])\.", rf".{norm_abbr}\1.", key)
        # OpenMMLab's stride-1 shortcut (res2) has no pooling slot: conv and norm are .0 and .1
        return re.sub(r"^layer1\.0\.downsample\.([12])\.",
                      lambda m: f"layer1.0.downsample.{int(m.group(1)) - 1}.", key)

    out = {"backbone." + k: v for k, v in _rename(state, _MMLAB_STEM, block_key).items()}
    out["decode_head.conv_seg.weight"] = torch.zeros(3, 8, 1, 1)
    return out


def kill_when(command: List[str], ready: Callable[[], bool], *, cwd: Path, env: Mapping[str, str], log: Path,
              timeout: float) -> str:
    """Run ``command`` (output to ``log``) and SIGKILL it, with all its children, as soon as ``ready()`` holds.

    Fails if the command ends by itself first (the kill would then test nothing) or ``ready`` never holds
    within ``timeout`` seconds. Returns the output written before the kill.
    """
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own process group: the kill reaches data workers
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, f"ended by itself (exit {proc.returncode}) before the kill:\n" + \
                log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the kill condition never held:\n" + log.read_text()[-3000:]
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"exit {proc.returncode}, not killed:\n" + log.read_text()[-3000:]
    return log.read_text()


def file_digests(paths: List[Path]) -> Dict[Path, str]:
    """sha256 of each file, to show files written before a kill are still there, unchanged."""
    return {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}


class RunsCodeWhenUnpickled:
    """Unpickled unsafely (``pickle.load``, ``torch.load(weights_only=False)``), it creates ``marker``: a stand-in
    for whatever code a crafted checkpoint could run. Safe loaders must refuse it, and ``marker`` must never appear.
    """

    def __init__(self, marker: Path) -> None:
        self.marker = Path(marker)

    def __reduce__(self):
        return Path.touch, (self.marker,)
