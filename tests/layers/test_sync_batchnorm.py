"""SyncBatchNorm on CPU under a real 2-process gloo group equals BatchNorm over the combined batch.

Two processes each normalise their own half of a batch (different sizes, to exercise the counts), with the
layer inside DistributedDataParallel as the frameworks' trainers run it (DDP refuses CPU models holding a
``torch.nn.SyncBatchNorm``); the output slices, the input gradients, the weight gradients and the running
statistics must equal a plain BatchNorm2d that sees the whole batch in one process.
"""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from resnest_backbones.distributed import sync_on_cpu
from resnest_backbones.layers.sync_batchnorm import SyncBatchNorm

SIZES = (3, 5)  # per-rank batch sizes
CHANNELS = 6


def _data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(sum(SIZES), CHANNELS, 4, 5, generator=gen) * 3 + 1
    upstream = torch.randn(x.shape, generator=gen)  # d(loss)/d(out)
    return x, upstream


def _reference_bn() -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(CHANNELS, momentum=0.3)
    with torch.no_grad():
        bn.weight.copy_(torch.linspace(0.5, 1.5, CHANNELS))
        bn.bias.copy_(torch.linspace(-0.2, 0.2, CHANNELS))
    return bn


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        x, upstream = _data()
        lo = sum(SIZES[:rank])
        x = x[lo:lo + SIZES[rank]].clone().requires_grad_(True)
        bn = SyncBatchNorm.convert_sync_batchnorm(_reference_bn()).train()
        ddp = DistributedDataParallel(bn, broadcast_buffers=False)
        for _ in range(2):  # two steps: running statistics accumulate
            out = ddp(x)
        (out * upstream[lo:lo + SIZES[rank]]).sum().backward()
        grads = torch.cat([bn.weight.grad, bn.bias.grad]) * 2  # DDP averages; the one-process loss is the sum
        torch.save({"out": out.detach(), "x_grad": x.grad, "param_grad": grads,
                    "running_mean": bn.running_mean, "running_var": bn.running_var},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_process_cpu_sync_bn_equals_combined_batch(tmp_path) -> None:
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    x, upstream = _data()
    x.requires_grad_(True)
    bn = _reference_bn().train()
    for _ in range(2):
        out = bn(x)
    (out * upstream).sum().backward()
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    torch.testing.assert_close(torch.cat([r["out"] for r in results]), out.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat([r["x_grad"] for r in results]), x.grad, rtol=1e-5, atol=1e-5)
    for r in results:
        torch.testing.assert_close(r["param_grad"], torch.cat([bn.weight.grad, bn.bias.grad]), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(r["running_mean"], bn.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(r["running_var"], bn.running_var, rtol=1e-5, atol=1e-6)


def test_single_process_is_plain_batch_norm() -> None:
    x, _ = _data()
    ref, sync = _reference_bn().train(), SyncBatchNorm.convert_sync_batchnorm(_reference_bn()).train()
    assert not isinstance(sync, nn.SyncBatchNorm)  # DDP would refuse it on CPU
    torch.testing.assert_close(sync(x), ref(x))
    torch.testing.assert_close(sync.running_var, ref.running_var)


def test_convert_only_torch_sync_bn_sharing_tensors() -> None:
    """What the tools do for CPU processes: the config's SyncBN layers are swapped, plain BN layers are not, and
    the new layers use the very same parameters and statistics (an optimiser built before stays valid)."""
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.SyncBatchNorm(4), nn.BatchNorm2d(4)).eval()
    weight, running_mean = model[1].weight, model[1].running_mean
    assert sync_on_cpu(model).startswith("1 SyncBN layers run as resnest_backbones.layers.SyncBatchNorm")
    assert type(model[1]) is SyncBatchNorm and type(model[2]) is nn.BatchNorm2d
    assert model[1].weight is weight and model[1].running_mean is running_mean and not model[1].training
    assert sync_on_cpu(model, every_batchnorm=True).startswith("2 SyncBN layers")  # a config's sync_bn option
    assert type(model[2]) is SyncBatchNorm
