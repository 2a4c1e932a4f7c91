"""RTL tests of pow2det_accel: cocotb (sim/test_accel.py) on Verilator, compared bit for bit
with sim.reference. One Verilator build serves every test (sim/rtl_build.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

rtl_build = pytest.importorskip("sim.rtl_build")


@pytest.fixture(scope="session")
def model_dir():  # type: ignore[no-untyped-def]
    return rtl_build.build()


def _run(model_dir, testcase: str, name: str, min_tests: int = 1, **env: str) -> None:  # type: ignore[no-untyped-def]
    n, failed, xml = rtl_build.run(testcase, env, model_dir, name)
    assert n >= min_tests, f"{testcase}: {n} tests ran, expected {min_tests}"
    assert failed == 0, f"{testcase} failed (env {env}):\n{rtl_build.failure_text(xml)}"


def test_registers(model_dir) -> None:  # type: ignore[no-untyped-def]
    _run(model_dir, "test_registers", "registers", ACCEL_SEED="1")


def test_layers(model_dir) -> None:  # type: ignore[no-untyped-def]
    """Every (seed, pause) of sim/test_accel.py LAYER_RUNS in one simulator launch."""
    _run(model_dir, "test_layers", "layers", min_tests=2)


def test_errors(model_dir) -> None:  # type: ignore[no-untyped-def]
    _run(model_dir, "test_errors", "errors", ACCEL_SEED="3")


def test_network(model_dir) -> None:  # type: ignore[no-untyped-def]
    """Every (seed, pause) of sim/test_accel.py NETWORK_RUNS in one simulator launch."""
    _run(model_dir, "test_network", "network", min_tests=2)


# A 512x512 frame is about 3 M accelerator cycles at ~5 k simulated cycles/s: well past the
# suite's 900 s per-test timeout, so this opt-in test sets its own.
@pytest.mark.slow
@pytest.mark.timeout(3 * 3600)
def test_frame_512(model_dir, data_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The committed quantized Yolo-Fastest on a real letterboxed TUD-Stadtmitte frame."""
    import cv2

    from sw.preprocess import letterbox

    arts = sorted((REPO_ROOT / "models" / "artifacts").glob("yolo-fastest-voc-w4a8*.npz"))
    if not arts:
        pytest.skip("no quantized Yolo-Fastest artifact under models/artifacts/")
    cap = cv2.VideoCapture(str(data_dir / "video" / "TUD-Stadtmitte" / "TUD-Stadtmitte.mp4"))
    ok, frame = cap.read()
    cap.release()
    assert ok, "cannot read the first TUD-Stadtmitte frame"
    codes, _ = letterbox(frame, 512, 512)
    image = tmp_path / "frame.npy"
    np.save(image, np.ascontiguousarray(codes.transpose(2, 0, 1)))
    _run(model_dir, "test_frame", "frame_512", ACCEL_SEED="7", ACCEL_PAUSE="0.0",
         ACCEL_ARTIFACT=str(arts[0]), ACCEL_IMAGE=str(image), ACCEL_MEM=str(1 << 28))  # fmt: skip
