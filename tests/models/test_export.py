"""Export of the core: TorchScript (script and trace), ONNX through onnxruntime, and bf16 autocast training.

Split attention's reshapes and the dict of features are the usual export failures of ResNeSt; each path is
checked at output stride 32 and 8 against eager outputs.
"""
from __future__ import annotations

import pytest
import torch
from support.numerics import max_rel_diff, randomize_norms

import resnest_backbones as rb

SMALL = "resnest14d"


def _model(output_stride: int) -> rb.ResNeSt:
    torch.manual_seed(0)
    return randomize_norms(rb.create_model(SMALL, output_stride=output_stride)).eval()


def _x(batch=2, h=64, w=96):
    return torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("output_stride", [32, 8])
def test_torchscript_script_and_trace(output_stride: int) -> None:
    model, x = _model(output_stride), _x()
    with torch.no_grad():
        eager = model(x)
        scripted = torch.jit.script(model)
        traced = torch.jit.trace(model, (x,), strict=False)
        other = _x(1, 80, 64)  # scripting keeps shapes dynamic
        for key in model.out_features:
            assert max_rel_diff(scripted(x)[key], eager[key]) <= 1e-5
            assert max_rel_diff(traced(x)[key], eager[key]) <= 1e-5
            assert max_rel_diff(scripted(other)[key], model(other)[key]) <= 1e-5


@pytest.mark.parametrize("output_stride", [32, 8])
def test_onnx_runtime_matches_eager(tmp_path, output_stride: int) -> None:
    pytest.importorskip("onnx", reason="onnx is not installed (test extra)")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (test extra)")
    model, x = _model(output_stride), _x()
    path = tmp_path / "resnest.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["image"],
                      output_names=model.out_features, dynamic_axes={"image": {0: "batch", 2: "h", 3: "w"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for sample in (x, _x(1, 80, 64)):
        outputs = session.run(None, {"image": sample.numpy()})
        with torch.no_grad():
            eager = model(sample)
        for key, value in zip(model.out_features, outputs):
            assert max_rel_diff(torch.from_numpy(value), eager[key]) <= 1e-4, key


def test_bf16_autocast_training_step_is_finite() -> None:
    torch.manual_seed(0)
    model = rb.create_model(SMALL, num_classes=4).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    target = torch.tensor([0, 1, 2, 3])
    for _ in range(2):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(_x(4, 64, 64))
            loss = torch.nn.functional.cross_entropy(logits.float(), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss)
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
