#!/usr/bin/env python3
"""Fill data/ with every third-party file listed in data/MANIFEST.json, each checked by sha256.

Sources, first that applies:
  1. ``--mirror PATH`` or the environment variable ``DATA_MIRROR``;
  2. ``../shared/data`` beside the repository root, if it exists;
  3. the upstream URLs of the manifest (raw files are downloaded byte for byte; the two derived
     sets are rebuilt from their upstream archive by the manifest's transform).

Every file is checked first (size, then sha256). The manifest is a pooch registry (file ->
sha256 and URL): for each file missing or wrong, pooch writes a temporary file beside its
target, checks its sha256 and renames it into place, retries failed downloads and runs the
derived sets' rebuild as a processor on their archive. What pooch's own downloader lacks is
done by the two downloaders here (a mirror copy and an HTTP download): no download can fill the
disk or hang. Each stops at the size the manifest lists for the file (archives: at a stated
cap), each file has an overall deadline (``--deadline``, default from its size) that holds even
against a server trickling bytes, Ctrl-C or SIGTERM stop the run within a second (exit status
130 / 143), and temporary files are removed on every exit path. Manifest paths that would
leave the data folder are refused. Problems are reported as one line per file
(``fetch_data: error: PATH: PROBLEM``), exit status 1.

``--check`` only verifies what is there. ``--rewrite FROM=TO`` maps URL prefixes (tests point
the real URLs at a local server with it).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import queue
import re
import signal
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http.client import HTTPException
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pooch
import requests.exceptions
from tqdm import tqdm

if TYPE_CHECKING:  # numpy is only needed to rebuild derived sets; keep start-up light.
    import numpy as np

PROG = "fetch_data"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DEST = REPO_ROOT / "data"
DEFAULT_MANIFEST = DEFAULT_DEST / "MANIFEST.json"
# CI clones the repository next to a read-only copy of shared/; developers have the same layout.
DEFAULT_MIRROR = REPO_ROOT.parent / "shared" / "data"

# Temporary files: pooch's (tempfile's default names, "tmp" and 8 characters) while a file is
# written, and a derived set's archive between its download and its rebuild. Gitignored.
PART_SUFFIX = ".fetch-part"
POOCH_TEMP = re.compile(r"tmp[a-z0-9_]{8}")
STALE_PART_AGE_S = 3600.0  # a temporary file this old belongs to a killed run, not a running one
CHUNK = 1 << 20
# An archive (derived sets) is cut off here unless the manifest gives its "archive_bytes": the
# two upstream archives are estimated at 100-200 MB each (not measured), so 1 GiB is generous
# and still bounds the disk.
ARCHIVE_CAP = 1 << 30
# Default --deadline of a file: this many seconds, or its size at this rate if that is longer.
DEADLINE_MIN_S = 120.0
DEADLINE_RATE = 100e3  # bytes/s
CLOSE_GRACE_S = 0.5  # how long the end of a run waits for pooch calls under way to unwind
WATCH_S = 0.2  # how often the main thread looks at deadlines and signals while files download
USER_AGENT = "pow2det-fetch-data/1"

# Transform ids used in MANIFEST.json "transform_id" (the prose "transform" says the same).
JPEG512 = "opencv-area-max512-jpeg90"
CIFAR10_NPZ = "cifar10-test-npz"

# Torchvision's CIFAR-10 label order; the npz is stacked in this order.
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

pooch.get_logger().setLevel("WARNING")  # its "Downloading ..." lines; ours are one per problem


class FetchError(Exception):
    """A problem with one file (or archive), printed as one line naming it; not retried."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class Transient(FetchError, requests.exceptions.RequestException):
    """A network error or a truncated transfer: worth a retry. pooch retries a download that
    fails with a requests exception ("a bad connection"), up to its retry_if_failed."""


class Cancelled(Exception):
    """A transfer stops without an error of its own: Ctrl-C, another file's error, a deadline
    the main thread already reported."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM reached the main thread (raised there by the handler main installs)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass(frozen=True)
class FileEntry:
    """One file under data/: where it goes, what it must hash to, and where it comes from."""

    path: str  # relative to data/, "/"-separated, same as in the mirror
    sha256: str
    size: int
    licence: str
    url: str | None = None  # raw files: the upstream URL, byte-identical
    member: str | None = None  # derived files: archive member (below its top folder) if one


@dataclass(frozen=True)
class DerivedSet:
    """Files rebuilt from one upstream archive by a named transform."""

    dir: str
    archive: str
    transform: str
    files: tuple[FileEntry, ...]
    archive_bytes: int | None = None  # the archive's exact size, if the manifest gives it


@dataclass(frozen=True)
class Manifest:
    raw: tuple[FileEntry, ...]
    derived: tuple[DerivedSet, ...]

    def all_files(self) -> list[FileEntry]:
        return [*self.raw, *(e for d in self.derived for e in d.files)]

    def select(self, prefixes: Sequence[str]) -> Manifest:
        """Keep only files whose path starts with one of ``prefixes`` (all if none given)."""
        if not prefixes:
            return self

        def keep(e: FileEntry) -> bool:
            return any(e.path.startswith(p) for p in prefixes)

        derived = tuple(replace(d, files=tuple(filter(keep, d.files))) for d in self.derived)
        return Manifest(
            raw=tuple(filter(keep, self.raw)), derived=tuple(d for d in derived if d.files)
        )


def _plain_path(rel: str) -> str:
    """``rel`` if it names a file below data/, else FetchError (absolute, "..", "." or empty
    components, backslashes: nothing may be written outside the data folder)."""
    if not isinstance(rel, str) or "\\" in rel or "\0" in rel:
        raise FetchError(str(rel), "refused: manifest path is not a plain path below data/")
    if any(part in ("", ".", "..") for part in rel.split("/")):
        raise FetchError(rel, "refused: manifest path is not a plain path below data/")
    return rel


def load_manifest(path: Path) -> Manifest:
    doc = json.loads(path.read_text(encoding="utf-8"))
    raw = tuple(
        FileEntry(_plain_path(f["file"]), f["sha256"], int(f["bytes"]), f["licence"], url=f["url"])
        for f in doc["files"]
    )
    derived = tuple(
        DerivedSet(
            dir=d["dir"],
            archive=d["archive"],
            transform=d["transform_id"],
            archive_bytes=int(d["archive_bytes"]) if "archive_bytes" in d else None,
            files=tuple(
                FileEntry(
                    _plain_path(f["file"]),
                    f["sha256"],
                    int(f["bytes"]),
                    d["licence"],
                    member=f.get("member"),
                )
                for f in d["files"]
            ),
        )
        for d in doc.get("derived", [])
    )
    paths = [e.path for e in (*raw, *(e for d in derived for e in d.files))]
    if len(paths) != len(set(paths)):
        raise ValueError(f"{path}: a file is listed twice")
    return Manifest(raw, derived)


def verify_file(root: Path, entry: FileEntry) -> str | None:
    """None if ``root/entry.path`` is present and right, else what is wrong with it."""
    target = root / entry.path
    try:
        size = target.stat().st_size
    except FileNotFoundError:
        return "missing"
    if size != entry.size:  # cheap test first; the hash below is the real one
        return f"size mismatch (expected {entry.size} bytes, got {size})"
    got = pooch.file_hash(str(target))
    if got != entry.sha256:
        return f"sha256 mismatch (expected {entry.sha256}, got {got})"
    return None


@dataclass
class UrlRewriter:
    """Maps URL prefixes, e.g. https://raw.githubusercontent.com/ -> http://127.0.0.1:8000/raw/."""

    rules: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def parse(cls, specs: Iterable[str]) -> UrlRewriter:
        rules = []
        for spec in specs:
            src, sep, dst = spec.partition("=")
            if not sep or not src:
                raise ValueError(f"--rewrite wants FROM=TO, got {spec!r}")
            rules.append((src, dst))
        return cls(rules)

    def __call__(self, url: str) -> str:
        for src, dst in self.rules:
            if url.startswith(src):
                return dst + url[len(src) :]
        return url


@dataclass(frozen=True)
class Source:
    """Where missing files come from: a local mirror folder, or upstream (mirror is None)."""

    mirror: Path | None
    rewrite: UrlRewriter = field(default_factory=UrlRewriter)
    retries: int = 3  # tries per download (pooch waits 1 s, 2 s, ... between them)
    timeout: float = 60.0
    deadline: float | None = None  # seconds per file; None: deadline_for(size)

    def describe(self) -> str:
        return f"mirror {self.mirror}" if self.mirror else "upstream URLs"

    def deadline_for(self, size: int) -> float:
        """Seconds one file of ``size`` bytes may take, all tries together."""
        if self.deadline is not None:
            return self.deadline
        return max(DEADLINE_MIN_S, size / DEADLINE_RATE)


def archive_name(dset: DerivedSet) -> str:
    """Where a derived set's archive lies in data/ between its download and its rebuild."""
    return f".{dset.dir.replace('/', '_')}.archive{PART_SUFFIX}"


def make_store(root: Path, manifest: Manifest, source: Source) -> pooch.Pooch:
    """The pooch registry of ``root``: every manifest file with its sha256 and where it comes
    from (its copy in the mirror, or its upstream URL), and each derived set's archive (no
    sha256: GitHub's generated tarballs are not byte-stable; the rebuilt files are checked)."""
    files = manifest.all_files()
    registry: dict[str, str | None] = {e.path: f"sha256:{e.sha256}" for e in files}
    if source.mirror is not None:  # it holds the derived files ready-made: plain copies there
        urls = {e.path: str(source.mirror / e.path) for e in files}
    else:
        urls = {e.path: source.rewrite(e.url) for e in manifest.raw if e.url}
        for dset in manifest.derived:
            registry[archive_name(dset)] = None
            urls[archive_name(dset)] = source.rewrite(dset.archive)
    tries = 1 if source.mirror is not None else max(1, source.retries)
    return pooch.create(
        path=root, base_url="", registry=registry, urls=urls, retry_if_failed=tries - 1
    )


class Run:
    """One fetch: the cancel event every transfer watches, and every temporary file pooch gave
    a downloader. close() deletes those still there, whatever ended the run: pooch deletes its
    own on an exception, and close() first gives the pooch calls under way CLOSE_GRACE_S to
    unwind, but a worker stuck in a socket read at a deadline or a signal never gets there
    (workers are daemon threads; the process does not wait for them)."""

    def __init__(self) -> None:
        self.cancel = threading.Event()
        self.lock = threading.RLock()  # reentrant: a signal may interrupt the main thread in it
        self.idle = threading.Condition(self.lock)
        self.parts: set[Path] = set()
        self.calls = 0  # pooch calls under way

    def own(self, part: str | Path) -> None:
        """Called by each downloader first, with the file it is given to write."""
        with self.lock:
            if self.cancel.is_set():  # closed: take no new file (pooch deletes this one)
                raise Cancelled
            self.parts.add(Path(part))

    def fetch(self, store: pooch.Pooch, name: str, downloader: Callable, **kw: Any) -> None:
        """store.fetch, counted: close() waits for it (pooch makes its temporary file before
        the downloader can own it)."""
        with self.lock:
            if self.cancel.is_set():
                raise Cancelled
            self.calls += 1
        try:
            store.fetch(name, downloader=downloader, **kw)
        except Transient as exc:  # what pooch re-raises after its last try
            if (tries := store.retry_if_failed + 1) > 1:
                raise FetchError(exc.path, f"{exc.problem}; gave up after {tries} tries") from None
            raise
        finally:
            with self.lock:
                self.calls -= 1
                self.idle.notify_all()

    def close(self) -> None:
        with self.lock:
            self.cancel.set()
            try:  # a signal may end the wait: the parts go all the same
                self.idle.wait_for(lambda: self.calls == 0, timeout=CLOSE_GRACE_S)
            finally:
                for part in self.parts:
                    part.unlink(missing_ok=True)  # renamed into place by now, or a part
                self.parts.clear()


@dataclass(eq=False)
class Transfer:
    """One file (or archive) being fetched, by a worker thread, before ``deadline``."""

    what: str
    seconds: float
    run: Run
    deadline: float = 0.0  # time.monotonic() by which it must be done
    abandoned: bool = False  # the main thread gave up on it (deadline, Ctrl-C)

    def check(self) -> None:
        """Called between chunks: stop here if the run no longer wants this."""
        if self.abandoned or self.run.cancel.is_set():
            raise Cancelled


def is_part(path: Path) -> bool:
    return path.name.endswith(PART_SUFFIX) or POOCH_TEMP.fullmatch(path.name) is not None


def remove_stale_parts(root: Path) -> None:
    """Delete temporary files left by a killed run (a running one's are younger)."""
    if not root.is_dir():
        return
    now = time.time()
    for part in filter(is_part, root.rglob("*")):
        try:
            if part.is_file() and now - part.stat().st_mtime > STALE_PART_AGE_S:
                part.unlink()
        except FileNotFoundError:
            pass


def prepare(root: Path, rel: str) -> None:
    """Make the folder of ``root/rel``, refusing one that leads out of ``root`` (a symlink in
    data/): checked before mkdir, which would follow the link, and after."""
    parent = (root / rel).parent
    for make in (True, False):
        if not parent.resolve().is_relative_to(root.resolve()):
            raise FetchError(rel, f"refused: {parent} leads out of {root} (a symlink)")
        if make:
            parent.mkdir(parents=True, exist_ok=True)


# --------------------------------------------------------------------------- downloaders
# pooch calls a downloader as downloader(url, output_file, pooch) with a temporary file to fill;
# it then checks the registry's sha256 and renames the file into place, or deletes it.


@dataclass
class Downloader:
    """The pooch downloaders of one file or archive: ``copy`` (from the mirror) and ``http``.
    Each is called as ``d(url, output_file, pooch)`` with pooch's temporary file to fill; it
    takes at most ``cap`` bytes and at least ``size`` (a manifest file: its exact size, and
    ``sha256``; an archive: its cap only), and stops between reads when the transfer is no
    longer wanted (a deadline, Ctrl-C)."""

    transfer: Transfer
    cap: int
    size: int | None = None
    sha256: str | None = None
    timeout: float = 60.0
    mirror: Path | None = None
    listed: bool = True  # the cap is the manifest's size (else ARCHIVE_CAP)

    def _limit(self) -> str:
        if self.listed:
            return f"the {self.cap} bytes the manifest lists"
        return f"the archive cap of {self.cap} bytes"

    def copy(self, url: str, out: str, _pooch: object) -> None:
        """From the mirror: the "URL" is the file's path there."""
        self.transfer.run.own(out)
        if not Path(url).is_file():
            problem = f"missing from mirror {self.mirror} (try --download)"
            raise FetchError(self.transfer.what, problem)
        with open(url, "rb") as f:
            big = f"file in mirror {self.mirror} is larger than {self._limit()}"
            self._write(out, f.read, f"in mirror {self.mirror}", big, self.size)

    def http(self, url: str, out: str, _pooch: object) -> None:
        self.transfer.run.own(out)
        what, failed = self.transfer.what, f"download failed from {url}"
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                header = response.headers.get("Content-Length")
                length = int(header) if header and header.isdigit() else 0
                big = f"server sent more than {self._limit()} (from {url})"
                expect = max(self.size or 0, length) or None
                # read1: one socket read at most, so the checks run even against a trickle
                self._write(out, response.read1, f"download from {url}", big, expect)
        except (FetchError, Cancelled):  # before OSError: a Transient is one too
            raise
        except urllib.error.HTTPError as exc:
            problem = f"{failed}: HTTP {exc.code} {exc.reason}"
            if exc.code in (401, 403, 404, 410):  # will not change on a retry
                raise FetchError(what, problem) from None
            raise Transient(what, problem) from None
        except urllib.error.URLError as exc:
            raise Transient(what, f"{failed}: {exc.reason}") from None
        except ValueError as exc:  # a malformed URL, e.g. a bad --rewrite
            raise FetchError(what, f"cannot download {url}: {exc}") from None
        except (OSError, HTTPException) as exc:  # timeouts, resets, IncompleteRead
            name = type(exc).__name__
            raise Transient(what, f"{failed}: {name}: {exc}" if str(exc) else name) from None

    def _write(
        self, out: str, read: Callable[[int], bytes], origin: str, big: str, expect: int | None
    ) -> None:
        """Fill ``out`` from ``read(n)``: more than ``cap`` bytes is ``big`` (the reads stop at
        one byte more), fewer than ``expect`` a truncated transfer (Transient: pooch retries
        it), other bytes than ``sha256`` an error at once (not retried)."""
        what, digest, size = self.transfer.what, hashlib.sha256(), 0
        with open(out, "wb") as f:
            while True:
                self.transfer.check()
                if not (chunk := read(min(CHUNK, self.cap + 1 - size))):
                    break
                size += len(chunk)
                if size > self.cap:
                    raise FetchError(what, big)
                f.write(chunk)
                digest.update(chunk)
        if expect is not None and size < expect:
            raise Transient(what, f"truncated {origin} (got {size} of {expect} bytes)")
        if self.sha256 is not None and (got := digest.hexdigest()) != self.sha256:
            raise FetchError(what, f"sha256 mismatch {origin} (expected {self.sha256}, got {got})")
        os.chmod(out, 0o644)  # tempfile makes 0600; data files are plain readable files
        self.transfer.check()  # not after the main thread gave up on it (deadline, Ctrl-C)


def write_bytes(transfer: Transfer, data: bytes) -> Callable:
    """A pooch downloader that writes ``data`` (a rebuilt file)."""

    def put(_url: str, out: str, _pooch: object) -> None:
        transfer.run.own(out)
        Path(out).write_bytes(data)
        os.chmod(out, 0o644)

    return put


# --------------------------------------------------------------------------- derived sets


def reencode_jpeg(data: bytes, max_side: int = 512, quality: int = 90) -> bytes:
    """Decode with OpenCV, INTER_AREA-resize so the longer side is <= max_side, JPEG-encode.

    The new size rounds to nearest (checked against the mirror's 1,000 images); images already
    small enough are only re-encoded. Output bytes depend on OpenCV's bundled libjpeg.
    """
    import cv2
    import numpy as np

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a decodable image")
    h, w = image.shape[:2]
    if max(h, w) > max_side:
        scale = max_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(encoded.tobytes())


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An .npz like numpy.savez_compressed, but byte-reproducible.

    savez_compressed stamps the current time into each zip entry; here every entry gets
    1980-01-01 00:00:00 (how the mirrored file was written), so equal arrays give equal bytes.
    """
    import numpy as np

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)
    return buffer.getvalue()


def build_cifar10_npz(jpegs: Mapping[str, bytes]) -> bytes:
    """The cifar10-test npz from ``{"test/<class>/NNNN.jpg": bytes}``.

    Images decoded to RGB uint8, stacked class by class in CIFAR10_CLASSES order, files sorted
    by name within a class; ``labels`` uint8, ``index_in_class`` int16 (the NNNN of the file
    name), ``classes`` the class names.
    """
    import cv2
    import numpy as np

    images: list[np.ndarray] = []
    labels: list[int] = []
    index: list[int] = []
    for label, name in enumerate(CIFAR10_CLASSES):
        members = sorted(m for m in jpegs if m.startswith(f"test/{name}/"))
        if not members:
            raise ValueError(f"no test/{name}/*.jpg in the archive")
        for member in members:
            bgr = cv2.imdecode(np.frombuffer(jpegs[member], np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"{member}: not a decodable image")
            images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            labels.append(label)
            index.append(int(Path(member).stem))
    return npz_bytes(
        {
            "images": np.stack(images).astype(np.uint8),
            "labels": np.asarray(labels, np.uint8),
            "index_in_class": np.asarray(index, np.int16),
            "classes": np.asarray(CIFAR10_CLASSES),
        }
    )


def _archive_members(tar: tarfile.TarFile) -> Iterator[tuple[str, tarfile.TarInfo]]:
    """Regular files of a GitHub-style archive, named below its single top folder."""
    for info in tar:
        if info.isfile():
            _, _, rel = info.name.partition("/")
            yield rel, info


def _read(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(info)
    assert f is not None  # regular files always have data
    return f.read()


Rebuilt = Iterator[tuple[FileEntry, bytes]]


def rebuild_jpeg512(tar: tarfile.TarFile, wanted: Sequence[FileEntry]) -> Rebuilt:
    by_member = {e.member: e for e in wanted}
    for rel, info in _archive_members(tar):
        entry = by_member.pop(rel, None)
        if entry is not None:
            yield entry, reencode_jpeg(_read(tar, info))
        if not by_member:
            return


def rebuild_cifar10(tar: tarfile.TarFile, wanted: Sequence[FileEntry]) -> Rebuilt:
    jpegs = {
        rel: _read(tar, info)
        for rel, info in _archive_members(tar)
        if rel.startswith("test/") and rel.endswith(".jpg") and rel.count("/") == 2
    }
    data = build_cifar10_npz(jpegs)
    for entry in wanted:
        yield entry, data


TRANSFORMS: dict[str, Callable[[tarfile.TarFile, Sequence[FileEntry]], Rebuilt]] = {
    JPEG512: rebuild_jpeg512,
    CIFAR10_NPZ: rebuild_cifar10,
}


@dataclass
class Rebuild:
    """A derived set's task: download its archive (at most its ``archive_bytes``, else
    ARCHIVE_CAP) and, as pooch's processor on it, rebuild ``wanted`` by the set's transform,
    install each file that matches the manifest through ``store`` (checked and renamed into
    place by pooch), then delete the archive. ``errors``: one per file that failed."""

    store: pooch.Pooch
    root: Path
    dset: DerivedSet
    wanted: Sequence[FileEntry]
    source: Source
    bar: Any
    errors: list[FetchError] = field(default_factory=list)
    transfer: Transfer = field(init=False)  # set by work(), in the worker thread
    url: str = field(init=False)

    def task(self) -> Task:
        cap = self.dset.archive_bytes or ARCHIVE_CAP
        return self.dset.dir, self.source.deadline_for(cap), self.work

    def work(self, transfer: Transfer) -> None:
        self.transfer, self.url = transfer, self.source.rewrite(self.dset.archive)
        cap, listed = self.dset.archive_bytes or ARCHIVE_CAP, bool(self.dset.archive_bytes)
        get = Downloader(transfer, cap, listed=listed, timeout=self.source.timeout)
        transfer.run.fetch(self.store, archive_name(self.dset), get.http, processor=self)

    def __call__(self, fname: str, _action: str, _pooch: object) -> str:
        self.transfer.run.own(fname)
        done: set[str] = set()
        try:
            with tarfile.open(fname, "r:*") as tar:
                for entry, data in TRANSFORMS[self.dset.transform](tar, self.wanted):
                    self.transfer.check()
                    done.add(entry.path)
                    self._install(entry, data)
                    self.bar.update(1)
        except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error, FetchError) as exc:
            # A broken archive (or undecodable member) fails the whole set in one line.
            self.errors.append(FetchError(self.dset.dir, f"cannot rebuild from {self.url}: {exc}"))
            return fname
        finally:
            Path(fname).unlink(missing_ok=True)
        self.errors += [
            FetchError(e.path, f"member {e.member} not found in archive {self.url}")
            for e in self.wanted
            if e.path not in done
        ]
        return fname

    def _install(self, entry: FileEntry, data: bytes) -> None:
        got = hashlib.sha256(data).hexdigest()
        if got != entry.sha256 or len(data) != entry.size:
            # Not written: the rebuild is deterministic only for the same OpenCV (libjpeg) and
            # zlib builds as the ones that made the manifest.
            problem = (
                f"rebuilt from {self.url}, but sha256 mismatch (expected {entry.sha256},"
                f" got {got}; other OpenCV/libjpeg/zlib build?)"
            )
            self.errors.append(FetchError(entry.path, problem))
            return
        prepare(self.root, entry.path)
        self.transfer.run.fetch(self.store, entry.path, write_bytes(self.transfer, data))


# --------------------------------------------------------------------------- driver


def fetch(manifest: Manifest, root: Path, source: Source, jobs: int = 8) -> list[FetchError]:
    """Make ``root`` hold every manifest file; return the problems (empty when all is well).

    Whatever ends it (an error, a deadline, Interrupted from a signal), the temporary files it
    made are deleted before it returns or raises."""
    run = Run()
    try:
        return _fetch(manifest, root, source, jobs, run)
    finally:
        run.close()


def _fetch(manifest: Manifest, root: Path, source: Source, jobs: int, run: Run) -> list[FetchError]:
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(root)
    bad = check(manifest, root, "verify")
    for exc in bad:
        if exc.problem != "missing":
            print(f"{PROG}: {exc}; fetching it again", file=sys.stderr)
    needed = {exc.path for exc in bad}
    if not needed:
        return []
    todo = [e for e in manifest.all_files() if e.path in needed]
    store = make_store(root, manifest, source)
    errors: list[FetchError] = []
    with tqdm(
        total=len(todo), desc=f"fetch ({source.describe()})", unit="file", disable=None
    ) as bar:
        singles = todo if source.mirror else [e for e in todo if e.url is not None]
        tasks = [_single(store, root, e, source) for e in singles]
        errors += run_transfers(run, tasks, jobs, bar)
        if source.mirror or errors:
            return errors
        for dset in manifest.derived:  # one after the other: one line per failed set
            wanted = [e for e in dset.files if e.path in needed]
            if not wanted:
                continue
            if dset.transform not in TRANSFORMS:
                errors.append(FetchError(dset.dir, f"unknown transform_id {dset.transform!r}"))
                continue
            rebuild = Rebuild(store, root, dset, wanted, source, bar)
            errors += run_transfers(run, [rebuild.task()], 1, None)
            errors += rebuild.errors
    return errors


Task = tuple[str, float, Callable[[Transfer], None]]  # what, deadline in seconds, the work


def _single(store: pooch.Pooch, root: Path, entry: FileEntry, source: Source) -> Task:
    def work(transfer: Transfer) -> None:
        prepare(root, entry.path)  # pooch would make the folder too, through a symlink
        get = Downloader(
            transfer, entry.size, entry.size, entry.sha256, source.timeout, source.mirror
        )
        transfer.run.fetch(store, entry.path, get.copy if source.mirror else get.http)

    return entry.path, source.deadline_for(entry.size), work


def run_transfers(run: Run, tasks: Sequence[Task], jobs: int, bar: Any) -> list[FetchError]:
    """Run ``tasks`` on ``jobs`` worker threads; the first error stops the rest.

    The workers are daemon threads and the main thread only ever waits WATCH_S at a time: it
    gives up on a file at its deadline even if its thread is stuck in a socket read (that thread
    stops at its next chunk, or dies with the process; its part file goes with run.close()), and
    a signal reaches it at once."""
    results: queue.Queue[tuple[Transfer, BaseException | None]] = queue.Queue()
    pending = iter(tasks)
    take = threading.Lock()
    active: set[Transfer] = set()
    stop = threading.Event()  # one bad source, one line

    def worker() -> None:
        while True:
            with take:
                task = next(pending, None)
            if task is None:
                return
            what, seconds, work = task
            transfer = Transfer(what, seconds, run, deadline=time.monotonic() + seconds)
            with run.lock:
                active.add(transfer)
            outcome: BaseException | None = None
            try:
                if stop.is_set():
                    raise Cancelled
                work(transfer)
            except BaseException as exc:  # reported by the main thread, whatever it is
                outcome = exc
            results.put((transfer, outcome))

    for _ in range(max(1, min(jobs, len(tasks)))):
        threading.Thread(target=worker, daemon=True).start()
    errors: list[FetchError] = []
    left = len(tasks)
    while left:
        try:
            transfer, outcome = results.get(timeout=WATCH_S)
        except queue.Empty:
            transfer = None
        with run.lock:
            if transfer is not None and not transfer.abandoned:
                active.discard(transfer)
                left -= 1
                error = _as_error(transfer, outcome)
                if error is not None:
                    stop.set()
                    errors.append(error)
                elif outcome is None and bar is not None:
                    bar.update(1)
            now = time.monotonic()
            for late in [t for t in active if now > t.deadline]:
                late.abandoned = True
                active.discard(late)
                left -= 1
                stop.set()
                problem = f"not fetched within its deadline of {late.seconds:g} s (--deadline)"
                errors.append(FetchError(late.what, problem))
    return errors


def _as_error(transfer: Transfer, outcome: BaseException | None) -> FetchError | None:
    if outcome is None or isinstance(outcome, Cancelled):
        return None
    if isinstance(outcome, FetchError):
        return outcome
    if isinstance(outcome, OSError):  # e.g. disk full or read-only destination
        return FetchError(transfer.what, f"{type(outcome).__name__}: {outcome}")
    return FetchError(transfer.what, f"unexpected {type(outcome).__name__}: {outcome}")


def check(manifest: Manifest, root: Path, desc: str = "check") -> list[FetchError]:
    """One FetchError per manifest file that is not right in ``root`` (its problem)."""
    entries = tqdm(manifest.all_files(), desc=desc, unit="file", disable=None, leave=False)
    return [FetchError(e.path, p) for e in entries if (p := verify_file(root, e)) is not None]


def pick_source(args: argparse.Namespace) -> Source:
    common: dict[str, Any] = {
        "rewrite": UrlRewriter.parse(args.rewrite),
        "retries": args.retries,
        "timeout": args.timeout,
        "deadline": args.deadline,
    }
    if args.download:
        return Source(None, **common)
    named = args.mirror or os.environ.get("DATA_MIRROR") or None
    if named:
        mirror = Path(named).expanduser().resolve()
        if not mirror.is_dir():
            raise FileNotFoundError(f"mirror {mirror} is not a folder")
        return Source(mirror, **common)
    if DEFAULT_MIRROR.is_dir():
        return Source(DEFAULT_MIRROR.resolve(), **common)
    return Source(None, **common)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="default: data/")
    parser.add_argument("--mirror", help="local folder laid out like data/ (or $DATA_MIRROR)")
    parser.add_argument("--download", action="store_true", help="ignore mirrors, use upstream")
    parser.add_argument(
        "--only", action="append", default=[], metavar="PREFIX", help="only paths with PREFIX"
    )
    parser.add_argument("--check", action="store_true", help="only verify what is in --dest")
    parser.add_argument(
        "--rewrite", action="append", default=[], metavar="FROM=TO", help="map URL prefixes"
    )
    parser.add_argument("--retries", type=int, default=3, help="tries per download")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per network read")
    parser.add_argument(
        "--deadline",
        type=float,
        default=None,
        metavar="S",
        help=f"seconds per file, all tries together (default: {DEADLINE_MIN_S:g} s or the size"
        f" at {DEADLINE_RATE / 1e3:g} kB/s, whichever is longer; archives: of their cap)",
    )
    parser.add_argument("--jobs", type=int, default=8, help="files fetched in parallel")
    return parser.parse_args(argv)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _raise_interrupted(signum: int, _frame: object) -> None:
    for other in STOP_SIGNALS:  # a second Ctrl-C must not cut the clean-up short
        signal.signal(other, signal.SIG_IGN)
    raise Interrupted(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: exit status 0, 1 (problems, one line each), 130/143 (SIGINT/SIGTERM)."""
    # Explicit handlers: a SIGINT ignored by whoever started us (nohup, CI, a shell trap) or
    # SIGTERM's default (die without cleanup) would leave part files and no message.
    main_thread = threading.current_thread() is threading.main_thread()
    saved = {s: signal.signal(s, _raise_interrupted) for s in STOP_SIGNALS} if main_thread else {}
    try:
        return _main(argv)
    except Interrupted as exc:
        print(f"{PROG}: interrupted by {exc}; partial files removed", file=sys.stderr)
        return 128 + exc.signum
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def _main(argv: Sequence[str] | None) -> int:
    args = parse_args(argv)
    root: Path = args.dest.resolve()
    try:
        manifest = load_manifest(args.manifest).select(args.only)
    except FetchError as exc:
        print(f"{PROG}: error: {exc} (in {args.manifest})", file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError) as exc:
        print(f"{PROG}: error: {args.manifest}: unreadable manifest: {exc}", file=sys.stderr)
        return 1
    count = len(manifest.all_files())
    if count == 0:
        print(f"{PROG}: error: no manifest file matches --only {args.only}", file=sys.stderr)
        return 1
    if args.check:
        errors = check(manifest, root)
        done = f"{PROG}: {count} files in {root} verified"
    else:
        try:
            source = pick_source(args)
        except (FileNotFoundError, ValueError) as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 1
        errors = fetch(manifest, root, source, jobs=args.jobs)
        done = f"{PROG}: {count} files in {root} verified (source: {source.describe()})"
    for exc in errors:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
    if errors:
        return 1
    print(done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
