"""``make deploy`` (deploy/vivado/remote.py): the commands it prints with DRY_RUN=1, checked
against what they act on (the board tarball's layout, the ``shiftdet selftest`` options), and
the real run's order, stops and refusals with ``subprocess.run`` replaced (no ssh here)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# deploy/ is not an installed package: it is imported from the checkout.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from deploy.package import build as package  # noqa: E402
from deploy.vivado import remote  # noqa: E402
from sw import app  # noqa: E402

HOST = "xilinx@192.168.2.99"


def make_deploy(*args: str) -> subprocess.CompletedProcess:
    if shutil.which("make") is None:
        pytest.skip("no make")
    return subprocess.run(["make", "-s", "--no-print-directory", "deploy", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def _dry_run(tmp_path: Path, board: str = "pynq-z2", *extra: str) -> list[list[str]]:
    r = make_deploy(f"BOARD={board}", f"HOST={HOST}", "DRY_RUN=1", f"DEPLOY_OUT={tmp_path}",
                    *extra)  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    # No overlay under tmp_path: the dry run says so first, as a comment.
    assert lines[0].startswith("# note: ") and "make bitstream BOARD=" + board in lines[0]
    return [shlex.split(ln) for ln in lines[1:]]


def _split_and(command: str) -> list[list[str]]:
    """``a x && b y`` -> [[a, x], [b, y]] (split by the shell's rules, then at ``&&``)."""
    steps: list[list[str]] = [[]]
    for tok in shlex.split(command):
        if tok == "&&":
            steps.append([])
        else:
            steps[-1].append(tok)
    return steps


def _inner(script: str) -> list[list[str]]:
    """The board's command: ``a && b && ... && SUDO bash -lc 'x && y'`` -> its steps, with the
    root shell's command split into its own steps."""
    out = []
    for s in _split_and(script):
        if "bash" in s and "-lc" in s:
            inner = s[s.index("-lc") + 1]
            assert inner.startswith(remote.ENV_SETUP)
            out += _split_and(inner[len(remote.ENV_SETUP) :])
            out.append(["<root>", *s[: s.index("bash")]])
        else:
            out.append(s)
    return out


def test_dry_run_prints_the_steps(tmp_path: Path) -> None:
    cmds = _dry_run(tmp_path)
    assert len(cmds) == 4
    pkg, mkdir, copy, run = cmds
    assert Path(REPO / pkg[1]).resolve() == Path(package.__file__).resolve()
    assert pkg[2:] == ["--board", "pynq-z2"]
    assert mkdir == ["ssh", HOST, "mkdir -p pow2det"]
    tar = remote.tarball_path("pynq-z2")
    assert copy == ["scp", str(tar.relative_to(REPO)), f"{HOST}:pow2det/"]
    assert run[:3] == ["ssh", "-t", HOST] and len(run) == 4
    steps = _inner(run[3])
    top = "pow2det-board-pynq-z2"
    assert steps[:4] == [["cd", "pow2det"], ["rm", "-rf", top], ["tar", "xzf", top + ".tar.gz"],
                         ["cd", top]]  # fmt: skip
    pip, selftest, root = steps[4:]
    assert root == ["<root>", "sudo", "-H"]
    assert pip == ["pip3", "install", "--no-deps", "--force-reinstall", remote.wheel_name()]
    # The self-test's options are real `shiftdet` options and name the package's files.
    assert selftest[0] == "shiftdet"
    args = app.build_parser().parse_args(selftest[1:])
    assert args.command == "selftest" and args.backend == "pynq"
    assert args.bitstream == "overlay/pow2det.bit" and args.config == "config.json"


def test_dry_run_options(tmp_path: Path) -> None:
    cmds = _dry_run(tmp_path, "zcu104", "REMOTE_DIR=/opt/p2d", "SSH_OPTS=-p 2222 -i key")
    _, mkdir, copy, run = cmds
    assert mkdir == ["ssh", "-p", "2222", "-i", "key", HOST, "mkdir -p /opt/p2d"]
    assert copy[:5] == ["scp", "-p", "2222", "-i", "key"] and copy[-1] == f"{HOST}:/opt/p2d/"
    assert run[:6] == ["ssh", "-t", "-p", "2222", "-i", "key"]
    assert _inner(run[-1])[0] == ["cd", "/opt/p2d"]
    assert "pow2det-board-zcu104.tar.gz" in copy[-2]


def test_env_setup_sources_only_existing_files(tmp_path: Path) -> None:
    """The board's environment prelude is valid sh and skips missing files."""
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no sh")
    r = subprocess.run([sh, "-c", remote.ENV_SETUP + "echo ok"], capture_output=True, text=True,
                       timeout=30)  # fmt: skip
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr


def test_tarball_layout_matches_the_remote_steps(tmp_path: Path) -> None:
    """The tarball build.py writes is the one the steps copy, unpack and use: its name, its top
    folder, the wheel, config.json and the overlay's place in it."""
    wheel = tmp_path / remote.wheel_name()
    wheel.write_bytes(b"not a real wheel")
    path = package.build_tarball(tmp_path, "pynq-z2", wheel, package.repo_version(), [])
    assert path.name == remote.tarball_path("pynq-z2").name
    assert remote.tarball_path("pynq-z2").parent == package.OUT
    top = "pow2det-board-pynq-z2/"
    with tarfile.open(path) as tar:
        names = tar.getnames()
        readme = tar.extractfile(top + "README.txt").read().decode()
    assert top + remote.wheel_name() in names and top + "config.json" in names
    assert "overlay/pow2det.bit" in readme  # where the package puts the overlay
    script = remote.remote_script("pynq-z2")
    assert "--bitstream overlay/pow2det.bit" in script and "--config config.json" in script


class Recorder:
    def __init__(self, fail_at: int | None = None, rc: int = 255) -> None:
        self.calls: list[list[str]] = []
        self.fail_at, self.rc = fail_at, rc

    def __call__(self, argv, **kw):
        self.calls.append(list(argv))
        rc = self.rc if len(self.calls) - 1 == self.fail_at else 0
        return subprocess.CompletedProcess(argv, rc)


def _overlay(root: Path, board: str) -> None:
    (root / board).mkdir(parents=True)
    for n in ("pow2det.bit", "pow2det.hwh"):
        (root / board / n).write_bytes(b"x")


def test_run_executes_the_plan_in_order(tmp_path: Path, monkeypatch, capsys) -> None:
    rec = Recorder()
    monkeypatch.setattr(remote.subprocess, "run", rec)
    _overlay(tmp_path, "ultra96v2")
    assert remote.run("ultra96v2", HOST, root=tmp_path) == 0
    assert rec.calls == [s.argv for s in remote.plan("ultra96v2", HOST)]
    assert [c[0] for c in rec.calls] == [remote.rel(Path(sys.executable)), "ssh", "scp", "ssh"]
    assert "self-test passed" in capsys.readouterr().out


def test_run_stops_at_the_failing_step(tmp_path: Path, monkeypatch, capsys) -> None:
    rec = Recorder(fail_at=2, rc=255)
    monkeypatch.setattr(remote.subprocess, "run", rec)
    _overlay(tmp_path, "ultra96v2")
    assert remote.run("ultra96v2", HOST, root=tmp_path) == 255
    assert len(rec.calls) == 3
    assert "step copy failed (exit 255)" in capsys.readouterr().err
    # The self-test's own failure is the deploy's.
    rec = Recorder(fail_at=3, rc=1)
    monkeypatch.setattr(remote.subprocess, "run", rec)
    assert remote.run("ultra96v2", HOST, root=tmp_path) == 1


def test_run_refuses_without_overlay_or_host(tmp_path: Path, monkeypatch, capsys) -> None:
    rec = Recorder()
    monkeypatch.setattr(remote.subprocess, "run", rec)
    assert remote.run("zcu104", HOST, root=tmp_path) == 2
    err = capsys.readouterr().err
    assert "no overlay for zcu104" in err and "make bitstream BOARD=zcu104" in err
    _overlay(tmp_path, "zcu104")
    for bad in ("", "  ", "-oProxyCommand=x", "a b@c"):
        assert remote.run("zcu104", bad, root=tmp_path) == 2
    assert rec.calls == []


def test_make_deploy_without_host(tmp_path: Path) -> None:
    r = make_deploy("BOARD=pynq-z2", f"DEPLOY_OUT={tmp_path}")
    assert r.returncode != 0
    assert "deploy: HOST=user@address is required" in r.stderr


def test_dry_run_runs_nothing(tmp_path: Path) -> None:
    """DRY_RUN=1 with stand-ins for ssh and scp first on PATH: neither is called."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("ssh", "scp"):
        exe = bin_dir / name
        exe.write_text(f"#!/bin/sh\necho called > {tmp_path / name}.called\n")
        exe.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run(["make", "-s", "deploy", "BOARD=ultra96v2", f"HOST={HOST}", "DRY_RUN=1",
                        f"DEPLOY_OUT={tmp_path}"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert not list(tmp_path.glob("*.called"))
