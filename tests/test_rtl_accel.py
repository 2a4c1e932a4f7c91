"""RTL tests of pow2det_accel: cocotb (sim/test_accel.py) on Verilator, compared bit for bit
with sim.reference. One Verilator build serves every test (sim/rtl_build.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deploy import boards
from sw.contract.config import AccelConfig

REPO_ROOT = Path(__file__).resolve().parent.parent

rtl_build = pytest.importorskip("sim.rtl_build")


# One Verilator model per lane width (AXI data width 8 x lanes): the default suite builds the
# 16-lane one (Ultra96-V2) and the 8-lane one (PYNQ-Z2), `make test-slow` the 32-lane one
# (ZCU104) and longer stalled networks on all three.
# The boards' own builds (deploy/boards/*/board.toml), so what is verified is what is flashed.
LANE_CONFIGS: dict[int, AccelConfig] = {b.accel.lanes: b.accel for b in boards.load_all().values()}
assert sorted(LANE_CONFIGS) == [8, 16, 32], f"one board per lane width, got {sorted(LANE_CONFIGS)}"
FAST_LANES = (16, 8)


def _lanes_params(lanes: tuple[int, ...], slow: tuple[int, ...] = ()) -> list[object]:
    marks = {lane: (pytest.mark.slow,) for lane in slow}
    return [pytest.param(lane, id=f"lanes{lane}", marks=marks.get(lane, ())) for lane in lanes]


_models: dict[int, Path] = {}


def _model(lanes: int) -> Path:
    """The Verilator model of one lane width, built once per session."""
    if lanes not in _models:
        _models[lanes] = rtl_build.build(LANE_CONFIGS[lanes])
    return _models[lanes]


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return _model(16)


def _run(model_dir: Path, testcase: str, name: str, min_tests: int = 1, **env: str) -> None:
    n, failed, xml = rtl_build.run(testcase, env, model_dir, name)
    assert n >= min_tests, f"{testcase}: {n} tests ran, expected {min_tests}"
    assert failed == 0, f"{testcase} failed (env {env}):\n{rtl_build.failure_text(xml)}"


LANES = _lanes_params((*FAST_LANES, 32), slow=(32,))


@pytest.mark.parametrize("lanes", LANES)
def test_registers(lanes: int) -> None:
    """ID, interface version and the CONFIG registers echo the build's AccelConfig."""
    _run(_model(lanes), "test_registers", f"registers_l{lanes}", ACCEL_SEED="1")


@pytest.mark.parametrize("lanes", LANES)
def test_layers(lanes: int) -> None:
    """Every (seed, pause) of sim/test_accel.py LAYER_RUNS in one simulator launch."""
    _run(_model(lanes), "test_layers", f"layers_l{lanes}", min_tests=2)


@pytest.mark.parametrize("lanes", LANES)
def test_errors(lanes: int) -> None:
    _run(_model(lanes), "test_errors", f"errors_l{lanes}", ACCEL_SEED="3")


@pytest.mark.parametrize("lanes", LANES)
def test_network(lanes: int) -> None:
    """Every (seed, pause) of sim/test_accel.py NETWORK_RUNS in one simulator launch."""
    _run(_model(lanes), "test_network", f"network_l{lanes}", min_tests=2)


@pytest.mark.slow
@pytest.mark.parametrize("lanes", _lanes_params((8, 16, 32)))
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_network_stalled(lanes: int, seed: int) -> None:
    """More random networks per lane width, under heavy AXI stalls (30 % of cycles)."""
    _run(_model(lanes), "test_network", f"network_l{lanes}_s{seed}", ACCEL_SEED=str(seed),
         ACCEL_PAUSE="0.3")  # fmt: skip


# The whole 512x512 frame runs on the fast harness (tests/test_fast_rtl.py::test_frame_512):
# ~3 M cycles, half a minute there against hours under cocotb.


def _mixed_artifacts() -> list[Path]:
    """The committed mixed-precision models (quant.mixed plans: pow2 4-bit, pow2x2, int8)."""
    return sorted((REPO_ROOT / "models" / "artifacts").glob("*-mixed-*.npz"))


@pytest.mark.parametrize("lanes", _lanes_params(FAST_LANES))
def test_mixed_plan_model(lanes: int, tmp_path: Path) -> None:
    """A committed mixed-precision detector, its integers run at 64x64 (size-independent
    constants), on the RTL layer after layer, bit for bit equal to sim.reference."""
    from sw import artifact

    arts = _mixed_artifacts()
    if not arts:
        pytest.skip("no mixed-precision artifact under models/artifacts/")
    small = artifact.with_input_size(artifact.load(arts[0]), 64, 64)
    assert any(n.attrs.get("weight_format") == "pow2x2" for n in small.nodes)
    path = tmp_path / "mixed64.npz"
    artifact.save(small, path)
    rng = np.random.default_rng(5)
    image = tmp_path / "image.npy"
    np.save(image, rng.integers(0, 256, (3, 64, 64)).astype(np.uint8))
    _run(_model(lanes), "test_frame", f"mixed64_l{lanes}", ACCEL_SEED="5", ACCEL_PAUSE="0.1",
         ACCEL_ARTIFACT=str(path), ACCEL_IMAGE=str(image), ACCEL_MEM=str(1 << 26))  # fmt: skip
