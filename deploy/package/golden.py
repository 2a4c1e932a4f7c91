"""The self-test's golden digests, computed by the NumPy reference (``sim.reference``).

    .venv/bin/python deploy/package/golden.py          # rewrite sw/selftest_golden.json
    .venv/bin/python deploy/package/golden.py --check  # exit 1 if the committed file differs

Development side only: ``sim/`` is not installed on a board, so the board's self-test compares
its outputs with these stored digests instead (``sw/selftest.py``). The reference is the
independent implementation of docs/arithmetic.md; the digests are therefore what the contract
says, not what the emulator happens to compute. ``tests/test_selftest.py`` recomputes them and
compares with the committed file, so a changed case or artifact cannot go unnoticed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from sim.reference import run_network  # noqa: E402
from sw import selftest  # noqa: E402


def compute() -> dict[str, Any]:
    """The golden file's content, from the reference."""
    cases = selftest.layer_cases()
    path = selftest.CHECKOUT_ARTIFACTS / selftest.FRAME_ARTIFACT
    cases.append(selftest.frame_case(path))
    out: dict[str, Any] = {}
    for case in cases:
        art, image = case.build()
        ref = run_network(art, image)
        out[case.name] = {
            "what": case.what,
            "inputs": selftest.inputs_digest(art, image),
            "outputs": selftest.outputs_digest(art, ref),
        }
    return {
        "about": "SHA-256 of the self-test cases' inputs and of sim.reference.run_network's "
        "outputs on them (sw/selftest.py); regenerate with deploy/package/golden.py",
        "frame_artifact": selftest.FRAME_ARTIFACT,
        "frame_size": list(selftest.FRAME_SIZE),
        "cases": out,
    }


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare, do not write")
    args = ap.parse_args(argv)
    text = render(compute())
    if args.check:
        same = selftest.GOLDEN.is_file() and selftest.GOLDEN.read_text() == text
        print(f"{selftest.GOLDEN}: {'up to date' if same else 'DIFFERS from sim.reference'}")
        return 0 if same else 1
    selftest.GOLDEN.write_text(text)
    print(f"wrote {selftest.GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
