"""``make mutation-check``: one-line rounding mutations that the default suite must catch.

The contract rounds half up (docs/arithmetic.md section 1) in four implementations: the RTL
requantizer, the NumPy reference, the emulator's float64 kernels and the PyTorch integer mode.
Each mutation below changes one line of one of them to another rounding (half down, half away
from zero), in a scratch copy of the working tree (the checkout itself is never touched), and
runs the default-suite tests that are meant to pin that line. A mutation is *caught* when every
test it names fails; the check first runs all those tests unmutated, which must pass. Exit
status 0 only if every mutation was caught. A summary goes to ``build/mutation_check.json``.

The tests are named per mutation, rather than the whole suite run for each (an hour and more),
and each name is a test of the default suite: what is checked is that those tests have teeth.
An RTL mutation rebuilds the Verilator model (a minute or two on two cores).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PER_RUN_TIMEOUT_S = 1800  # one pytest run; the RTL build and layer runs take ~5 min here


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # relative to the repository root
    old: str  # must occur exactly once in the file
    new: str
    tests: tuple[str, ...]  # pytest node ids (parametrized ids match by prefix), each must fail


RTL_LAYERS = "tests/test_rtl_accel.py::test_layers[lanes16]"
HALF_RTL = "m.d.comb += half.eq(Mux(shift == 0, 0, (1 << shift) >> 1))"
ROUND_RTL = "m.d.sync += [s1.eq(p + half), sh1.eq(shift), s2.eq(s1 >> sh1)]"
HALF_REF = "half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)"
HALF_TORCH = "half = torch.where(s > 0, torch.exp2(s - 1), torch.zeros_like(s))"
ADD_EMU = "t = (t + (1 << (shift - 1))) >> shift"
CLIP_EMU = "np.clip(r, 0, qmax, out=r)"
ROWS_EMU = "offset = z_out + 2.0 ** -(int(s.max(initial=0)) + 2)"
ADD_ROWS = "gamma = z_out + 2.0 ** -(shift + 2) - ka * z_a - kc * z_c"
ROWS_TESTS = (
    "tests/test_rounding_ties.py::test_emulator_row_requantize_ties",
    "tests/test_rounding_ties.py::test_emulator_row_requantize_small_shifts",
)

MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "rtl requantizer: round half down",
        "hw/requant.py", HALF_RTL, HALF_RTL.replace(">> 1))", ">> 1) - 1)"),
        ("tests/test_hw_units.py::test_requant_rounds_ties_up",
         "tests/test_hw_units.py::test_eltwise_rounds_ties_up", RTL_LAYERS),
    ),
    Mutation(
        "rtl requantizer: ties away from zero",
        "hw/requant.py", ROUND_RTL, ROUND_RTL.replace("p + half", "p + half - (p < 0)"),
        ("tests/test_hw_units.py::test_requant_rounds_ties_up", RTL_LAYERS),
    ),
    Mutation(
        "reference: round half down",
        "sim/reference/ops.py", HALF_REF, HALF_REF + " - (s > 0)",
        ("tests/test_rounding_ties.py::test_reference_requantize_ties",
         "tests/test_rounding_ties.py::test_add_ties[reference",
         "tests/test_reference_ops.py::test_round_shift_ties_go_up"),
    ),
    Mutation(
        "emulator requantizer, shifts <= 44: round half down",
        "sw/kernels.py", CLIP_EMU, CLIP_EMU.replace("np.clip(r,", "np.clip(np.ceil(r - 1),"),
        ("tests/test_rounding_ties.py::test_emulator_requantize_ties",),
    ),
    Mutation(
        "emulator requantizer, shifts > 44: round half down",
        "sw/kernels.py", "np.floor(r, out=r)", "np.ceil(r - 1, out=r)",
        ("tests/test_rounding_ties.py::test_emulator_requantize_ties",),
    ),
    Mutation(
        "emulator fast requantizer: no tie offset (ties to even)",
        "sw/kernels.py", ROWS_EMU, "offset = z_out + 0.0", ROWS_TESTS,
    ),
    Mutation(
        "emulator fast requantizer: offset 2^-(S+1) (a tie where every shift is 0)",
        "sw/kernels.py", ROWS_EMU, ROWS_EMU.replace("+ 2)", "+ 1)"),
        ("tests/test_rounding_ties.py::test_emulator_row_requantize_small_shifts",),
    ),
    Mutation(
        "emulator fast residual add: no tie offset (ties to even)",
        "sw/kernels.py", ADD_ROWS, ADD_ROWS.replace(" + 2.0 ** -(shift + 2)", ""),
        ("tests/test_rounding_ties.py::test_add_ties[fast-emulator",),
    ),
    Mutation(
        "emulator residual add: round half down",
        "sw/kernels.py", ADD_EMU, ADD_EMU.replace("- 1))", "- 1)) - 1"),
        ("tests/test_rounding_ties.py::test_add_ties[emulator",),
    ),
    Mutation(
        "torch integer mode: round half down",
        "quant/integer.py", HALF_TORCH, HALF_TORCH.replace("exp2(s - 1)", "exp2(s - 1) - 1"),
        ("tests/test_rounding_ties.py::test_torch_integer_conv_ties",
         "tests/test_rounding_ties.py::test_add_ties[torch"),
    ),
)  # fmt: skip


def scratch_copy(dst: Path) -> None:
    """The working tree's tracked and untracked-not-ignored files, links to .venv and data/."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout.split("\0")  # fmt: skip
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    for link in (".venv", "data"):  # data/ holds tracked files too: link what is missing
        if not (REPO / link).exists():
            continue
        if not (dst / link).exists():
            (dst / link).symlink_to(REPO / link)
            continue
        for child in (REPO / link).iterdir():
            if not (dst / link / child.name).exists():
                (dst / link / child.name).symlink_to(child)


def node_ids(tests: tuple[str, ...]) -> list[str]:
    """What pytest is given: a parametrized prefix (``name[a``) runs the whole function."""
    return sorted({t.split("[")[0] if not t.endswith("]") else t for t in tests})


def run_pytest(root: Path, tests: tuple[str, ...], tag: str) -> dict[str, str]:
    """Run the tests in ``root``; returns ``{nodeid: "passed" | "failed" | "skipped"}``."""
    xml = root / "build" / f"mutation_{tag}.xml"
    xml.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(root / ".venv" / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "-o", "addopts=", f"--junitxml={xml}", *node_ids(tests)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True,
                          timeout=PER_RUN_TIMEOUT_S)  # fmt: skip
    if proc.returncode not in (0, 1) or not xml.exists():
        tail = (proc.stdout + proc.stderr)[-2000:]
        raise SystemExit(f"mutation-check: pytest exited {proc.returncode} ({tag}):\n{tail}")
    out: dict[str, str] = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        path = case.get("classname", "").replace(".", "/") + ".py"
        nodeid = f"{path}::{case.get('name')}"
        failed = case.find("failure") is not None or case.find("error") is not None
        out[nodeid] = "failed" if failed else "skipped" if case.find("skipped") is not None else (
            "passed")  # fmt: skip
    return out


def outcome(results: dict[str, str], test: str) -> list[str]:
    return [v for k, v in results.items() if k == test or k.startswith(test)]


def imports_from(root: Path) -> None:
    """The scratch copy's packages must be the ones imported there, not the editable install's."""
    probe = "import hw.requant, sw.kernels; print(hw.requant.__file__, sw.kernels.__file__)"
    got = subprocess.run([str(root / ".venv" / "bin" / "python"), "-c", probe], cwd=root,
                         check=True, capture_output=True, text=True).stdout.split()  # fmt: skip
    if not all(Path(p).resolve().is_relative_to(root.resolve()) for p in got):
        raise SystemExit(f"mutation-check: the scratch copy imports {got}, not its own files")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=None, help="run the mutations whose name contains this")
    ap.add_argument("--out", type=Path, default=REPO / "build" / "mutation_check.json")
    args = ap.parse_args(argv)
    muts = [m for m in MUTATIONS if args.only is None or args.only in m.name]
    if not muts:
        raise SystemExit(f"mutation-check: no mutation matches {args.only!r}")
    t0 = time.perf_counter()
    report: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="mutation-check-") as tmp:
        root = Path(tmp)
        scratch_copy(root)
        imports_from(root)
        every = tuple(sorted({t for m in muts for t in m.tests}))
        print(f"mutation-check: baseline, {len(every)} tests unmutated ...", flush=True)
        base = run_pytest(root, every, "baseline")
        broken = [t for t in every if not outcome(base, t) or set(outcome(base, t)) != {"passed"}]
        if broken:
            raise SystemExit(f"mutation-check: unmutated, these do not pass: {broken}")
        for i, mut in enumerate(muts):
            target = root / mut.path
            original = target.read_text()
            if original.count(mut.old) != 1:
                raise SystemExit(
                    f"mutation-check: {mut.name}: the line to mutate occurs "
                    f"{original.count(mut.old)} times in {mut.path}, not once "
                    "(update tools/mutation_check.py to the code)"
                )
            target.write_text(original.replace(mut.old, mut.new))
            try:
                t1 = time.perf_counter()
                res = run_pytest(root, mut.tests, f"m{i}")
            finally:
                target.write_text(original)
            per_test = {t: ("failed" in outcome(res, t)) for t in mut.tests}
            caught = all(per_test.values())
            print(f"  {'caught  ' if caught else 'SURVIVED'} {mut.name} ({mut.path}; "
                  f"{time.perf_counter() - t1:.0f} s)", flush=True)  # fmt: skip
            for t, hit in per_test.items():
                if not hit:
                    print(f"           not failed by {t}")
            report.append({"mutation": mut.name, "file": mut.path, "old": mut.old,
                           "new": mut.new, "caught": caught, "tests": per_test})  # fmt: skip
    ok = all(r["caught"] for r in report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"all_caught": ok, "seconds": round(
        time.perf_counter() - t0), "mutations": report}, indent=1) + "\n")  # fmt: skip
    print(f"mutation-check: {sum(bool(r['caught']) for r in report)}/{len(report)} caught "
          f"({time.perf_counter() - t0:.0f} s); {args.out}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
