"""``pow2det_accel``: the accelerator top level (docs/accelerator-interface.md).

Block diagram, in data-flow order:

* **registers** (AXI4-Lite slave): CTRL/STATUS, descriptor list address and count, perf counters.
* **main FSM**: fetches a 64-byte descriptor, checks it (error codes of the interface doc) and
  starts the three layer processes below; the next descriptor is fetched when all three are idle.
* **address sequencer** (``as_*``): walks the layer's reads in a fixed order (constants, weights,
  then for every column strip every input row, every channel group) and issues them to the AXI
  reader; for each request it queues a *tag* that says where the returning beats go. It runs up to
  ``BANKS`` rows ahead of the compute, which is the prefetch that hides DDR behind compute.
* **data router** (``ds_*``): pops tags in order and writes returning beats into the constant
  buffer, the weight buffers (widening codes to the engines' formats), the input line buffer
  (with the strip's border columns filled with ``z_in``), or the element-wise unit.
* **compute controller** (``cc_*``): for every strip, output row and output channel group, queues
  one write command (the group's output row segment is contiguous in DDR) and issues the dense
  or depthwise engine cycle by cycle; stalls when input rows are not loaded yet or the output
  FIFO is nearly full.
* **engines**: dense shift-and-add array (``hw/dense.py``) and depthwise multiplier array
  (``hw/depthwise.py``) both read the 8-bank line buffer; their accumulators feed the shared
  requantization unit (``hw/requant.py``) and then the output FIFO; the AXI writer drains it.
"""

from __future__ import annotations

from amaranth import (
    C,
    Cat,
    ClockDomain,
    Module,
    Mux,
    Signal,
    signed,
)
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory

from hw.axi import AxiReader, AxiWriter
from hw.dense import D_BITS, DenseArray
from hw.depthwise import DepthwiseArray
from hw.params import ADD_CHUNK, BANKS, DW_TAPS, MAX_KERNEL, HwParams, check
from hw.ports import accel_ports
from hw.requant import CONST_BITS, ChannelConst, Eltwise, Requant
from sw.contract.arith import SHIFT_BITS
from sw.contract.config import DEFAULT_CONFIG, AccelConfig
from sw.contract.descriptor import (
    BINARY_BITS,
    DENSE_WEIGHTS,
    DEPTHWISE_WEIGHTS,
    DESCRIPTOR_BYTES,
    DW_INT_BITS,
    FMT_BINARY,
    FMT_INT,
    FMT_POW2,
    KERNELS,
    LAYOUT,
    OP_ADD,
    OP_DENSE,
    OP_DEPTHWISE,
    OUT_BITS_MAX,
    OUT_BITS_MIN,
    POW2_BITS,
    STRIDES,
)
from sw.contract.registers import (
    ACCEL_ID,
    ADDR_BITS,
    ERR_AXI,
    ERR_BUFFER,
    ERR_OPCODE,
    ERR_SHAPE,
    ERR_SIZES,
    ERR_STRIP,
    ERROR_BITS,
    F_START,
    REG_CTRL,
    REGISTERS,
    RO,
    RW,
    W1C,
    Register,
    config_registers,
)

# Tag kinds: what the beats of one read request are for.
T_DESC, T_CONST, T_WGT, T_ROW, T_ADDA, T_ADDC = range(6)


# CHECK below takes pow2 and binary weights in both engines and a contiguous range of int widths
# in the depthwise engine only: the contract's sets must have that shape.
assert DENSE_WEIGHTS == (*(("pow2", b) for b in POW2_BITS), *(("binary", b) for b in BINARY_BITS))
assert DEPTHWISE_WEIGHTS == (*DENSE_WEIGHTS, *(("int", b) for b in DW_INT_BITS))
assert DW_INT_BITS == tuple(range(DW_INT_BITS[0], DW_INT_BITS[-1] + 1))


def _any_of(sig: object, values: tuple[int, ...]) -> object:
    """``sig`` equals one of ``values`` (an OR of comparisons, left to right)."""
    out = sig == values[0]
    for v in values[1:]:
        out = out | (sig == v)
    return out


def _fields_word(reg: Register, values: dict[str, object]) -> object:
    """A register's read value from one signal per field, placed at the contract's bit
    positions (gaps read 0)."""
    parts: list[object] = []
    at = 0
    for fld in sorted(reg.fields, key=lambda x: x.lsb):
        if fld.lsb > at:
            parts.append(C(0, fld.lsb - at))
        parts.append(values[fld.name])
        at = fld.lsb + fld.width
    return Cat(*parts)


class Pow2DetAccel(wiring.Component):
    """The whole accelerator; port names are exactly those of the interface document."""

    def __init__(self, cfg: AccelConfig = DEFAULT_CONFIG) -> None:
        self.hp: HwParams = check(cfg)
        self.cfg = cfg
        super().__init__(accel_ports(cfg.data_width))

    def elaborate(self, platform: object) -> Module:  # noqa: C901 - one controller, kept whole
        m = Module()
        cfg, hp = self.cfg, self.hp
        L = cfg.lanes
        DW = 8 * L
        m.domains.sync = cd = ClockDomain("sync", local=True)
        m.d.comb += [cd.clk.eq(self.aclk), cd.rst.eq(~self.aresetn)]

        def port(name: str) -> Signal:
            return getattr(self, name)

        def gm(x: str) -> Signal:
            return port("m_axi_gmem_" + x)

        def sl(x: str) -> Signal:
            return port("s_axi_control_" + x)

        # ------------------------------------------------------------------ registers
        reg_ctrl_irq = Signal()
        st_done, st_error = Signal(), Signal()
        err_code, err_index = Signal(ERROR_BITS), Signal(16)
        desc_addr, desc_count = Signal(32), Signal(32)
        desc_done = Signal(32)
        perf_total, perf_dense, perf_dw, perf_elt, perf_stall = (Signal(32) for _ in range(5))
        start = Signal()
        busy = Signal()
        cfg_word, cfg2_word = config_registers(cfg)
        # AXI-Lite write: take address and data together, answer OKAY.
        bvalid = Signal()
        wr = sl("awvalid") & sl("wvalid") & ~bvalid
        m.d.comb += [
            sl("awready").eq(wr), sl("wready").eq(wr), sl("bvalid").eq(bvalid), sl("bresp").eq(0),
        ]  # fmt: skip
        with m.If(wr):
            m.d.sync += bvalid.eq(1)
        with m.Elif(sl("bready")):
            m.d.sync += bvalid.eq(0)
        waddr = sl("awaddr")[2:ADDR_BITS]
        wdata = sl("wdata")
        m.d.comb += start.eq(wr & (waddr == REG_CTRL >> 2) & wdata[F_START.lsb] & ~busy)
        clr_done = Signal()
        clr_err = Signal()
        # Write side, driven by the contract's register table: a writable register without fields
        # is stored whole; of a register with fields, RW fields are stored and W1C fields pulse
        # their clear strobe (START, W1P, is the `start` pulse above; RO registers ignore writes).
        stored = {"DESC_ADDR": desc_addr, "DESC_COUNT": desc_count, "CTRL.IRQ_EN": reg_ctrl_irq}
        clears = {"STATUS.DONE": clr_done, "STATUS.ERROR": clr_err}
        with m.If(wr):
            with m.Switch(waddr):
                for reg in REGISTERS:
                    if reg.access == RO:
                        continue
                    with m.Case(reg.word):
                        if not reg.fields:
                            m.d.sync += stored[reg.name].eq(wdata)
                        for fld in reg.fields:
                            key = f"{reg.name}.{fld.name}"
                            bits = wdata[fld.lsb : fld.lsb + fld.width]
                            if fld.access == W1C:
                                m.d.comb += clears[key].eq(bits)
                            elif fld.access in ("", RW):
                                m.d.sync += stored[key].eq(bits)
        rvalid, rdata = Signal(), Signal(32)
        m.d.comb += [
            sl("arready").eq(~rvalid), sl("rvalid").eq(rvalid), sl("rdata").eq(rdata),
            sl("rresp").eq(0),
        ]  # fmt: skip
        # Read side, driven by the contract's register table: every register's value by name,
        # a register with fields from one signal per field (START reads 0, BUSY is live).
        fields_of = {
            "CTRL": {"START": C(0, 1), "IRQ_EN": reg_ctrl_irq},
            "STATUS": {"BUSY": busy, "DONE": st_done, "ERROR": st_error},
        }
        read_value = {
            "ERROR_CODE": err_code, "ERROR_INDEX": err_index, "DESC_ADDR": desc_addr,
            "DESC_COUNT": desc_count, "ID": C(ACCEL_ID, 32), "CONFIG": C(cfg_word, 32),
            "CONFIG2": C(cfg2_word, 32), "DESC_DONE": desc_done, "PERF_TOTAL": perf_total,
            "PERF_DENSE": perf_dense, "PERF_DW": perf_dw, "PERF_ELTWISE": perf_elt,
            "PERF_MEM_STALL": perf_stall,
        }  # fmt: skip
        read_value |= {
            n: _fields_word(r, fields_of[n]) for r in REGISTERS if (n := r.name) in fields_of
        }
        with m.If(sl("arvalid") & ~rvalid):
            m.d.sync += rvalid.eq(1)
            with m.Switch(sl("araddr")[2:ADDR_BITS]):
                for reg in REGISTERS:
                    with m.Case(reg.word):
                        m.d.sync += rdata.eq(read_value[reg.name])
                with m.Default():
                    m.d.sync += rdata.eq(0)
        with m.Elif(sl("rready")):
            m.d.sync += rvalid.eq(0)
        m.d.comb += port("irq").eq(reg_ctrl_irq & (st_done | st_error))

        # ------------------------------------------------------------------ AXI engines
        m.submodules.reader = rd = AxiReader(cfg)
        m.submodules.writer = wrt = AxiWriter(cfg)
        rready = Signal()
        m.d.comb += [
            gm("arid").eq(0), gm("araddr").eq(rd.araddr), gm("arlen").eq(rd.arlen),
            gm("arsize").eq((L).bit_length() - 1), gm("arburst").eq(1), gm("arcache").eq(0b0011),
            gm("arprot").eq(0), gm("arvalid").eq(rd.arvalid), rd.arready.eq(gm("arready")),
            gm("rready").eq(rready),
            gm("awid").eq(0), gm("awaddr").eq(wrt.awaddr), gm("awlen").eq(wrt.awlen),
            gm("awsize").eq((L).bit_length() - 1), gm("awburst").eq(1), gm("awcache").eq(0b0011),
            gm("awprot").eq(0), gm("awvalid").eq(wrt.awvalid), wrt.awready.eq(gm("awready")),
            gm("wdata").eq(wrt.wdata), gm("wstrb").eq((1 << (DW // 8)) - 1),
            gm("wlast").eq(wrt.wlast), gm("wvalid").eq(wrt.wvalid), wrt.wready.eq(gm("wready")),
            gm("bready").eq(wrt.bready), wrt.bvalid.eq(gm("bvalid")),
        ]  # fmt: skip
        rfire = gm("rvalid") & rready
        rbeat = gm("rdata")
        m.d.comb += rd.rlast_fire.eq(rfire & gm("rlast"))
        axi_err = Signal()
        layer_reset = Signal()  # one-cycle pulse at the start of every descriptor
        with m.If((rfire & (gm("rresp") != 0)) | (gm("bvalid") & (gm("bresp") != 0))):
            m.d.sync += axi_err.eq(1)
        with m.Elif(start):
            m.d.sync += axi_err.eq(0)

        TagLayout = data.StructLayout({
            "kind": 3, "bank": 3, "base": range(hp.bank_words), "lpad": 3, "n": 20, "rpad": 3,
            "last_g": 1,
        })  # fmt: skip
        m.submodules.tags = tags = SyncFIFOBuffered(width=TagLayout.size, depth=16)
        req_valid, req_addr, req_beats = Signal(), Signal(32), Signal(20)
        req_tag = Signal(TagLayout)
        req_ok = req_valid & rd.req_ready & tags.w_rdy
        m.d.comb += [
            rd.req_valid.eq(req_valid & tags.w_rdy), rd.req_addr.eq(req_addr),
            rd.req_beats.eq(req_beats), tags.w_en.eq(req_ok), tags.w_data.eq(req_tag),
        ]  # fmt: skip

        m.submodules.cmds = cmds = SyncFIFOBuffered(width=52, depth=8)
        m.submodules.outq = outq = SyncFIFOBuffered(width=DW, depth=cfg.out_fifo_words)
        cmd_push, cmd_addr, cmd_n = Signal(), Signal(32), Signal(20)
        m.d.comb += [
            cmds.w_en.eq(cmd_push), cmds.w_data.eq(Cat(cmd_addr, cmd_n)),
            wrt.cmd_valid.eq(cmds.r_rdy), wrt.cmd_addr.eq(cmds.r_data[:32]),
            wrt.cmd_beats.eq(cmds.r_data[32:]), cmds.r_en.eq(wrt.cmd_ready),
            wrt.data_valid.eq(outq.r_rdy), wrt.data.eq(outq.r_data), outq.r_en.eq(wrt.data_ready),
        ]  # fmt: skip
        # Room for every pixel that may already be inside the engine/requant pipelines.
        out_room = outq.level < cfg.out_fifo_words - 24

        # ------------------------------------------------------------------ layer registers
        desc = Signal(8 * DESCRIPTOR_BYTES)
        f = {n: Signal(w, name=f"d_{n}") for n, (_, _, w) in LAYOUT.items()}
        op, k, st, pad = f["op"], f["kernel"], f["stride"], f["pad"]
        wfmt, wbits = f["weight_format"], f["weight_bits"]
        cin, cout = f["in_channels"], f["out_channels"]
        H, W, Ho, Wo = f["in_height"], f["in_width"], f["out_height"], f["out_width"]
        z_in, z_out, ws = f["z_in"], f["z_out"], f["strip_width"]
        is_dense = op == OP_DENSE
        is_dw = op == OP_DEPTHWISE
        qmax = Signal(8)
        gi, go = Signal(13), Signal(13)  # channel groups in / out
        kk = Signal(5)
        wwin = Signal(range(hp.max_window + 1))  # columns of a full strip window
        T = Signal(20)  # dense: cycles per output pixel = gi * k * k
        in_plane, in_row = Signal(32), Signal(32)
        out_plane, out_row = Signal(32), Signal(32)
        slot_words = Signal(24)
        blocks = Signal(26)
        wbeats = Signal(26)
        dw_vecs = Signal(24)
        add_words = Signal(32)
        cbits = Signal(4)  # container bits of the weight codes
        phases = Signal(2)  # depthwise cycles per output pixel (1 for k <= 3, 3 for 5x5)
        stride_sh = st == 2

        # ------------------------------------------------------------------ buffers
        lb = [Memory(shape=DW, depth=hp.bank_words, init=[]) for _ in range(BANKS)]
        lb_w = [mem.write_port() for mem in lb]
        lb_r = [mem.read_port() for mem in lb]
        for i, mem in enumerate(lb):
            m.submodules[f"lb{i}"] = mem
        wmem = Memory(shape=hp.weight_block_bits, depth=hp.weight_blocks, init=[])
        wmem_w = wmem.write_port(granularity=DW)
        wmem_r = wmem.read_port()
        m.submodules.wmem = wmem
        cmem = Memory(shape=CONST_BITS * L, depth=hp.channel_groups, init=[])
        cmem_w = cmem.write_port(granularity=CONST_BITS)
        cmem_r = cmem.read_port()
        m.submodules.cmem = cmem
        taps = MAX_KERNEL * MAX_KERNEL
        dwm = [Memory(shape=8 * L, depth=hp.channel_groups, init=[]) for _ in range(taps)]
        dwm_w = [mem.write_port() for mem in dwm]
        dwm_r = [mem.read_port(domain="comb") for mem in dwm]
        for i, mem in enumerate(dwm):
            m.submodules[f"dwm{i}"] = mem
        abuf = Memory(shape=DW, depth=ADD_CHUNK, init=[])
        abuf_w = abuf.write_port()
        abuf_r = abuf.read_port(domain="comb")
        m.submodules.abuf = abuf

        # ------------------------------------------------------------------ shared status
        rows_loaded = Signal(32)  # row sequence numbers fully written into the line buffer
        free_seq = Signal(32)  # lowest row sequence number the compute still needs
        wgt_done = Signal()
        desc_loaded = Signal()
        as_start, as_done = Signal(), Signal()
        cc_start, cc_done = Signal(), Signal()
        ds_idle = Signal()

        # ------------------------------------------------------------------ main FSM
        cur_desc = Signal(32)
        desc_idx = Signal(16)
        err = Signal(ERROR_BITS)
        with m.If(busy):
            m.d.sync += perf_total.eq(perf_total + 1)
        with m.If(clr_done):
            m.d.sync += st_done.eq(0)
        with m.If(clr_err):
            m.d.sync += st_error.eq(0)
        layer_idle = (
            as_done & cc_done & ds_idle & ~tags.r_rdy & rd.idle & ~cmds.r_rdy & wrt.idle
            & ~outq.r_rdy
        )  # fmt: skip
        with m.FSM(name="main"):
            with m.State("IDLE"):
                with m.If(start):
                    m.d.sync += [
                        busy.eq(1), st_done.eq(0), st_error.eq(0), err_code.eq(0),
                        desc_done.eq(0), desc_idx.eq(0), cur_desc.eq(desc_addr),
                        perf_total.eq(0), perf_dense.eq(0), perf_dw.eq(0), perf_elt.eq(0),
                        perf_stall.eq(0),
                    ]  # fmt: skip
                    m.next = "NEXT"
            with m.State("NEXT"):
                with m.If(desc_idx == desc_count):
                    m.d.sync += [busy.eq(0), st_done.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += layer_reset.eq(1)
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += [
                    req_valid.eq(1),
                    req_addr.eq(cur_desc),
                    req_beats.eq(DESCRIPTOR_BYTES // L),
                ]
                m.d.comb += req_tag.kind.eq(T_DESC)
                with m.If(req_ok):
                    m.next = "WAITD"
            with m.State("WAITD"):
                with m.If(desc_loaded):
                    for n, (word, lo, width) in LAYOUT.items():
                        m.d.sync += f[n].eq(desc[word * 32 + lo : word * 32 + lo + width])
                    m.next = "SETUP1"
            with m.State("SETUP1"):
                m.d.sync += [
                    qmax.eq((1 << f["out_bits"]) - 1),
                    gi.eq((cin + L - 1) >> (L.bit_length() - 1)),
                    go.eq((cout + L - 1) >> (L.bit_length() - 1)),
                    kk.eq(k * k),
                    wwin.eq(((ws - 1) << stride_sh) + k),
                    in_plane.eq(H * W * L), in_row.eq(W * L),
                    out_plane.eq(Ho * Wo * L), out_row.eq(Wo * L),
                    phases.eq(Mux(k > 3, 3, 1)),
                    cbits.eq(Mux(wfmt == FMT_BINARY, 1, Mux(wfmt == FMT_POW2, 4,
                             Mux(wbits <= 2, 2, Mux(wbits <= 4, 4, 8))))),
                ]  # fmt: skip
                m.next = "SETUP2"
            with m.State("SETUP2"):
                m.d.sync += [
                    T.eq(gi * kk),
                    slot_words.eq(gi * wwin),
                    dw_vecs.eq(gi * kk),
                    add_words.eq(gi * H * W),
                ]
                m.next = "SETUP3"
            with m.State("SETUP3"):
                m.d.sync += blocks.eq(go * T)
                m.next = "SETUP4"
            with m.State("SETUP4"):
                m.d.sync += wbeats.eq(
                    Mux(is_dense, Mux(wfmt == FMT_BINARY, blocks << 1, blocks << 3),
                        (dw_vecs * cbits + 7) >> 3)
                )  # fmt: skip
                m.next = "CHECK"
            with m.State("CHECK"):
                ho_exp = ((H + 2 * pad - k) >> stride_sh) + 1
                wo_exp = ((W + 2 * pad - k) >> stride_sh) + 1
                conv = is_dense | is_dw
                bad_kernel = ~_any_of(k, KERNELS) | ~_any_of(st, STRIDES) | (pad >= k)
                pow2_ok = (wfmt == FMT_POW2) & _any_of(wbits, POW2_BITS)
                bin_ok = (wfmt == FMT_BINARY) & _any_of(wbits, BINARY_BITS)
                int_ok = (wfmt == FMT_INT) & (wbits >= DW_INT_BITS[0]) & (wbits <= DW_INT_BITS[-1])
                bad_fmt = Mux(is_dense, ~(pow2_ok | bin_ok), ~(pow2_ok | bin_ok | int_ok))
                bad_sizes = (
                    (cin == 0) | (cout == 0) | (H == 0) | (W == 0)
                    | (f["out_bits"] < OUT_BITS_MIN) | (f["out_bits"] > OUT_BITS_MAX)
                )  # fmt: skip
                bad_conv = (
                    (H + 2 * pad < k) | (W + 2 * pad < k) | (Ho != ho_exp) | (Wo != wo_exp)
                    | (is_dw & (cin != cout))
                )  # fmt: skip
                bad_add = (cin != cout) | (H != Ho) | (W != Wo)
                bad_buf = (
                    (slot_words > hp.bank_words)
                    | (go > hp.channel_groups)
                    | (is_dense & (blocks > hp.weight_blocks))
                )
                with m.If(~(conv | (op == OP_ADD))):
                    m.d.sync += err.eq(ERR_OPCODE)
                with m.Elif(conv & (bad_kernel | bad_fmt)):
                    m.d.sync += err.eq(ERR_SHAPE)
                with m.Elif(conv & ((ws == 0) | (ws > cfg.max_strip))):
                    m.d.sync += err.eq(ERR_STRIP)
                with m.Elif(bad_sizes | (conv & bad_conv) | ((op == OP_ADD) & bad_add)):
                    m.d.sync += err.eq(ERR_SIZES)
                with m.Elif(conv & bad_buf):
                    m.d.sync += err.eq(ERR_BUFFER)
                with m.Else():
                    m.d.sync += err.eq(0)
                m.next = "GO"
            with m.State("GO"):
                with m.If(err != 0):
                    m.d.sync += [
                        st_error.eq(1), err_code.eq(err), err_index.eq(desc_idx), busy.eq(0),
                    ]  # fmt: skip
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += [as_start.eq(1), cc_start.eq(is_dense | is_dw)]
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(layer_idle & ~as_start):
                    with m.If(axi_err):
                        m.d.sync += [
                            st_error.eq(1), err_code.eq(ERR_AXI), err_index.eq(desc_idx),
                            busy.eq(0),
                        ]  # fmt: skip
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [
                            desc_idx.eq(desc_idx + 1), desc_done.eq(desc_done + 1),
                            cur_desc.eq(cur_desc + DESCRIPTOR_BYTES),
                        ]  # fmt: skip
                        m.next = "NEXT"

        # ------------------------------------------------------------------ address sequencer
        as_seq = Signal(32)
        as_j0 = Signal(16)
        as_r = Signal(16)
        as_g = Signal(13)
        as_off = Signal(32)
        as_rowaddr, as_gaddr, as_base = Signal(32), Signal(32), Signal(range(hp.bank_words))
        geo_lpad, geo_rpad, geo_n = Signal(3), Signal(3), Signal(20)
        geo_clo = Signal(16)
        with m.FSM(name="addrseq"):
            with m.State("IDLE"):
                m.d.comb += as_done.eq(1)
                with m.If(as_start):
                    m.d.sync += [as_seq.eq(0), as_j0.eq(0), as_off.eq(0)]
                    with m.If(op == OP_ADD):
                        m.next = "ADD_A"
                    with m.Else():
                        m.next = "CONST"
            with m.State("CONST"):
                m.d.comb += [
                    req_valid.eq(1), req_addr.eq(f["const_addr"]), req_beats.eq(go * L),
                    req_tag.kind.eq(T_CONST),
                ]  # fmt: skip
                with m.If(req_ok):
                    m.next = "WGT"
            with m.State("WGT"):
                m.d.comb += [
                    req_valid.eq(1), req_addr.eq(f["weight_addr"]), req_beats.eq(wbeats),
                    req_tag.kind.eq(T_WGT),
                ]  # fmt: skip
                with m.If(req_ok):
                    m.next = "STRIP"
            with m.State("STRIP"):
                # Window of this strip (docs/arithmetic.md section 10) and its border padding.
                ws_cur = Mux(Wo - as_j0 < ws, Wo - as_j0, ws)
                cf = Signal(signed(18))
                wcur = Signal(signed(18))
                m.d.comb += [
                    cf.eq((as_j0 << stride_sh) - pad),
                    wcur.eq(((ws_cur - 1) << stride_sh) + k),
                ]
                lpad = Mux(cf < 0, -cf, 0)
                clo = Mux(cf < 0, 0, cf)
                chi = Mux(cf + wcur - 1 > W - 1, W - 1, cf + wcur - 1)
                n_in = chi - clo + 1
                m.d.sync += [
                    geo_lpad.eq(lpad), geo_clo.eq(clo), geo_n.eq(n_in),
                    geo_rpad.eq(wcur - lpad - n_in), as_r.eq(0),
                ]  # fmt: skip
                m.next = "STRIP2"
            with m.State("STRIP2"):
                m.d.sync += as_rowaddr.eq(f["in_addr"] + geo_clo * L)
                m.next = "ROW"
            with m.State("ROW"):
                m.d.sync += [as_g.eq(0), as_gaddr.eq(as_rowaddr), as_base.eq(0)]
                with m.If(as_seq < free_seq + BANKS):
                    m.next = "GRP"
            with m.State("GRP"):
                m.d.comb += [
                    req_valid.eq(1), req_addr.eq(as_gaddr), req_beats.eq(geo_n),
                    req_tag.kind.eq(T_ROW), req_tag.bank.eq(as_seq[: BANKS.bit_length() - 1]),
                    req_tag.base.eq(as_base), req_tag.lpad.eq(geo_lpad), req_tag.n.eq(geo_n),
                    req_tag.rpad.eq(geo_rpad), req_tag.last_g.eq(as_g == gi - 1),
                ]  # fmt: skip
                with m.If(req_ok):
                    m.d.sync += [
                        as_g.eq(as_g + 1), as_gaddr.eq(as_gaddr + in_plane),
                        as_base.eq(as_base + wwin),
                    ]  # fmt: skip
                    with m.If(as_g == gi - 1):
                        m.d.sync += [
                            as_seq.eq(as_seq + 1), as_r.eq(as_r + 1),
                            as_rowaddr.eq(as_rowaddr + in_row),
                        ]  # fmt: skip
                        with m.If(as_r == H - 1):
                            m.d.sync += as_j0.eq(as_j0 + ws)
                            with m.If(as_j0 + ws >= Wo):
                                m.next = "IDLE"
                            with m.Else():
                                m.next = "STRIP"
                        with m.Else():
                            m.next = "ROW"
            add_n = Mux(add_words - as_off < ADD_CHUNK, add_words - as_off, ADD_CHUNK)
            with m.State("ADD_A"):
                m.d.comb += [
                    req_valid.eq(1), req_addr.eq(f["in_addr"] + as_off * L), req_beats.eq(add_n),
                    req_tag.kind.eq(T_ADDA), req_tag.n.eq(add_n),
                ]  # fmt: skip
                with m.If(req_ok):
                    m.next = "ADD_C"
            with m.State("ADD_C"):
                m.d.comb += [
                    req_valid.eq(cmds.w_rdy), req_addr.eq(f["weight_addr"] + as_off * L),
                    req_beats.eq(add_n), req_tag.kind.eq(T_ADDC), req_tag.n.eq(add_n),
                    cmd_push.eq(req_ok), cmd_addr.eq(f["out_addr"] + as_off * L),
                    cmd_n.eq(add_n),
                ]  # fmt: skip
                with m.If(req_ok):
                    m.d.sync += as_off.eq(as_off + add_n)
                    with m.If(as_off + add_n >= add_words):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "ADD_A"

        # ------------------------------------------------------------------ data router
        tag = Signal(TagLayout)
        ds_cnt = Signal(26)  # beats (or columns) done in the current tag
        ds_sub = Signal(4)  # sub-vector of a depthwise weight beat
        ds_g, ds_t = Signal(13), Signal(5)
        zvec = Cat(*([z_in] * L))
        elt_valid = Signal()
        with m.If(layer_reset):
            m.d.sync += [rows_loaded.eq(0), wgt_done.eq(0), desc_loaded.eq(0)]
        with m.FSM(name="router"):
            with m.State("IDLE"):
                m.d.comb += [ds_idle.eq(1), tags.r_en.eq(1)]
                with m.If(tags.r_rdy):
                    m.d.sync += [tag.eq(tags.r_data), ds_cnt.eq(0), ds_sub.eq(0), ds_g.eq(0),
                                 ds_t.eq(0)]  # fmt: skip
                    kind = tags.r_data[:3]
                    with m.Switch(kind):
                        with m.Case(T_DESC):
                            m.next = "DESC"
                        with m.Case(T_CONST):
                            m.next = "CONST"
                        with m.Case(T_WGT):
                            m.next = "WGT"
                        with m.Case(T_ROW):
                            m.next = "ROW"
                        with m.Case(T_ADDA):
                            m.next = "ADDA"
                        with m.Case(T_ADDC):
                            m.next = "ADDC"
            with m.State("DESC"):
                m.d.comb += rready.eq(1)
                with m.If(rfire):
                    m.d.sync += [desc.word_select(ds_cnt[:2], DW).eq(rbeat), ds_cnt.eq(ds_cnt + 1)]
                    with m.If(ds_cnt == DESCRIPTOR_BYTES // L - 1):
                        m.d.sync += desc_loaded.eq(1)
                        m.next = "IDLE"
            with m.State("CONST"):
                m.d.comb += rready.eq(1)
                used = ChannelConst.size  # the record's bits up to the shift's low SHIFT_BITS
                rec = Cat(rbeat[0 : used - SHIFT_BITS], rbeat[used - SHIFT_BITS : used],
                          C(0, CONST_BITS - used))  # fmt: skip
                m.d.comb += [
                    cmem_w.addr.eq(ds_cnt >> (L.bit_length() - 1)),
                    cmem_w.data.eq(Cat(*([rec] * L))),
                    cmem_w.en.eq(Mux(rfire, 1 << ds_cnt[: L.bit_length() - 1], 0)),
                ]
                with m.If(rfire):
                    m.d.sync += ds_cnt.eq(ds_cnt + 1)
                    with m.If(ds_cnt == (go * L) - 1):
                        m.next = "IDLE"
            with m.State("WGT"):
                with m.If(is_dense):
                    m.d.comb += rready.eq(1)
                    # Widen every code to the internal 4-bit pow2 code (sign bit 3, m in 2:0).
                    c4 = []
                    for i in range(DW // 4):
                        code = rbeat[4 * i : 4 * i + 4]
                        c4.append(Mux(wbits == 3, Cat(code[0:2], C(0, 1), code[2]), code))
                    bexp = Cat(*[Cat(C(1, 1), C(0, 2), rbeat[i]) for i in range(DW)])
                    binary = wfmt == FMT_BINARY
                    m.d.comb += [
                        wmem_w.addr.eq(Mux(binary, ds_cnt >> 1, ds_cnt >> 3)),
                        wmem_w.data.eq(Mux(binary, Cat(bexp, bexp), Cat(*(c4 * 8)))),
                        wmem_w.en.eq(
                            Mux(rfire, Mux(binary, Mux(ds_cnt[0], 0xF0, 0x0F), 1 << ds_cnt[:3]), 0)
                        ),
                    ]
                    with m.If(rfire):
                        m.d.sync += ds_cnt.eq(ds_cnt + 1)
                        with m.If(ds_cnt == wbeats - 1):
                            m.d.sync += wgt_done.eq(1)
                            m.next = "IDLE"
                with m.Else():
                    # Depthwise: 8 / cbits vectors of L codes per beat, in [g][u][w][l] order.
                    vec = Signal(8 * L)
                    for cb in (1, 2, 4, 8):
                        with m.If(cbits == cb):
                            per = 8 // cb
                            m.d.comb += vec[: cb * L].eq(
                                rbeat.word_select(ds_sub[: max(per.bit_length() - 1, 1)], cb * L)
                                if per > 1 else rbeat
                            )  # fmt: skip
                    # int codes: two's complement of `bits` bits inside the container.
                    half = Signal(9)
                    m.d.comb += half.eq(C(1, 9) << (wbits - 1).as_unsigned()[:3])
                    lanes_w = []
                    for lane in range(L):
                        wv = Signal(signed(8), name=f"dwv{lane}")
                        with m.Switch(cbits):
                            for cb in (1, 2, 4, 8):
                                with m.Case(cb):
                                    code = vec[cb * lane : cb * lane + cb]
                                    ival = Mux(code >= half, code - (half << 1), code)
                                    if cb == 1:
                                        m.d.comb += wv.eq(Mux(code[0], -1, 1))
                                    elif cb == 4:
                                        # pow2: sign at bit bits-1, magnitude field below it.
                                        sgn = Mux(wbits == 3, code[2], code[3])
                                        mfield = Mux(wbits == 3, code[0:2], code[0:3])
                                        mag = Mux(mfield == 0, 0, (1 << mfield) >> 1)
                                        m.d.comb += wv.eq(
                                            Mux(wfmt == FMT_INT, ival, Mux(sgn, -mag, mag))
                                        )
                                    else:
                                        m.d.comb += wv.eq(ival)
                        lanes_w.append(wv)
                    per_beat = Signal(4)
                    m.d.comb += per_beat.eq(8 // 8)
                    with m.Switch(cbits):
                        for cb in (1, 2, 4, 8):
                            with m.Case(cb):
                                m.d.comb += per_beat.eq(8 // cb)
                    last_sub = (ds_sub == per_beat - 1) | (ds_cnt == dw_vecs - 1)
                    with m.If(gm("rvalid")):
                        for t in range(taps):
                            m.d.comb += [
                                dwm_w[t].addr.eq(ds_g),
                                dwm_w[t].data.eq(Cat(*lanes_w)),
                                dwm_w[t].en.eq(ds_t == t),
                            ]
                        m.d.comb += rready.eq(last_sub)
                        m.d.sync += [ds_cnt.eq(ds_cnt + 1), ds_sub.eq(ds_sub + 1)]
                        with m.If(last_sub):
                            m.d.sync += ds_sub.eq(0)
                        with m.If(ds_t == kk - 1):
                            m.d.sync += [ds_t.eq(0), ds_g.eq(ds_g + 1)]
                        with m.Else():
                            m.d.sync += ds_t.eq(ds_t + 1)
                        with m.If(ds_cnt == dw_vecs - 1):
                            m.d.sync += wgt_done.eq(1)
                            m.next = "DWDRAIN"
            with m.State("DWDRAIN"):
                # The last sub-vector was consumed with its beat; nothing else remains.
                m.next = "IDLE"
            with m.State("ROW"):
                # ds_cnt walks the window's columns: left border, DDR beats, right border.
                in_lpad = ds_cnt < tag.lpad
                in_data = ~in_lpad & (ds_cnt < tag.lpad + tag.n)
                m.d.comb += rready.eq(in_data)
                wr_now = Mux(in_data, rfire, 1)
                for b in range(BANKS):
                    m.d.comb += [
                        lb_w[b].addr.eq(tag.base + ds_cnt),
                        lb_w[b].data.eq(Mux(in_data, rbeat, zvec)),
                        lb_w[b].en.eq(wr_now & (tag.bank == b)),
                    ]
                with m.If(wr_now):
                    m.d.sync += ds_cnt.eq(ds_cnt + 1)
                    with m.If(ds_cnt == tag.lpad + tag.n + tag.rpad - 1):
                        with m.If(tag.last_g):
                            m.d.sync += rows_loaded.eq(rows_loaded + 1)
                        m.next = "IDLE"
            with m.State("ADDA"):
                m.d.comb += [
                    rready.eq(1), abuf_w.addr.eq(ds_cnt), abuf_w.data.eq(rbeat),
                    abuf_w.en.eq(rfire),
                ]  # fmt: skip
                with m.If(rfire):
                    m.d.sync += ds_cnt.eq(ds_cnt + 1)
                    with m.If(ds_cnt == tag.n - 1):
                        m.next = "IDLE"
            with m.State("ADDC"):
                m.d.comb += [rready.eq(out_room), abuf_r.addr.eq(ds_cnt), elt_valid.eq(rfire)]
                with m.If(gm("rvalid") & ~out_room):
                    m.d.sync += perf_stall.eq(perf_stall + 1)
                with m.If(rfire):
                    m.d.sync += [ds_cnt.eq(ds_cnt + 1), perf_elt.eq(perf_elt + 1)]
                    with m.If(ds_cnt == tag.n - 1):
                        m.next = "IDLE"

        m.submodules.elt = elt = Eltwise(L)
        m.d.comb += [
            elt.valid_in.eq(elt_valid), elt.a.eq(abuf_r.data), elt.c.eq(rbeat),
            elt.z_a.eq(z_in), elt.z_c.eq(f["z_in2"]), elt.m_a.eq(f["m_a"]), elt.m_c.eq(f["m_b"]),
            elt.shift.eq(f["shift"]), elt.relu.eq(f["add_relu"]), elt.z_out.eq(z_out),
            elt.qmax.eq(qmax),
        ]  # fmt: skip

        # ------------------------------------------------------------------ compute controller
        cc_j0 = Signal(16)
        cc_wscur = Signal(16)
        cc_i = Signal(16)
        cc_r0 = Signal(signed(18))
        cc_seqbase = Signal(32)
        cc_o = Signal(13)
        cc_rowout = Signal(32)
        cc_segout = Signal(32)
        cc_wseg = Signal(range(hp.weight_blocks + 1))
        # dense issue counters
        dj, dg, du, dw_ = Signal(16), Signal(13), Signal(3), Signal(3)
        la_j, la_g = Signal(range(hp.bank_words * 2)), Signal(range(hp.bank_words * 2))
        wa = Signal(range(hp.weight_blocks + 1))
        # depthwise issue counters
        c_col = Signal(range(hp.max_window + 2))
        c_next = Signal(range(hp.max_window + 8))
        c_pix = Signal(16)
        c_pend, c_ph = Signal(), Signal(2)
        c_wcur = Signal(range(hp.max_window + 1))
        c_la = Signal(range(hp.bank_words * 2))

        # The issue stage of both engines drives these; the pipelines below carry them along.
        iss_valid = Signal()
        iss_la = Signal(range(hp.bank_words))
        IssueTag = data.StructLayout({
            "dense": 1, "dw": 1, "first": 1, "last": 1, "bank": 3, "rowmask": MAX_KERNEL,
            "shift": 1, "comp": 1, "phase": 2, "lastph": 1, "o": 13,
        })  # fmt: skip
        itag = Signal(IssueTag)
        rb = Signal(3)  # bank holding input row r0 of the current output row
        rowmask = Signal(MAX_KERNEL)  # kernel rows u inside the map
        stall = ~out_room
        with m.FSM(name="compute"):
            with m.State("IDLE"):
                m.d.comb += cc_done.eq(1)
                with m.If(cc_start):
                    m.d.sync += [cc_j0.eq(0), cc_seqbase.eq(0), free_seq.eq(0)]
                    m.next = "WAITW"
            with m.State("WAITW"):
                with m.If(wgt_done):
                    m.next = "STRIP"
                with m.Else():
                    m.d.sync += perf_stall.eq(perf_stall + 1)
            with m.State("STRIP"):
                m.d.sync += [
                    cc_wscur.eq(Mux(Wo - cc_j0 < ws, Wo - cc_j0, ws)),
                    cc_i.eq(0), cc_r0.eq(-pad), free_seq.eq(cc_seqbase),
                    cc_rowout.eq(f["out_addr"] + cc_j0 * L),
                ]  # fmt: skip
                m.next = "ROW"
            with m.State("ROW"):
                last_row = Mux(cc_r0 + k - 1 > H - 1, H - 1, cc_r0 + k - 1)
                m.d.sync += [
                    free_seq.eq(cc_seqbase + Mux(cc_r0 < 0, 0, cc_r0)),
                    rb.eq(cc_seqbase + cc_r0),
                    cc_o.eq(0), cc_segout.eq(cc_rowout), cc_wseg.eq(0),
                ]  # fmt: skip
                for u in range(MAX_KERNEL):
                    m.d.sync += rowmask[u].eq((cc_r0 + u >= 0) & (cc_r0 + u < H) & (u < k))
                with m.If(rows_loaded > cc_seqbase + last_row):
                    m.next = "SEG"
                with m.Else():
                    m.d.sync += perf_stall.eq(perf_stall + 1)
            with m.State("SEG"):
                m.d.comb += [cmd_push.eq(1), cmd_addr.eq(cc_segout), cmd_n.eq(cc_wscur)]
                m.d.sync += [
                    dj.eq(0), dg.eq(0), du.eq(0), dw_.eq(0), la_j.eq(0), la_g.eq(0),
                    wa.eq(cc_wseg), c_col.eq(0), c_next.eq(k - 1), c_pix.eq(0), c_pend.eq(0),
                    c_ph.eq(0), c_wcur.eq(((cc_wscur - 1) << stride_sh) + k),
                    c_la.eq(cc_o * wwin),
                ]  # fmt: skip
                with m.If(cmds.w_rdy):
                    with m.If(is_dense):
                        m.next = "DENSE"
                    with m.Else():
                        m.next = "DW"
            seg_end = Signal()
            with m.State("DENSE"):
                m.d.comb += [
                    iss_valid.eq(~stall), iss_la.eq(la_g + dw_),
                    itag.dense.eq(1), itag.first.eq((dg == 0) & (du == 0) & (dw_ == 0)),
                    itag.last.eq((dg == gi - 1) & (du == k - 1) & (dw_ == k - 1)),
                    itag.bank.eq(rb + du), itag.rowmask.eq(rowmask >> du), itag.o.eq(cc_o),
                    wmem_r.addr.eq(wa),
                ]  # fmt: skip
                with m.If(stall):
                    m.d.sync += perf_stall.eq(perf_stall + 1)
                with m.Else():
                    m.d.sync += [perf_dense.eq(perf_dense + 1), wa.eq(wa + 1), dw_.eq(dw_ + 1)]
                    with m.If(dw_ == k - 1):
                        m.d.sync += [dw_.eq(0), du.eq(du + 1)]
                        with m.If(du == k - 1):
                            m.d.sync += [du.eq(0), dg.eq(dg + 1), la_g.eq(la_g + wwin)]
                            with m.If(dg == gi - 1):
                                m.d.sync += [
                                    dg.eq(0), dj.eq(dj + 1), wa.eq(cc_wseg),
                                    la_j.eq(la_j + st), la_g.eq(la_j + st),
                                ]  # fmt: skip
                                with m.If(dj == cc_wscur - 1):
                                    m.d.comb += seg_end.eq(1)
                # A segment's last issue cycle goes straight to the bookkeeping state.
                with m.If(seg_end):
                    m.next = "NEXTSEG"
            with m.State("DW"):
                shift_now = Signal()
                comp_now = Signal()
                can_shift = c_col < c_wcur
                with m.If(c_pend):
                    m.d.comb += comp_now.eq(1)
                    m.d.comb += shift_now.eq((c_ph == phases - 1) & can_shift)
                with m.Else():
                    m.d.comb += shift_now.eq(can_shift)
                m.d.comb += [
                    iss_valid.eq(~stall & (shift_now | comp_now)),
                    iss_la.eq(c_la + c_col),
                    itag.dw.eq(1), itag.shift.eq(shift_now), itag.comp.eq(comp_now),
                    itag.phase.eq(c_ph), itag.lastph.eq(c_ph == phases - 1),
                    itag.bank.eq(rb), itag.rowmask.eq(rowmask), itag.o.eq(cc_o),
                ]  # fmt: skip
                with m.If(stall):
                    m.d.sync += perf_stall.eq(perf_stall + 1)
                with m.Else():
                    m.d.sync += perf_dw.eq(perf_dw + 1)
                    with m.If(comp_now):
                        with m.If(c_ph == phases - 1):
                            m.d.sync += [c_pend.eq(0), c_ph.eq(0)]
                        with m.Else():
                            m.d.sync += c_ph.eq(c_ph + 1)
                    with m.If(shift_now):
                        m.d.sync += c_col.eq(c_col + 1)
                        with m.If((c_col == c_next) & (c_pix < cc_wscur)):
                            m.d.sync += [
                                c_pend.eq(1), c_ph.eq(0), c_next.eq(c_next + st),
                                c_pix.eq(c_pix + 1),
                            ]  # fmt: skip
                    with m.If(~can_shift & (~c_pend | (c_ph == phases - 1))):
                        m.d.comb += seg_end.eq(1)
                with m.If(seg_end):
                    m.next = "NEXTSEG"
            with m.State("NEXTSEG"):
                m.d.sync += [
                    cc_o.eq(cc_o + 1), cc_segout.eq(cc_segout + out_plane), cc_wseg.eq(cc_wseg + T),
                ]  # fmt: skip
                with m.If(cc_o == go - 1):
                    m.d.sync += [cc_i.eq(cc_i + 1), cc_r0.eq(cc_r0 + st),
                                 cc_rowout.eq(cc_rowout + out_row)]  # fmt: skip
                    with m.If(cc_i == Ho - 1):
                        m.d.sync += [cc_j0.eq(cc_j0 + ws), cc_seqbase.eq(cc_seqbase + H)]
                        with m.If(cc_j0 + ws >= Wo):
                            m.d.sync += free_seq.eq(cc_seqbase + H)
                            m.next = "IDLE"
                        with m.Else():
                            m.next = "STRIP"
                    with m.Else():
                        m.next = "ROW"
                with m.Else():
                    m.next = "SEG"

        # ------------------------------------------------------------------ engine pipelines
        for b in range(BANKS):
            m.d.comb += [lb_r[b].addr.eq(iss_la), lb_r[b].en.eq(1)]
        m.d.comb += wmem_r.en.eq(1)
        v1 = Signal()
        t1 = Signal(IssueTag)
        m.d.sync += [v1.eq(iss_valid), t1.eq(itag)]
        bank_words = [lb_r[b].data for b in range(BANKS)]

        def bank_sel(sel: object) -> Signal:
            out = Signal(DW, name="banksel")
            with m.Switch(sel):
                for b in range(BANKS):
                    with m.Case(b):
                        m.d.comb += out.eq(bank_words[b])
            return out

        def diff(q: object, valid: object, lane: int) -> object:
            return Mux(valid, q[8 * lane : 8 * lane + 8] - z_in, 0)

        # Dense: bank word of kernel row u, minus z_in (0 outside the map).
        m.submodules.dense = dense = DenseArray(L, L, tag_bits=IssueTag.size)
        qd = bank_sel(t1.bank)
        for lane in range(L):
            m.d.comb += dense.d[lane].eq(diff(qd, t1.rowmask[0], lane))
        m.d.comb += [
            dense.valid_in.eq(v1 & t1.dense), dense.tag_in.eq(t1), dense.codes.eq(wmem_r.data),
        ]  # fmt: skip
        d_tag = data.View(IssueTag, dense.tag_out)
        d_acc = [Signal(signed(32), name=f"dacc{i}") for i in range(L)]
        fin_valid = Signal()
        fin_acc = Signal(data.ArrayLayout(signed(32), L))
        fin_o = Signal(13)
        with m.If(dense.valid_out):
            for lane in range(L):
                nxt = Mux(d_tag.first, dense.sums[lane], d_acc[lane] + dense.sums[lane])
                m.d.sync += d_acc[lane].eq(nxt)
                m.d.sync += fin_acc[lane].eq(nxt)

        # Depthwise: 5 x 5 window of d vectors, newest column at index 4.
        win = [[Signal(data.ArrayLayout(signed(D_BITS), L), name=f"win{u}_{c}")
                for c in range(MAX_KERNEL)] for u in range(MAX_KERNEL)]  # fmt: skip
        col = []
        for u in range(MAX_KERNEL):
            q = bank_sel((t1.bank + u)[:3])
            cv = Signal(data.ArrayLayout(signed(D_BITS), L), name=f"col{u}")
            for lane in range(L):
                m.d.comb += cv[lane].eq(diff(q, t1.rowmask[u], lane))
            col.append(cv)
        with m.If(v1 & t1.dw & t1.shift):
            for u in range(MAX_KERNEL):
                for c in range(MAX_KERNEL - 1):
                    m.d.sync += win[u][c].eq(win[u][c + 1])
                m.d.sync += win[u][MAX_KERNEL - 1].eq(col[u])
        m.submodules.dwa = dwa = DepthwiseArray(L, tag_bits=IssueTag.size)
        wt = [dwm_r[t].data for t in range(taps)]
        for t in range(taps):
            m.d.comb += dwm_r[t].addr.eq(t1.o)
        d_in = Signal.like(dwa.d)
        w_in = Signal.like(dwa.w)
        # Tap slot n of phase p holds kernel tap 9p + n, (u, w) = divmod(tap, k); the window's
        # column of kernel column w is 5 - k + w (the window is right-aligned).
        for kv in KERNELS:
            for p in range((kv * kv + DW_TAPS - 1) // DW_TAPS):
                with m.If((k == kv) & (t1.phase == p)):
                    for n in range(DW_TAPS):
                        tap = DW_TAPS * p + n
                        if tap < kv * kv:
                            u, wcol = divmod(tap, kv)
                            m.d.sync += [
                                d_in[n].eq(win[u][MAX_KERNEL - kv + wcol]),
                                w_in[n].eq(wt[tap]),
                            ]
                        else:
                            m.d.sync += [d_in[n].eq(0), w_in[n].eq(0)]
        v2 = Signal()
        t2 = Signal(IssueTag)
        m.d.sync += [v2.eq(v1 & t1.dw & t1.comp), t2.eq(t1)]
        m.d.comb += [dwa.valid_in.eq(v2), dwa.tag_in.eq(t2), dwa.d.eq(d_in), dwa.w.eq(w_in)]
        w_tag = data.View(IssueTag, dwa.tag_out)
        dw_acc = [Signal(signed(32), name=f"wacc{i}") for i in range(L)]
        with m.If(dwa.valid_out):
            for lane in range(L):
                nxt = Mux(w_tag.phase == 0, dwa.sums[lane], dw_acc[lane] + dwa.sums[lane])
                m.d.sync += [dw_acc[lane].eq(nxt), fin_acc[lane].eq(nxt)]

        m.d.sync += fin_valid.eq((dense.valid_out & d_tag.last) | (dwa.valid_out & w_tag.lastph))
        m.d.sync += fin_o.eq(Mux(dense.valid_out, d_tag.o, w_tag.o))
        # Constants of the group: one cycle of BRAM read, so the accumulator waits one cycle.
        m.d.comb += [cmem_r.addr.eq(fin_o), cmem_r.en.eq(1)]
        v_rq = Signal()
        acc_rq = Signal.like(fin_acc)
        m.d.sync += [v_rq.eq(fin_valid), acc_rq.eq(fin_acc)]
        m.submodules.rq = rq = Requant(L)
        for lane in range(L):
            raw = cmem_r.data[CONST_BITS * lane : CONST_BITS * lane + CONST_BITS]
            m.d.comb += rq.consts[lane].as_value().eq(raw[: ChannelConst.size])
        m.d.comb += [
            rq.valid_in.eq(v_rq), rq.acc.eq(acc_rq), rq.z_out.eq(z_out), rq.qmax.eq(qmax),
            outq.w_en.eq(rq.valid_out | elt.valid_out),
            outq.w_data.eq(Mux(elt.valid_out, elt.out, rq.out)),
        ]  # fmt: skip
        return m
