"""``make board-package``: the board wheel and one tarball per board.

    .venv/bin/python deploy/package/build.py [--board ultra96v2] [--artifacts A.npz ...]

writes into ``build/board-package/``

* ``pow2det_board-<version>-py3-none-any.whl``: the runtime alone (``sw/`` and the ``shiftdet``
  console script), metadata in ``deploy/package/pyproject.toml``, built by ``pip wheel`` with
  setuptools from a staging copy (offline: no build isolation, no index). It carries the
  self-test's golden digests and the frame case's artifact;
* ``pow2det-board-<board>.tar.gz``: that wheel, the overlay (``build/deploy/<board>/pow2det.bit``
  and ``.hwh`` when they have been built; ``MANIFEST.json`` says when they are absent), the
  chosen artifacts (default: every committed detector, ``models/artifacts/*.npz``, with their
  notes), the accelerator configuration and a ``README.txt`` with the steps on the board.

Deterministic: file times come from the last commit (``SOURCE_DATE_EPOCH``), the tarball's
members are sorted and owned by root, so the same tree gives the same bytes.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
OUT = REPO / "build" / "board-package"
# The boards deploy/boards/<board>/board.toml describes (only the names are relied on here).
BOARDS = ("ultra96v2", "zcu104", "pynq-z2")
DIST = "pow2det-board"
# What of sw/ goes into the wheel: the modules and the data files pyproject's package-data
# names; caches and editor files do not.
SW_FILES = ("*.py", "selftest_golden.json", "README.md")


class PackageError(RuntimeError):
    """One line: what could not be packaged."""


def repo_version() -> str:
    with open(REPO / "pyproject.toml", "rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def source_date_epoch() -> int:
    """The last commit's time (reproducible builds), else now's; $SOURCE_DATE_EPOCH wins."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        r = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%ct"],
                           capture_output=True, text=True, check=True, timeout=30)  # fmt: skip
        return int(r.stdout.strip())
    except (OSError, subprocess.SubprocessError, ValueError):
        import time

        return int(time.time())


def git_commit() -> str:
    try:
        r = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                           text=True, check=True, timeout=30)  # fmt: skip
        return r.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def stage(dest: Path, version: str) -> Path:
    """A project folder for the wheel: pyproject (version filled in), README, sw/ and the
    self-test's artifact as package data."""
    sys.path.insert(0, str(REPO))
    from sw import selftest

    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    text = (HERE / "pyproject.toml").read_text()
    marker = 'version = "0.0.0"'
    if marker not in text:
        raise PackageError(f"{HERE / 'pyproject.toml'}: no {marker!r} line to fill in")
    (dest / "pyproject.toml").write_text(text.replace(marker, f'version = "{version}"', 1))
    shutil.copy2(HERE / "README.md", dest / "README.md")
    src = REPO / "sw"
    for pattern in SW_FILES:
        for f in sorted(src.rglob(pattern)):
            if "__pycache__" in f.parts:
                continue
            to = dest / "sw" / f.relative_to(src)
            to.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, to)
    art = selftest.CHECKOUT_ARTIFACTS / selftest.FRAME_ARTIFACT
    if not art.is_file():
        raise PackageError(f"the self-test's frame artifact {art} is missing")
    (dest / "sw" / "selftest_data").mkdir()
    shutil.copy2(art, dest / "sw" / "selftest_data" / art.name)
    return dest


def build_wheel(out: Path, version: str) -> Path:
    """``pip wheel`` of the staged project, offline, with the running interpreter's
    setuptools (no build isolation: nothing is downloaded)."""
    staged = stage(out / "stage", version)
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(source_date_epoch())}
    wheel = out / f"{DIST.replace('-', '_')}-{version}-py3-none-any.whl"
    if wheel.exists():
        wheel.unlink()
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
           "--no-index", "--quiet", "--wheel-dir", str(out), str(staged)]  # fmt: skip
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if r.returncode != 0 or not wheel.is_file():
        tail = (r.stderr or r.stdout).strip().splitlines()[-5:]
        raise PackageError(f"pip wheel failed ({r.returncode}): {' | '.join(tail)}")
    shutil.rmtree(staged)
    return wheel


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


README_TXT = """pow2det board package for {board} (pow2det-board {version}, commit {commit})

On the board (PYNQ image; Python 3.8 or newer; numpy and OpenCV come with the image):

    tar xzf pow2det-board-{board}.tar.gz && cd pow2det-board-{board}
    pip3 install {wheel}            # add [opencv] where cv2 is missing
    shiftdet info                   # the board, the overlay's registers, the config
    shiftdet selftest --backend pynq --bitstream overlay/pow2det.bit --config config.json
    shiftdet detect 0 --backend pynq --bitstream overlay/pow2det.bit \\
        --config config.json --model artifacts/<model>.npz --serve 8080

{overlay}
MANIFEST.json lists every file with its size and SHA-256.
"""


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), mtime, 0o644
    tar.addfile(info, io.BytesIO(data))


def build_tarball(out: Path, board: str, wheel: Path, version: str,
                  artifacts: list[Path]) -> Path:  # fmt: skip
    """``pow2det-board-<board>.tar.gz``: wheel, overlay (when built), artifacts, config."""
    if board not in BOARDS:
        raise PackageError(f"unknown board {board!r} (choose from {', '.join(BOARDS)})")
    top = f"pow2det-board-{board}"
    overlay_dir = REPO / "build" / "deploy" / board
    files: list[tuple[str, Path]] = [(wheel.name, wheel)]
    overlay: dict[str, Any] = {"from": str(overlay_dir.relative_to(REPO))}
    bit, hwh = overlay_dir / "pow2det.bit", overlay_dir / "pow2det.hwh"
    if bit.is_file() and hwh.is_file():
        files += [("overlay/pow2det.bit", bit), ("overlay/pow2det.hwh", hwh)]
        overlay["present"] = True
        note = "overlay/ holds the bitstream and its .hwh."
    else:
        missing = [p.name for p in (bit, hwh) if not p.is_file()]
        overlay["present"] = False
        overlay["missing"] = missing
        overlay["note"] = (f"not built: {', '.join(missing)} absent from {overlay['from']}/ "
                           f"(make bitstream BOARD={board}); the package runs the emu backend "
                           f"until an overlay is copied to overlay/")  # fmt: skip
        note = "NO OVERLAY: " + overlay["note"] + "."
    for a in artifacts:
        if not a.is_file():
            raise PackageError(f"artifact {a} does not exist")
        files.append((f"artifacts/{a.name}", a))
        notes = a.with_suffix(".NOTES.md")
        if notes.is_file():
            files.append((f"artifacts/{notes.name}", notes))
    # The accelerator build the overlay was made for; the default build until deploy/ writes
    # its own (build/deploy/<board>/config.json).
    cfg_file = overlay_dir / "config.json"
    if cfg_file.is_file():
        cfg_bytes, cfg_from = cfg_file.read_bytes(), str(cfg_file.relative_to(REPO))
    else:
        from sw.contract.config import AccelConfig

        cfg_bytes = (json.dumps(AccelConfig().as_dict(), indent=1) + "\n").encode()
        cfg_from = "AccelConfig() defaults (no build/deploy/<board>/config.json)"
    mtime = source_date_epoch()
    commit = git_commit()
    manifest = {
        "package": DIST, "version": version, "board": board, "commit": commit,
        "requires_python": ">=3.8", "wheel": wheel.name, "overlay": overlay,
        "config": {"file": "config.json", "from": cfg_from},
        "files": {name: {"size": p.stat().st_size, "sha256": _sha256(p)}
                  for name, p in sorted(files)},
    }  # fmt: skip
    readme = README_TXT.format(board=board, version=version, commit=commit[:12],
                               wheel=wheel.name, overlay=note)  # fmt: skip
    path = out / f"{top}.tar.gz"
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=mtime) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, p in sorted(files):
                info = tar.gettarinfo(str(p), arcname=f"{top}/{name}")
                info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "", ""
                info.mode = 0o644
                with open(p, "rb") as f:
                    tar.addfile(info, f)
            _add_bytes(tar, f"{top}/config.json", cfg_bytes, mtime)
            _add_bytes(tar, f"{top}/MANIFEST.json",
                       (json.dumps(manifest, indent=1) + "\n").encode(), mtime)  # fmt: skip
            _add_bytes(tar, f"{top}/README.txt", readme.encode(), mtime)
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--board", action="append", choices=BOARDS,
                    help="a board's tarball (repeatable; default ultra96v2)")  # fmt: skip
    ap.add_argument("--all-boards", action="store_true", help="every board's tarball")
    ap.add_argument("--artifacts", nargs="*", metavar="NPZ",
                    help="artifacts to ship (default: models/artifacts/*.npz)")  # fmt: skip
    ap.add_argument("--out", type=Path, default=OUT, help="output folder")
    ap.add_argument("--wheel-only", action="store_true", help="only the wheel")
    args = ap.parse_args(argv)
    boards = list(BOARDS) if args.all_boards else (args.board or ["ultra96v2"])
    arts = ([Path(a) for a in args.artifacts] if args.artifacts
            else sorted((REPO / "models" / "artifacts").glob("*.npz")))  # fmt: skip
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        version = repo_version()
        wheel = build_wheel(args.out, version)
        print(f"wrote {wheel}")
        if not args.wheel_only:
            for b in boards:
                print(f"wrote {build_tarball(args.out, b, wheel, version, arts)}")
    except PackageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
