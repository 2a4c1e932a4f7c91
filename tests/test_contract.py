"""The contract package (sw/contract/) is the one definition of the accelerator's interface.

Checked here: the interface document's register, error-code and descriptor tables equal the
contract row by row (a change on either side fails); no module outside sw/contract/ defines a
contract constant again; sw.contract imports nothing but numpy and the standard library.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sw.contract import registers
from sw.contract.descriptor import LAYOUT
from sw.contract.registers import ERROR_NAMES, REGISTERS

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "accelerator-interface.md"
CONTRACT = REPO / "sw" / "contract"


def _table(section: str, first_header: str) -> list[list[str]]:
    """Body rows of the first markdown table under ``## section`` whose header starts with
    ``| first_header |``; cells stripped."""
    text = DOC.read_text()
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    rows: list[list[str]] = []
    inside = False
    for line in body.splitlines():
        if line.startswith(f"| {first_header} |"):
            inside = True
            continue
        if inside and not line.startswith("|"):
            break
        if inside and not line.startswith("| ---"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    assert rows, f"no table starting with {first_header!r} under {section!r} in {DOC}"
    return rows


FIELD = re.compile(r"`(\w+)\[(\d+)(?::(\d+))?\]`(?:\s+(RO|RW|W1C|W1P))?")


def _doc_fields(cell: str) -> list[tuple[str, int, int, str]]:
    out = []
    for name, hi, lo, access in FIELD.findall(cell):
        lsb = int(lo) if lo else int(hi)
        out.append((name, lsb, int(hi) - lsb + 1, access))
    leftover = FIELD.sub("", cell).replace(",", "").strip()
    assert not leftover, f"unparsed text in a fields cell: {leftover!r}"
    return out


def test_register_table_matches_the_contract() -> None:
    rows = _table("Registers (AXI4-Lite, byte offsets)", "offset")
    doc = [(int(r[0], 16), r[1], r[2], _doc_fields(r[3])) for r in rows]
    code = [
        (r.offset, r.name, r.access, [(f.name, f.lsb, f.width, f.access) for f in r.fields])
        for r in REGISTERS
    ]
    assert doc == code


def test_register_table_values() -> None:
    """The ID value the document names, and the offsets are word-aligned and distinct."""
    rows = {r[1]: r for r in _table("Registers (AXI4-Lite, byte offsets)", "offset")}
    assert f"`0x{registers.ACCEL_ID:08X}`" in rows["ID"][4]
    assert f"interface version ({registers.INTERFACE_VERSION})" in rows["CONFIG"][4]
    offsets = [r.offset for r in REGISTERS]
    assert len(set(offsets)) == len(offsets) and all(o % 4 == 0 for o in offsets)
    assert max(offsets) < 1 << registers.ADDR_BITS


def test_error_code_table_matches_the_contract() -> None:
    rows = _table("Registers (AXI4-Lite, byte offsets)", "code")
    doc = {int(r[0]): (r[1].strip("`"), r[2]) for r in rows}
    assert {c: n for c, (_, n) in doc.items()} == ERROR_NAMES
    for c, (const, _) in doc.items():
        assert getattr(registers, const) == c, const
    assert max(ERROR_NAMES) < 1 << registers.ERROR_BITS


def test_descriptor_table_matches_the_layout() -> None:
    rows = _table("Descriptors", "word")
    doc: dict[str, tuple[int, int, int]] = {}
    for word, bits, fields in rows:
        names = re.findall(r"`(\w+)`", fields)
        if not names:  # reserved words
            continue
        spans = [b.strip() for b in bits.split("/")]
        names = names[: len(spans)]  # "`weight_addr` (conv) or `in2_addr` (add)": one field
        assert len(names) == len(spans), (word, bits, fields)
        for name, span in zip(names, spans, strict=True):
            hi, _, lo = span.partition(":")
            lsb = int(lo) if lo else int(hi)
            doc[name] = (int(word), lsb, int(hi) - lsb + 1)
    assert doc == LAYOUT


# Outside the three folders that share the contract, only its unmistakable names are looked for
# (a plot's LAYOUT or a local RO in quant/ is not a register access).
CORE = {
    "BANKS", "DW_TAPS", "ADD_CHUNK", "ALIGN", "MULT_MAX", "SHIFT_MAX", "ACC_BITS", "ACC_MIN",
    "ACC_MAX", "DENSE_CODE_BITS", "MAX_KERNEL", "DESCRIPTOR_BYTES", "ACCEL_ID",
    "INTERFACE_VERSION", "CHANNEL_RECORD", "ERROR_NAMES", "WEIGHT_FORMAT_CODES",
}  # fmt: skip


def _assigned(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            out += [
                (node.lineno, n.id) for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)
            ]
    return out


def _contract_names() -> set[str]:
    """Module-level UPPER_CASE names the contract package assigns."""
    return {
        n
        for path in CONTRACT.glob("*.py")
        for _, n in _assigned(path)
        if n.isupper() and not n.startswith("__")
    }


def test_no_contract_constant_is_defined_twice() -> None:
    """Outside sw/contract/ a contract constant may be imported, never assigned again."""
    names = _contract_names()
    assert CORE <= names
    core = CORE | {n for n in names if n.startswith(("REG_", "ERR_", "CTRL_", "STATUS_"))}
    again = []
    for top, watch in [("hw", names), ("sw", names), ("sim", names)] + [
        (t, core) for t in ("bench", "quant", "models", "tools")
    ]:
        for path in sorted((REPO / top).rglob("*.py")):
            if CONTRACT in path.parents:
                continue
            again += [f"{path.relative_to(REPO)}:{i} {n}" for i, n in _assigned(path) if n in watch]
    assert not again, "contract constants defined again (import them from sw.contract): " + (
        ", ".join(again)
    )


PROBE = """
import importlib, pkgutil, sys
import numpy  # allowed, with whatever it loads
before = set(sys.modules)
import sw.contract
names = [m.name for m in pkgutil.walk_packages(sw.contract.__path__, "sw.contract.")]
for n in names:
    importlib.import_module(n)
new = {m.split(".")[0] for m in set(sys.modules) - before}
print(len(names), " ".join(sorted(new - set(sys.stdlib_module_names) - {"sw"})) or "-")
"""


def test_contract_imports_only_numpy_and_the_standard_library() -> None:
    r = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    count, others = r.stdout.split(maxsplit=1)
    assert int(count) >= 6, "the probe did not find the contract modules"
    assert others.strip() == "-", f"sw.contract imports {others.strip()}"
    # and inside sw/, only sw.contract itself
    for path in CONTRACT.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sw"):
                assert node.module.startswith("sw.contract"), f"{path.name}: {node.module}"


@pytest.mark.parametrize("name", [r.name for r in REGISTERS])
def test_register_constants_name_the_table(name: str) -> None:
    assert getattr(registers, f"REG_{name}") == registers.BY_NAME[name].offset


def _imports(path: Path) -> list[str]:
    mods = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            mods.append(node.module)
        elif isinstance(node, ast.Import):
            mods += [a.name for a in node.names]
    return mods


def test_hw_reads_only_the_contract_of_sw() -> None:
    """The RTL takes its parameters from sw.contract alone, never from the runtime."""
    wrong = [
        f"{path.relative_to(REPO)}: {mod}"
        for path in sorted((REPO / "hw").glob("*.py"))
        for mod in _imports(path)
        if mod.split(".")[0] == "sw" and not mod.startswith("sw.contract")
    ]
    assert not wrong, "hw/ imports sw/ outside sw.contract: " + ", ".join(wrong)
