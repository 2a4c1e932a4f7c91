"""``shiftdet selftest``: is this accelerator (or model of it) computing what the contract says?

A fixed set of cases — single layers covering the engines and the tiling (dense 1x1 and 3x3,
stride 2, binary weights, 4-bit activations, depthwise pow2 and int8, the residual add, odd
sizes, several column strips) and one whole frame of a committed detector at a small input
size — runs through the chosen backend (``emu``, ``rtl`` or ``pynq``) and through the emulator
(``sw.emu``); every output code must agree, and both must hash to the golden SHA-256 digests in
``sw/selftest_golden.json``. Those digests were computed once by the independent NumPy reference
(``sim/reference``, which is not installed on a board; ``deploy/package/golden.py`` regenerates
them and ``tests/test_selftest.py`` checks that they still equal the reference's), so a change
in the emulator's arithmetic fails the self-test even where emu is the backend. The ID,
interface version and CONFIG registers are checked against this package's contract and the
accelerator build (``--config``), and a table shows the PERF counters beside the cycle model's
prediction (``sw/contract/cycles.py``; informative: real memory adds stalls).

Everything is deterministic and numpy-only: weights, constants and inputs come from SHA-256 in
counter mode (not from numpy's generators, whose streams numpy does not promise to keep across
versions, and the board's numpy is older than the development one). Exit status: 0 when every
check passed, 1 when any failed, 2 when the self-test could not start (no such backend here, a
bad option).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import sys
import time
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sw import artifact as artifact_mod
from sw.artifact import Artifact, ArtifactError, Node, Output, Quant, encode_codes
from sw.contract.config import AccelConfig
from sw.contract.registers import (
    ACCEL_ID,
    INTERFACE_VERSION,
    REG_CONFIG,
    REG_CONFIG2,
    REG_ID,
    config_registers,
    decode_config,
)
from sw.contract.requant import add_constants, conv_constants

PACKAGE_DIR = Path(__file__).resolve().parent
GOLDEN = PACKAGE_DIR / "selftest_golden.json"
# The board wheel carries the frame's artifact here (deploy/package/build.py puts it in); in a
# checkout it is read from models/artifacts/.
PACKAGED_ARTIFACTS = PACKAGE_DIR / "selftest_data"
CHECKOUT_ARTIFACTS = PACKAGE_DIR.parent / "models" / "artifacts"
FRAME_ARTIFACT = "yolo-fastest-voc-w4a8-qat.npz"  # the demo's detector, every conv a shift
FRAME_SIZE = (128, 128)  # small, so that a frame takes well under a second on emu
SELFTEST_BACKENDS = ("emu", "rtl", "pynq")


# -- deterministic numbers --------------------------------------------------------------------


class Stream:
    """Bytes from SHA-256 in counter mode under a name: the same on every platform, Python and
    numpy version, and each case draws from its own stream so that one can change alone."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.counter = 0

    def bytes(self, n: int) -> np.ndarray:
        blocks = []
        for _ in range((n + 31) // 32):
            blocks.append(hashlib.sha256(f"{self.name}:{self.counter}".encode()).digest())
            self.counter += 1
        return np.frombuffer(b"".join(blocks), dtype=np.uint8)[:n].copy()

    def words(self, n: int) -> np.ndarray:
        return self.bytes(4 * n).view("<u4").astype(np.int64)

    def ints(self, lo: int, hi: int, shape: tuple[int, ...]) -> np.ndarray:
        """Integers in ``lo..hi`` inclusive (the modulo bias is harmless for a test pattern)."""
        n = int(np.prod(shape)) if shape else 1
        return (lo + self.words(n) % (hi - lo + 1)).reshape(shape)

    def uniform(self, lo: float, hi: float, n: int) -> np.ndarray:
        return lo + (hi - lo) * (self.words(n).astype(np.float64) / 2.0**32)


def _f32(x: float) -> float:
    return float(np.float32(x))


def _quant(s: Stream, bits: int, zero: int | None = None) -> Quant:
    qmax = (1 << bits) - 1
    z = int(s.ints(0, qmax, (1,))[0]) if zero is None else zero
    return Quant(bits, z, _f32(s.uniform(0.01, 0.1, 1)[0]))


def _weights(s: Stream, shape: tuple[int, ...], fmt: str, bits: int) -> np.ndarray:
    """Integer weights of a format: pow2 exponents mostly small and some zeros, as trained
    weights have them; binary +-1; int uniform over the symmetric range."""
    if fmt == "binary":
        return np.where(s.ints(0, 1, shape) == 1, 1, -1)
    if fmt == "int":
        lim = (1 << (bits - 1)) - 1
        return s.ints(-lim, lim, shape)
    e_max = artifact_mod.pow2_max_exponent(bits)
    e = np.minimum(s.ints(0, e_max, shape), s.ints(0, e_max, shape))  # smaller ones likelier
    sign = np.where(s.ints(0, 1, shape) == 1, 1, -1)
    zero = s.ints(0, 99, shape) < 15
    return np.where(zero, 0, sign * (1 << e))


def _conv(s: Stream, name: str, src: str, in_shape: tuple[int, int, int], in_q: Quant,
          out_channels: int | None = None, kernel: int = 3, stride: int = 1,
          depthwise: bool = False, fmt: str = "pow2", bits: int = 4, activation: str = "leaky",
          out_bits: int = 8) -> Node:  # fmt: skip
    """A conv node whose constants spread the outputs over the code range (an all-clipped or
    all-equal output would prove nothing)."""
    cin = in_shape[0]
    cout = cin if depthwise else int(out_channels or cin)
    v = _weights(s, (cout, 1 if depthwise else cin, kernel, kernel), fmt, bits)
    a_in = max(in_q.zero, in_q.qmax - in_q.zero)
    spread = math.sqrt(v[0].size) * (float(np.abs(v).mean()) + 1e-9) * a_in / 2 + 1
    # The output zero point where the activation leaves room: low for relu (no negatives),
    # a little higher for leaky (small negatives), mid-range for linear.
    qmax = (1 << out_bits) - 1
    lo, hi = {"relu": (0, qmax // 8), "leaky": (qmax // 8, qmax // 4)}.get(
        activation, (qmax * 3 // 8, qmax * 5 // 8))  # fmt: skip
    out_q = _quant(s, out_bits, int(s.ints(lo, hi, (1,))[0]))
    m_real = s.uniform(0.3, 1.5, cout) * out_q.qmax / (4 * spread)
    mp, mn, sh = conv_constants(m_real, activation)
    bias = s.ints(-int(spread), int(spread), (cout,)).astype(np.int32)
    return Node(
        name=name,
        op="conv",
        inputs=[src],
        attrs={
            "out_channels": cout,
            "kernel": kernel,
            "stride": stride,
            "pad": kernel // 2,
            "groups": cout if depthwise else 1,
            "weight_format": fmt,
            "weight_bits": bits,
            "activation": activation,
        },  # fmt: skip
        quant=out_q,
        tensors={
            "codes": encode_codes(v, fmt, bits),
            "weight_scale": s.uniform(0.001, 0.1, cout).astype(np.float32),
            "bias": bias,
            "m_pos": mp,
            "m_neg": mn,
            "shift": sh,
        },
    )


def _add(s: Stream, name: str, a: str, qa: Quant, b: str, qb: Quant, relu: bool) -> Node:
    bits = max(qa.bits, qb.bits)
    qmax = (1 << bits) - 1
    s_out = _f32((qa.scale * qa.qmax + qb.scale * qb.qmax) / qmax * 0.8)
    lo, hi = (0, qmax // 8) if relu else (qmax * 3 // 8, qmax * 5 // 8)
    out = Quant(bits, int(s.ints(lo, hi, (1,))[0]), s_out)
    m_a, m_b, sh = add_constants(qa.scale, qb.scale, s_out)
    attrs = {"m_a": m_a, "m_b": m_b, "shift": sh, "activation": "relu" if relu else "linear"}
    return Node(name, "add", [a, b], attrs, out)


def _conv_shape(n: Node, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    k, st, p = n.attrs["kernel"], n.attrs["stride"], n.attrs["pad"]
    _, h, w = shape
    return n.attrs["out_channels"], (h + 2 * p - k) // st + 1, (w + 2 * p - k) // st + 1


# -- the cases --------------------------------------------------------------------------------


@dataclass
class Case:
    """One self-test case: ``build()`` returns the network and its input codes (C, H, W)."""

    name: str
    build: Callable[[], tuple[Artifact, np.ndarray]]
    what: str = ""


def _layer_case(name: str, what: str, in_shape: tuple[int, int, int], in_zero: int,
                layers: list[dict[str, Any]], add: bool | None = None) -> Case:  # fmt: skip
    """A chain of convs (each dict: ``_conv`` options) on an input of ``in_shape``; with ``add``
    set (True: ReLU), the last two convs both read the previous tensor and are added."""

    def build() -> tuple[Artifact, np.ndarray]:
        s = Stream(f"pow2det selftest 1/{name}")
        in_q = Quant(8, in_zero, _f32(1 / 255) if in_zero == 0 else _f32(0.02))
        shapes, quants = {"image": in_shape}, {"image": in_q}
        nodes: list[Node] = []
        src = "image"
        for i, opts in enumerate(layers):
            if add is not None and i == len(layers) - 1:
                src = nodes[-1].inputs[0]  # the second branch reads what the first read
            n = _conv(s, f"l{i}", src, shapes[src], quants[src], **opts)
            nodes.append(n)
            shapes[n.name], quants[n.name] = _conv_shape(n, shapes[src]), n.quant
            src = n.name
        outputs = [Output(nodes[-1].name)]
        if add is not None:
            a, b = nodes[-2].name, nodes[-1].name
            nodes.append(_add(s, "sum", a, quants[a], b, quants[b], relu=add))
            outputs = [Output(a), Output(b), Output("sum")]
        art = Artifact(f"selftest {name}", "image", in_shape, in_q, nodes, outputs,
                       description=what)  # fmt: skip
        image = s.ints(0, 255, in_shape).astype(np.uint8)
        return art, image

    return Case(name, build, what)


def layer_cases() -> list[Case]:
    """The fixed layer cases (names are keys of the golden file: renaming one needs new
    digests)."""
    return [
        _layer_case(
            "dense 1x1",
            "24 -> 40 channels (3 output groups), 12x10, pow2 4-bit, leaky",
            (24, 12, 10),
            37,
            [dict(out_channels=40, kernel=1)],
        ),  # fmt: skip
        _layer_case(
            "dense 3x3",
            "20 -> 24 channels, 11x13, pow2 4-bit, relu, z_in 128",
            (20, 11, 13),
            128,
            [dict(out_channels=24, activation="relu")],
        ),  # fmt: skip
        _layer_case(
            "dense 3x3 stride 2",
            "16 -> 16, 17x15 odd map, pow2 3-bit, linear",
            (16, 17, 15),
            90,
            [dict(out_channels=16, stride=2, bits=3, activation="linear")],
        ),  # fmt: skip
        _layer_case(
            "dense binary, 4-bit out",
            "8 -> 12, binary 3x3 to 4-bit codes, then pow2 1x1 reading them",
            (8, 9, 9),
            200,
            [
                dict(out_channels=12, fmt="binary", bits=1, out_bits=4),
                dict(out_channels=16, kernel=1),
            ],
        ),  # fmt: skip
        _layer_case(
            "first layer, odd sizes",
            "3 -> 5 channels (lanes mostly padding), 7x5, 3x3 stride 2",
            (3, 7, 5),
            0,
            [dict(out_channels=5, stride=2)],
        ),  # fmt: skip
        _layer_case(
            "depthwise 3x3 pow2",
            "24 channels, 9x11, pow2 4-bit, leaky",
            (24, 9, 11),
            64,
            [dict(depthwise=True)],
        ),  # fmt: skip
        _layer_case(
            "depthwise 5x5 int8 stride 2",
            "20 channels, 13x19, int 8-bit, linear",
            (20, 13, 19),
            128,
            [dict(depthwise=True, kernel=5, stride=2, fmt="int", bits=8, activation="linear")],
        ),  # fmt: skip
        _layer_case(
            "residual add",
            "1x1 dense and 3x3 depthwise of one map, added with ReLU, 16 channels, 10x14",
            (16, 10, 14),
            100,
            [
                dict(out_channels=16, kernel=1, activation="linear"),
                dict(depthwise=True, activation="linear"),
            ],
            add=True,
        ),  # fmt: skip
        _layer_case(
            "strips dense 3x3",
            "16 -> 16 over a 6x100 map: several column strips with halo columns",
            (16, 6, 100),
            50,
            [dict(out_channels=16)],
        ),  # fmt: skip
        _layer_case(
            "strips depthwise stride 2",
            "32 channels, 7x141, 3x3 stride 2: strips of a strided window",
            (32, 7, 141),
            10,
            [dict(depthwise=True, stride=2)],
        ),  # fmt: skip
    ]


def find_frame_artifact(extra: str | os.PathLike[str] | None = None) -> Path | None:
    """The frame case's artifact: ``extra`` if given, else the copy in the wheel, the
    checkout's models/artifacts/, ``$POW2DET_ARTIFACTS`` or ./artifacts (the board tarball)."""
    if extra is not None:
        return Path(extra)
    dirs = [PACKAGED_ARTIFACTS, CHECKOUT_ARTIFACTS]
    if os.environ.get("POW2DET_ARTIFACTS"):
        dirs.append(Path(os.environ["POW2DET_ARTIFACTS"]))
    dirs.append(Path("artifacts"))
    for d in dirs:
        if (d / FRAME_ARTIFACT).is_file():
            return d / FRAME_ARTIFACT
    return None


def frame_case(path: Path) -> Case:
    h, w = FRAME_SIZE

    def build() -> tuple[Artifact, np.ndarray]:
        art = artifact_mod.with_input_size(artifact_mod.load(path), h, w)
        image = Stream("pow2det selftest 1/frame").ints(0, 255, (3, h, w)).astype(np.uint8)
        return art, image

    return Case(f"frame {FRAME_ARTIFACT.rsplit('.', 1)[0]}", build,
                f"the whole detector at {h}x{w} (CPU steps included)")  # fmt: skip


def frame_case_name() -> str:
    return f"frame {FRAME_ARTIFACT.rsplit('.', 1)[0]}"


# -- digests ----------------------------------------------------------------------------------


def inputs_digest(art: Artifact, image: np.ndarray) -> str:
    """What a case computes on: the network's content digest and the input codes."""
    h = hashlib.sha256(artifact_mod.content_digest(*artifact_mod.header_and_arrays(art)).encode())
    h.update(repr((image.dtype.str, image.shape)).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


def outputs_digest(art: Artifact, outputs: dict[str, np.ndarray]) -> str:
    """Every output's name, shape and codes, in the artifact's output order."""
    h = hashlib.sha256()
    for o in art.outputs:
        q = np.ascontiguousarray(outputs[o.node], dtype=np.uint8)
        h.update(f"{o.node}:{list(q.shape)}\n".encode())
        h.update(q.tobytes())
    return h.hexdigest()


def load_golden(path: Path = GOLDEN) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise SelftestError(f"cannot read the golden digests {path}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("cases"), dict):
        raise SelftestError(f"{path}: not a golden digest file (no 'cases')")
    return data


# -- running ----------------------------------------------------------------------------------


class SelftestError(RuntimeError):
    """The self-test cannot start (no such backend here, unreadable golden file); one line."""


@dataclass
class CaseResult:
    name: str
    ok: bool
    codes: int = 0  # output codes compared
    pl_layers: int = 0
    strips: str = ""  # per PL layer: strips x width
    measured: int | None = None  # PERF_TOTAL summed over the frame's PL runs
    predicted: int | None = None  # the cycle model's total, ideal memory
    seconds: float = 0.0
    note: str = ""


@dataclass
class Report:
    backend: str
    config: dict[str, Any]
    results: list[CaseResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.ok for r in self.results)

    def to_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "config": self.config, "ok": self.ok,
                "results": [asdict(r) for r in self.results]}  # fmt: skip


def _read_regs(backend: Any) -> tuple[int, int, int]:
    """ID, CONFIG, CONFIG2 through the backend's own transport, on a loop of our own (the
    backend's loop and the thread's current loop, which pynq's interrupt uses, stay as they
    are)."""
    loop = asyncio.new_event_loop()
    try:
        t = backend.driver.t
        return tuple(loop.run_until_complete(t.read_reg(r)) for r in (REG_ID, REG_CONFIG,
                                                                       REG_CONFIG2))  # type: ignore[return-value]  # fmt: skip
    finally:
        loop.close()


def check_registers(ident: int, config: int, config2: int, cfg: AccelConfig) -> CaseResult:
    """The ID, interface version and build registers against this package and ``cfg``."""
    have = decode_config(config, config2)
    want = decode_config(*config_registers(cfg))
    bad = []
    if ident != ACCEL_ID:
        bad.append(f"ID 0x{ident:08x} (package: 0x{ACCEL_ID:08x})")
    if have["interface version"] != INTERFACE_VERSION:
        bad.append(f"interface version {have['interface version']} "
                   f"(package: {INTERFACE_VERSION})")  # fmt: skip
    bad += [f"{k} {have[k]} (config: {want[k]})" for k in want
            if k != "interface version" and have[k] != want[k]]  # fmt: skip
    seen = f"ID 0x{ident:08x}, " + ", ".join(f"{k} {v}" for k, v in have.items())
    return CaseResult("registers", not bad, note=("differ: " + "; ".join(bad)) if bad else seen)


def _compare(name: str, art: Artifact, got: dict[str, np.ndarray],
             ref: dict[str, np.ndarray]) -> tuple[int, str]:  # fmt: skip
    """(codes compared, '' or where the first difference is)."""
    n = 0
    for o in art.outputs:
        a, b = np.asarray(got[o.node]), np.asarray(ref[o.node])
        if a.shape != b.shape:
            return n, f"{o.node}: shape {list(a.shape)} != emu's {list(b.shape)}"
        diff = np.argwhere(a != b)
        if diff.size:
            c, y, x = (int(v) for v in diff[0])
            return n, (f"{o.node}: {len(diff)} code(s) differ from emu, first at (c={c}, y={y}, "
                       f"x={x}): {int(a[c, y, x])} != {int(b[c, y, x])}")  # fmt: skip
        n += a.size
    return n, ""


# typing's Callable: a module-level alias is evaluated, and collections.abc's is not subscriptable
# before Python 3.9.
BackendFactory = typing.Callable[[str, Any], Any]


def run_selftest(
    backend: str = "emu",
    cfg: AccelConfig | None = None,
    options: dict[str, Any] | None = None,
    frame_model: str | os.PathLike[str] | None = None,
    golden: Path = GOLDEN,
    factory: BackendFactory | None = None,
) -> Report:
    """Every case through ``backend`` and the emulator; ``options`` go to the backend's
    constructor (``bitstream``, ``timeout_s`` ...). ``factory(name, plan)`` makes the backend
    instead of ``sw.backends.make_backend`` (the rtl path and tests use it)."""
    from sw.backends import BackendUnavailable, make_backend
    from sw.backends.emu import EmuBackend
    from sw.compiler import compile_model
    from sw.driver import AcceleratorError

    cfg = (cfg or AccelConfig()).check()
    opts = dict(options or {})
    gold = load_golden(golden)["cases"]
    report = Report(backend, cfg.as_dict())
    make = factory or (lambda name, plan: make_backend(name, plan, **opts))
    emu_only = factory is None and backend == "emu"  # then the emulator is the backend

    cases = layer_cases()
    path = find_frame_artifact(frame_model)
    registers_checked = False
    for case in [*cases, None]:
        if case is None:  # the frame: its artifact may be missing
            if path is None or not path.is_file():
                report.results.append(CaseResult(frame_case_name(), False, note=(
                    f"artifact {FRAME_ARTIFACT} not found (in the wheel, models/artifacts/, "
                    f"$POW2DET_ARTIFACTS or ./artifacts; or pass --model)")))  # fmt: skip
                continue
            case = frame_case(path)
        t0 = time.perf_counter()
        res = CaseResult(case.name, False)
        report.results.append(res)
        try:
            art, image = case.build()
        except (ArtifactError, OSError, ValueError) as e:
            res.note = f"cannot build the case: {e}"
            continue
        want = gold.get(case.name)
        if not isinstance(want, dict):
            res.note = f"no golden digest for this case in {golden.name}"
            continue
        if want.get("inputs") != inputs_digest(art, image):
            res.note = ("the case's network or input differs from the one the golden digest "
                        "was computed for (a changed artifact or case builder)")  # fmt: skip
            continue
        try:
            plan = compile_model(art, cfg)
        except Exception as e:  # noqa: BLE001 - any refusal is this case's failure, one line
            res.note = f"does not compile for this build: {type(e).__name__}: {e}"
            continue
        pl = [li for li in plan.layers if li.engine == "PL"]
        res.pl_layers = len(pl)
        res.strips = " ".join(f"{li.strips}x{li.strip_width}" for li in pl[:3])
        res.strips += " ..." if len(pl) > 3 else ""
        res.predicted = sum(li.cycles or 0 for li in pl) if plan.cycle_model else None
        try:
            emu = EmuBackend(plan)
            ref = emu.run(image)
            emu.close()
            if emu_only:
                got, dev = ref, emu
            else:
                dev = make(backend, plan)
                try:
                    if not registers_checked:
                        report.results.insert(0, check_registers(*_read_regs(dev), cfg))
                        registers_checked = True
                    got = dev.run(image)
                finally:
                    dev.close()
            if emu_only and not registers_checked:
                report.results.insert(0, check_registers(*_read_regs(emu), cfg))
                registers_checked = True
        except BackendUnavailable:
            raise  # not a failed check: the self-test cannot run here
        except AcceleratorError as e:  # a refused plan, an ERROR status, a timeout
            res.note = f"{backend}: {e}"
            if not registers_checked:
                report.results.insert(0, CaseResult("registers", False, note=str(e)))
                registers_checked = True
            continue
        except Exception as e:  # noqa: BLE001 - a crash fails this case; the others still run
            res.note = f"{backend}: {type(e).__name__}: {e}"
            continue
        res.measured = int(dev.stats.perf.get("total", 0)) if dev.stats.pl_runs else None
        n, where = _compare(case.name, art, got, ref)
        res.codes = n
        d_dev, d_emu = outputs_digest(art, got), outputs_digest(art, ref)
        problems = [where] if where else []
        if d_emu != want.get("outputs"):
            problems.append("emu's outputs differ from the golden digest (sim.reference's)")
        if not emu_only and d_dev != want.get("outputs"):
            problems.append(f"{backend}'s outputs differ from the golden digest")
        res.ok = not problems
        res.note = "; ".join(problems)
        res.seconds = time.perf_counter() - t0
    return report


# -- the rtl backend --------------------------------------------------------------------------

RTL_RUNNER = PACKAGE_DIR.parent / "deploy" / "package" / "selftest_rtl.py"


class _Recorded:
    """A backend that replays what the RTL simulation computed for one plan (its outputs,
    PERF counters and registers), so that it is compared like any live backend."""

    def __init__(self, regs: list[int], entry: dict[str, Any]) -> None:
        from sw.driver import AcceleratorError, RunStats

        if "error" in entry:
            raise AcceleratorError(entry["error"])
        self.outputs = entry["outputs"]
        self.stats = RunStats(pl_runs=int(entry.get("pl_runs", 0)),
                              perf={"total": int(entry.get("perf_total", 0))})  # fmt: skip
        values = dict(zip((REG_ID, REG_CONFIG, REG_CONFIG2), regs))

        class _Regs:
            async def read_reg(self, offset: int) -> int:
                return values[offset]

        self.driver = type("RecordedDriver", (), {"t": _Regs()})()

    def run(self, image: np.ndarray, hwc: bool = False) -> dict[str, np.ndarray]:
        return self.outputs

    def close(self) -> None:
        pass


def rtl_factory(cfg: AccelConfig, model: str | None = None,
                timeout_s: float = 3600.0) -> BackendFactory:  # fmt: skip
    """Run every case on the Verilator model first (``deploy/package/selftest_rtl.py``, in a
    development checkout: cocotb cannot run inside this process), then hand out backends that
    replay each plan's recorded results."""
    import shutil
    import subprocess
    import tempfile

    from sw.backends import BackendUnavailable

    if not RTL_RUNNER.is_file() or not (PACKAGE_DIR.parent / "sim" / "rtl_build.py").is_file():
        raise BackendUnavailable(
            "rtl backend: needs the development checkout (deploy/package/selftest_rtl.py, "
            "sim/, cocotb and Verilator); on a board use --backend pynq"
        )
    folder = Path(tempfile.mkdtemp(prefix="pow2det-selftest-rtl-"))
    cmd = [sys.executable, str(RTL_RUNNER), "--out", str(folder),
           "--config", json.dumps(cfg.as_dict()), "--model", str(model or "")]  # fmt: skip
    print("running the cases on the Verilator model (building it first if needed) ...",
          flush=True)  # fmt: skip
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        index_file = folder / "index.json"
        if not index_file.is_file():
            tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
            raise BackendUnavailable(f"rtl backend: the simulation did not run "
                                     f"({r.returncode}): {' | '.join(tail)}")  # fmt: skip
        index = json.loads(index_file.read_text())
        for entry in index["cases"].values():
            if "file" in entry and (folder / entry["file"]).is_file():
                with np.load(folder / entry["file"]) as z:
                    entry["outputs"] = {k: z[k] for k in z.files}
            elif "error" not in entry:
                entry["error"] = "the RTL simulation did not finish this case"
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    def make(_name: str, plan: Any) -> Any:
        from sw.driver import AcceleratorError

        entry = index["cases"].get(plan.model_name)
        if entry is None:
            raise AcceleratorError("the RTL simulation did not reach this case")
        return _Recorded(index["registers"], entry)

    return make


# -- the table --------------------------------------------------------------------------------


def format_table(report: Report) -> str:
    head = ["case", "result", "codes", "PL layers", "strips", "cycles", "predicted", "ratio",
            "s"]  # fmt: skip
    rows = []
    for r in report.results:
        ratio = (f"{r.measured / r.predicted:.3f}"
                 if r.measured is not None and r.predicted else "")  # fmt: skip
        rows.append([r.name, "PASS" if r.ok else "FAIL", f"{r.codes:,}" if r.codes else "",
                     str(r.pl_layers) if r.pl_layers else "", r.strips,
                     "" if r.measured is None else f"{r.measured:,}",
                     "" if r.predicted is None else f"{r.predicted:,}", ratio,
                     f"{r.seconds:.2f}" if r.seconds else ""])  # fmt: skip
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    right = {2, 3, 5, 6, 7, 8}

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()  # fmt: skip

    out = [line(head), line(["-" * w for w in widths])]
    for r, row in zip(report.results, rows):
        out.append(line(row))
        if r.note and (not r.ok or r.name == "registers"):
            out.append(f"    {r.note}")
    n_ok = sum(r.ok for r in report.results)
    out.append(f"{n_ok} of {len(report.results)} passed: "
               f"{'PASS' if report.ok else 'FAIL'}")  # fmt: skip
    return "\n".join(out)


# -- the command ------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``selftest`` subcommand's options (sw/app.py builds the parser)."""
    p.add_argument("--backend", choices=SELFTEST_BACKENDS, default="emu",
                   help="what to test: emu (the functional model), rtl (the Verilator model "
                        "of hw/, development checkout only) or pynq (the board)")  # fmt: skip
    p.add_argument("--config", help="the accelerator build as JSON (AccelConfig fields); "
                   "default AccelConfig()")  # fmt: skip
    p.add_argument("--bitstream", help="pynq: the .bit file (its .hwh beside it)")
    p.add_argument("--timeout", type=float, default=5.0, help="accelerator timeout per run (s)")
    p.add_argument("--model", metavar="NPZ", help=f"the frame case's artifact ({FRAME_ARTIFACT}; "
                   "found in the wheel or models/artifacts/ by default)")  # fmt: skip
    p.add_argument("--emulate-build", metavar="JSON",
                   help="emu: model the accelerator as this other build (the registers check "
                        "must then fail)")  # fmt: skip
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")


def run_command(args: argparse.Namespace, load_config: Callable[[str | None], AccelConfig]
                ) -> int:  # fmt: skip
    """``shiftdet selftest``: prints the table, returns the exit status."""
    from sw.backends import BackendUnavailable

    cfg = load_config(args.config)
    opts: dict[str, Any] = {"timeout_s": args.timeout}
    factory = None
    label = args.backend
    if args.backend == "pynq" and args.bitstream:
        opts["bitstream"] = args.bitstream
    if args.emulate_build:
        if args.backend != "emu":
            raise SelftestError("--emulate-build applies to the emu backend only")
        other = load_config(args.emulate_build)
        label = "emu (as another build)"

        def factory(_name: str, plan: Any) -> Any:
            from sw.backends.emu import EmuBackend

            return EmuBackend(plan, device_cfg=other, timeout_s=args.timeout)

    if args.backend == "rtl":
        factory = rtl_factory(cfg, args.model)
    print(f"shiftdet selftest: backend {label}, build "
          + ", ".join(f"{k} {v}" for k, v in cfg.as_dict().items()), flush=True)  # fmt: skip
    try:
        report = run_selftest(label, cfg, opts, frame_model=args.model, factory=factory)
    except BackendUnavailable as e:
        raise SelftestError(str(e)) from None
    print(format_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_json(), indent=1))
    return 0 if report.ok else 1
