"""The accelerator's internal interfaces: what its blocks hand each other, named and typed.

The blocks of ``pow2det_accel`` (hw/top.py wires them) talk through these and nothing else:

* :class:`LayerLayout`: the decoded descriptor of the running layer with the sizes derived from
  it, held by the descriptor controller and read by every other block;
* :func:`read_request` (descriptor controller, address sequencer -> AXI reader + tag FIFO): one
  DDR read of ``beats`` beats and the *tag* that says where its beats go;
* the **tag FIFO** (:func:`tag_layout`) between the read requests and the data router, which pops
  one tag per request in issue order (reads return in order, one AXI ID);
* the **write-command FIFO** (:data:`WriteCommand`; address sequencer, compute controller -> AXI
  writer): one contiguous output segment per command, queued before its data;
* the **row credit** (:data:`RowCount`): the router counts input rows fully in the line buffer
  (``rows_loaded``), the compute controller the lowest row it still needs (``free_seq``); the
  sequencer fetches row ``n`` only when ``n < free_seq + BANKS`` (its bank is free), the compute
  reads row ``n`` only when ``n < rows_loaded``;
* :func:`issue_signature` (compute controller -> engines): one engine cycle and its
  :func:`issue_tag`, carried down the engine pipelines;
* :data:`PerfEvents` (blocks -> register file): one strobe per counted cycle.
"""

from __future__ import annotations

from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.params import BANKS, MAX_KERNEL, HwParams
from sw.contract.descriptor import DESCRIPTOR_BYTES, LAYOUT
from sw.contract.registers import ERROR_BITS

ROW_SEQ_BITS = 32  # row sequence numbers of a layer (strips x rows; no layer comes close)
REQ_BEATS_BITS = 20  # beats of one read request or write command
GROUP_BITS = 13  # channel groups (in or out) of a layer


class TagKind(enum.Enum, shape=3):
    """What the beats of one read request are for."""

    DESC = 0  # the 64-byte layer descriptor
    CONST = 1  # per-channel constants (bias, multipliers, shift)
    WEIGHTS = 2  # the layer's weight codes
    ROW = 3  # one input row of a strip window, one channel group
    ADD_A = 4  # residual add: a chunk of the first input
    ADD_C = 5  # residual add: the matching chunk of the second input


def tag_layout(hp: HwParams) -> data.StructLayout:
    """The tag of one read request: kind, and for a row its bank, base word, the strip window's
    border columns (left / right padding filled with ``z_in``) and the beats between them."""
    return data.StructLayout({
        "kind": TagKind, "bank": 3, "base": range(hp.bank_words), "lpad": 3,
        "n": REQ_BEATS_BITS, "rpad": 3, "last_g": 1,
    })  # fmt: skip


def read_request(hp: HwParams) -> stream.Signature:
    """A DDR read: the reader takes ``addr``/``beats`` and the tag FIFO the tag, together."""
    return stream.Signature(
        data.StructLayout({"addr": 32, "beats": REQ_BEATS_BITS, "tag": tag_layout(hp)})
    )


ReadTransfer = data.StructLayout({"addr": 32, "beats": REQ_BEATS_BITS})
"""What the AXI reader takes of a read request (its tag goes to the tag FIFO)."""

WriteCommand = data.StructLayout({"addr": 32, "beats": REQ_BEATS_BITS})
"""One output segment, contiguous in DDR, whose ``beats`` vectors the output FIFO will hold."""

RowCount = wiring.Signature({"rows": Out(ROW_SEQ_BITS)})
"""One side of the row credit: a count of row sequence numbers (see the module docstring)."""

PerfEvents = wiring.Signature({
    "dense": Out(1), "dw": Out(1), "eltwise": Out(1), "stall": Out(1),
})  # fmt: skip
"""Cycle strobes for PERF_DENSE, PERF_DW, PERF_ELTWISE and PERF_MEM_STALL."""


def layer_layout(hp: HwParams) -> data.StructLayout:
    """Every descriptor field (sw/contract/descriptor.py LAYOUT, at its width) and the sizes the
    controller derives from them once per layer (SETUP1..4), so no block multiplies at run time."""
    fields: dict[str, object] = {name: width for name, (_, _, width) in LAYOUT.items()}
    fields |= {
        "qmax": 8,  # (1 << out_bits) - 1
        "gi": GROUP_BITS, "go": GROUP_BITS,  # channel groups in / out
        "kk": 5,  # kernel * kernel
        "terms2": 1,  # dense pow2x2: two issues (term blocks) per input vector
        "wwin": range(hp.max_window + 1),  # input columns of a full strip window
        "T": 20,  # dense: cycles per output pixel = gi * k * k (x 2 for pow2x2)
        "in_pixels": 32,  # in_height * in_width
        "in_plane": 32, "in_row": 32, "out_plane": 32, "out_row": 32,  # byte strides
        "slot_words": 24,  # line-buffer words of one row of a full window (gi * wwin)
        "blocks": 26,  # dense weight blocks (go * T)
        "wbeats": 26,  # beats of the weight read
        "dw_vecs": 24,  # depthwise weight vectors (gi * k * k)
        "add_words": 32,  # residual add: vectors per input (gi * H * W)
        "cbits": 4,  # container bits of one weight code
        "phases": 2,  # depthwise cycles per output pixel (1 for k <= 3, 3 for 5x5)
    }  # fmt: skip
    return data.StructLayout(fields)


def issue_tag() -> data.StructLayout:
    """What rides along one engine cycle: which engine, first/last cycle of a pixel's sum, the
    line-buffer bank of kernel row 0 and which kernel rows are inside the map, the depthwise
    window's shift/compute flags and phase, and the output channel group."""
    return data.StructLayout({
        "dense": 1, "dw": 1, "first": 1, "last": 1, "bank": 3, "rowmask": MAX_KERNEL,
        "shift": 1, "comp": 1, "phase": 2, "lastph": 1, "o": GROUP_BITS,
    })  # fmt: skip


def issue_signature(hp: HwParams) -> wiring.Signature:
    """One engine cycle: line-buffer word ``la`` (every bank), dense weight block ``waddr``."""
    return wiring.Signature({
        "valid": Out(1), "la": Out(range(hp.bank_words)),
        "waddr": Out(range(hp.weight_blocks + 1)), "tag": Out(issue_tag()),
    })  # fmt: skip


def descriptor_beat(lanes: int) -> wiring.Signature:
    """Router -> descriptor controller: beat ``index`` of the descriptor, ``last`` on the last."""
    beats = DESCRIPTOR_BYTES // lanes
    return wiring.Signature({
        "valid": Out(1), "index": Out(range(max(beats, 2))), "data": Out(8 * lanes),
        "last": Out(1),
    })  # fmt: skip


def control_signature() -> wiring.Signature:
    """Register file -> descriptor controller (``start``, the list) and back (status, errors).

    ``finish`` sets STATUS.DONE, ``fail`` sets STATUS.ERROR with ``fail_code``/``fail_index``
    into ERROR_CODE/ERROR_INDEX, ``layer_done`` counts DESC_DONE; ``start`` clears them all."""
    return wiring.Signature({
        "start": Out(1), "desc_addr": Out(32), "desc_count": Out(32),
        "busy": In(1), "finish": In(1), "fail": In(1), "fail_code": In(ERROR_BITS),
        "fail_index": In(16), "layer_done": In(1),
    })  # fmt: skip


assert BANKS == 8, "tag and issue layouts carry the bank in 3 bits"
