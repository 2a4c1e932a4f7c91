"""``make deploy``: the board package and its overlay onto a board over ssh, installed, tested.

The steps, each one command (``--dry-run`` prints them instead of running them):

1. ``deploy/package/build.py --board B``: the wheel and ``pow2det-board-B.tar.gz``, which carries
   the overlay of ``build/deploy/B/`` (``make bitstream``) and the board's config.json;
2. ``ssh HOST mkdir -p DIR`` and ``scp`` the tarball there;
3. ``ssh -t HOST``: unpack, ``pip3 install --no-deps`` the wheel (a PYNQ image has numpy and
   pynq, and pip must not fetch or build them on the board) and ``shiftdet selftest --backend
   pynq`` on the overlay. Both run as root in a login shell with the image's PYNQ venv and
   XRT settings sourced where they exist (PYNQ 3): PYNQ needs root for the PL. ``-t`` lets
   sudo ask for its password.

The self-test's exit status is the deploy's, so a failing board fails ``make deploy``.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from deploy.package import build as package
from deploy.vivado import tcl
from deploy.vivado.bitstream import rel

REMOTE_DIR = "pow2det"
SUDO = "sudo -H"
# PYNQ 3 images keep pynq in a venv and XRT's settings in these two scripts (what a root login
# shell sources too); PYNQ 2.7 has neither and uses the system Python.
ENV_SETUP = ("for f in /etc/profile.d/pynq_venv.sh /etc/profile.d/xrt_setup.sh; "
             'do if [ -f "$f" ]; then . "$f"; fi; done; ')  # fmt: skip


@dataclass(frozen=True)
class Step:
    what: str
    argv: list[str]


def tarball_path(board: str) -> Path:
    return package.OUT / f"pow2det-board-{board}.tar.gz"


def wheel_name() -> str:
    return f"{package.DIST.replace('-', '_')}-{package.repo_version()}-py3-none-any.whl"


def overlay_files(board: str, root: Path = tcl.BUILD_ROOT) -> list[Path]:
    return [root / board / "pow2det.bit", root / board / "pow2det.hwh"]


def remote_script(board: str, remote_dir: str = REMOTE_DIR, sudo: str = SUDO) -> str:
    """The shell command the board runs: unpack, install, self-test."""
    q = shlex.quote
    top = f"pow2det-board-{board}"
    inner = (f"{ENV_SETUP}pip3 install --no-deps --force-reinstall {q(wheel_name())} && "
             "shiftdet selftest --backend pynq --bitstream overlay/pow2det.bit "
             "--config config.json --json selftest.json")  # fmt: skip
    as_root = " ".join(filter(None, [sudo.strip(), "bash -lc", q(inner)]))  # sudo may be ""
    return (f"cd {q(remote_dir)} && rm -rf {q(top)} && tar xzf {q(top + '.tar.gz')} && "
            f"cd {q(top)} && {as_root}")  # fmt: skip


def plan(board: str, host: str, remote_dir: str = REMOTE_DIR, sudo: str = SUDO,
         ssh_opts: list[str] | None = None) -> list[Step]:  # fmt: skip
    """The deploy's commands, in order."""
    opts = list(ssh_opts or [])
    tar = tarball_path(board)
    build_py = Path(package.__file__).resolve()
    return [
        Step("package", [rel(Path(sys.executable)), rel(build_py), "--board", board]),
        Step("mkdir", ["ssh", *opts, host, f"mkdir -p {shlex.quote(remote_dir)}"]),
        Step("copy", ["scp", *opts, rel(tar), f"{host}:{remote_dir}/"]),
        Step("install+selftest",
             ["ssh", "-t", *opts, host, remote_script(board, remote_dir, sudo)]),
    ]  # fmt: skip


def run(board: str, host: str, dry_run: bool = False, remote_dir: str = REMOTE_DIR,
        sudo: str = SUDO, ssh_opts: list[str] | None = None,
        root: Path = tcl.BUILD_ROOT) -> int:  # fmt: skip
    """Runs (or with ``dry_run`` prints) the plan; returns the exit status."""
    if not host.strip():
        print("deploy: HOST=user@address is required (e.g. HOST=xilinx@pynq)", file=sys.stderr)
        return 2
    if any(c.isspace() for c in host) or host.startswith("-"):
        print(f"deploy: HOST={host!r} is not a user@address or an ssh host name", file=sys.stderr)
        return 2
    steps = plan(board, host, remote_dir, sudo, ssh_opts)
    missing = [p for p in overlay_files(board, root) if not p.is_file()]
    if dry_run:
        if missing:
            print(f"# note: {', '.join(rel(p) for p in missing)} not built yet "
                  f"(make bitstream BOARD={board}); a real deploy stops here")  # fmt: skip
        for s in steps:
            print(shlex.join(s.argv))
        return 0
    if missing:
        print(f"deploy: no overlay for {board}: {', '.join(rel(p) for p in missing)} missing "
              f"(make bitstream BOARD={board} first)", file=sys.stderr)  # fmt: skip
        return 2
    for s in steps:
        print(f"deploy: {shlex.join(s.argv)}", flush=True)
        rc = subprocess.run(s.argv, cwd=tcl.REPO).returncode
        if rc != 0:
            print(f"deploy: step {s.what} failed (exit {rc})", file=sys.stderr)
            return rc
    print(f"deploy: {board} on {host}: installed, self-test passed")
    return 0
