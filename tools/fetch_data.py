#!/usr/bin/env python3
"""Fill data/ with every third-party file listed in data/MANIFEST.json, each checked by sha256.

Sources, first that applies:
  1. ``--mirror PATH`` or the environment variable ``DATA_MIRROR``;
  2. ``../shared/data`` beside the repository root, if it exists;
  3. the upstream URLs of the manifest (raw files are downloaded byte for byte; the two derived
     sets are rebuilt from their upstream archive by the manifest's transform).

Files already present with the right sha256 are left alone. Every new file is written to a
hidden temporary file beside its target, verified, then renamed into place, so an interrupted
or failed fetch never leaves a partial or unverified file under its real name. Problems are
reported as one line per file (``fetch_data: error: PATH: PROBLEM``) and exit status 1.

No download can fill the disk or hang: each one stops at the size the manifest lists for the
file (archives: at a stated cap), each file has an overall deadline (``--deadline``, default from
its size) that holds even against a server trickling bytes, Ctrl-C or SIGTERM stop the run
within a second (exit status 130 / 143), and temporary files are removed on every exit path.
Manifest paths that would leave the data folder are refused.

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
import signal
import sys
import tarfile
import tempfile
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

from tqdm import tqdm

if TYPE_CHECKING:  # numpy is only needed to rebuild derived sets; keep start-up light.
    import numpy as np

PROG = "fetch_data"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DEST = REPO_ROOT / "data"
DEFAULT_MANIFEST = DEFAULT_DEST / "MANIFEST.json"
# CI clones the repository next to a read-only copy of shared/; developers have the same layout.
DEFAULT_MIRROR = REPO_ROOT.parent / "shared" / "data"

PART_SUFFIX = ".fetch-part"  # temporary files; never a file's real name, and gitignored
STALE_PART_AGE_S = 3600.0  # a .fetch-part this old belongs to a killed run, not a running one
CHUNK = 1 << 20
RETRY_DELAY_S = 2.0  # times the try number: 2 s, 4 s, ...
# An archive (derived sets) is cut off here unless the manifest gives its "archive_bytes": the
# two upstream archives are estimated at 100-200 MB each (not measured), so 1 GiB is generous
# and still bounds the disk.
ARCHIVE_CAP = 1 << 30
# Default --deadline of a file: this many seconds, or its size at this rate if that is longer.
DEADLINE_MIN_S = 120.0
DEADLINE_RATE = 100e3  # bytes/s
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


class FetchError(Exception):
    """A problem with one file (or archive), printed as one line naming it."""

    def __init__(self, path: str, problem: str, *, transient: bool = False) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem
        # Transient problems (network errors, truncated transfers) are worth a retry;
        # a wrong sha256 on a complete transfer is not.
        self.transient = transient


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


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verify_file(root: Path, entry: FileEntry) -> str | None:
    """None if ``root/entry.path`` is present and right, else what is wrong with it."""
    target = root / entry.path
    try:
        size = target.stat().st_size
    except FileNotFoundError:
        return "missing"
    if size != entry.size:  # cheap test first; the hash below is the real one
        return f"size mismatch (expected {entry.size} bytes, got {size})"
    got = sha256_file(target)
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
    retries: int = 3
    timeout: float = 60.0
    retry_delay: float = RETRY_DELAY_S
    deadline: float | None = None  # seconds per file; None: deadline_for(size)

    def describe(self) -> str:
        return f"mirror {self.mirror}" if self.mirror else "upstream URLs"

    def deadline_for(self, size: int) -> float:
        """Seconds one file of ``size`` bytes may take, all tries together."""
        if self.deadline is not None:
            return self.deadline
        return max(DEADLINE_MIN_S, size / DEADLINE_RATE)


class Run:
    """One fetch: the cancel event every transfer watches, and every temporary file it made
    (close() deletes the ones still there, whatever ended the run)."""

    def __init__(self) -> None:
        self.cancel = threading.Event()
        self.lock = threading.RLock()  # reentrant: a signal may interrupt the main thread in it
        self.parts: set[Path] = set()
        self.closed = False

    def new_part(self, root: Path, rel: str) -> tuple[int, Path]:
        target = root / rel
        self._inside(root, rel)  # before mkdir, which would follow a link out
        target.parent.mkdir(parents=True, exist_ok=True)
        self._inside(root, rel)
        with self.lock:
            if self.closed:
                raise Cancelled
            prefix = f".{target.name}."
            fd, name = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=PART_SUFFIX)
            self.parts.add(Path(name))
        return fd, Path(name)

    @staticmethod
    def _inside(root: Path, rel: str) -> None:
        parent = (root / rel).parent
        if not parent.resolve().is_relative_to(root.resolve()):
            raise FetchError(rel, f"refused: {parent} leads out of {root} (a symlink)")

    def drop_part(self, part: Path) -> None:
        with self.lock:
            self.parts.discard(part)
            part.unlink(missing_ok=True)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.cancel.set()
            for part in self.parts:
                part.unlink(missing_ok=True)
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
        """Called between chunks and tries: stop here if the run no longer wants this."""
        if self.abandoned or self.run.cancel.is_set():
            raise Cancelled


# --------------------------------------------------------------------------- writing files


def install_stream(
    root: Path,
    entry: FileEntry,
    chunks: Iterable[bytes],
    origin: str,
    transfer: Transfer,
    *,
    expect: int | None = None,
    too_big: str = "",
) -> None:
    """Write ``chunks`` beside ``root/entry.path``, verify size and sha256, then rename it in.

    ``origin`` names the source in messages ("in mirror X", "from URL"). ``expect`` is the
    length the sender announced, if any: a shorter stream is a truncated transfer (retryable).
    More bytes than the manifest lists end it with ``too_big`` (the chunks should stop at one
    byte more than that).
    """
    target = root / entry.path
    fd, part = transfer.run.new_part(root, entry.path)
    try:
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                size += len(chunk)
                if size > entry.size:
                    raise FetchError(entry.path, too_big)
                f.write(chunk)
                digest.update(chunk)
        if size < entry.size or (expect is not None and size < expect):
            want = max(entry.size, expect or 0)
            raise FetchError(
                entry.path, f"truncated {origin} (got {size} of {want} bytes)", transient=True
            )
        got = digest.hexdigest()
        if got != entry.sha256:
            raise FetchError(
                entry.path, f"sha256 mismatch {origin} (expected {entry.sha256}, got {got})"
            )
        os.chmod(part, 0o644)  # mkstemp makes 0600; data files are plain readable files
        transfer.check()  # not after the main thread gave up on it (deadline, Ctrl-C)
        os.replace(part, target)  # atomic: the real name only ever holds a verified file
    finally:
        transfer.run.drop_part(part)


def install_bytes(root: Path, entry: FileEntry, data: bytes, origin: str, run: Run) -> None:
    install_stream(root, entry, [data], origin, Transfer(entry.path, 0.0, run))


def remove_stale_parts(root: Path) -> None:
    """Delete temporary files left by a killed run (a running one's are younger)."""
    if not root.is_dir():
        return
    now = time.time()
    for part in root.rglob(f"*{PART_SUFFIX}"):
        try:
            if now - part.stat().st_mtime > STALE_PART_AGE_S:
                part.unlink()
        except FileNotFoundError:
            pass


# --------------------------------------------------------------------------- sources


def copy_from_mirror(root: Path, entry: FileEntry, mirror: Path, transfer: Transfer) -> None:
    src = mirror / entry.path
    if not src.is_file():
        raise FetchError(entry.path, f"missing from mirror {mirror} (try --download)")

    def chunks() -> Iterator[bytes]:
        with src.open("rb") as f:
            left = entry.size + 1  # one byte more tells a larger file
            while left > 0 and (chunk := f.read(min(CHUNK, left))):
                transfer.check()
                left -= len(chunk)
                yield chunk

    big = f"file in mirror {mirror} is larger than the {entry.size} bytes the manifest lists"
    install_stream(root, entry, chunks(), f"in mirror {mirror}", transfer, too_big=big)


def _http_chunks(
    url: str, timeout: float, length: list[int | None], limit: int, transfer: Transfer
) -> Iterator[bytes]:
    """The body of ``url``, at most ``limit`` bytes, each chunk what one socket read gave
    (read1), so that the transfer's checks run even when a server sends a byte at a time."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        header = response.headers.get("Content-Length")
        length[0] = int(header) if header and header.isdigit() else None
        while limit > 0:
            transfer.check()
            chunk = response.read1(min(CHUNK, limit))
            if not chunk:
                return
            limit -= len(chunk)
            yield chunk


def _network_problem(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def with_retries(source: Source, transfer: Transfer, url: str, attempt: Callable[[], None]) -> None:
    """Run ``attempt``; retry network errors and truncated transfers, then give up in one line."""
    what = transfer.what
    last: FetchError | None = None
    for n in range(max(1, source.retries)):
        if n:
            transfer.run.cancel.wait(source.retry_delay * n)
        transfer.check()
        try:
            attempt()
            return
        except FetchError as exc:
            if not exc.transient:
                raise
            last = exc
        except urllib.error.HTTPError as exc:
            problem = f"download failed from {url}: {_network_problem(exc)}"
            if exc.code in (401, 403, 404, 410):  # will not change on a retry
                raise FetchError(what, problem) from None
            last = FetchError(what, problem, transient=True)
        except ValueError as exc:  # a malformed URL, e.g. a bad --rewrite
            raise FetchError(what, f"cannot download {url}: {exc}") from None
        except (OSError, HTTPException) as exc:  # URLError, timeouts, resets, IncompleteRead
            last = FetchError(
                what, f"download failed from {url}: {_network_problem(exc)}", transient=True
            )
    assert last is not None
    if source.retries > 1:
        raise FetchError(last.path, f"{last.problem}; gave up after {source.retries} tries")
    raise last


def download_raw(root: Path, entry: FileEntry, source: Source, transfer: Transfer) -> None:
    assert entry.url is not None
    url = source.rewrite(entry.url)
    big = f"server sent more than the {entry.size} bytes the manifest lists (from {url})"

    def attempt() -> None:
        length: list[int | None] = [None]
        chunks = _http_chunks(url, source.timeout, length, entry.size + 1, transfer)
        try:
            # Pull the first chunk so the announced length is known before the size is judged.
            first = next(chunks, b"")
            origin = f"download from {url}"
            stream = _chain(first, chunks)
            install_stream(root, entry, stream, origin, transfer, expect=length[0], too_big=big)
        finally:
            chunks.close()  # closes the connection even when install_stream gave up early

    with_retries(source, transfer, url, attempt)


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def download_archive(
    url: str, into: Path, cap: int, exact: bool, source: Source, transfer: Transfer
) -> Path:
    """Download ``url`` (at most ``cap`` bytes; ``exact``: the manifest's size of it) to a
    temporary file under ``into``; the caller deletes it (transfer.run.drop_part)."""
    what = transfer.what
    fd, part = transfer.run.new_part(into, "archive")
    os.close(fd)
    if exact:
        big = f"server sent more than the {cap} bytes the manifest lists (from {url})"
    else:
        big = f"server sent more than the archive cap of {cap} bytes (from {url})"

    def attempt() -> None:
        length: list[int | None] = [None]
        size = 0
        with part.open("wb") as f:
            for chunk in _http_chunks(url, source.timeout, length, cap + 1, transfer):
                size += len(chunk)
                if size > cap:
                    raise FetchError(what, big)
                f.write(chunk)
        if length[0] is not None and size < length[0]:
            raise FetchError(
                what,
                f"truncated download from {url} (got {size} of {length[0]} bytes)",
                transient=True,
            )

    try:
        with_retries(source, transfer, url, attempt)
    except BaseException:
        transfer.run.drop_part(part)
        raise
    return part


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


def rebuild_derived(
    root: Path,
    dset: DerivedSet,
    wanted: Sequence[FileEntry],
    source: Source,
    bar: Any,
    run: Run,
) -> list[FetchError]:
    """Download the set's archive, rebuild ``wanted`` from it; one error per file that fails."""
    transform = TRANSFORMS.get(dset.transform)
    if transform is None:
        return [FetchError(dset.dir, f"unknown transform_id {dset.transform!r}")]
    url = source.rewrite(dset.archive)
    cap = dset.archive_bytes or ARCHIVE_CAP
    archives: list[Path] = []

    def download(transfer: Transfer) -> None:
        exact = dset.archive_bytes is not None
        archives.append(download_archive(url, root, cap, exact, source, transfer))

    failed = run_transfers(run, [(dset.dir, source.deadline_for(cap), download)], 1, None)
    if failed or not archives:
        return failed
    archive = archives[0]
    errors: list[FetchError] = []
    done: set[str] = set()
    try:
        with tarfile.open(archive, "r:*") as tar:
            for entry, data in transform(tar, wanted):
                done.add(entry.path)
                got = hashlib.sha256(data).hexdigest()
                if got == entry.sha256 and len(data) == entry.size:
                    install_bytes(root, entry, data, f"after rebuild from {url}", run)
                else:
                    # Not written: the rebuild is deterministic only for the same OpenCV
                    # (libjpeg) and zlib builds as the ones that made the manifest.
                    errors.append(
                        FetchError(
                            entry.path,
                            f"rebuilt from {url}, but sha256 mismatch (expected {entry.sha256},"
                            f" got {got}; other OpenCV/libjpeg/zlib build?)",
                        )
                    )
                bar.update(1)
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error, FetchError) as exc:
        # A broken archive (or undecodable member) fails the whole set in one line.
        return [*errors, FetchError(dset.dir, f"cannot rebuild from {url}: {exc}")]
    finally:
        run.drop_part(archive)
    missing = [e for e in wanted if e.path not in done]
    return errors + [
        FetchError(e.path, f"member {e.member} not found in archive {url}") for e in missing
    ]


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
    files = manifest.all_files()
    todo = []
    for entry in tqdm(files, desc="verify", unit="file", disable=None, leave=False):
        problem = verify_file(root, entry)
        if problem is not None:
            if problem != "missing":
                print(f"{PROG}: {entry.path}: {problem}; fetching it again", file=sys.stderr)
            todo.append(entry)
    if not todo:
        return []
    needed = {e.path for e in todo}
    errors: list[FetchError] = []
    with tqdm(
        total=len(todo), desc=f"fetch ({source.describe()})", unit="file", disable=None
    ) as bar:
        # The mirror holds the derived files ready-made: they are plain copies there.
        singles = todo if source.mirror else [e for e in todo if e.url is not None]
        errors += run_transfers(run, [_single(root, e, source) for e in singles], jobs, bar)
        if not source.mirror and not errors:
            for dset in manifest.derived:
                wanted = [e for e in dset.files if e.path in needed]
                if wanted:
                    errors += rebuild_derived(root, dset, wanted, source, bar, run)
    return errors


Task = tuple[str, float, Callable[[Transfer], None]]  # what, deadline in seconds, the work


def _single(root: Path, entry: FileEntry, source: Source) -> Task:
    def work(transfer: Transfer) -> None:
        if source.mirror is not None:
            copy_from_mirror(root, entry, source.mirror, transfer)
        else:
            download_raw(root, entry, source, transfer)

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


def check(manifest: Manifest, root: Path) -> list[FetchError]:
    errors = []
    for entry in tqdm(manifest.all_files(), desc="check", unit="file", disable=None, leave=False):
        problem = verify_file(root, entry)
        if problem is not None:
            errors.append(FetchError(entry.path, problem))
    return errors


def pick_source(args: argparse.Namespace) -> Source:
    rewrite = UrlRewriter.parse(args.rewrite)
    common: dict[str, Any] = {
        "rewrite": rewrite,
        "retries": args.retries,
        "timeout": args.timeout,
        "retry_delay": RETRY_DELAY_S,
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
