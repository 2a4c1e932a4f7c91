"""tools/fetch_data.py: mirror copy, download through a local HTTP server, derived-set rebuild.

Nothing here reaches the network: downloads go to a server on 127.0.0.1 that the real URLs are
rewritten to (--rewrite). Everything is written under tmp_path, never to the repository's data/.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "tools" / "fetch_data.py"
MANIFEST = REPO_ROOT / "data" / "MANIFEST.json"
RAW = "https://raw.githubusercontent.com/"
CODELOAD = "https://codeload.github.com/"
# A small slice of the real manifest (4 files, a few KB): darknet text files, VOC annotations.
SUBSET = [
    "weights/darknet/voc.names",
    "weights/darknet/yolo-fastest-voc.cfg",
    "voc2012-sample/Annotations/2007_00002",
    "voc2012-sample/Annotations/2007_000032",
]


def _load_module() -> ModuleType:
    # tools/ is not a package; load the script as a module so its functions can be tested.
    spec = importlib.util.spec_from_file_location("fetch_data", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fetch_data"] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


fd = _load_module()


@pytest.fixture(autouse=True)
def _no_mirror_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATA_MIRROR", raising=False)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def real_mirror() -> Path:
    """A folder holding the real files (../shared/data, or a filled data/); skip if none."""
    for candidate in (REPO_ROOT.parent / "shared" / "data", REPO_ROOT / "data"):
        if (candidate / "weights" / "darknet" / "voc.names").is_file():
            return candidate
    pytest.skip("no data mirror (../shared/data) and data/ not filled")


def subset_entries() -> list:
    return fd.load_manifest(MANIFEST).select(SUBSET).all_files()


def only_args(prefixes: list[str]) -> list[str]:
    return [arg for p in prefixes for arg in ("--only", p)]


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("fetch_data: error:")]


def parts_left(root: Path) -> list[Path]:
    """Temporary files: pooch's (tempfile's default names, tmp + 8 characters) and the
    fetcher's own *.fetch-part (a derived set's archive)."""
    if not root.exists():
        return []
    pooch_temp = re.compile(r"tmp[a-z0-9_]{8}")
    return [
        p
        for p in root.rglob("*")
        if p.name.endswith(fd.PART_SUFFIX) or pooch_temp.fullmatch(p.name)
    ]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


# --------------------------------------------------------------------------- local server


@dataclass
class Server:
    base: str
    root: Path
    hits: list[str] = field(default_factory=list)
    truncate: set[str] = field(default_factory=set)  # URL paths served half-length
    # URL path -> function that writes the whole response itself (endless, trickling servers)
    handlers: dict[str, Callable[[BaseHTTPRequestHandler], None]] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)  # set at teardown


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "srv"
    root.mkdir()
    state = Server(base="", root=root)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
            state.hits.append(path)
            if path in state.handlers:
                try:
                    state.handlers[path](self)
                except OSError:  # the fetcher hung up: what these servers wait for
                    pass
                self.close_connection = True
                return
            target = root / path.lstrip("/")
            if not target.is_file():
                self.send_error(404)
                return
            data = target.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))  # the full length, always
            self.end_headers()
            self.wfile.write(data[: len(data) // 2] if path in state.truncate else data)
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.stopping.set()
        httpd.shutdown()
        httpd.server_close()


def serve_raw(server: Server, entry, data: bytes) -> str:
    """Put ``data`` where the rewritten URL of ``entry`` points; return that URL path."""
    rel = entry.url.removeprefix(RAW)
    target = server.root / "raw" / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return f"/raw/{rel}"


def rewrite_args(server: Server) -> list[str]:
    return ["--rewrite", f"{RAW}={server.base}/raw/", "--rewrite", f"{CODELOAD}={server.base}/cl/"]


# --------------------------------------------------------------------------- manifest


def test_real_manifest_is_complete_and_well_formed() -> None:
    doc = json.loads(MANIFEST.read_text())
    manifest = fd.load_manifest(MANIFEST)
    assert len(manifest.raw) == 217
    assert {d.dir: len(d.files) for d in manifest.derived} == {
        "unlabeled/imagenet-1k-sample": 1000,
        "cifar10-test": 1,
    }
    for entry in manifest.all_files():
        assert len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0
        assert entry.size > 0 and entry.licence
        assert not entry.path.startswith("/") and ".." not in entry.path.split("/")
    assert all(e.url and e.url.startswith(RAW) for e in manifest.raw)
    for dset in manifest.derived:
        assert dset.transform in fd.TRANSFORMS and dset.archive.startswith(CODELOAD)
    assert all(e.member for e in manifest.derived[0].files)
    assert all("licence" in d and "transform" in d for d in doc["derived"])


def test_url_rewriter() -> None:
    rewrite = fd.UrlRewriter.parse([f"{RAW}=http://127.0.0.1:1/raw/"])
    assert rewrite(f"{RAW}a/b.txt") == "http://127.0.0.1:1/raw/a/b.txt"
    assert rewrite("https://example.org/x") == "https://example.org/x"
    with pytest.raises(ValueError):
        fd.UrlRewriter.parse(["no-equals-sign"])


# --------------------------------------------------------------------------- mirror


def test_mirror_subset_then_idempotent(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    mirror, dest = real_mirror(), tmp_path / "data"
    args = ["--mirror", str(mirror), "--dest", str(dest), *only_args(SUBSET)]
    assert fd.main(args) == 0
    entries = subset_entries()
    assert len(entries) == 4
    for entry in entries:
        assert (dest / entry.path).read_bytes() == (mirror / entry.path).read_bytes()
    assert sorted(snapshot(dest)) == sorted(e.path for e in entries)  # nothing else written
    before = snapshot(dest)
    assert fd.main(args) == 0
    assert snapshot(dest) == before  # second run rewrites nothing
    assert fd.main([*args, "--check"]) == 0
    assert error_lines(capsys.readouterr().err) == []


def test_mirror_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_MIRROR", str(real_mirror()))
    assert fd.main(["--dest", str(tmp_path), "--only", "weights/darknet/voc.names"]) == 0
    assert (tmp_path / "weights/darknet/voc.names").is_file()


def test_corrupt_mirror_file_fails_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source, mirror, dest = real_mirror(), tmp_path / "mirror", tmp_path / "data"
    entries = subset_entries()
    for entry in entries:
        (mirror / entry.path).parent.mkdir(parents=True, exist_ok=True)
        (mirror / entry.path).write_bytes((source / entry.path).read_bytes())
    bad = mirror / "weights/darknet/yolo-fastest-voc.cfg"
    data = bytearray(bad.read_bytes())
    data[100] ^= 0xFF  # same size, different bytes: only the sha256 can tell
    bad.write_bytes(bytes(data))

    args = ["--mirror", str(mirror), "--dest", str(dest), "--jobs", "1", *only_args(SUBSET)]
    assert fd.main(args) == 1
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert lines[0].startswith("fetch_data: error: weights/darknet/yolo-fastest-voc.cfg: ")
    assert "sha256 mismatch" in lines[0] and sha256(bytes(data)) in lines[0]
    assert not (dest / "weights/darknet/yolo-fastest-voc.cfg").exists()
    assert parts_left(dest) == []


def test_missing_mirror_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "mirror").mkdir()
    args = ["--mirror", str(tmp_path / "mirror"), "--dest", str(tmp_path / "d")]
    assert fd.main([*args, "--only", "weights/darknet/voc.names"]) == 1
    (line,) = error_lines(capsys.readouterr().err)
    assert "weights/darknet/voc.names: missing from mirror" in line


def test_modified_local_file_is_replaced(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    mirror, dest = real_mirror(), tmp_path / "data"
    args = ["--mirror", str(mirror), "--dest", str(dest), "--only", "weights/darknet/voc.names"]
    assert fd.main(args) == 0
    target = dest / "weights/darknet/voc.names"
    target.write_bytes(target.read_bytes().replace(b"person", b"people"))
    assert fd.main([*args, "--check"]) == 1
    assert "voc.names: sha256 mismatch" in capsys.readouterr().err
    assert fd.main(args) == 0
    assert target.read_bytes() == (mirror / "weights/darknet/voc.names").read_bytes()


def test_check_reports_every_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    mirror, dest = real_mirror(), tmp_path / "data"
    args = ["--dest", str(dest), *only_args(SUBSET)]
    assert fd.main(["--mirror", str(mirror), *args]) == 0
    (dest / "weights/darknet/voc.names").unlink()
    (dest / "weights/darknet/yolo-fastest-voc.cfg").write_text("x")
    assert fd.main([*args, "--check"]) == 1
    lines = error_lines(capsys.readouterr().err)
    assert sorted(lines) == [
        "fetch_data: error: weights/darknet/voc.names: missing",
        "fetch_data: error: weights/darknet/yolo-fastest-voc.cfg: size mismatch "
        "(expected 9573 bytes, got 1)",
    ]


def test_stale_parts_are_removed(tmp_path: Path) -> None:
    old, new = tmp_path / f".a{fd.PART_SUFFIX}", tmp_path / f".b{fd.PART_SUFFIX}"
    old.write_bytes(b"x")
    new.write_bytes(b"x")
    past = time.time() - 2 * fd.STALE_PART_AGE_S
    os.utime(old, (past, past))
    fd.remove_stale_parts(tmp_path)
    assert not old.exists() and new.exists()  # a running fetch's part file is left alone


def test_stale_pooch_temporary_files_are_removed(tmp_path: Path) -> None:
    # What a SIGKILL in the middle of a download leaves: pooch's temporary file (tempfile's
    # default name) beside its target. Files of other names are never touched.
    (tmp_path / "a").mkdir()
    old, new, data = tmp_path / "a/tmpab_12xyz", tmp_path / "a/tmp0123abcd", tmp_path / "a/tmp.txt"
    past = time.time() - 2 * fd.STALE_PART_AGE_S
    for path in (old, new, data):
        path.write_bytes(b"x")
    for path in (old, data):
        os.utime(path, (past, past))
    fd.remove_stale_parts(tmp_path)
    assert not old.exists() and new.exists() and data.exists()


# --------------------------------------------------------------------------- download


def test_download_subset_then_idempotent(
    tmp_path: Path, server: Server, capsys: pytest.CaptureFixture
) -> None:
    mirror, dest = real_mirror(), tmp_path / "data"
    for entry in subset_entries():
        serve_raw(server, entry, (mirror / entry.path).read_bytes())
    args = ["--download", "--dest", str(dest), *rewrite_args(server), *only_args(SUBSET)]
    assert fd.main(args) == 0
    assert len(server.hits) == 4
    for entry in subset_entries():
        assert sha256((dest / entry.path).read_bytes()) == entry.sha256
    assert fd.main(args) == 0
    assert len(server.hits) == 4  # everything verified locally: no second download
    assert error_lines(capsys.readouterr().err) == []


def test_truncated_download_fails_and_leaves_nothing(
    tmp_path: Path, server: Server, capsys: pytest.CaptureFixture
) -> None:
    dest = tmp_path / "data"
    (entry,) = fd.load_manifest(MANIFEST).select(["weights/darknet/yolo-fastest-voc.cfg"]).raw
    path = serve_raw(server, entry, (real_mirror() / entry.path).read_bytes())
    server.truncate.add(path)
    args = ["--download", "--dest", str(dest), *rewrite_args(server), "--retries", "2"]
    assert fd.main([*args, "--only", entry.path]) == 1
    (line,) = error_lines(capsys.readouterr().err)
    assert line.startswith(f"fetch_data: error: {entry.path}: truncated download from")
    assert "gave up after 2 tries" in line
    assert server.hits == [path, path]  # retried once
    assert not (dest / entry.path).exists() and parts_left(dest) == []


def test_wrong_upstream_bytes_and_http_errors(
    tmp_path: Path, server: Server, capsys: pytest.CaptureFixture
) -> None:
    dest = tmp_path / "data"
    (entry,) = fd.load_manifest(MANIFEST).select(["weights/darknet/voc.names"]).raw
    args = ["--download", "--dest", str(dest), *rewrite_args(server), "--only", entry.path]
    assert fd.main(args) == 1  # nothing served: 404, not retried
    (line,) = error_lines(capsys.readouterr().err)
    assert f"{entry.path}: download failed from {server.base}/raw/" in line and "404" in line
    assert len(server.hits) == 1

    serve_raw(server, entry, b"x" * entry.size)  # right size, wrong content
    assert fd.main(args) == 1
    (line,) = error_lines(capsys.readouterr().err)
    assert f"{entry.path}: sha256 mismatch download from" in line
    assert not (dest / entry.path).exists() and parts_left(dest) == []


def test_unreachable_server(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    args = ["--download", "--dest", str(tmp_path), "--retries", "1", "--timeout", "5"]
    rewrite = ["--rewrite", f"{RAW}=http://127.0.0.1:9/raw/"]
    assert fd.main([*args, *rewrite, "--only", "weights/darknet/voc.names"]) == 1
    (line,) = error_lines(capsys.readouterr().err)
    assert "weights/darknet/voc.names: download failed from http://127.0.0.1:9/raw/" in line


# --------------------------------------------------------------------------- derived sets


def jpeg(height: int, width: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), np.uint8), (9, 9), 0)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def tar_gz(top: str, members: dict[str, bytes]) -> bytes:
    """An archive laid out like GitHub's: everything below one top folder."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def expected_jpeg512(data: bytes) -> bytes:
    """The manifest's transform written out independently of the module under test."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    h, w = image.shape[:2]
    if max(h, w) > 512:
        s = 512 / max(h, w)
        image = cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


@pytest.fixture
def derived_setup(tmp_path: Path, server: Server) -> tuple[Path, dict, dict[str, bytes]]:
    """Two tiny upstream archives on the server and a manifest listing what they rebuild to."""
    images = {"n1_wide.JPEG": jpeg(300, 700, 1), "n2_small.JPEG": jpeg(80, 100, 2)}
    cifar = {
        f"test/{c}/{i:04d}.jpg": jpeg(32, 32, 10 + 2 * k + i)
        for k, c in enumerate(fd.CIFAR10_CLASSES)
        for i in range(2)
    }
    cifar["train/cat/0000.jpg"] = jpeg(32, 32, 99)  # not part of the test set
    (server.root / "cl").mkdir()
    (server.root / "cl/imagenet.tar.gz").write_bytes(
        tar_gz("imagenet-abc", {**images, "README.md": b"hi"})
    )
    (server.root / "cl/cifar.tar.gz").write_bytes(tar_gz("CIFAR-10-images-abc", cifar))

    rebuilt = {f"unlabeled/in/{Path(m).stem}.jpg": expected_jpeg512(d) for m, d in images.items()}
    rebuilt["cifar/c.npz"] = fd.build_cifar10_npz(cifar)

    def entry(path: str, **extra: str) -> dict:
        data = rebuilt[path]
        return {"file": path, "sha256": sha256(data), "bytes": len(data), **extra}

    manifest = {
        "files": [],
        "derived": [
            {
                "dir": "unlabeled/in",
                "archive": f"{CODELOAD}imagenet.tar.gz",
                "transform_id": fd.JPEG512,
                "licence": "test",
                "files": [entry(f"unlabeled/in/{Path(m).stem}.jpg", member=m) for m in images],
            },
            {
                "dir": "cifar",
                "archive": f"{CODELOAD}cifar.tar.gz",
                "transform_id": fd.CIFAR10_NPZ,
                "licence": "test",
                "files": [entry("cifar/c.npz")],
            },
        ],
    }
    return tmp_path / "manifest.json", manifest, cifar


def test_derived_sets_rebuilt_from_archives(
    tmp_path: Path, server: Server, derived_setup: tuple[Path, dict, dict[str, bytes]]
) -> None:
    manifest_path, manifest, cifar = derived_setup
    manifest_path.write_text(json.dumps(manifest))
    dest = tmp_path / "data"
    args = ["--manifest", str(manifest_path), "--download", "--dest", str(dest)]
    assert fd.main([*args, *rewrite_args(server)]) == 0
    wide = cv2.imread(str(dest / "unlabeled/in/n1_wide.jpg"))
    assert wide.shape == (219, 512, 3)  # 300x700 -> longer side 512, 300*512/700 = 219.4
    assert cv2.imread(str(dest / "unlabeled/in/n2_small.jpg")).shape == (80, 100, 3)

    npz = np.load(dest / "cifar/c.npz")
    assert npz["images"].shape == (20, 32, 32, 3) and npz["images"].dtype == np.uint8
    assert npz["labels"].tolist() == [k for k in range(10) for _ in range(2)]
    assert npz["index_in_class"].dtype == np.int16 and npz["index_in_class"].tolist() == [0, 1] * 10
    assert npz["classes"].tolist() == list(fd.CIFAR10_CLASSES)
    first = cv2.imdecode(np.frombuffer(cifar["test/airplane/0000.jpg"], np.uint8), 1)
    assert np.array_equal(npz["images"][0], first[:, :, ::-1])  # RGB

    hits = len(server.hits)
    assert fd.main([*args, *rewrite_args(server)]) == 0
    assert len(server.hits) == hits  # complete sets: archives not fetched again
    assert parts_left(dest) == []


def test_derived_mismatch_and_missing_member(
    tmp_path: Path,
    server: Server,
    derived_setup: tuple[Path, dict, dict[str, bytes]],
    capsys: pytest.CaptureFixture,
) -> None:
    manifest_path, manifest, _ = derived_setup
    files = manifest["derived"][0]["files"]
    files[0]["sha256"] = "0" * 64  # as if another OpenCV build had made the manifest
    gone = {"file": "unlabeled/in/n3_gone.jpg", "sha256": "1" * 64, "bytes": 1}
    files.append({**gone, "member": "n3_gone.JPEG"})
    manifest_path.write_text(json.dumps(manifest))
    dest = tmp_path / "data"
    args = ["--manifest", str(manifest_path), "--download", "--dest", str(dest)]
    assert fd.main([*args, *rewrite_args(server), "--only", "unlabeled/"]) == 1
    lines = sorted(error_lines(capsys.readouterr().err))
    assert len(lines) == 2
    assert lines[0].startswith("fetch_data: error: unlabeled/in/n1_wide.jpg: rebuilt from ")
    assert "sha256 mismatch (expected 0000" in lines[0] and "OpenCV" in lines[0]
    assert lines[1].startswith("fetch_data: error: unlabeled/in/n3_gone.jpg: member n3_gone")
    assert not (dest / "unlabeled/in/n1_wide.jpg").exists()
    assert (dest / "unlabeled/in/n2_small.jpg").is_file()  # the good file is kept
    assert parts_left(dest) == []


def test_corrupt_archive(
    tmp_path: Path,
    server: Server,
    derived_setup: tuple[Path, dict, dict[str, bytes]],
    capsys: pytest.CaptureFixture,
) -> None:
    manifest_path, manifest, _ = derived_setup
    manifest_path.write_text(json.dumps(manifest))
    archive = server.root / "cl/cifar.tar.gz"
    archive.write_bytes(archive.read_bytes()[:500])  # cut short, and honestly announced so
    dest = tmp_path / "data"
    args = ["--manifest", str(manifest_path), "--download", "--dest", str(dest)]
    assert fd.main([*args, *rewrite_args(server), "--only", "cifar/"]) == 1
    (line,) = error_lines(capsys.readouterr().err)
    assert line.startswith("fetch_data: error: cifar: cannot rebuild from ")
    assert list(dest.iterdir()) == []


def test_archive_download_failure(
    tmp_path: Path,
    server: Server,
    derived_setup: tuple[Path, dict, dict[str, bytes]],
    capsys: pytest.CaptureFixture,
) -> None:
    manifest_path, manifest, _ = derived_setup
    manifest_path.write_text(json.dumps(manifest))
    (server.root / "cl/imagenet.tar.gz").unlink()
    dest = tmp_path / "data"
    args = ["--manifest", str(manifest_path), "--download", "--dest", str(dest)]
    assert fd.main([*args, *rewrite_args(server)]) == 1
    (line,) = error_lines(capsys.readouterr().err)
    assert line.startswith("fetch_data: error: unlabeled/in: download failed from ")
    assert "404" in line
    assert (dest / "cifar/c.npz").is_file()  # the other set is still rebuilt
    assert parts_left(dest) == []


# --------------------------------------------------------------------------- command line


def test_command_line_exit_status(tmp_path: Path) -> None:
    run = [sys.executable, str(SCRIPT), "--dest", str(tmp_path), "--check"]
    bad = subprocess.run([*run, "--only", "weights/darknet/voc.names"], capture_output=True)
    assert bad.returncode == 1
    assert bad.stderr.decode().strip() == "fetch_data: error: weights/darknet/voc.names: missing"
    none = subprocess.run([*run, "--only", "no/such/prefix"], capture_output=True)
    assert none.returncode == 1 and b"no manifest file matches" in none.stderr


# --------------------------------------------------------------------------- hostile servers
# Servers that never stop sending, trickle a byte at a time, or stall, and a run stopped by a
# signal: the fetcher must stop at the manifest's size and at its deadline, exit on SIGINT and
# SIGTERM within a second, and leave no file or part behind. Time bounds are generous (the
# suite shares two cores with other work); the measured times are printed (pytest -s).

HELLO = b"hello world\n"  # 12 bytes


def wait_for(condition: Callable[[], object], seconds: float) -> bool:
    """Poll ``condition`` until it holds or ``seconds`` pass; whether it held decides."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def hostile_manifest(tmp_path: Path, path: str = "x/file.txt", data: bytes = HELLO) -> Path:
    """A manifest listing one file, downloaded from RAW + t/file (rewritten to the server)."""
    entry = {"file": path, "url": f"{RAW}t/file", "sha256": sha256(data), "bytes": len(data)}
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"files": [{**entry, "licence": "test"}]}))
    return manifest


def endless(server: Server, sent: list[int], done: threading.Event) -> Callable:
    def handle(h: BaseHTTPRequestHandler) -> None:
        try:
            h.send_response(200)  # HTTP/1.0, no Content-Length: the body ends when we close
            h.end_headers()
            block = b"\0" * (1 << 16)
            while not server.stopping.is_set():
                h.wfile.write(block)
                sent[0] += len(block)
        finally:
            done.set()

    return handle


def trickle(server: Server, length: int, head: bytes, every: float, in_headers: bool) -> Callable:
    """Send ``head`` at once, then one byte every ``every`` s, in the body (of ``length``
    announced bytes) or, with ``in_headers``, in a header line that never ends."""

    def handle(h: BaseHTTPRequestHandler) -> None:
        if in_headers:
            h.wfile.write(b"HTTP/1.0 200 OK\r\nX-Slow: ")
        else:
            h.send_response(200)
            h.send_header("Content-Length", str(length))
            h.end_headers()
            h.wfile.write(head)
        while not server.stopping.wait(every):
            h.wfile.write(b"a")

    return handle


def dest_bytes(dest: Path) -> int:
    return sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) if dest.exists() else 0


def test_endless_body_is_cut_at_the_manifest_size(
    tmp_path: Path, server: Server, capsys: pytest.CaptureFixture
) -> None:
    sent, done = [0], threading.Event()
    server.handlers["/raw/t/file"] = endless(server, sent, done)
    dest = tmp_path / "data"
    args = ["--manifest", str(hostile_manifest(tmp_path)), "--download", "--dest", str(dest)]
    t0 = time.monotonic()
    assert fd.main([*args, *rewrite_args(server), "--retries", "3"]) == 1
    elapsed = time.monotonic() - t0
    (line,) = error_lines(capsys.readouterr().err)
    assert line.startswith(
        "fetch_data: error: x/file.txt: server sent more than the 12 bytes the manifest lists"
    )
    assert server.hits == ["/raw/t/file"]  # not retried: the same server would do it again
    assert not (dest / "x/file.txt").exists() and parts_left(dest) == [] and dest_bytes(dest) == 0
    assert wait_for(done.is_set, 30), "the server was never cut off"
    print(f"endless body: stopped after {elapsed:.2f} s, server sent {sent[0]} bytes")
    assert elapsed < 30
    assert sent[0] < 256 << 20  # what the sockets buffer, not what a disk fills with


def test_endless_archive_is_cut_at_its_cap(
    tmp_path: Path,
    server: Server,
    derived_setup: tuple[Path, dict, dict[str, bytes]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    manifest_path, manifest, _ = derived_setup
    # The manifest may give an archive's size (then that is the cap), else ARCHIVE_CAP applies.
    size = len((server.root / "cl/imagenet.tar.gz").read_bytes())
    manifest["derived"][0]["archive_bytes"] = size - 1
    manifest_path.write_text(json.dumps(manifest))
    monkeypatch.setattr(fd, "ARCHIVE_CAP", 1 << 20)
    sent, done = [0], threading.Event()
    server.handlers["/cl/cifar.tar.gz"] = endless(server, sent, done)
    dest = tmp_path / "data"
    args = ["--manifest", str(manifest_path), "--download", "--dest", str(dest)]
    assert fd.main([*args, *rewrite_args(server)]) == 1
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 2
    assert lines[0].startswith(
        f"fetch_data: error: unlabeled/in: server sent more than the {size - 1} bytes the "
        "manifest lists"
    )
    assert lines[1].startswith(
        f"fetch_data: error: cifar: server sent more than the archive cap of {1 << 20} bytes"
    )
    assert parts_left(dest) == [] and dest_bytes(dest) == 0


@pytest.mark.parametrize("in_headers", [False, True], ids=["body", "headers"])
def test_trickling_server_is_cut_off_at_the_deadline(
    tmp_path: Path, server: Server, capsys: pytest.CaptureFixture, in_headers: bool
) -> None:
    # One byte every 0.5 s: the read timeout (3 s) never fires, only the deadline can stop it.
    data = bytes(range(256)) * 4
    server.handlers["/raw/t/file"] = trickle(server, len(data), data[:10], 0.5, in_headers)
    dest = tmp_path / "data"
    manifest = hostile_manifest(tmp_path, data=data)
    args = ["--manifest", str(manifest), "--download", "--dest", str(dest), *rewrite_args(server)]
    t0 = time.monotonic()
    assert fd.main([*args, "--deadline", "2", "--timeout", "3", "--retries", "3"]) == 1
    elapsed = time.monotonic() - t0
    (line,) = error_lines(capsys.readouterr().err)
    print(f"trickle in the {'headers' if in_headers else 'body'}: cut off after {elapsed:.2f} s")
    assert (
        line == "fetch_data: error: x/file.txt: not fetched within its deadline of 2 s (--deadline)"
    )
    assert 2.0 <= elapsed < 15
    assert server.hits == ["/raw/t/file"]
    assert not (dest / "x/file.txt").exists() and parts_left(dest) == []


def start_fetcher(args: list[str], disposition: signal.Handlers) -> subprocess.Popen:
    def default_signals() -> None:
        # The suite may run with SIGINT ignored (nohup, CI, `(trap '' INT; make test)`); a child
        # would inherit that. Give it the dispositions an interactive shell gives a command
        # (SIG_DFL), or on purpose SIG_IGN: the fetcher installs its own handlers either way.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, disposition)

    env = {k: v for k, v in os.environ.items() if k != "DATA_MIRROR"}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=default_signals,
    )


@pytest.mark.parametrize(
    ("signum", "status", "disposition"),
    [
        (signal.SIGINT, 130, signal.SIG_DFL),
        (signal.SIGTERM, 143, signal.SIG_DFL),
        (signal.SIGINT, 130, signal.SIG_IGN),
    ],
    ids=["SIGINT", "SIGTERM", "SIGINT-ignored-by-parent"],
)
def test_signal_stops_a_stalled_download(
    tmp_path: Path,
    server: Server,
    signum: signal.Signals,
    status: int,
    disposition: signal.Handlers,
) -> None:
    data = bytes(range(256)) * 4
    server.handlers["/raw/t/file"] = trickle(server, len(data), data[:10], 0.2, False)
    dest = tmp_path / "data"
    manifest = hostile_manifest(tmp_path, data=data)
    proc = start_fetcher(
        ["--manifest", str(manifest), "--download", "--dest", str(dest), *rewrite_args(server)],
        disposition,
    )
    try:
        # The request reached the server and pooch's part file exists: the download is under way.
        assert wait_for(lambda: (server.hits and parts_left(dest)) or proc.poll() is not None, 60)
        assert proc.poll() is None, proc.communicate()
        assert server.hits == ["/raw/t/file"]
        t0 = time.monotonic()
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"{signum.name}: exited {proc.returncode} after {elapsed:.2f} s")
    assert proc.returncode == status, err
    assert elapsed < 5
    assert err.decode().strip().splitlines() == [
        f"fetch_data: interrupted by {signum.name}; partial files removed"
    ]
    assert parts_left(dest) == [] and not (dest / "x/file.txt").exists()


@pytest.mark.parametrize(
    "path", ["../x.txt", "a/../../x.txt", "/ABS/x.txt", "a\\..\\x.txt", "a//x.txt", "./x.txt"]
)
def test_manifest_paths_outside_data_are_refused(
    tmp_path: Path, server: Server, capsys: pytest.CaptureFixture, path: str
) -> None:
    path = path.replace("/ABS", str(tmp_path))
    serve_raw(server, fd.FileEntry(path, "", 0, "", url=f"{RAW}t/file"), HELLO)
    (tmp_path / "data").mkdir()
    manifest = hostile_manifest(tmp_path, path=path)
    before = sorted(tmp_path.rglob("*"))
    args = ["--manifest", str(manifest), "--dest", str(tmp_path / "data"), *rewrite_args(server)]
    assert fd.main([*args, "--download"]) == 1
    assert fd.main([*args, "--check"]) == 1
    lines = error_lines(capsys.readouterr().err)
    assert (
        lines
        == [
            f"fetch_data: error: {path}: refused: manifest path is not a plain path below data/ "
            f"(in {manifest})"
        ]
        * 2
    )
    assert server.hits == [] and sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("mirror", [False, True], ids=["download", "mirror"])
def test_symlink_out_of_data_is_not_written_through(
    tmp_path: Path, server: Server, capsys: pytest.CaptureFixture, mirror: bool
) -> None:
    outside, dest = tmp_path / "outside", tmp_path / "data"
    outside.mkdir()
    dest.mkdir()
    (dest / "link").symlink_to(outside, target_is_directory=True)
    path = "link/sub/f.txt"
    manifest = hostile_manifest(tmp_path, path=path)
    serve_raw(server, fd.FileEntry(path, "", 0, "", url=f"{RAW}t/file"), HELLO)
    (tmp_path / "mirror/link/sub").mkdir(parents=True)
    (tmp_path / "mirror" / path).write_bytes(HELLO)
    source = ["--mirror", str(tmp_path / "mirror")] if mirror else ["--download"]
    args = ["--manifest", str(manifest), "--dest", str(dest), *source, *rewrite_args(server)]
    assert fd.main(args) == 1
    (line,) = error_lines(capsys.readouterr().err)
    assert line.startswith(f"fetch_data: error: {path}: refused: ") and "(a symlink)" in line
    assert list(outside.iterdir()) == []  # not even the folder "sub"
    assert parts_left(dest) == []
