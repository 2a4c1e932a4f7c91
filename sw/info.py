"""``shiftdet info``: what this machine is, what the runtime expects and what the overlay says.

Prints the board (``/proc/device-tree/model``, or "not a board"), the installed package and
its Python and library versions, the contract (accelerator ID, interface version), the
accelerator configuration the runtime compiles for (``--config``, default ``AccelConfig()``)
with the CONFIG registers that build must report, and, when a backend can start (``pynq`` on a
board with its bitstream, or ``--backend emu``), the registers the overlay actually reports.
Off a board nothing fails: the overlay section says why it is left out.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

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

DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
DISTRIBUTIONS = ("pow2det-board", "pow2det")  # the board wheel, or the development install


def board_model(path: Path = DEVICE_TREE_MODEL) -> str:
    """The board's name from the device tree (NUL-terminated there), or "not a board"."""
    try:
        raw = path.read_bytes()
    except OSError:
        return "not a board (no /proc/device-tree/model)"
    return raw.rstrip(b"\0").decode("utf-8", "replace").strip() or "not a board (empty model)"


def _version(dist: str) -> str | None:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - 3.8 has importlib.metadata
        return None
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def package_info() -> dict[str, str]:
    """Versions of this runtime and of what it runs on (pynq by its metadata: importing it off
    a board prints warnings)."""
    out = {"python": f"{platform.python_version()} ({sys.executable})"}
    for d in DISTRIBUTIONS:
        v = _version(d)
        if v is not None:
            out["package"] = f"{d} {v}"
            break
    else:
        out["package"] = "not installed (running from a checkout)"
    out["runtime"] = str(Path(__file__).resolve().parent)
    import numpy

    out["numpy"] = numpy.__version__
    try:
        import cv2

        out["opencv"] = cv2.__version__
    except ImportError as e:
        out["opencv"] = f"missing ({e})"
    out["pynq"] = _version("pynq") or "not installed"
    return out


def overlay_registers(backend: str, cfg: AccelConfig, options: dict[str, Any]) -> dict[str, Any]:
    """Start ``backend`` on a one-layer plan and read ID, CONFIG and CONFIG2 through it."""
    from sw import selftest
    from sw.backends import make_backend
    from sw.compiler import compile_model
    from sw.driver import AcceleratorError

    art, _ = selftest.layer_cases()[0].build()
    plan = compile_model(art, cfg)
    try:
        dev = make_backend(backend, plan, **options)
    except AcceleratorError as e:  # answers, but as another build (or not at all)
        return {"error": str(e)}
    loop = asyncio.new_event_loop()
    try:
        ident, c1, c2 = (loop.run_until_complete(dev.driver.t.read_reg(r))
                         for r in (REG_ID, REG_CONFIG, REG_CONFIG2))  # fmt: skip
    finally:
        loop.close()
        dev.close()
    return {"ID": f"0x{ident:08x}", "CONFIG": f"0x{c1:08x}", "CONFIG2": f"0x{c2:08x}",
            **decode_config(c1, c2)}  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=("auto", "none", "emu", "pynq"), default="auto",
                   help="read the registers through this backend; auto: pynq when this is a "
                        "PYNQ board, else none")  # fmt: skip
    p.add_argument("--config", help="the accelerator build as JSON (AccelConfig fields)")
    p.add_argument("--bitstream", help="pynq: the .bit file (its .hwh beside it)")


def _on_pynq_board() -> bool:
    return DEVICE_TREE_MODEL.is_file() and _version("pynq") is not None


def run_command(args: argparse.Namespace, load_config: Callable[[str | None], AccelConfig]
                ) -> int:  # fmt: skip
    from sw import selftest
    from sw.backends import BackendUnavailable

    cfg = load_config(args.config)
    lines = [("board", board_model())]
    lines += list(package_info().items())
    lines.append(("contract", f"accelerator ID 0x{ACCEL_ID:08x}, interface version "
                              f"{INTERFACE_VERSION}"))  # fmt: skip
    lines.append(("config", ", ".join(f"{k} {v}" for k, v in cfg.as_dict().items())))
    c1, c2 = config_registers(cfg)
    lines.append(("expects", f"ID 0x{ACCEL_ID:08x}, CONFIG 0x{c1:08x}, CONFIG2 0x{c2:08x}"))
    backend = args.backend
    if backend == "auto":
        backend = "pynq" if _on_pynq_board() else "none"
    if args.bitstream or backend == "pynq":
        from sw.backends.pynq import DEFAULT_BITSTREAM  # imports pynq only when it starts

        bit = Path(args.bitstream) if args.bitstream else DEFAULT_BITSTREAM
        have = {p.suffix: "present" if p.is_file() else "missing"
                for p in (bit, bit.with_suffix(".hwh"))}  # fmt: skip
        lines.append(("bitstream", f"{bit} ({have['.bit']}, .hwh {have['.hwh']})"))
    if backend == "none":
        lines.append(("overlay", "not read (not a PYNQ board; --backend emu reads the "
                                 "emulator's registers)"))  # fmt: skip
    else:
        opts: dict[str, Any] = {}
        if backend == "pynq" and args.bitstream:
            opts["bitstream"] = args.bitstream
        try:
            regs = overlay_registers(backend, cfg, opts)
        except BackendUnavailable as e:
            regs = {"error": str(e)}
        if "error" in regs:
            lines.append((f"overlay ({backend})", f"not read: {regs['error']}"))
        else:
            lines.append((f"overlay ({backend})", ", ".join(f"{k} {v}" for k, v in regs.items())))
    frame = selftest.find_frame_artifact() or f"{selftest.FRAME_ARTIFACT} not found"
    lines.append(("selftest", f"{len(selftest.layer_cases())} layer cases + frame ({frame})"))
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        print(f"{k.ljust(width)}  {v}")
    return 0
