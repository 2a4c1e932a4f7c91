"""The fast whole-network RTL runner (sim/fast_rtl.py: Verilator + a C++ AXI harness, no
cocotb) under the board's driver: bit for bit equal to sim.reference, its engine counters equal
to the cycle model's, and (slow) a real 512x512 Yolo-Fastest frame.

cocotb stays the harness for protocol, stall and error tests (tests/test_rtl_accel.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sim.reference import run_network
from sim.reference.randnet import conv_chain, random_network
from sw.accel_config import DEFAULT_CONFIG
from sw.compiler import compile_model
from sw.contract import cycles

fast_rtl = pytest.importorskip("sim.fast_rtl")
REPO = Path(__file__).resolve().parent.parent
SEED = 31


def _model_engine_cycles(plan) -> dict[str, int]:  # type: ignore[no-untyped-def]
    per = [cycles.layer_cycles(d.as_dict(), plan.cfg) for d in plan.descriptors]
    return {"dense": sum(c.dense for c in per), "depthwise": sum(c.dw for c in per),
            "eltwise": sum(c.eltwise for c in per)}  # fmt: skip


@pytest.mark.timeout(1800)  # the first call builds the model (minutes on two cores)
def test_networks_bit_exact_through_the_driver() -> None:
    rng = np.random.default_rng(SEED)
    nets = [
        random_network(rng, 16, 12, depthwise_format="int"),
        random_network(rng, 13, 18, act_bits=4, depthwise_format="pow2", dense_format="pow2x2"),
        # a 3x3 128 -> 128 conv: two output-channel passes sharing one output buffer
        conv_chain(
            rng,
            [{"out_channels": 128, "kernel": 1}, {"out_channels": 128, "kernel": 3}],
            shape=(3, 8, 6),
        ),  # fmt: skip
    ]
    for i, art in enumerate(nets):
        plan = compile_model(art, DEFAULT_CONFIG)
        with fast_rtl.FastRtlBackend(plan) as be:
            for frame in range(2):  # a second frame catches state left in the design
                img = rng.integers(0, art.input_quant.qmax + 1, art.input_shape).astype(np.uint8)
                got = be.run(img)
                want = run_network(art, img)
                for name in want:
                    assert np.array_equal(got[name], want[name]), (
                        f"net {i} frame {frame}: RTL != reference at {name} (seed {SEED})"
                    )
                perf = be.stats.perf
                for key, model in _model_engine_cycles(plan).items():
                    assert abs(perf[key] - model) <= 0.05 * max(model, 1), (
                        f"net {i}: PERF {key} {perf[key]} vs cycle model {model}"
                    )
            assert be.cycles > perf["total"] > 0


# (latency in cycles, reads + writes in beats per cycle, 0 = no shared cap): the Ultra96-V2
# figure of bench/accelerator.py (80 % of 4.26 GB/s at 200 MHz in 16-byte beats) at a short and
# a long latency, the long latency alone, and a much tighter cap (0.6 beats/cycle) under which
# the constant and weight loads, which run alone, are held to the shared cap too.
MEMORIES = [(2, 1.07), (40, 1.07), (40, 0.0), (2, 0.6)]


@pytest.mark.timeout(1800)
def test_cycle_model_under_memory_limits() -> None:
    """The cycle model's total against the RTL's PERF_TOTAL on a whole real network (the
    committed mixed-precision Yolo-Fastest at 128x128: its real layers, fewer pixels) when the
    memory has latency and reads and writes share a bandwidth cap: within 3 %."""
    from sw import artifact
    from sw.contract.cycles import MemoryModel

    path = REPO / "models" / "artifacts" / "yolo-fastest-voc-w4a8-mixed-qat.npz"
    if not path.exists():
        pytest.skip(f"no {path.name}")
    art = artifact.with_input_size(artifact.load(path), 128, 128)
    plan = compile_model(art, DEFAULT_CONFIG)
    image = np.random.default_rng(SEED).integers(0, 256, art.input_shape).astype(np.uint8)
    for latency, shared in MEMORIES:
        mem = MemoryModel(1.0, 1.0, shared or float("inf"), latency)
        model = sum(cycles.layer_cycles(d.as_dict(), plan.cfg, mem).total for d in plan.descriptors)
        with fast_rtl.FastRtlBackend(plan, latency=latency, shared_beats_per_cycle=shared) as be:
            be.run(image)
            rtl = be.stats.perf["total"]
        assert abs(model - rtl) <= 0.03 * rtl, (
            f"latency {latency}, {shared} beats/cycle: model {model} vs RTL {rtl} cycles"
        )


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_frame_512(data_dir: Path) -> None:
    """The committed mixed-precision Yolo-Fastest (pow2 4-bit, two-term pow2x2 and int8 convs)
    on a real letterboxed TUD-Stadtmitte frame, whole,
    on the RTL (~3 M cycles; about half a minute here), bit for bit equal to sim.reference."""
    import cv2

    from sw import artifact
    from sw.preprocess import letterbox

    arts = sorted((REPO / "models" / "artifacts").glob("yolo-fastest-voc-w4a8-mixed*.npz"))
    if not arts:
        pytest.skip("no mixed-precision Yolo-Fastest artifact under models/artifacts/")
    cap = cv2.VideoCapture(str(data_dir / "video" / "TUD-Stadtmitte" / "TUD-Stadtmitte.mp4"))
    ok, frame = cap.read()
    cap.release()
    assert ok, "cannot read the first TUD-Stadtmitte frame"
    codes, _ = letterbox(frame, 512, 512)
    image = np.ascontiguousarray(codes.transpose(2, 0, 1))
    art = artifact.load(arts[0])
    plan = compile_model(art, DEFAULT_CONFIG)
    with fast_rtl.FastRtlBackend(plan, timeout_s=1.0) as be:
        got = be.run(image)
    want = run_network(art, image)
    for o in art.outputs:
        assert np.array_equal(got[o.node], want[o.node]), f"RTL != reference at {o.node}"
