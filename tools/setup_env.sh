#!/usr/bin/env bash
# Idempotent set-up of the project's environment (see ../shared/STACK.md for why the pins are what they are).
#
# Creates .venv (or $RESNEST_VENV) with the proven stack: torch 2.12.1 (CUDA build, runs on CPU),
# torchvision 0.27.1, mmengine 0.10.7, mmcv 2.1.0 compiled with its ops against that torch,
# mmsegmentation 1.2.2, mmdet 3.3.0, detectron2 built from its source, and this package in editable mode with
# its extras. Every step prints its duration and leaves a stamp, so a second run on a ready environment only
# verifies (seconds).
#
# detectron2 is not on PyPI: it is built from DETECTRON2_SOURCE (a local checkout, a source archive .tar.gz, or
# a pip URL; default: the official repository at the commit proven here), with --no-build-isolation against the
# pinned torch. DETECTRON2_SOURCE=none leaves detectron2 out. When the source cannot be reached (offline, a path
# that does not exist), the set-up says so in one line and goes on; the detectron2 suites then skip. A
# detectron2 this script installed from another source is removed then, so the environment is what the set-up
# says; a detectron2 installed by hand (no stamp) is left alone.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RESNEST_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check)
STAMPS="$VENV/.resnest-stamps"

TORCH_PINS=(torch==2.12.1 torchvision==0.27.1)
MMCV_PIN=mmcv==2.1.0
MMENGINE_PIN=mmengine==0.10.7
DETECTRON2_DEFAULT=git+https://github.com/facebookresearch/detectron2.git@02b5c4e295e990042a714712c21dc79b731e8833
DETECTRON2_SOURCE="${DETECTRON2_SOURCE:-$DETECTRON2_DEFAULT}"

# The compiled packages' wheels, kept across clones and runs (tools/wheel_cache.py keys them by torch, ABI, source).
export RESNEST_WHEEL_CACHE="${RESNEST_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/resnest_backbones/wheels}"

# heartbeat NAME T0: one line every 30 s with the elapsed time, until killed (long steps show they are alive).
heartbeat() {
    while sleep 30; do echo "[setup] $1: $((SECONDS - $2)) s ..."; done
}

# step NAME KEY CMD...: run CMD once per KEY (the pins it installs); skip when the stamp says it is done.
# Steps that report their own progress (the wheel builds) are named in SELF_REPORTING; others get a heartbeat.
SELF_REPORTING=" mmcv detectron2 "
step() {
    local name="$1" key="$2"; shift 2
    local stamp="$STAMPS/$name"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$key" ]]; then
        echo "[setup] $name: already done ($key)"
        return
    fi
    echo "[setup] $name: running ..."
    local t0=$SECONDS beat=""
    if [[ "$SELF_REPORTING" != *" $name "* ]]; then
        heartbeat "$name" "$t0" & beat=$!
    fi
    "$@" || { [[ -z "$beat" ]] || kill "$beat"; return 1; }
    [[ -z "$beat" ]] || { kill "$beat"; wait "$beat" 2>/dev/null || true; }
    mkdir -p "$STAMPS"
    echo "$key" > "$stamp"
    echo "[setup] $name: done in $((SECONDS - t0)) s"
}

make_venv() { python3 -m venv "$VENV"; }
# ninja lets torch's extension builder compile MAX_JOBS files at once (without it, one at a time).
install_build_tools() { "${PIP[@]}" -q "setuptools<70" wheel ninja; }
install_torch() { "${PIP[@]}" -q "${TORCH_PINS[@]}"; }
install_mmengine() { "${PIP[@]}" -q "$MMENGINE_PIN"; }
# mmcv's setup.py imports pkg_resources (hence setuptools<70) and must build against the torch above, so
# no build isolation; never pip's cache, whose wheel named mmcv-2.1.0 may come from another torch: our own cache
# (tools/wheel_cache.py) keys the wheel by torch, CUDA, ABI and platform and reuses it only on an exact match.
# PATH: the venv's ninja.
install_mmcv() {
    PATH="$VENV/bin:$PATH" MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" \
        "$PY" "$ROOT/tools/wheel_cache.py" install mmcv "$MMCV_PIN" --env MMCV_WITH_OPS FORCE_CUDA TORCH_CUDA_ARCH_LIST
}
# detectron2_reachable: whether DETECTRON2_SOURCE can be read from here (a path that exists, a git URL that
# answers within 30 s, or any other pip URL, which pip itself will try).
detectron2_reachable() {
    case "$DETECTRON2_SOURCE" in
        git+*) local url="${DETECTRON2_SOURCE#git+}"; url="${url%@*}"
               GIT_TERMINAL_PROMPT=0 timeout 30 git ls-remote -q "$url" HEAD >/dev/null 2>&1 ;;
        *://*) return 0 ;;
        *) [[ -e "$DETECTRON2_SOURCE" ]] ;;
    esac
}
# detectron2 reads version 0.6 at every commit: its wheel's key holds a hash of the source (archive or folder).
install_detectron2() {
    PATH="$VENV/bin:$PATH" MAX_JOBS="${MAX_JOBS:-2}" "$PY" "$ROOT/tools/wheel_cache.py" install detectron2 \
        "$DETECTRON2_SOURCE" --source "$DETECTRON2_SOURCE" --env FORCE_CUDA TORCH_CUDA_ARCH_LIST
}
# detectron2's tools/ (lazyconfig_train_net.py, train_net.py, ...) are not part of its package: the set-up keeps
# them, from the same source, in $D2_TOOLS, where the tests that run detectron2's own entry points find them (they
# skip, saying so, without them).
D2_TOOLS="$VENV/share/detectron2/tools"
# fetch_detectron2_tools DIR: DIR/tools from DETECTRON2_SOURCE (a checkout, a source archive, a git+ or archive URL).
fetch_detectron2_tools() {
    local dir="$1" src="$DETECTRON2_SOURCE"
    case "$src" in
        git+*) local url="${src#git+}" rev="${src##*@}"
               if [[ "$rev" == "$src" || "$rev" == */* ]]; then rev=HEAD; else url="${url%@*}"; fi
               git -C "$dir" init -q && GIT_TERMINAL_PROMPT=0 timeout 300 git -C "$dir" fetch -q --depth 1 "$url" "$rev" \
                   && git -C "$dir" checkout -q FETCH_HEAD -- tools ;;
        *) [[ -d "$src" ]] && { cp -r "$src/tools" "$dir/tools"; return; }
           "$PY" - "$src" "$dir" 2>/dev/null <<'PY'
import io, pathlib, re, sys, tarfile, urllib.request, zipfile
src, out = sys.argv[1], pathlib.Path(sys.argv[2])
data = urllib.request.urlopen(src, timeout=300).read() if "://" in src else pathlib.Path(src).read_bytes()
if zipfile.is_zipfile(io.BytesIO(data)):
    archive = zipfile.ZipFile(io.BytesIO(data))
    files = {i.filename: archive.read(i) for i in archive.infolist() if not i.is_dir()}
else:
    archive = tarfile.open(fileobj=io.BytesIO(data))
    files = {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}
for name, content in files.items():
    match = re.match(r"^(?:[^/]+/)?(tools/.+)$", name)  # the source's top folder, if any, then tools/
    if match and ".." not in match.group(1).split("/"):
        (out / match.group(1)).parent.mkdir(parents=True, exist_ok=True)
        (out / match.group(1)).write_bytes(content)
PY
           ;;
    esac
}
# keep_detectron2_tools: copy detectron2's tools/ into $D2_TOOLS once per source, or say in one line why not.
keep_detectron2_tools() {
    local marker="$D2_TOOLS/.resnest-source" tmp
    if [[ -f "$marker" && "$(cat "$marker")" == "$DETECTRON2_SOURCE" ]]; then
        echo "[setup] detectron2 tools/: already kept in $D2_TOOLS"
        return
    fi
    tmp="$(mktemp -d)"
    if fetch_detectron2_tools "$tmp" && [[ -f "$tmp/tools/lazyconfig_train_net.py" ]]; then
        rm -rf "$D2_TOOLS" && mkdir -p "${D2_TOOLS%/*}" && mv "$tmp/tools" "$D2_TOOLS" && echo "$DETECTRON2_SOURCE" > "$marker"
        echo "[setup] detectron2 tools/: kept in $D2_TOOLS"
    else
        echo "[setup] detectron2 tools/: not found in $DETECTRON2_SOURCE; the tests of detectron2's own tools will skip"
    fi
    rm -rf "$tmp"
}
# setup_detectron2: build detectron2 from DETECTRON2_SOURCE, or say in one line why not and go on.
setup_detectron2() {
    local why=""
    if [[ "$DETECTRON2_SOURCE" == none ]]; then
        why="DETECTRON2_SOURCE=none"
    elif ! detectron2_reachable; then
        why="DETECTRON2_SOURCE=$DETECTRON2_SOURCE cannot be reached (offline? set DETECTRON2_SOURCE to a local checkout or source archive)"
    fi
    if [[ -z "$why" ]]; then
        step detectron2 "$DETECTRON2_SOURCE ${TORCH_PINS[*]}" install_detectron2
        keep_detectron2_tools
        return
    fi
    echo "[setup] detectron2: not installed: $why; its test suites will skip"
    if [[ -f "$STAMPS/detectron2" ]]; then  # installed by this script from another source: take it out
        "$PY" -m pip uninstall -q -y detectron2
        rm -f "$STAMPS/detectron2"
        rm -rf "$D2_TOOLS"
    fi
}
install_project() { "${PIP[@]}" -q -e "$ROOT[mmseg,mmdet,hub,test,tools,detectron2]"; }

T0=$SECONDS
if [[ ! -f "$STAMPS/mmcv" ]]; then
    if compgen -G "$RESNEST_WHEEL_CACHE/mmcv-*/*.whl" >/dev/null; then
        echo "[setup] a new environment: ~3 min on a 2-core machine with the wheels kept in $RESNEST_WHEEL_CACHE" \
             "(a compile, 10-20 min, only if torch, the compiler or the platform changed)"
    else
        echo "[setup] a new environment: 15-30 min on a 2-core machine the first time (mmcv 2.1.0 has no wheel for" \
             "torch 2.12 on PyPI, so its ops compile, 10-20 min, and detectron2 builds from source, 2-3 min); both" \
             "wheels are kept in $RESNEST_WHEEL_CACHE and reused after that (set-up ~3 min)"
    fi
fi
[[ -x "$PY" ]] || step venv "$(python3 --version)" make_venv
step build-tools "setuptools<70 wheel" install_build_tools
step torch "${TORCH_PINS[*]}" install_torch
step mmengine "$MMENGINE_PIN" install_mmengine
step mmcv "$MMCV_PIN ${TORCH_PINS[*]} wheel-cache" install_mmcv
step project "$(cat "$ROOT/setup.py" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)" install_project
setup_detectron2

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
import mmdet.models  # noqa: F401
try:
    import detectron2
    import detectron2._C  # noqa: F401  (compiled ops)
    d2 = f"detectron2 {detectron2.__version__}"
except ImportError:
    d2 = "detectron2 not installed (its test suites will skip)"
print(f"[setup] torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"mmcv {importlib.import_module('mmcv').__version__}, mmseg {importlib.import_module('mmseg').__version__}, "
      f"mmdet {importlib.import_module('mmdet').__version__}, {d2}")
PY
echo "[setup] environment ready in $((SECONDS - T0)) s: $VENV"
