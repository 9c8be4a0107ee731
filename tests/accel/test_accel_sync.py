"""The memory-saving training ops with synchronising SyncBN, under a real 2-process gloo group.

Each process holds part of one batch (different sizes, to exercise the counts). In every process:

* the ops on this package's ``SyncBatchNorm`` (and on torch's ``SyncBatchNorm``, which the ops synchronise the
  same way; torch's own forward refuses CPU tensors, so its op path is checked against ours) give the values,
  gradients, running statistics and ``num_batches_tracked`` of the reference module path;
* a whole ResNeSt with SyncBN trains like its reference modules, and keeps less for backward.

Across processes, the ops' results put together equal plain batch norm over the combined batch in one process
(outputs, input gradients, summed weight gradients, running statistics).
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Callable, Dict, List

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from support.numerics import saved_bytes, train_like_reference
from torch import Tensor, nn

import resnest_backbones as rb
from resnest_backbones.accel import memory_efficient_training, ops, reference_modules
from resnest_backbones.accel.norms import sync as sync_norms
from resnest_backbones.layers import SyncBatchNorm

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")

SIZES = (3, 5)  # per-process batch sizes
CHANNELS = 4


def _data() -> Dict[str, Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {"x": torch.randn(sum(SIZES), CHANNELS, 5, 4, generator=gen, dtype=torch.double) * 2 + 0.5,
            "probe": torch.randn(sum(SIZES), 6, 5, 4, generator=gen, dtype=torch.double),
            "conv": torch.randn(6, CHANNELS // 2, 3, 3, generator=gen, dtype=torch.double),
            "weight": torch.rand(CHANNELS, generator=gen, dtype=torch.double) + 0.5,
            "bias": torch.randn(CHANNELS, generator=gen, dtype=torch.double) * 0.1}


class _Chain(nn.Module):
    """``conv(relu(norm(x)))`` through :func:`ops.bn_relu_conv` (``fused``) or the modules."""

    def __init__(self, norm: nn.Module, fused: bool) -> None:
        super().__init__()
        data = _data()
        self.norm, self.fused = norm.double(), fused
        self.conv = nn.Conv2d(CHANNELS, 6, 3, padding=1, groups=2, bias=False).double()
        with torch.no_grad():
            self.norm.weight.copy_(data["weight"])
            self.norm.bias.copy_(data["bias"])
            self.conv.weight.copy_(data["conv"])

    def forward(self, x: Tensor) -> Tensor:
        if self.fused:
            assert ops.supports(self.norm, x)
            return ops.bn_relu_conv(x, self.norm, self.conv)
        return self.conv(torch.relu(self.norm(x)))


def _step(chain: nn.Module, x: Tensor, probe: Tensor) -> Dict[str, Tensor]:
    """Two forwards (running statistics accumulate), one backward of ``sum(out * probe)``."""
    x = x.clone().requires_grad_(True)
    out = chain(x)
    out = chain(x)
    params = list(chain.parameters())
    grads = torch.autograd.grad((out * probe).sum(), [x, *params])
    norm = chain.norm
    return {"out": out.detach(), "x_grad": grads[0], "norm_weight_grad": grads[1], "norm_bias_grad": grads[2],
            "conv_grad": grads[3], "running_mean": norm.running_mean.clone(),
            "running_var": norm.running_var.clone(), "batches": norm.num_batches_tracked.clone()}


def _model(sync: bool) -> nn.Module:
    torch.manual_seed(0)
    model = rb.create_model("resnest14d", num_classes=10, memory_efficient=False,
                            norm_layer=SyncBatchNorm if sync else nn.BatchNorm2d)
    with torch.no_grad():  # a tame deep network: small last norms of the blocks
        for name, module in model.named_modules():
            if name.endswith("bn3"):
                module.weight.mul_(0.1)
    return model.train()


def _in_process_group(rank: int, body: Callable[[int, Tensor, Tensor], Dict[str, object]], init_file: str,
                      out_dir: str) -> None:
    """What each of the two processes runs: join the gloo group, ``body(rank, x, probe)`` on this process's part
    of the batch, save what it returns."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        data = _data()
        lo, hi = sum(SIZES[:rank]), sum(SIZES[:rank + 1])
        torch.save(body(rank, data["x"][lo:hi], data["probe"][lo:hi]), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _two_processes(body: Callable[[int, Tensor, Tensor], Dict[str, object]], out: Path) -> List[Dict[str, object]]:
    """``body``'s results in each of two processes (a module-level function: the processes are spawned)."""
    mp.spawn(_in_process_group, args=(body, str(out / "init"), str(out)), nprocs=2, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


def _sync_bn_results(rank: int, x: Tensor, probe: Tensor) -> Dict[str, object]:
    results: Dict[str, object] = {}
    for name, norm in {"ours": SyncBatchNorm(CHANNELS, momentum=0.3),
                       "torch": nn.SyncBatchNorm(CHANNELS, momentum=0.3)}.items():
        if name == "torch":
            assert not ops.supports(norm.double(), x)  # CPU: torch's forward raises, the reference must run
            sync_norms._SYNC_DEVICES = ("cpu",)  # type: ignore[assignment]  # (this process only) to check the op path
        results[f"{name}_fused"] = _step(_Chain(norm, fused=True), x, probe)
        results[f"{name}_reference"] = _step(_Chain(SyncBatchNorm(CHANNELS, momentum=0.3), fused=False), x, probe)

    # A whole model: same gradients and statistics as the reference modules, less kept for backward.
    plain = _model(sync=True).double()
    fast = memory_efficient_training(copy.deepcopy(plain))
    images = torch.randn(2 + rank, 3, 64, 64, generator=torch.Generator().manual_seed(1 + rank), dtype=torch.double)
    results["model_op_calls"] = train_like_reference(fast, plain, images, buffers_rtol=1e-10)
    model, image = _model(sync=True), torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    results["saved"] = [saved_bytes(memory_efficient_training(model), image),
                        saved_bytes(reference_modules(model), image)]
    return results


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> List[Dict[str, object]]:
    return _two_processes(_sync_bn_results, tmp_path_factory.mktemp("sync"))


@pytest.mark.parametrize("norm", ["ours", "torch"])
def test_sync_ops_equal_the_reference_module_in_every_process(ranks, norm: str) -> None:
    for rank in ranks:
        fused, reference = rank[f"{norm}_fused"], rank[f"{norm}_reference"]
        for key, value in reference.items():
            # the same statistics (same all-reduces); normalising as x * scale + shift rounds differently
            torch.testing.assert_close(fused[key], value, rtol=1e-12, atol=1e-12, msg=key)
        assert int(fused["batches"]) == 2


def test_sync_ops_equal_batch_norm_over_the_combined_batch(ranks) -> None:
    data = _data()
    chain = _Chain(nn.BatchNorm2d(CHANNELS, momentum=0.3), fused=True)
    whole = _step(chain, data["x"], data["probe"])
    fused = [rank["ours_fused"] for rank in ranks]
    for key in ("out", "x_grad"):
        torch.testing.assert_close(torch.cat([r[key] for r in fused]), whole[key], rtol=1e-10, atol=1e-12)
    for key in ("norm_weight_grad", "norm_bias_grad", "conv_grad"):  # data parallelism sums (averages) these
        torch.testing.assert_close(fused[0][key] + fused[1][key], whole[key], rtol=1e-10, atol=1e-12)
    for key in ("running_mean", "running_var", "batches"):
        for r in fused:
            torch.testing.assert_close(r[key], whole[key], rtol=1e-12, atol=1e-12)


def test_sync_bn_model_trains_like_reference_and_saves_memory(ranks) -> None:
    for rank in ranks:
        assert rank["model_op_calls"] > 0, "the memory-saving path was not taken"
        fast, plain = rank["saved"]
        assert fast <= 0.85 * plain, (fast, plain)


# ------------------------------------------------------------ detectron2's NaiveSyncBatchNorm, synchronising
def _naive_sync_bn_results(rank: int, x: Tensor, probe: Tensor) -> Dict[str, object]:
    from detectron2.layers import NaiveSyncBatchNorm

    import resnest_backbones.detectron2  # noqa: F401 - the detectron2 adapter registers NaiveSyncBatchNorm's kernel

    results: Dict[str, object] = {}
    for stats_mode in ("", "N"):
        for fused, name in ((True, "fused"), (False, "reference")):
            norm = NaiveSyncBatchNorm(CHANNELS, momentum=0.3, stats_mode=stats_mode)
            results[f"{stats_mode or 'mean'}_{name}"] = _step(_Chain(norm, fused=fused), x, probe)
    return results


@pytest.fixture(scope="module")
def naive_ranks(tmp_path_factory: pytest.TempPathFactory) -> List[Dict[str, object]]:
    return _two_processes(_naive_sync_bn_results, tmp_path_factory.mktemp("naive"))


@pytest.mark.detectron2
@pytest.mark.parametrize("stats_mode", ["mean", "N"])
def test_sync_ops_equal_detectron2_naive_sync_bn(naive_ranks, stats_mode: str) -> None:
    """Synchronising, the ops compute detectron2's ``NaiveSyncBatchNorm`` (stats_mode "" and "N", batches of 3
    and 5, so the two differ): outputs, gradients and running statistics of the module itself."""
    for results in naive_ranks:
        fused, reference = results[f"{stats_mode}_fused"], results[f"{stats_mode}_reference"]
        for key, value in reference.items():
            if key != "batches":  # NaiveSyncBatchNorm does not count batches while it synchronises
                torch.testing.assert_close(fused[key], value, rtol=1e-10, atol=1e-12, msg=key)
