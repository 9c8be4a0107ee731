#!/usr/bin/env bash
# Idempotent set-up of the project's environment (see ../shared/STACK.md for why the pins are what they are).
#
# Creates .venv (or $RESNEST_VENV) with the proven stack: torch 2.12.1 (CUDA build, runs on CPU),
# torchvision 0.27.1, mmengine 0.10.7, mmcv 2.1.0 compiled with its ops against that torch,
# mmsegmentation 1.2.2, and this package in editable mode with its extras. Every step prints its duration
# and leaves a stamp, so a second run on a ready environment only verifies (seconds).
# detectron2 is not on PyPI and is never installed here: build it from its official source into this
# environment yourself if you want the detectron2 suites (see README).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RESNEST_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check)
STAMPS="$VENV/.resnest-stamps"

TORCH_PINS=(torch==2.12.1 torchvision==0.27.1)
MMCV_PIN=mmcv==2.1.0
MMENGINE_PIN=mmengine==0.10.7

# step NAME KEY CMD...: run CMD once per KEY (the pins it installs); skip when the stamp says it is done.
step() {
    local name="$1" key="$2"; shift 2
    local stamp="$STAMPS/$name"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$key" ]]; then
        echo "[setup] $name: already done ($key)"
        return
    fi
    echo "[setup] $name: running ..."
    local t0=$SECONDS
    "$@"
    mkdir -p "$STAMPS"
    echo "$key" > "$stamp"
    echo "[setup] $name: done in $((SECONDS - t0)) s"
}

make_venv() { python3 -m venv "$VENV"; }
install_build_tools() { "${PIP[@]}" -q "setuptools<70" wheel; }
install_torch() { "${PIP[@]}" -q "${TORCH_PINS[@]}"; }
install_mmengine() { "${PIP[@]}" -q "$MMENGINE_PIN"; }
# mmcv's setup.py imports pkg_resources (hence setuptools<70) and must build against the torch above, so
# no build isolation; no pip cache, because a cached wheel named mmcv-2.1.0 may come from another torch.
install_mmcv() {
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" "${PIP[@]}" -q --no-build-isolation --no-cache-dir "$MMCV_PIN"
}
install_project() { "${PIP[@]}" -q -e "$ROOT[mmseg,test,tools]"; }

T0=$SECONDS
[[ -x "$PY" ]] || step venv "$(python3 --version)" make_venv
step build-tools "setuptools<70 wheel" install_build_tools
step torch "${TORCH_PINS[*]}" install_torch
step mmengine "$MMENGINE_PIN" install_mmengine
step mmcv "$MMCV_PIN ${TORCH_PINS[*]}" install_mmcv
step project "$(cat "$ROOT/setup.py" | sha256sum | cut -c1-16)" install_project

echo "[setup] verifying ..."
"$PY" - <<'PY'
import importlib, sys
import torch, torchvision
from torchvision.ops import nms
nms(torch.zeros(1, 4), torch.zeros(1), 0.5)  # fails when torchvision was built against another torch
import resnest_backbones  # noqa: F401
leaked = sorted(m for m in ("detectron2", "mmcv", "mmseg", "mmengine") if m in sys.modules)
assert not leaked, f"import resnest_backbones must not import {leaked}"
import mmcv.ops  # noqa: F401  (compiled ops)
import mmseg.models  # noqa: F401
try:
    import detectron2
    d2 = f"detectron2 {detectron2.__version__}"
except ImportError:
    d2 = "detectron2 not installed (its test suites will skip)"
print(f"[setup] torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"mmcv {importlib.import_module('mmcv').__version__}, mmseg {importlib.import_module('mmseg').__version__}, {d2}")
PY
echo "[setup] environment ready in $((SECONDS - T0)) s: $VENV"
