"""SyncBN with the memory-saving modules on a CUDA device, in one process (docs/gpu.md).

``torch.nn.SyncBatchNorm`` asks for a process group: each test here runs under a default group of this one
process (NCCL when available, else gloo; ``file://`` rendezvous in a temporary directory; destroyed at the end of
the module). There:

* torch's ``SyncBatchNorm`` (what every SyncBN config builds on GPUs) computes plain batch norm, and the ops take
  its CUDA branch (``choose_torch_sync``): the memory-saving modules against the reference modules, every
  precision, both memory formats, as in test_gpu_modules.py;
* this package's ``SyncBatchNorm``, made to synchronise (its group size reported as 2, so the reference runs its
  all-reduce forward and the ops their synchronising kernel, ``SyncBatchNormKernel``; the all-reduces over the one
  real process are sums of one term): the synchronising kernel's CUDA arithmetic against the reference module.

2 real processes (statistics over the combined batch) are covered on the CPU by tests/accel/test_accel_sync.py.
Every test needs CUDA (marker ``gpu``).
"""
from __future__ import annotations

from typing import Iterator

import gpu_support as gs
import pytest
import torch
import torch.distributed as dist
from torch import nn

from resnest_backbones.accel.norms import LOCAL, SyncBatchNormKernel, kernel_for
from resnest_backbones.layers import SyncBatchNorm

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")]

CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def process_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not torch.cuda.is_available():  # (tests/conftest.py skips the tests first; a fixture must not fail instead)
        pytest.skip("no CUDA device")
    torch.cuda.set_device(0)
    with gs.one_process_group(tmp_path_factory.mktemp("process_group")) as backend:
        yield backend


@pytest.mark.parametrize("fmt", list(gs.FORMATS))
@pytest.mark.parametrize("precision", gs.PRECISIONS)
def test_torch_sync_bn_in_one_process_on_cuda(process_group: str, precision: str, fmt: str) -> None:
    reference, fast, truth = gs.models_to_compare("resnest14d", precision, fmt, CUDA, norm_layer=nn.SyncBatchNorm)
    norm = fast.layer1[0].bn1
    assert isinstance(norm, nn.SyncBatchNorm) and dist.get_world_size() == 1
    x = torch.zeros(2, norm.num_features, 2, 2, device=CUDA, requires_grad=True)
    assert kernel_for(norm, x) == LOCAL  # a CUDA input under a one-process group: plain batch norm, through the ops
    gs.compare_training_steps(reference, fast, truth, precision, fmt, CUDA)


@pytest.mark.parametrize("precision", ["float64", "float32", "bf16"])
def test_synchronising_sync_bn_kernel_on_cuda(process_group: str, precision: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The synchronising kernel (statistics in float32 at least, ``x * scale + shift``, the gradient sums
    all-reduced in backward, the Gram route's batch means) on CUDA tensors. float16 is left out: the reference
    module sums float16 maps in float16 for its statistics, which is no reference to be as accurate as."""
    monkeypatch.setattr(SyncBatchNorm, "_group_size", lambda self: 2)
    reference, fast, truth = gs.models_to_compare("resnest14d", precision, "channels_last", CUDA,
                                                  norm_layer=SyncBatchNorm)
    norm = fast.layer1[0].bn1
    x = torch.zeros(2, norm.num_features, 2, 2, device=CUDA, requires_grad=True)
    assert isinstance(kernel_for(norm, x), SyncBatchNormKernel)
    gs.compare_training_steps(reference, fast, truth, precision, "channels_last", CUDA)
