"""RTL tests of pow2det_accel: cocotb (sim/test_accel.py) on Verilator, compared bit for bit
with sim.reference. One Verilator build serves every test (sim/rtl_build.py)."""

from __future__ import annotations

import os

import pytest

rtl_build = pytest.importorskip("sim.rtl_build")


@pytest.fixture(scope="session")
def model_dir():  # type: ignore[no-untyped-def]
    return rtl_build.build()


def _run(model_dir, testcase: str, name: str, **env: str) -> None:  # type: ignore[no-untyped-def]
    n, failed, xml = rtl_build.run(testcase, env, model_dir, name)
    assert n >= 1, f"{testcase}: no test ran"
    assert failed == 0, f"{testcase} failed (env {env}):\n{rtl_build.failure_text(xml)}"


def test_registers(model_dir) -> None:  # type: ignore[no-untyped-def]
    _run(model_dir, "test_registers", "registers", ACCEL_SEED="1")


@pytest.mark.parametrize("seed,pause", [(1, "0.0"), (2, "0.3")])
def test_layers(model_dir, seed: int, pause: str) -> None:  # type: ignore[no-untyped-def]
    _run(model_dir, "test_layers", f"layers_{seed}", ACCEL_SEED=str(seed), ACCEL_PAUSE=pause)


def test_errors(model_dir) -> None:  # type: ignore[no-untyped-def]
    _run(model_dir, "test_errors", "errors", ACCEL_SEED="3")


@pytest.mark.parametrize("seed", [4, 5])
def test_network(model_dir, seed: int) -> None:  # type: ignore[no-untyped-def]
    _run(model_dir, "test_network", f"network_{seed}", ACCEL_SEED=str(seed), ACCEL_PAUSE="0.15")


@pytest.mark.slow
@pytest.mark.parametrize("cfg", ["yolo-fastest-voc"])
def test_frame_512(model_dir, cfg: str) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import REPO_ROOT

    path = REPO_ROOT / "data" / "weights" / "darknet" / f"{cfg}.cfg"
    if not path.exists():
        alt = os.environ.get("POW2DET_DATA")
        path = (REPO_ROOT / alt / "weights" / "darknet" / f"{cfg}.cfg") if alt else path
    if not path.exists():
        pytest.skip(f"no {cfg}.cfg under data/: run `make data`")
    _run(model_dir, "test_frame", f"frame_{cfg}", ACCEL_SEED="7", ACCEL_PAUSE="0.0",
         ACCEL_FRAME=str(path), ACCEL_MEM=str(1 << 28))  # fmt: skip
