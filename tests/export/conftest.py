"""Fixtures shared by the export tests (docs/deploy.md): each module defines ``built`` (its model as built, in eval
mode, and its test images, as a ``Case``); ``fused`` is that model with its ResNeSt fused for inference, and ``case``
runs a test on both."""
from __future__ import annotations

import copy
from typing import Any

import pytest

import resnest_backbones as rb
from resnest_backbones.accel import InferenceOnly


@pytest.fixture(scope="module")
def fused(built: Any) -> Any:
    model = copy.deepcopy(built.model)
    assert rb.fuse_resnest_modules(model) == 1
    assert sum(isinstance(m, rb.ResNeSt) and isinstance(m, InferenceOnly) for m in model.modules()) == 1
    return type(built)(model, built.images)


@pytest.fixture(scope="module", params=["built", "fused"])
def case(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(request.param)
