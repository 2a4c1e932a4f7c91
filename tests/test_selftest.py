"""``shiftdet selftest`` and ``shiftdet info`` (sw/selftest.py, sw/info.py): the self-test passes
on emu, fails naming the case when one code is wrong (in the emulator, against the golden
digests; on the backend, against the emulator), fails on a build mismatch, and its golden
digests are what the NumPy reference computes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sw import app, kernels, selftest
from sw.backends.emu import EmuBackend

REPO = Path(__file__).resolve().parent.parent


def _golden_module() -> Any:
    spec = importlib.util.spec_from_file_location("golden", REPO / "deploy/package/golden.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def _rows(out: str) -> dict[str, str]:
    """Case name -> its table line (names are followed by two spaces and PASS/FAIL)."""
    rows = {}
    for line in out.splitlines():
        for verdict in ("  PASS", "  FAIL"):
            if verdict in line and not line.startswith(" "):
                rows[line.split(verdict)[0].strip()] = verdict.strip()
    return rows


def test_golden_digests_are_the_references() -> None:
    """sw/selftest_golden.json is what sim.reference computes for the cases today."""
    golden = _golden_module()
    committed = json.loads(selftest.GOLDEN.read_text())
    assert committed == golden.compute(), (
        "sw/selftest_golden.json differs from sim.reference: a case, the frame artifact or the "
        "reference changed; if intended, run `.venv/bin/python deploy/package/golden.py`"
    )


def test_selftest_passes_on_emu(capsys: pytest.CaptureFixture[str]) -> None:
    assert app.main(["selftest", "--backend", "emu"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    names = {c.name for c in selftest.layer_cases()} | {selftest.frame_case_name(), "registers"}
    assert set(rows) == names and set(rows.values()) == {"PASS"}, rows
    assert out.rstrip().endswith("PASS")
    # measured cycles beside the prediction (emu's PERF counters are the cycle model's)
    line = next(x for x in out.splitlines() if x.startswith("strips dense 3x3"))
    assert "4x25" in line and "1.000" in line


def test_cases_cover_what_they_claim() -> None:
    """The compiled cases exercise the engines and tilings the self-test names."""
    from sw.accel_config import AccelConfig
    from sw.compiler import compile_model

    seen = set()
    for case in selftest.layer_cases():
        art, image = case.build()
        plan = compile_model(art, AccelConfig())
        assert all(li.engine == "PL" for li in plan.layers), case.name  # no CPU steps
        for d in plan.descriptors:
            seen.add(("op", d.op, d.kernel, d.stride, d.weight_format, d.weight_bits))
        seen.update(("strips", li.strips) for li in plan.layers)
        assert image.dtype == np.uint8 and image.shape == art.input_shape
    ops = {s[1] for s in seen if s[0] == "op"}
    assert len(ops) == 3  # dense, depthwise, add
    assert any(s[0] == "strips" and s[1] >= 3 for s in seen)
    assert any(s[0] == "op" and s[3] == 2 for s in seen)


def test_corrupted_emu_kernel_fails_naming_the_case(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One code off by one in the emulator's residual add: the golden digests (the reference's)
    catch it, though emu is compared with itself."""
    real_adds = {name: getattr(kernels, name) for name in ("add", "add_rows")}

    def off_by_one(name: str) -> Any:
        def add(*args: Any, **kw: Any) -> np.ndarray | None:
            out = real_adds[name](*args, **kw)
            if out is not None:  # (not reshape(-1): it may be a non-contiguous copy)
                out[0, 0, out.shape[2] // 2] += 1
            return out

        return add

    for name in real_adds:  # the emulator's fast path and its fallback alike
        monkeypatch.setattr(kernels, name, off_by_one(name))
    assert app.main(["selftest"]) == 1
    out = capsys.readouterr().out
    rows = _rows(out)
    assert rows["residual add"] == "FAIL"
    assert rows["dense 1x1"] == "PASS"  # no add there: the failure is located
    assert "emu's outputs differ from the golden digest" in out
    assert out.rstrip().endswith("FAIL")


def test_backend_differing_from_emu_is_located() -> None:
    """A backend whose output differs from the emulator's in one code: the case fails with the
    tensor and position of the first difference."""

    class OffByOne(EmuBackend):
        def run(self, image: np.ndarray, hwc: bool = False) -> dict[str, np.ndarray]:
            out = super().run(image, hwc)
            if self.plan.model_name == "selftest depthwise 3x3 pow2":
                q = out["l0"]
                q[2, 3, 4] = (int(q[2, 3, 4]) + 1) % 256
            return out

    report = selftest.run_selftest("fake", factory=lambda _n, plan: OffByOne(plan))
    bad = [r for r in report.results if not r.ok]
    assert [r.name for r in bad] == ["depthwise 3x3 pow2"]
    assert "l0: 1 code(s) differ from emu, first at (c=2, y=3, x=4)" in bad[0].note
    assert "fake's outputs differ from the golden digest" in bad[0].note
    assert not report.ok


def test_other_build_fails_the_registers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"max_strip": 16}))
    assert app.main(["selftest", "--emulate-build", str(other)]) == 1
    out = capsys.readouterr().out
    assert _rows(out)["registers"] == "FAIL"
    assert "max_strip 32 (hardware: 16)" in out


def test_registers_check_names_each_field() -> None:
    from sw.accel_config import AccelConfig
    from sw.contract.registers import ACCEL_ID, config_registers

    cfg = AccelConfig()
    assert selftest.check_registers(ACCEL_ID, *config_registers(cfg), cfg).ok
    r = selftest.check_registers(0xDEADBEEF, *config_registers(AccelConfig(lanes=8)), cfg)
    assert not r.ok and "ID 0xdeadbeef" in r.note and "lanes 8 (config: 16)" in r.note


def test_missing_frame_artifact_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert app.main(["selftest", "--model", str(tmp_path / "none.npz")]) == 1
    assert _rows(capsys.readouterr().out)[selftest.frame_case_name()] == "FAIL"


def test_pynq_off_board_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    if Path("/proc/device-tree/model").exists():
        pytest.skip("this is a board")
    assert app.main(["selftest", "--backend", "pynq"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: pynq backend:")


def test_selftest_json_report(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    assert app.main(["selftest", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert data["ok"] and data["backend"] == "emu" and len(data["results"]) == 12


def test_stream_is_platform_independent() -> None:
    """The case data comes from SHA-256, not numpy's generators: these bytes are fixed."""
    s = selftest.Stream("x")
    assert s.bytes(4).tolist() == list(__import__("hashlib").sha256(b"x:0").digest()[:4])
    assert selftest.Stream("y").ints(-3, 3, (1000,)).min() == -3


def test_info_off_board(capsys: pytest.CaptureFixture[str]) -> None:
    assert app.main(["info"]) == 0
    out = capsys.readouterr().out
    keys = [line.split()[0] for line in out.splitlines()]
    for k in ("board", "python", "package", "numpy", "contract", "config", "expects", "overlay"):
        assert k in keys, out
    if not Path("/proc/device-tree/model").exists():
        rows = dict(line.split(None, 1) for line in out.splitlines())
        assert rows["board"].startswith("not a board") and rows["overlay"].startswith("not read")
    assert app.main(["info", "--backend", "emu"]) == 0
    out = capsys.readouterr().out
    assert "overlay (emu)  ID 0x50324441" in out


def test_board_model_from_device_tree(tmp_path: Path) -> None:
    from sw import info

    p = tmp_path / "model"
    p.write_bytes(b"Avnet Ultra96-V2 Rev1\0")
    assert info.board_model(p) == "Avnet Ultra96-V2 Rev1"
    assert info.board_model(tmp_path / "none").startswith("not a board")


@pytest.mark.slow
def test_selftest_passes_on_the_rtl(capsys: pytest.CaptureFixture[str]) -> None:
    """Every case on the Verilator model of hw/ (built on first use, minutes; then ~40 s)."""
    pytest.importorskip("cocotb")
    pytest.importorskip("sim.rtl_build")
    assert app.main(["selftest", "--backend", "rtl"]) == 0, capsys.readouterr().out
    rows = _rows(capsys.readouterr().out)
    assert len(rows) == 12 and set(rows.values()) == {"PASS"}, rows
