"""Weights by name: ``pretrained=True``, checkpoint URLs and ``hf-hub:`` names go through one function.

Every entry point (``create_model``, the torchvision adapter, ``hubconf.py``, the detectron2 builders and the mmseg
backbone's ``init_cfg``) fetches a checkpoint with :func:`resnest_backbones.models.hub.local_weights`: a URL is
downloaded once with torch hub's downloader into ``<torch hub dir>/checkpoints``, and the hash prefix in the file
name is checked before the file enters the cache; ``hf-hub:<owner>/<repo>`` (timm's files, the source of
``pretrained=True`` for the variants without an official file) is fetched by ``huggingface_hub`` into the Hugging
Face cache and read with ``safetensors``.

Tests never use the network: files are served through ``file://`` URLs or an HTTP server on 127.0.0.1 started
here (for the hub: one that answers huggingface_hub's requests as the hub does), torch hub's directory and the
Hugging Face cache are temporary folders, huggingface_hub is offline unless a test points it at that server, and
any other download fails the test.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import importlib
import socket
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Dict, Iterator, List, Optional, Tuple

import pytest
import torch
from support import REPO_ROOT
from support.numerics import randomize_norms

import resnest_backbones as rb
import resnest_backbones.models.hub as rb_hub
from resnest_backbones.models import variants as rb_variants
from resnest_backbones.models.hf_hub import HF_WEIGHTS_FILE

REPO = REPO_ROOT
SMALL = "resnest14d"  # no official file: the tests give it one, served locally
_REAL_DOWNLOAD = torch.hub.download_url_to_file


@pytest.fixture(autouse=True)
def local_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test on any download that is not from 127.0.0.1 or a file:// URL."""
    def download(url: str, *args, **kwargs) -> None:
        assert url.startswith(("file://", "http://127.0.0.1:")), f"tests never use the network, but {url} was asked"
        _REAL_DOWNLOAD(url, *args, **kwargs)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)


def _hf_constants() -> Optional[ModuleType]:
    """``huggingface_hub.constants``, or ``None`` when huggingface_hub is not installed."""
    try:
        return importlib.import_module("huggingface_hub.constants")
    except ImportError:
        return None


def _point_hub_at(monkeypatch: pytest.MonkeyPatch, endpoint: str, offline: bool) -> None:
    """Send huggingface_hub to ``endpoint``, or keep it offline: through its environment variables and, since it
    reads them once, when it is imported, through the copies its ``constants`` module made of them."""
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    constants = _hf_constants()
    if constants is not None:
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
        template = endpoint + "/{repo_id}/resolve/{revision}/{filename}"  # made from ENDPOINT at import
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)


@pytest.fixture(autouse=True)
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The Hugging Face cache in a temporary folder, huggingface_hub offline and its endpoint a closed port on
    127.0.0.1: no test reaches huggingface.co (restored afterwards by monkeypatch)."""
    folder = tmp_path / "hf_cache"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(folder))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    constants = _hf_constants()
    if constants is not None:
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(folder))
    _point_hub_at(monkeypatch, f"http://127.0.0.1:{_closed_port()}", offline=True)
    return folder


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """torch hub's checkpoint cache in a temporary TORCH_HOME (restored afterwards by monkeypatch)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # a torch.hub.set_dir() elsewhere would win over TORCH_HOME
    assert rb_hub.cache_dir() == tmp_path / "torch_home" / "hub" / "checkpoints"
    return rb_hub.cache_dir()


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, Dict[str, torch.Tensor]]:
    """A stand-in for an official ImageNet file (1000-class head), named ``resnest14d-<sha256[:8]>.pth``."""
    torch.manual_seed(0)
    state = randomize_norms(rb.create_model(SMALL, num_classes=1000)).state_dict()
    folder = tmp_path_factory.mktemp("release")
    raw = folder / "raw.pth"
    torch.save(state, raw)
    path = folder / f"{SMALL}-{hashlib.sha256(raw.read_bytes()).hexdigest()[:8]}.pth"
    raw.rename(path)
    (folder / f"{SMALL}-00000000.pth").write_bytes(path.read_bytes())  # the same bytes under a wrong hash
    return path, state


class _Server:
    """An HTTP server on 127.0.0.1 serving one folder from a thread, recording the paths requested (GET).

    ``headers`` maps a request path to extra response headers (to GET and HEAD requests), as a hub sends them.
    """

    def __init__(self, folder: Path, headers: Optional[Dict[str, Dict[str, str]]] = None) -> None:
        self.requests: List[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            timeout = 10  # a stuck client cannot hold the thread for ever

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server.requests.append(self.path)
                super().do_GET()

            def end_headers(self) -> None:
                for key, value in (headers or {}).get(self.path, {}).items():
                    self.send_header(key, value)
                super().end_headers()

            def log_message(self, *args) -> None:  # keep the test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                     functools.partial(Handler, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


@pytest.fixture()
def server(published) -> Iterator[_Server]:
    running = _Server(published[0].parent)
    try:
        yield running
    finally:
        running.close()


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _publish(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Give the small variant an official URL, as the variant table does for the published ones."""
    monkeypatch.setitem(rb.VARIANTS, SMALL, dataclasses.replace(rb.VARIANTS[SMALL], url=url))


def _assert_loaded(model: torch.nn.Module, state: Dict[str, torch.Tensor]) -> None:
    ours = model.state_dict()
    different = [k for k, v in ours.items() if not torch.equal(v, state[k])]
    assert different == [], different[:5]


# ------------------------------------------------------------------------------------------ the variant table
_RELEASE = "https://github.com/zhanghang1989/ResNeSt/releases/download/weights_step1/"
# docs/reference.md section 1 (the official resnest/torch/models/resnest.py and ablation.py; timm's resnest.py)
_OFFICIAL_FILES = {
    "resnest50d": "resnest50-528c19ca.pth", "resnest101e": "resnest101-22405ba7.pth",
    "resnest200e": "resnest200-75117900.pth", "resnest269e": "resnest269-0cc87c48.pth",
    "resnest50_fast_1s1x64d": "resnest50_fast_1s1x64d-d8fbf808.pth",
    "resnest50_fast_2s1x64d": "resnest50_fast_2s1x64d-44938639.pth",
    "resnest50_fast_4s1x64d": "resnest50_fast_4s1x64d-f74f3fc3.pth",
    "resnest50_fast_1s2x40d": "resnest50_fast_1s2x40d-32830b84.pth",
    "resnest50_fast_2s2x40d": "resnest50_fast_2s2x40d-9d126481.pth",
    "resnest50d_4s2x40d": "resnest50_fast_4s2x40d-41d14ed0.pth",
    "resnest50d_1s4x24d": "resnest50_fast_1s4x24d-d4a4f76f.pth",
}
_TIMM_REPOS = {
    "resnest14d": "timm/resnest14d.gluon_in1k", "resnest26d": "timm/resnest26d.gluon_in1k",
    "resnest50d": "timm/resnest50d.in1k", "resnest101e": "timm/resnest101e.in1k",
    "resnest200e": "timm/resnest200e.in1k", "resnest269e": "timm/resnest269e.in1k",
    "resnest50d_4s2x40d": "timm/resnest50d_4s2x40d.in1k", "resnest50d_1s4x24d": "timm/resnest50d_1s4x24d.in1k",
}
_HF_REPO = _TIMM_REPOS[SMALL]  # what pretrained=True fetches for the small variant (it has no official file)
_HF_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_every_variant_has_a_pretrained_source() -> None:
    assert {name: v.url for name, v in rb.VARIANTS.items() if v.url} == {
        name: _RELEASE + file for name, file in _OFFICIAL_FILES.items()}
    assert {name: v.hf_hub_id for name, v in rb.VARIANTS.items() if v.hf_hub_id} == _TIMM_REPOS
    # the official file where one exists, else timm's hub repository: every variant has one
    expected = {name: _RELEASE + _OFFICIAL_FILES[name] if name in _OFFICIAL_FILES else f"hf-hub:{_TIMM_REPOS[name]}"
                for name in rb.list_variants()}
    assert len(expected) == 13
    assert {name: rb_variants.pretrained_source(name) for name in rb.list_variants()} == expected
    assert rb_variants.pretrained_source("resnest50_fast_4s2x40d") == _RELEASE + "resnest50_fast_4s2x40d-41d14ed0.pth"
    assert rb_variants.official_url("resnest50") == _RELEASE + "resnest50-528c19ca.pth"  # aliases too
    with pytest.raises(ValueError, match=f"no official ImageNet weights.*resnest50d.*hf-hub:{_HF_REPO}"):
        rb_variants.official_url(SMALL)


# ------------------------------------------------------------------------------------------ pretrained=True
def test_pretrained_true_downloads_once_then_uses_the_cache(cache: Path, server: _Server, published,
                                                            monkeypatch: pytest.MonkeyPatch, capfd) -> None:
    path, state = published
    _publish(monkeypatch, f"{server.url}/{path.name}")
    model = rb.create_model(SMALL, pretrained=True, num_classes=1000)
    _assert_loaded(model, state)
    assert server.requests == [f"/{path.name}"]
    assert [p.name for p in cache.iterdir()] == [path.name]  # only the file: no partial or staging leftovers
    assert (cache / path.name).read_bytes() == path.read_bytes()
    assert rb_variants.default_checkpoint_path(SMALL) == cache / path.name
    err = capfd.readouterr().err
    assert f"{server.url}/{path.name}" in err and str(cache / path.name) in err  # what is downloaded, and where
    assert "100%" in err  # torch hub's progress bar

    _assert_loaded(rb.create_model(SMALL, pretrained=True, num_classes=1000), state)
    assert server.requests == [f"/{path.name}"]  # the second call is served by the cache


def test_wrong_hash_is_an_error_and_leaves_no_file(cache: Path, server: _Server, published,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"{server.url}/{SMALL}-00000000.pth"
    _publish(monkeypatch, url)
    with pytest.raises(rb.CheckpointError, match=f"download of {url} does not match the hash") as error:
        rb.create_model(SMALL, pretrained=True)
    assert "00000000" in str(error.value) and "nothing was saved" in str(error.value)
    assert list(cache.iterdir()) == []


def test_a_corrupt_cached_file_says_to_delete_it(cache: Path, published, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = published
    _publish(monkeypatch, f"http://127.0.0.1:{_closed_port()}/{path.name}")
    cache.mkdir(parents=True)
    (cache / path.name).write_bytes(path.read_bytes()[:1000])  # an interrupted copy made by hand
    with pytest.raises(rb.CheckpointError, match=f"delete {cache / path.name}"):
        rb.create_model(SMALL, pretrained=True)


def test_offline_error_names_the_url_and_the_cache_path(cache: Path, published,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path, state = published
    url = f"http://127.0.0.1:{_closed_port()}/{path.name}"
    _publish(monkeypatch, url)
    with pytest.raises(rb.CheckpointError, match="could not download") as error:
        rb.create_model(SMALL, pretrained=True)
    assert url in str(error.value) and str(cache / path.name) in str(error.value)
    assert not cache.exists() or list(cache.iterdir()) == []
    # doing what the message says works
    cache.mkdir(parents=True, exist_ok=True)
    (cache / path.name).write_bytes(path.read_bytes())
    _assert_loaded(rb.create_model(SMALL, pretrained=True, num_classes=1000), state)


# ------------------------------------------------------------------------------- pretrained=<url or path>
def test_pretrained_file_url_and_path(cache: Path, published) -> None:
    path, state = published
    _assert_loaded(rb.create_model(SMALL, pretrained=path.as_uri(), num_classes=1000), state)
    assert (cache / path.name).read_bytes() == path.read_bytes()  # file:// URLs are cached like http ones
    for source in (str(path), path):
        _assert_loaded(rb.create_model(SMALL, pretrained=source, num_classes=1000), state)
    wrong = path.parent / f"{SMALL}-00000000.pth"
    with pytest.raises(rb.CheckpointError, match="hash starts with 00000000"):
        rb.create_model(SMALL, pretrained=wrong)  # a local file is checked against its name too
    with pytest.raises(rb.CheckpointError, match="does not exist"):
        rb.create_model(SMALL, pretrained=path.parent / "absent.pth")


def test_torchvision_and_hub_entry_points_download(cache: Path, server: _Server, published,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from resnest_backbones.torchvision import resnest_fpn_backbone

    path, state = published
    _publish(monkeypatch, f"{server.url}/{path.name}")
    fpn = resnest_fpn_backbone(SMALL, weights=True, trainable_layers=5, norm_layer=torch.nn.BatchNorm2d)
    body = fpn.body.state_dict()
    assert body and all(torch.equal(v, state[k]) for k, v in body.items())
    hub_model = torch.hub.load(str(REPO), SMALL, source="local", pretrained=True)
    _assert_loaded(hub_model, state)
    assert server.requests == [f"/{path.name}"]  # downloaded once, for both


@pytest.mark.detectron2
def test_detectron2_uses_the_same_function(cache: Path, published) -> None:
    import resnest_backbones.detectron2.backbone as d2_backbone
    import resnest_backbones.detectron2.checkpoint as d2_checkpoint

    assert d2_checkpoint.local_weights is d2_backbone.local_weights is rb_hub.local_weights
    path, state = published
    backbone = d2_backbone.build_resnest(SMALL, weights=path.as_uri())
    assert all(torch.equal(v, state[k]) for k, v in backbone.state_dict().items())
    assert (cache / path.name).is_file()


@pytest.mark.mmseg
def test_mmseg_init_cfg_url_goes_through_the_same_function(cache: Path, server: _Server, published,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import resnest_backbones.openmmlab.backbone as openmmlab_backbone
    import resnest_backbones.openmmlab.weights as openmmlab_weights

    path, state = published
    calls: List[str] = []

    def spy(source: str) -> str:
        calls.append(source)
        return rb_hub.local_weights(source)

    monkeypatch.setattr(openmmlab_weights, "local_weights", spy)
    url = f"{server.url}/{path.name}"
    model = openmmlab_backbone.OpenMMLabResNeSt(SMALL, init_cfg=dict(type="Pretrained", checkpoint=url))
    model.init_weights()
    assert calls == [url] and server.requests == [f"/{path.name}"]
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert (cache / path.name).is_file()
    # the hash check applies to mmseg's URLs as well (mmengine's own loader does not check it)
    wrong = openmmlab_backbone.OpenMMLabResNeSt(SMALL, init_cfg=dict(type="Pretrained", checkpoint=f"{server.url}/"
                                                                                           f"{SMALL}-00000000.pth"))
    with pytest.raises(rb.CheckpointError, match="does not match the hash"):
        wrong.init_weights()
    assert sorted(p.name for p in cache.iterdir()) == [path.name]


def test_a_file_is_hashed_once_until_it_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The download check and the loader meet the same file: the second check must not hash it again, but a file
    rewritten since (new size or time) is hashed anew and a corrupt rewrite is caught."""
    from resnest_backbones.models import file_hash

    payload = b"resnest weights stand-in"
    path = tmp_path / f"stand-in-{hashlib.sha256(payload).hexdigest()[:8]}.pth"
    path.write_bytes(payload)
    hashed: List[str] = []
    real_digest = file_hash._digest

    def counting_digest(p: Path, algorithm: str) -> str:
        hashed.append(algorithm)
        return real_digest(p, algorithm)

    monkeypatch.setattr(file_hash, "_digest", counting_digest)
    assert file_hash.verify_hash(path) == file_hash.verify_hash(path) == (path.name[-12:-4], "sha256")
    assert hashed == ["sha256"]
    path.write_bytes(payload + b" corrupted")
    with pytest.raises(rb.CheckpointError, match="corrupt"):
        file_hash.verify_hash(path)
    assert len(hashed) > 1


# ------------------------------------------------------------------------------ the Hugging Face hub (hf-hub:)
def _save_safetensors(path: Path, tensors: Dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


def _put_in_hf_cache(hf_cache: Path, tensors: Dict[str, torch.Tensor]) -> Path:
    """Write ``tensors`` as the small variant's hub file where huggingface_hub finds it offline: the cache layout it
    writes itself (the file in the snapshot of a commit, the branch's commit in ``refs/main``)."""
    repo = hf_cache / ("models--" + _HF_REPO.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(_HF_COMMIT)
    return _save_safetensors(repo / "snapshots" / _HF_COMMIT / HF_WEIGHTS_FILE, tensors)


@pytest.fixture()
def fake_hub(tmp_path: Path, hf_cache: Path, published, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    """The hub on 127.0.0.1 holding the small variant's weights (``published``) as timm's repository does, and
    huggingface_hub online, pointed at it."""
    pytest.importorskip("huggingface_hub")
    pytest.importorskip("safetensors")
    route = f"/{_HF_REPO}/resolve/main/{HF_WEIGHTS_FILE}"
    file = _save_safetensors(tmp_path / "hub" / route.lstrip("/"), published[1])
    # What huggingface_hub reads from the hub's answer: the revision's commit, and the file's hash as its ETag.
    headers = {"X-Repo-Commit": _HF_COMMIT, "ETag": f'"{hashlib.sha256(file.read_bytes()).hexdigest()}"'}
    running = _Server(tmp_path / "hub", headers={route: headers})
    _point_hub_at(monkeypatch, running.url, offline=False)
    try:
        yield running
    finally:
        running.close()


def test_pretrained_true_without_an_official_file_loads_timms_hub_file(cache: Path, hf_cache: Path, fake_hub: _Server,
                                                                       published,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    _, state = published
    assert huggingface_hub.hf_hub_url(_HF_REPO, HF_WEIGHTS_FILE).startswith(fake_hub.url + "/")  # not huggingface.co
    model = rb.create_model(SMALL, pretrained=True, num_classes=1000).eval()
    _assert_loaded(model, state)
    reference = rb.create_model(SMALL, num_classes=1000).eval()
    reference.load_state_dict(state)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(images), reference(images))
    # downloaded once (huggingface_hub may also ask the endpoint for its own registries: 404 here)
    route = f"/{_HF_REPO}/resolve/main/{HF_WEIGHTS_FILE}"
    assert fake_hub.requests.count(route) == 1
    snapshot = hf_cache / "models--timm--resnest14d.gluon_in1k" / "snapshots" / _HF_COMMIT / HF_WEIGHTS_FILE
    assert snapshot.is_file()  # in the Hugging Face cache, not torch hub's
    assert not cache.exists() or list(cache.iterdir()) == []

    # by name, and again: from the cache (huggingface_hub only asks the hub for the revision's commit)
    _assert_loaded(rb.create_model(SMALL, pretrained=f"hf-hub:{_HF_REPO}", num_classes=1000), state)
    assert fake_hub.requests.count(route) == 1
    # offline: from the cache, with no request at all
    _point_hub_at(monkeypatch, f"http://127.0.0.1:{_closed_port()}", offline=True)
    _assert_loaded(rb.create_model(SMALL, pretrained=True, num_classes=1000), state)


def test_a_partial_or_truncated_hub_file_fails(hf_cache: Path, published) -> None:
    pytest.importorskip("huggingface_hub")
    pytest.importorskip("safetensors")
    _, state = published
    file = _put_in_hf_cache(hf_cache, {k: v for k, v in state.items() if not k.startswith("layer4.")})
    with pytest.raises(rb.CheckpointError, match="does not match the model") as error:
        rb.create_model(SMALL, pretrained=True)
    missing = error.value.report.missing
    assert missing and all(key.startswith("layer4.") for key in missing)

    file.write_bytes(file.read_bytes()[:1000])
    with pytest.raises(rb.CheckpointError, match="could not read .* as a safetensors file"):
        rb.create_model(SMALL, pretrained=True)


def test_offline_without_the_file_names_the_repository_and_where_to_put_it(tmp_path: Path, hf_cache: Path,
                                                                          published) -> None:
    pytest.importorskip("huggingface_hub")
    pytest.importorskip("safetensors")
    _, state = published
    with pytest.raises(rb.CheckpointError, match=f"could not fetch {HF_WEIGHTS_FILE} of the Hugging Face hub "
                                                 f"repository {_HF_REPO}") as error:
        rb.create_model(SMALL, pretrained=True)
    message = str(error.value)
    repo = hf_cache / "models--timm--resnest14d.gluon_in1k"
    assert str(repo / "snapshots" / "<commit>" / HF_WEIGHTS_FILE) in message and str(repo / "refs" / "main") in message
    assert f'pretrained="/path/to/{HF_WEIGHTS_FILE}"' in message
    # both ways the message gives work: a local path, or the file put in the cache
    local = _save_safetensors(tmp_path / "downloaded" / HF_WEIGHTS_FILE, state)
    _assert_loaded(rb.create_model(SMALL, pretrained=str(local), num_classes=1000), state)
    _put_in_hf_cache(hf_cache, state)
    _assert_loaded(rb.create_model(SMALL, pretrained=True, num_classes=1000), state)


def test_hub_names_and_missing_packages_are_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(rb.CheckpointError, match="not a Hugging Face hub name: write hf-hub:<owner>/<repo>"):
        rb.create_model(SMALL, pretrained="hf-hub:resnest14d")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if not installed
    with pytest.raises(rb.CheckpointError, match="package huggingface_hub.*pip install huggingface_hub safetensors"):
        rb.create_model(SMALL, pretrained=True)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    file = tmp_path / HF_WEIGHTS_FILE
    file.write_bytes(b"not read")
    with pytest.raises(rb.CheckpointError, match="package safetensors.*pip install huggingface_hub safetensors"):
        rb.create_model(SMALL, pretrained=file)
