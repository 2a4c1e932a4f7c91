"""Fuzzing the artifact loader: no mutated file is accepted, and only ArtifactError escapes.

A small artifact (``random_network(default_rng(5), 32 x 32)``, about 20 KB) is mutated in five
groups; every load must finish within 10 s and raise nothing but :class:`ArtifactError`:

1. **byte flips, insertions and deletions anywhere** in the file: must be refused (the
   ``pow2det-sha256:`` comment covers every byte before it, and the comment itself is the hex).
2. **truncations** at every structural offset of the zip (each local header, member data, each
   central-directory entry, the end record, the comment; one byte either side) and at random
   lengths: must be refused.
3. **header edits of every field, re-packed by a tool that re-seals the file but does not
   know the digest** (the zip re-written, the file checksum recomputed, the header's
   ``digest`` kept): must be refused; any change of the parsed header changes its canonical
   form and so the digest.
4. **header edits with the digest recomputed**, by an attacker who knows the format: must be
   refused by the field checks or the arithmetic rules, *or*, where the edit is semantically
   valid (another description, class name, metadata entry, anchor size, an unused tensor role
   renamed consistently...), accepted. Acceptance is allowed in this group only: such a file
   *is* a different valid model, which no checksum can tell from one the quantizer wrote. What
   v2 guarantees is that nothing in it is ignored: an accepted file, loaded and
   saved again, has exactly the edited header.
5. **tensor edits with every checksum recomputed** (an attacker again): refused by the rules
   (invalid codes, shift, multipliers, accumulator bound...) or accepted with exactly the
   edited integers.

Hypothesis runs derandomized (the same examples every run, no database); on a failure it
prints the falsifying example (path, mutation, offset) and its reproduction blob.
"""

from __future__ import annotations

import copy
import functools
import io
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sim.reference.randnet import random_network
from sw import artifact
from sw.artifact import ArtifactError

LOAD_LIMIT_S = 10.0
FUZZ = settings(
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)


@functools.cache
def original() -> tuple[Path, bytes, dict[str, Any], dict[str, np.ndarray]]:
    folder = Path(tempfile.mkdtemp(prefix="artifact-fuzz-"))
    net = random_network(np.random.default_rng(5), height=32, width=32)
    path = artifact.save(net, folder / "orig.npz")
    header, arrays = artifact.read_members(path)
    return folder, path.read_bytes(), header, arrays


def try_load(data: bytes) -> artifact.Artifact | None:
    """Load ``data``: the artifact, or None for an ArtifactError; fails on anything else."""
    folder = original()[0]
    p = folder / "mutated.npz"
    p.write_bytes(data)
    t0 = time.monotonic()
    try:
        art = artifact.load(p)
    except ArtifactError as e:
        assert "\n" not in str(e)
        art = None
    except Exception as e:  # noqa: BLE001 - the point: nothing else may escape
        pytest.fail(f"load raised {type(e).__name__}: {e}")
    assert time.monotonic() - t0 < LOAD_LIMIT_S
    return art


def test_original_loads() -> None:
    assert try_load(original()[1]) is not None


# --- 1, 2: the bytes ------------------------------------------------------------------------


@settings(FUZZ, max_examples=300)
@given(st.data())
def test_byte_mutations_are_refused(data: st.DataObject) -> None:
    blob = bytearray(original()[1])
    pos = data.draw(st.integers(0, len(blob) - 1), label="offset")
    kind = data.draw(st.sampled_from(["flip", "flip", "insert", "delete"]), label="kind")
    if kind == "flip":
        blob[pos] ^= data.draw(st.integers(1, 255), label="xor")
    elif kind == "insert":
        blob.insert(pos, data.draw(st.integers(0, 255), label="byte"))
    else:
        del blob[pos]
    assert try_load(bytes(blob)) is None


def structural_offsets(blob: bytes) -> list[int]:
    """Offsets where the zip's structure changes: every truncation kind lies next to one."""
    offs = {0, 1, 4, len(blob) - 79, len(blob) - 79 - 22, len(blob) - 64, len(blob) - 1}
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        cd = zf.start_dir
        offs.add(cd)
        for info in zf.infolist():
            h = info.header_offset
            start = h + 30 + len(info.filename.encode()) + len(info.extra)
            offs.update({h, h + 4, h + 30, start, start + 10, start + info.compress_size})
    # central-directory entries: 46 fixed bytes + name + extra + comment each
    pos = cd
    while blob[pos : pos + 4] == b"PK\x01\x02":
        offs.add(pos)
        n, m, k = (int.from_bytes(blob[pos + o : pos + o + 2], "little") for o in (28, 30, 32))
        pos += 46 + n + m + k
    offs.add(pos)
    return sorted({o + d for o in offs for d in (-1, 0, 1) if 0 <= o + d < len(blob)})


def test_truncation_at_every_structural_offset() -> None:
    blob = original()[1]
    offsets = structural_offsets(blob)
    assert len(offsets) > 100
    for n in offsets:
        assert try_load(blob[:n]) is None, n


@settings(FUZZ, max_examples=100)
@given(st.data())
def test_truncation_at_random_lengths(data: st.DataObject) -> None:
    blob = original()[1]
    n = data.draw(st.integers(0, len(blob) - 1), label="length")
    assert try_load(blob[:n]) is None


# --- 3, 4: the header -----------------------------------------------------------------------


def paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into a JSON value (containers and leaves), as key/index tuples."""
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k in obj:
            out += paths(obj[k], (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += paths(v, (*prefix, i))
    return out


@functools.cache
def header_paths() -> list[tuple]:
    return paths(original()[2])


def deep(n: int) -> Any:
    v: Any = 1
    for _ in range(n):
        v = [v]
    return v


VALUES = [None, True, False, 0, 1, -1, 2, 3, 7, 47, 48, 255, 256, 2**16, 2**31, -(2**31), 10**40,
          0.5, -0.5, 1.5, 1e-30, 1e30, "", "x", "conv0", "image", "pw3.bias", "linear", "relu",
          "leaky", "pow2", "int", "yolo", "raw", "uint8", [], [1], [1, 2], [[1, 2]], ["a"], {},
          {"a": 1}, deep(300)]  # fmt: skip


def edit_value(v: Any, how: str, pick: Any) -> Any:
    if how == "replace":
        return copy.deepcopy(pick)
    if isinstance(v, bool):
        return not v
    if isinstance(v, int | float):
        return {"plus1": v + 1, "minus1": v - 1, "double": v * 2, "negate": -v, "half": v / 2,
                "float": float(v) + 0.25}[how if how in ("plus1", "minus1", "double", "negate",
                                                          "half") else "float"]  # fmt: skip
    if isinstance(v, str):
        return v + "x" if how in ("plus1", "double") else v[:-1] if how == "minus1" else v.upper()
    if isinstance(v, list):
        if how in ("plus1", "double"):
            return v + copy.deepcopy(v[-1:] or [0])
        return v[:-1] if how == "minus1" else v[::-1]
    if isinstance(v, dict):
        if how in ("plus1", "double"):
            return {**v, "zz_extra": 1}
        return {k: x for k, x in list(v.items())[1:]} if how == "minus1" else {}
    return pick


EDITS = ["replace", "replace", "plus1", "minus1", "double", "negate", "half", "float", "other",
         "delete"]  # fmt: skip


def mutate(header: dict[str, Any], path: tuple, how: str, pick: Any) -> dict[str, Any]:
    h = copy.deepcopy(header)
    parent = h
    for k in path[:-1]:
        parent = parent[k]
    last = path[-1]
    if how == "delete":
        del parent[last]
    else:
        parent[last] = edit_value(parent[last], how, pick)
    return h


def edited_header(data: st.DataObject) -> tuple[dict[str, Any], tuple, str]:
    header = original()[2]
    path = data.draw(st.sampled_from(header_paths()), label="path")
    how = data.draw(st.sampled_from(EDITS), label="edit")
    pick = data.draw(st.sampled_from(VALUES), label="value") if how == "replace" else None
    new = mutate(header, path, how, pick)
    # Not a mutation when the header stays the same JSON (1.0 for 1.0, a list reversed to
    # itself...): canonical JSON tells types apart (1 vs 1.0 vs true).
    assume(artifact.canonical_json(new) != artifact.canonical_json(header))
    return new, path, how


@settings(FUZZ, max_examples=250)
@given(st.data())
def test_header_edits_without_the_digest_are_refused(data: st.DataObject) -> None:
    new, _, _ = edited_header(data)
    assert try_load(artifact.pack(new, original()[3], recompute_digest=False)) is None


def normalized(header: dict[str, Any]) -> dict[str, Any]:
    """A header without its digest, tensors keyed by (node, role) instead of by name."""
    h = copy.deepcopy(header)
    h.pop("digest", None)
    table = h.pop("tensors")
    by_role = {}
    for n in h["nodes"]:
        refs = n.pop("tensors", {})
        for role, name in refs.items():
            by_role[f"{n['name']}/{role}"] = table[name]
        n["roles"] = sorted(refs)
    h["tensors"] = by_role
    return h


def assert_carried_verbatim(art: artifact.Artifact, edited: dict[str, Any]) -> None:
    folder = original()[0]
    again = artifact.save(art, folder / "again.npz")
    header, _ = artifact.read_members(again)
    assert normalized(header) == normalized(edited)


@settings(FUZZ, max_examples=250)
@given(st.data())
def test_header_edits_with_the_digest_are_refused_or_valid(data: st.DataObject) -> None:
    new, path, _ = edited_header(data)
    assume(path[0] != "digest")  # pack() recomputes it: no edit left
    art = try_load(artifact.pack(new, original()[3]))
    if art is not None:
        assert_carried_verbatim(art, new)


# --- 5: the tensors -------------------------------------------------------------------------


@settings(FUZZ, max_examples=100)
@given(st.data())
def test_tensor_edits_with_every_checksum_are_refused_or_exact(data: st.DataObject) -> None:
    import hashlib

    _, _, header, arrays = original()
    name = data.draw(st.sampled_from(sorted(arrays)), label="tensor")
    a = arrays[name].copy()
    assume(a.size > 0)
    i = data.draw(st.integers(0, a.size - 1), label="index")
    if a.dtype == np.float32:
        v = data.draw(st.sampled_from([0.0, -1.0, 1e-30, 1e30, np.inf, np.nan, 2.0]), label="v")
    else:
        info = np.iinfo(a.dtype)
        v = data.draw(st.integers(int(info.min), int(info.max)), label="v")
    a.reshape(-1)[i] = v
    assume(a.tobytes() != arrays[name].tobytes())
    new_arrays = {**arrays, name: a}
    h = copy.deepcopy(header)
    h["tensors"][name]["sha256"] = hashlib.sha256(a.tobytes()).hexdigest()
    art = try_load(artifact.pack(h, new_arrays))
    if art is not None:
        node, role = name.rsplit(".", 1)
        np.testing.assert_array_equal(art.node(node).tensors[role], a)
