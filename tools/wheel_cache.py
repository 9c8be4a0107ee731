"""Build a compiled package's wheel once per machine, keep it, and install from it while its key matches.

    python tools/wheel_cache.py install NAME SPEC [--source FILE_OR_DIR] [--env VAR ...]

mmcv (its ops) and detectron2 are compiled against the installed torch: 10-20 minutes for mmcv on a 2-core machine.
The set-up (tools/setup_env.sh) builds each with ``pip wheel`` into ``$RESNEST_WHEEL_CACHE`` (default
``~/.cache/resnest_backbones/wheels``), in a folder named by a key of everything the binary depends on: the
requested spec, a hash of the source when one is given (detectron2 reads version 0.6 at every commit), torch's
version and CUDA flavour, whether a CUDA toolkit was found at build time, the Python ABI, the platform, the
compiler, and the build variables named with ``--env``. A wheel is installed only from its own key's folder, so a
wheel built against another torch (the ``undefined symbol`` trap of ../shared/STACK.md) is never used.

While pip builds, one line at most every 30 s says the step is alive: the elapsed time and, when the build log
shows it, how many source files are compiled.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

HEARTBEAT_S = 30.0


def cache_root() -> Path:
    """Where the wheels are kept: $RESNEST_WHEEL_CACHE, else ~/.cache/resnest_backbones/wheels."""
    env = os.environ.get("RESNEST_WHEEL_CACHE")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "resnest_backbones" / "wheels"


def source_digest(source: Optional[str]) -> str:
    """sha256 of a source archive, or of a source folder's files (names and contents, less what a build writes
    there: build/, *.egg-info, __pycache__, .git); '' without a source."""
    if not source:
        return ""
    path = Path(source)
    digest = hashlib.sha256()
    if path.is_file():
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    elif path.is_dir():
        def built(part: str) -> bool:
            return part in {".git", "build", "__pycache__"} or part.endswith(".egg-info")

        files = (p for p in path.rglob("*") if p.is_file())
        for file in sorted(p for p in files if not any(map(built, p.relative_to(path).parts))):
            digest.update(str(file.relative_to(path)).encode() + b"\0" + file.read_bytes() + b"\0")
    else:  # a URL: its text is all we can know without fetching it
        digest.update(source.encode())
    return digest.hexdigest()


def _compiler() -> str:
    cc = os.environ.get("CXX") or "c++"
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True, check=False).stdout.split("\n")[0]
    except OSError:
        return ""


def _torch_facts() -> Dict[str, object]:
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        return {"torch": None}
    return {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_toolkit_at_build": bool(cpp_extension.CUDA_HOME),
        "cxx11_abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI),
    }


def build_key(spec: str, source: Optional[str] = None, env_vars: Sequence[str] = ()) -> Dict[str, object]:
    """Everything the wheel of SPEC (built from SOURCE) depends on, as a dict (see wheel_key). A spec naming a local
    file or folder counts by its name only (its contents are in ``source_sha256``): CI's clone reads the same
    archive from another folder."""
    return {
        "spec": os.path.basename(os.path.normpath(spec)) if os.path.exists(spec) else spec,
        "source_sha256": source_digest(source),
        **_torch_facts(),
        "python_abi": sysconfig.get_config_var("SOABI") or sys.implementation.cache_tag,
        "platform": sysconfig.get_platform(),
        "compiler": _compiler(),
        "env": {name: os.environ.get(name, "") for name in sorted(env_vars)},
    }


def wheel_key(facts: Dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:20]


def cached_wheel(name: str, facts: Dict[str, object], root: Optional[Path] = None) -> Optional[Path]:
    """The kept wheel of NAME for exactly these facts, or None."""
    folder = (root or cache_root()) / f"{name}-{wheel_key(facts)}"
    wheels = sorted(folder.glob("*.whl"))
    try:
        kept = json.loads((folder / "key.json").read_text())
    except (OSError, ValueError):
        return None
    return wheels[0] if len(wheels) == 1 and kept == facts else None


_NINJA_STEP = re.compile(r"^\s*\[(\d+)/(\d+)\]")
_COMPILE = re.compile(r"\s-c\s+\S+\.(?:c|cc|cpp|cxx|cu)\b")


def compile_progress(log_text: str) -> str:
    """'N/M source files' (ninja) or 'N source files' (one compiler call a line) from a build log, or ''."""
    last = ""
    count = 0
    for line in log_text.splitlines():
        match = _NINJA_STEP.match(line)
        if match:
            last = f"{match.group(1)}/{match.group(2)} source files"
        elif _COMPILE.search(line):
            count += 1
    return last or (f"{count} source files" if count else "")


def run_with_heartbeat(cmd: List[str], label: str, log: Path, period: float = HEARTBEAT_S) -> None:
    """Run CMD with its output in LOG; print '<label>: N s, <progress>' every PERIOD s while it runs."""
    start = time.monotonic()
    done = threading.Event()

    def beat() -> None:
        while not done.wait(period):
            progress = compile_progress(log.read_text(errors="replace")) if log.exists() else ""
            print(f"[setup] {label}: {time.monotonic() - start:.0f} s" + (f", {progress}" if progress else ""),
                  flush=True)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        with open(log, "w") as out:
            code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    finally:
        done.set()
        thread.join()
    if code:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise SystemExit(f"[setup] {label} failed (exit {code}); the log's last lines ({log}):\n{tail}")


def build_wheel(name: str, spec: str, facts: Dict[str, object], root: Optional[Path] = None,
                pip_args: Sequence[str] = ()) -> Path:
    """pip wheel SPEC (no deps, no build isolation, no pip cache) into its key's folder; the wheel's path."""
    folder = (root or cache_root()) / f"{name}-{wheel_key(facts)}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{name}-build-") as tmp:
        out = Path(tmp) / "wheel"
        cmd = [sys.executable, "-m", "pip", "wheel", "-v", "--disable-pip-version-check", "--no-deps",
               "--no-build-isolation", "--no-cache-dir", "-w", str(out), *pip_args, spec]
        run_with_heartbeat(cmd, f"{name}: building the wheel", Path(tmp) / "build.log")
        wheels = list(out.glob("*.whl"))
        if len(wheels) != 1:
            raise SystemExit(f"[setup] {name}: pip wheel made {len(wheels)} wheels, expected one")
        (out / "key.json").write_text(json.dumps(facts, sort_keys=True, indent=1))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(out, folder)  # whole or not at all: a killed build leaves no half folder under the key
    return folder / wheels[0].name


def install(name: str, spec: str, source: Optional[str] = None, env_vars: Sequence[str] = (),
            root: Optional[Path] = None, pip_args: Sequence[str] = (), target: Optional[Path] = None) -> Path:
    """Install NAME's kept wheel for this key, building and keeping it first when there is none; its path.
    ``target``: install into that folder (pip's --target) instead of the running environment."""
    facts = build_key(spec, source, env_vars)
    wheel = cached_wheel(name, facts, root)
    if wheel is None:
        print(f"[setup] {name}: no kept wheel for key {wheel_key(facts)}; compiling it once "
              f"(kept in {root or cache_root()})", flush=True)
        wheel = build_wheel(name, spec, facts, root, pip_args)
    else:
        print(f"[setup] {name}: installing the kept wheel {wheel}", flush=True)
    where = ["--no-deps", "--target", str(target)] if target else []
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", *where, str(wheel)],
                   check=True)
    return wheel


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("install", "key"):
        p = sub.add_parser(command)
        p.add_argument("name")
        p.add_argument("spec", help="what pip builds: a requirement (mmcv==2.1.0), an archive or a folder")
        p.add_argument("--source", help="a file or folder whose contents the key hashes (the source archive)")
        p.add_argument("--env", nargs="*", default=[], help="build variables the binary depends on")
    args = parser.parse_args(argv)
    if args.command == "key":
        facts = build_key(args.spec, args.source, args.env)
        print(wheel_key(facts), json.dumps(facts, sort_keys=True))
    else:
        install(args.name, args.spec, args.source, args.env)


if __name__ == "__main__":
    main()
