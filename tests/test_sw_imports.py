"""sw/ runs on the board: importing every sw module must not pull in torch, nor the testbench
folder (sim/) or the RTL (hw/): what the runtime shares with them is in sw/contract/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PROBE = """
import importlib, pkgutil, sys, warnings
warnings.simplefilter("ignore")
import sw
names = ["sw"] + [m.name for m in pkgutil.walk_packages(sw.__path__, "sw.")]
for n in names:
    importlib.import_module(n)
print(len(names), "torch" in sys.modules, "cocotb" in sys.modules)
print(" ".join(sorted(m for m in sys.modules if m.split(".")[0] in ("sim", "hw"))) or "-")
"""


def test_no_sw_module_imports_torch() -> None:
    r = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.splitlines()[-2:]
    count, torch_loaded, cocotb_loaded = first.split()
    assert int(count) >= 10, "the probe did not find the sw modules"
    assert torch_loaded == "False", "a sw module imports torch (sw/ must run on the board)"
    # the rtl transport imports cocotb only inside the simulator, never at import time
    assert cocotb_loaded == "False"
    # the runtime never imports the testbench folder or the RTL (no hidden importlib either:
    # this looks at what is loaded, not at the import lines)
    assert second == "-", f"importing sw/ loads {second}"
