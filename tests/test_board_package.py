"""The board package (``make board-package``, deploy/package/): a wheel of the runtime alone that
installs into an environment without torch, amaranth or cocotb and runs there, on Python 3.8
(PYNQ 2.7's) and up, and a board tarball whose manifest tells what it holds.

The fresh environment gets numpy and OpenCV without a network: the development venv's own
installed copies are linked into a folder that a ``.pth`` file puts on its path (only those
two, so nothing else of the development venv leaks in), and the wheel is installed with
``pip --no-index``.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ARTIFACT = REPO / "models" / "artifacts" / "yolo-fastest-voc-w4a8-qat.npz"
PY38 = [Path("/root/.pyenv/versions/3.8.18/bin/python"), shutil.which("python3.8")]
# What the fresh venv may see of the development one: numpy and OpenCV, nothing else.
LINKED = ("numpy", "numpy.libs", "numpy-*.dist-info", "cv2", "opencv_python_headless*")


def _load_build_module():  # noqa: ANN202 - a module object
    spec = importlib.util.spec_from_file_location("board_build", REPO / "deploy/package/build.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The wheel and the pynq-z2 tarball (one artifact, to keep it small), built once."""
    out = tmp_path_factory.mktemp("board-package")
    build = _load_build_module()
    assert build.main(["--out", str(out), "--board", "pynq-z2", "--artifacts", str(ARTIFACT)]) == 0
    wheels = sorted(out.glob("pow2det_board-*-py3-none-any.whl"))
    assert len(wheels) == 1, sorted(p.name for p in out.iterdir())
    return {"out": out, "wheel": wheels[0], "tar": out / "pow2det-board-pynq-z2.tar.gz"}


def test_wheel_is_the_runtime_alone(package: dict[str, Path]) -> None:
    with zipfile.ZipFile(package["wheel"]) as z:
        names = z.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(z.read(meta_name).decode())
        entry = z.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"sw", meta_name.split("/")[0]}, tops  # no hw/, sim/, quant/, models/
    assert "sw/selftest_golden.json" in names
    assert f"sw/selftest_data/{ARTIFACT.name}" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert meta["Name"] == "pow2det-board"
    assert meta["Requires-Python"] == ">=3.8"
    reqs = meta.get_all("Requires-Dist")
    plain = [r for r in reqs if "extra ==" not in r]
    # numpy only: OpenCV comes with PYNQ images, and requiring a wheel would build one there.
    assert [r.split(">")[0].split("=")[0].strip() for r in plain] == ["numpy"], reqs
    assert any(r.startswith("opencv-python-headless") and 'extra == "opencv"' in r for r in reqs)
    assert any(r.startswith("pynq") and 'extra == "pynq"' in r for r in reqs)
    assert "shiftdet = sw.cli:main" in entry


def test_tarball_has_manifest_wheel_and_artifacts(package: dict[str, Path]) -> None:
    with tarfile.open(package["tar"]) as t:
        names = t.getnames()
        manifest = json.loads(t.extractfile("pow2det-board-pynq-z2/MANIFEST.json").read())
        assert all(m.uid == 0 and m.mode == 0o644 for m in t.getmembers())
    top = "pow2det-board-pynq-z2/"
    assert top + package["wheel"].name in names
    assert top + f"artifacts/{ARTIFACT.name}" in names
    assert top + "config.json" in names and top + "README.txt" in names
    assert manifest["board"] == "pynq-z2" and manifest["requires_python"] == ">=3.8"
    # No bitstream is built here: the manifest says so instead of shipping an empty overlay/.
    overlay = manifest["overlay"]
    if not overlay["present"]:
        assert overlay["missing"] and "not built" in overlay["note"]
        assert not [n for n in names if "/overlay/" in n]
    for name, entry in manifest["files"].items():
        assert top + name in names and len(entry["sha256"]) == 64


def test_unknown_board_is_refused(tmp_path: Path) -> None:
    build = _load_build_module()
    with pytest.raises(build.PackageError, match="unknown board"):
        build.build_tarball(tmp_path, "zedboard", tmp_path / "x.whl", "0", [])


@pytest.fixture(scope="module")
def fresh_venv(package: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the wheel and numpy/OpenCV only, built offline."""
    root = tmp_path_factory.mktemp("fresh")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)  # fmt: skip
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], capture_output=True, text=True, check=True,
                               timeout=60).stdout.strip())  # fmt: skip
    dev_site = Path(sysconfig.get_paths()["purelib"])
    deps = root / "deps"
    deps.mkdir()
    for pattern in LINKED:
        for p in dev_site.glob(pattern):
            (deps / p.name).symlink_to(p)
    assert (deps / "numpy").exists() and (deps / "cv2").exists(), "dev venv lacks numpy/cv2"
    (site / "pow2det-deps.pth").write_text(f"{deps}\n")
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-index",
                        "--no-deps", "--quiet", str(package["wheel"])], capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return venv


def _run(venv: Path, *args: str, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin"
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def test_fresh_venv_has_no_torch_amaranth_cocotb(fresh_venv: Path, tmp_path: Path) -> None:
    probe = ("import importlib.util as u, sw; print(sw.__file__); "
             "print([m for m in ('torch', 'amaranth', 'cocotb', 'hw', 'sim', 'quant', 'models') "
             "if u.find_spec(m) is not None])")  # fmt: skip
    r = _run(fresh_venv, fresh_venv / "bin" / "python", "-c", probe, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    where, found = r.stdout.splitlines()[-2:]
    assert str(fresh_venv) in where, f"sw imported from {where}, not the installed wheel"
    assert found == "[]", f"the fresh venv can import {found}"
    r = _run(fresh_venv, sys.executable, "-m", "pip", "--python", fresh_venv / "bin" / "python",
             "check", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr  # numpy's requirement is met


def test_selftest_passes_in_fresh_venv(fresh_venv: Path, tmp_path: Path) -> None:
    r = _run(fresh_venv, fresh_venv / "bin" / "shiftdet", "selftest", "--backend", "emu",
             cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.rstrip().endswith("PASS")
    assert "frame yolo-fastest-voc-w4a8-qat" in r.stdout  # the wheel's own copy of it
    r = _run(fresh_venv, fresh_venv / "bin" / "shiftdet", "info", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "pow2det-board" in r.stdout
    # The RTL is not in the wheel: one line, exit 2.
    r = _run(fresh_venv, fresh_venv / "bin" / "shiftdet", "selftest", "--backend", "rtl",
             cwd=tmp_path)  # fmt: skip
    assert r.returncode == 2 and "needs the development checkout" in r.stderr, r.stderr


def test_detect_in_fresh_venv_matches_the_checkout(fresh_venv: Path, tmp_path: Path,
                                                   clip: Path) -> None:  # fmt: skip
    """The installed command on a real clip gives the detections the checkout gives."""
    from sw import app

    args = ["detect", str(clip), "--model", str(ARTIFACT), "--max-frames", "3", "--no-progress",
            "--no-video"]  # fmt: skip
    r = _run(fresh_venv, fresh_venv / "bin" / "shiftdet", *args, "--out-dir", tmp_path / "board",
             cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert app.main([*args, "--out-dir", str(tmp_path / "dev")]) == 0
    board = (tmp_path / "board" / f"{clip.stem}.jsonl").read_text().splitlines()
    dev = (tmp_path / "dev" / f"{clip.stem}.jsonl").read_text().splitlines()
    assert len(board) == 3 and board == dev


# -- Python 3.8 -------------------------------------------------------------------------------


def _wheel_sources(wheel: Path, dest: Path) -> list[Path]:
    with zipfile.ZipFile(wheel) as z:
        z.extractall(dest)
    return sorted((dest / "sw").rglob("*.py"))


def _py38_problems(path: Path) -> list[str]:
    """What vermin does not see but Python 3.8 trips over at run time: ``X | Y`` in
    isinstance/issubclass, ``|`` on dict displays, subscripted builtins or collections.abc
    outside annotations (module-level aliases), and annotations without the future import."""
    src = path.read_text()
    tree = ast.parse(src)
    in_ann: set[int] = set()
    has_ann = False
    for n in ast.walk(tree):
        for a in ("annotation", "returns"):
            x = getattr(n, a, None)
            if x is not None:
                has_ann = True
                in_ann.update(id(m) for m in ast.walk(x))
    future = any(isinstance(n, ast.ImportFrom) and n.module == "__future__"
                 and any(a.name == "annotations" for a in n.names) for n in tree.body)  # fmt: skip
    out = []
    if has_ann and not future:
        out.append("annotations without `from __future__ import annotations`")
    generic = {"list", "dict", "tuple", "set", "frozenset", "type", "Callable", "Iterable",
               "Iterator", "Sequence", "Mapping", "deque"}  # fmt: skip
    for n in ast.walk(tree):
        if id(n) in in_ann:
            continue
        if isinstance(n, ast.Call) and getattr(n.func, "id", None) in ("isinstance", "issubclass"):
            if len(n.args) == 2 and isinstance(n.args[1], ast.BinOp):
                out.append(f"line {n.lineno}: {n.func.id} with an X | Y type")
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr):
            if any(isinstance(s, ast.Dict | ast.DictComp) for s in (n.left, n.right)):
                out.append(f"line {n.lineno}: dict union")
        if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name | ast.Attribute):
            name = n.value.id if isinstance(n.value, ast.Name) else n.value.attr
            base = n.value.value if isinstance(n.value, ast.Attribute) else None
            if name in generic and not (isinstance(base, ast.Name) and base.id == "typing"):
                out.append(f"line {n.lineno}: {name}[...] evaluated at run time")
    return out


def test_wheel_modules_need_no_python_newer_than_38(package: dict[str, Path],
                                                    tmp_path: Path) -> None:  # fmt: skip
    files = _wheel_sources(package["wheel"], tmp_path)
    assert len(files) >= 30
    bad = {str(f.relative_to(tmp_path)): p for f in files if (p := _py38_problems(f))}
    assert not bad, bad
    vermin = shutil.which("vermin", path=str(Path(sys.executable).parent)) or shutil.which("vermin")
    if vermin is None:
        pytest.skip("vermin is not installed (pip install -e '.[dev]')")
    r = subprocess.run([vermin, "-t=3.8-", "--no-tips", "--violations", "--backport",
                        "dataclasses", str(tmp_path / "sw")], capture_output=True, text=True,
                       timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr


STUB = '''
"""A stand-in for {name}: every attribute, call, item and operation gives another stand-in,
so that the wheel's modules can be imported on an interpreter without {name}."""
import sys, types
class _S:
    __version__ = "0"
    def __init__(self, *a, **k): pass
    def __getattr__(self, k): return _S()
    def __call__(self, *a, **k): return _S()
    def __getitem__(self, k): return _S()
    def __iter__(self): return iter(())
    def __mro_entries__(self, bases): return (object,)
    def __int__(self): return 0
    def __index__(self): return 0
    def __float__(self): return 0.0
    def __bool__(self): return True
    def __hash__(self): return 0
    def __eq__(self, o): return True  # module-level sanity asserts hold
    def __ne__(self, o): return False
    __lt__ = __le__ = __gt__ = __ge__ = __eq__
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __call__
    __rtruediv__ = __floordiv__ = __mod__ = __pow__ = __neg__ = __or__ = __ror__ = __call__
    __and__ = __rand__ = __lshift__ = __rshift__ = __xor__ = __invert__ = __call__
def __getattr__(k): return _S()
'''


@pytest.mark.skipif(not any(p and Path(p).is_file() for p in PY38), reason="no Python 3.8 here")
def test_wheel_imports_on_python38(package: dict[str, Path], tmp_path: Path) -> None:
    """Byte-compile every module of the wheel with Python 3.8 and import them all there, with
    numpy and cv2 stood in for (no numpy for 3.8 without a network): what runs at import time
    (aliases, decorators, dataclasses, class bodies) runs on 3.8. The real thing, selftest and
    detect under 3.8 with numpy, is the slow test below."""
    py38 = next(str(p) for p in PY38 if p and Path(p).is_file())
    files = _wheel_sources(package["wheel"], tmp_path / "site")
    r = subprocess.run([py38, "-m", "py_compile", *map(str, files)], capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    stubs = tmp_path / "stubs"
    for name in ("numpy", "cv2"):
        (stubs / name).mkdir(parents=True)
        (stubs / name / "__init__.py").write_text(STUB.format(name=name))
    probe = ("import importlib, pkgutil, sys, sw\n"
             "names = ['sw'] + [m.name for m in pkgutil.walk_packages(sw.__path__, 'sw.')]\n"
             "bad = []\n"
             "for n in names:\n"
             "    try:\n"
             "        importlib.import_module(n)\n"
             "    except Exception as e:\n"
             "        bad.append(f'{n}: {type(e).__name__}: {e}')\n"
             "print(sys.version_info[:2], len(names), bad)\n")  # fmt: skip
    env = {"PYTHONPATH": f"{tmp_path / 'site'}{os.pathsep}{stubs}", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([py38, "-c", probe], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith("(3, 8)"), r.stdout
    assert r.stdout.strip().endswith("[]"), r.stdout


@pytest.mark.slow
@pytest.mark.skipif(not any(p and Path(p).is_file() for p in PY38), reason="no Python 3.8 here")
def test_wheel_runs_on_python38_with_numpy(package: dict[str, Path], tmp_path: Path,
                                           clip: Path) -> None:  # fmt: skip
    """The wheel in a Python 3.8 venv with numpy 1.24 and OpenCV from PyPI (network, hence
    slow): the self-test passes and detect runs a clip."""
    py38 = next(str(p) for p in PY38 if p and Path(p).is_file())
    venv = tmp_path / "venv38"
    subprocess.run([py38, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    r = subprocess.run([*pip, "numpy==1.24.4", "opencv-python-headless==4.11.0.86"],
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    if r.returncode != 0:
        pytest.skip(f"cannot install numpy for Python 3.8: {r.stderr.strip()[-200:]}")
    r = subprocess.run([*pip, "--no-index", str(package["wheel"])], capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = _run(venv, venv / "bin" / "shiftdet", "selftest", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    r = _run(
        venv,
        venv / "bin" / "shiftdet",
        "detect",
        clip,
        "--model",
        ARTIFACT,
        "--max-frames",
        "3",
        "--no-progress",
        "--out-dir",
        tmp_path / "out",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr
