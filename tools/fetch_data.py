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

``--check`` only verifies what is there. ``--rewrite FROM=TO`` maps URL prefixes (tests point
the real URLs at a local server with it).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
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
from concurrent.futures import ThreadPoolExecutor, as_completed
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


def load_manifest(path: Path) -> Manifest:
    doc = json.loads(path.read_text(encoding="utf-8"))
    raw = tuple(
        FileEntry(f["file"], f["sha256"], int(f["bytes"]), f["licence"], url=f["url"])
        for f in doc["files"]
    )
    derived = tuple(
        DerivedSet(
            dir=d["dir"],
            archive=d["archive"],
            transform=d["transform_id"],
            files=tuple(
                FileEntry(
                    f["file"], f["sha256"], int(f["bytes"]), d["licence"], member=f.get("member")
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

    def describe(self) -> str:
        return f"mirror {self.mirror}" if self.mirror else "upstream URLs"


# --------------------------------------------------------------------------- writing files


def _new_part(target: Path) -> tuple[int, Path]:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=PART_SUFFIX)
    return fd, Path(name)


def install_stream(
    root: Path, entry: FileEntry, chunks: Iterable[bytes], origin: str, *, expect: int | None = None
) -> None:
    """Write ``chunks`` beside ``root/entry.path``, verify size and sha256, then rename it in.

    ``origin`` names the source in messages ("in mirror X", "from URL"). ``expect`` is the
    length the sender announced, if any: a shorter stream is a truncated transfer (retryable).
    """
    target = root / entry.path
    fd, part = _new_part(target)
    try:
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
                digest.update(chunk)
                size += len(chunk)
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
        os.replace(part, target)  # atomic: the real name only ever holds a verified file
    finally:
        part.unlink(missing_ok=True)


def install_bytes(root: Path, entry: FileEntry, data: bytes, origin: str) -> None:
    install_stream(root, entry, [data], origin)


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


def copy_from_mirror(root: Path, entry: FileEntry, mirror: Path) -> None:
    src = mirror / entry.path
    if not src.is_file():
        raise FetchError(entry.path, f"missing from mirror {mirror} (try --download)")

    def chunks() -> Iterator[bytes]:
        with src.open("rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    install_stream(root, entry, chunks(), f"in mirror {mirror}")


def _http_chunks(url: str, timeout: float, length: list[int | None]) -> Iterator[bytes]:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        header = response.headers.get("Content-Length")
        length[0] = int(header) if header and header.isdigit() else None
        while chunk := response.read(CHUNK):
            yield chunk


def _network_problem(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def with_retries(source: Source, what: str, url: str, attempt: Callable[[], None]) -> None:
    """Run ``attempt``; retry network errors and truncated transfers, then give up in one line."""
    last: FetchError | None = None
    for n in range(max(1, source.retries)):
        if n:
            time.sleep(source.retry_delay * n)
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


def download_raw(root: Path, entry: FileEntry, source: Source) -> None:
    assert entry.url is not None
    url = source.rewrite(entry.url)

    def attempt() -> None:
        length: list[int | None] = [None]
        chunks = _http_chunks(url, source.timeout, length)
        try:
            # Pull the first chunk so the announced length is known before the size is judged.
            first = next(chunks, b"")
            origin = f"download from {url}"
            install_stream(root, entry, _chain(first, chunks), origin, expect=length[0])
        finally:
            chunks.close()  # closes the connection even when install_stream gave up early

    with_retries(source, entry.path, url, attempt)


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def download_archive(url: str, into: Path, what: str, source: Source) -> Path:
    """Download ``url`` to a temporary file under ``into``; the caller deletes it."""

    fd, part = _new_part(into / "archive")
    os.close(fd)

    def attempt() -> None:
        length: list[int | None] = [None]
        size = 0
        with part.open("wb") as f:
            for chunk in _http_chunks(url, source.timeout, length):
                f.write(chunk)
                size += len(chunk)
        if length[0] is not None and size < length[0]:
            raise FetchError(
                what,
                f"truncated download from {url} (got {size} of {length[0]} bytes)",
                transient=True,
            )

    try:
        with_retries(source, what, url, attempt)
    except BaseException:
        part.unlink(missing_ok=True)
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
    root: Path, dset: DerivedSet, wanted: Sequence[FileEntry], source: Source, bar: Any
) -> list[FetchError]:
    """Download the set's archive, rebuild ``wanted`` from it; one error per file that fails."""
    transform = TRANSFORMS.get(dset.transform)
    if transform is None:
        return [FetchError(dset.dir, f"unknown transform_id {dset.transform!r}")]
    url = source.rewrite(dset.archive)
    try:
        archive = download_archive(url, root, dset.dir, source)
    except FetchError as exc:
        return [exc]
    errors: list[FetchError] = []
    done: set[str] = set()
    try:
        with tarfile.open(archive, "r:*") as tar:
            for entry, data in transform(tar, wanted):
                done.add(entry.path)
                got = hashlib.sha256(data).hexdigest()
                if got == entry.sha256 and len(data) == entry.size:
                    install_bytes(root, entry, data, f"after rebuild from {url}")
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
        archive.unlink(missing_ok=True)
    missing = [e for e in wanted if e.path not in done]
    return errors + [
        FetchError(e.path, f"member {e.member} not found in archive {url}") for e in missing
    ]


# --------------------------------------------------------------------------- driver


def fetch(manifest: Manifest, root: Path, source: Source, jobs: int = 8) -> list[FetchError]:
    """Make ``root`` hold every manifest file; return the problems (empty when all is well)."""
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
        errors += _fetch_singles(root, singles, source, jobs, bar)
        if not source.mirror and not errors:
            for dset in manifest.derived:
                wanted = [e for e in dset.files if e.path in needed]
                if wanted:
                    errors += rebuild_derived(root, dset, wanted, source, bar)
    return errors


def _fetch_singles(
    root: Path, entries: Sequence[FileEntry], source: Source, jobs: int, bar: Any
) -> list[FetchError]:
    stop = threading.Event()  # first error stops the rest: one bad source, one line

    def one(entry: FileEntry) -> None:
        if stop.is_set():
            return
        if source.mirror is not None:
            copy_from_mirror(root, entry, source.mirror)
        else:
            download_raw(root, entry, source)

    errors: list[FetchError] = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(one, e) for e in entries]
        for future in as_completed(futures):
            try:
                future.result()
            except FetchError as exc:
                stop.set()
                errors.append(exc)
            except OSError as exc:  # e.g. disk full or read-only destination
                stop.set()
                errors.append(FetchError(str(root), f"{type(exc).__name__}: {exc}"))
            else:
                bar.update(1)
    return errors


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
    parser.add_argument("--jobs", type=int, default=8, help="files fetched in parallel")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    root: Path = args.dest.resolve()
    try:
        manifest = load_manifest(args.manifest).select(args.only)
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
