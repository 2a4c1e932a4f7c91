"""``pow2det_accel``: the accelerator top level (docs/accelerator-interface.md).

This file only wires the blocks; each is a ``wiring.Component`` of its own file, and what they
hand each other is named in hw/interfaces.py. In data-flow order:

* **register file** (hw/regfile.py): the AXI4-Lite slave, from the contract's register table;
* **descriptor controller** (hw/controller.py, CHECK in hw/check.py): fetches and checks one
  64-byte descriptor after another and starts the blocks below for each layer;
* **address sequencer** (hw/sequencer.py): the layer's reads in a fixed order, each with a tag
  in the **tag FIFO** saying where its beats go; it runs up to BANKS rows ahead of the compute
  (the **row credit**), the prefetch that hides DDR behind compute;
* **AXI reader / writer** (hw/axi.py): requests become legal INCR bursts;
* **data router** (hw/router.py): returning beats into the **buffers** (hw/buffers.py) or the
  element-wise unit;
* **compute controller** (hw/compute.py): one **write command** per output segment, then the
  engines' cycles;
* **datapath** (hw/datapath.py): dense and depthwise engines, requantization, residual add,
  into the output FIFO that the AXI writer drains.
"""

from __future__ import annotations

from amaranth import ClockDomain, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered

from hw.axi import AxiReader, AxiWriter
from hw.buffers import Buffers, specs
from hw.compute import ComputeController
from hw.controller import DescriptorController
from hw.datapath import Datapath
from hw.interfaces import ReadTransfer, WriteCommand, tag_layout
from hw.params import HwParams, check
from hw.ports import GMEM_PREFIX, LITE_PREFIX, accel_ports, lite_ports
from hw.regfile import RegisterFile
from hw.router import DataRouter
from hw.sequencer import AddressSequencer
from hw.slice import RegisterSlice
from sw.contract.config import DEFAULT_CONFIG, AccelConfig

TAG_FIFO_DEPTH = 16  # read requests in flight between the sequencer and the router
CMD_FIFO_DEPTH = 8  # output segments queued ahead of their data
# Output vectors that may already be inside the engine and requant pipelines when the compute
# controller decides to issue: it stalls unless the output FIFO has room for all of them.
PIPELINE_SLACK = 24


class Pow2DetAccel(wiring.Component):
    """The whole accelerator; port names are exactly those of the interface document."""

    def __init__(self, cfg: AccelConfig = DEFAULT_CONFIG) -> None:
        self.hp: HwParams = check(cfg)
        self.cfg = cfg
        super().__init__(accel_ports(cfg.data_width))

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg, hp = self.cfg, self.hp
        m.domains.sync = cd = ClockDomain("sync", local=True)
        m.d.comb += [cd.clk.eq(self.aclk), cd.rst.eq(~self.aresetn)]

        def gm(x: str) -> Signal:
            return getattr(self, GMEM_PREFIX + x)

        m.submodules.regs = regs = RegisterFile(cfg)
        m.submodules.ctrl = ctrl = DescriptorController(hp)
        m.submodules.seq = seq = AddressSequencer(hp)
        m.submodules.router = router = DataRouter(hp)
        m.submodules.compute = compute = ComputeController(hp)
        m.submodules.datapath = dp = Datapath(hp)
        m.submodules.buffers = bufs = Buffers(hp)
        m.submodules.reader = rd = AxiReader(cfg)
        m.submodules.writer = wrt = AxiWriter(cfg)
        m.submodules.tags = tags = SyncFIFOBuffered(width=tag_layout(hp).size, depth=TAG_FIFO_DEPTH)
        m.submodules.cmds = cmds = SyncFIFOBuffered(width=WriteCommand.size, depth=CMD_FIFO_DEPTH)
        m.submodules.outq = outq = SyncFIFOBuffered(width=cfg.data_width, depth=cfg.out_fifo_words)

        # ---- registers and control
        for name, member in lite_ports().items():
            ours, theirs = getattr(self, name), getattr(regs, name[len(LITE_PREFIX) :])
            m.d.comb += theirs.eq(ours) if member.flow == wiring.In else ours.eq(theirs)
        m.d.comb += self.irq.eq(regs.irq)
        wiring.connect(m, regs.control, ctrl.control)
        for member in ("dense", "dw", "eltwise", "stall"):
            m.d.comb += getattr(regs.perf, member).eq(
                getattr(router.perf, member) | getattr(compute.perf, member)
            )
        for blk in (seq, router, compute, dp):
            m.d.comb += blk.layer.eq(ctrl.layer)
        m.d.comb += [
            router.layer_reset.eq(ctrl.layer_reset),
            seq.start.eq(ctrl.seq_start), compute.start.eq(ctrl.compute_start),
        ]  # fmt: skip
        wiring.connect(m, router.desc, ctrl.desc)

        # ---- read requests: controller (descriptors) and sequencer, never at once, so their
        # payloads (zero when not valid) are ORed; a request goes when reader and tag FIFO both
        # take it.
        # take it. Its address and beats go to the reader through a register slice (the
        # sequencer's address arithmetic would otherwise run on into the burst splitter's).
        req_valid = ctrl.req.valid | seq.req.valid
        req = Signal.like(seq.req.payload)
        m.d.comb += req.eq(ctrl.req.payload.as_value() | seq.req.payload.as_value())
        m.submodules.req_slice = req_slice = RegisterSlice(ReadTransfer)
        req_ready = req_slice.i.ready & tags.w_rdy
        m.d.comb += [
            ctrl.req.ready.eq(req_ready), seq.req.ready.eq(req_ready),
            req_slice.i.valid.eq(req_valid & tags.w_rdy), req_slice.i.payload.addr.eq(req.addr),
            req_slice.i.payload.beats.eq(req.beats), tags.w_en.eq(req_valid & req_ready),
            tags.w_data.eq(req.tag),
            rd.req_valid.eq(req_slice.o.valid), rd.req_addr.eq(req_slice.o.payload.addr),
            rd.req_beats.eq(req_slice.o.payload.beats), req_slice.o.ready.eq(rd.req_ready),
            router.tags.valid.eq(tags.r_rdy), router.tags.payload.eq(tags.r_data),
            tags.r_en.eq(router.tags.ready),
        ]  # fmt: skip

        # ---- write commands: the sequencer's (residual add) and the compute's, never at once.
        m.d.comb += [
            cmds.w_en.eq(seq.cmd.valid | compute.cmd.valid),
            cmds.w_data.eq(seq.cmd.payload.as_value() | compute.cmd.payload.as_value()),
            seq.cmd.ready.eq(cmds.w_rdy), compute.cmd.ready.eq(cmds.w_rdy),
            wrt.cmd_valid.eq(cmds.r_rdy), wrt.cmd_addr.eq(cmds.r_data[:32]),
            wrt.cmd_beats.eq(cmds.r_data[32:]), cmds.r_en.eq(wrt.cmd_ready),
        ]  # fmt: skip

        # ---- row credit, weights, buffers, engines, output
        wiring.connect(m, router.loaded, compute.loaded)
        wiring.connect(m, compute.free, seq.free)
        m.d.comb += compute.wgt_done.eq(router.wgt_done)
        for name, spec in specs(hp).items():
            reader = router if name == "abuf" else dp  # the residual add reads abuf beside R
            for port, owner in ((f"{name}_w", router), (f"{name}_r", reader)):
                ours, theirs = getattr(owner, port), getattr(bufs, port)
                pairs = zip(ours, theirs, strict=True) if spec.count > 1 else [(ours, theirs)]
                for a, b in pairs:
                    wiring.connect(m, a, b)
        wiring.connect(m, compute.issue, dp.issue)
        wiring.connect(m, router.elt, dp.elt)
        out_room = outq.level < cfg.out_fifo_words - PIPELINE_SLACK
        m.d.comb += [
            router.out_room.eq(out_room), compute.out_room.eq(out_room),
            outq.w_en.eq(dp.out_valid), outq.w_data.eq(dp.out),
            wrt.data_valid.eq(outq.r_rdy), wrt.data.eq(outq.r_data), outq.r_en.eq(wrt.data_ready),
        ]  # fmt: skip

        # ---- the AXI4 master: INCR bursts of full beats, normal non-cacheable bufferable.
        L = cfg.lanes
        # R beats reach the router through a register slice: its ready decision (tag kind,
        # column counts) would otherwise run on out to rready and the outstanding-burst count.
        m.submodules.r_slice = r_slice = RegisterSlice(cfg.data_width)
        wiring.connect(m, r_slice.o, router.r)
        rready = r_slice.i.ready
        rfire = gm("rvalid") & rready
        m.d.comb += [
            gm("arid").eq(0), gm("araddr").eq(rd.araddr), gm("arlen").eq(rd.arlen),
            gm("arsize").eq(L.bit_length() - 1), gm("arburst").eq(1), gm("arcache").eq(0b0011),
            gm("arprot").eq(0), gm("arvalid").eq(rd.arvalid), rd.arready.eq(gm("arready")),
            gm("rready").eq(rready), r_slice.i.valid.eq(gm("rvalid")),
            r_slice.i.payload.eq(gm("rdata")), rd.rlast_fire.eq(rfire & gm("rlast")),
            gm("awid").eq(0), gm("awaddr").eq(wrt.awaddr), gm("awlen").eq(wrt.awlen),
            gm("awsize").eq(L.bit_length() - 1), gm("awburst").eq(1), gm("awcache").eq(0b0011),
            gm("awprot").eq(0), gm("awvalid").eq(wrt.awvalid), wrt.awready.eq(gm("awready")),
            gm("wdata").eq(wrt.wdata), gm("wstrb").eq((1 << L) - 1),
            gm("wlast").eq(wrt.wlast), gm("wvalid").eq(wrt.wvalid), wrt.wready.eq(gm("wready")),
            gm("bready").eq(wrt.bready), wrt.bvalid.eq(gm("bvalid")),
            ctrl.bus_error.eq((rfire & (gm("rresp") != 0)) | (gm("bvalid") & (gm("bresp") != 0))),
            ctrl.layer_idle.eq(
                seq.done & compute.done & router.idle & ~tags.r_rdy & ~req_slice.o.valid
                & rd.idle & ~r_slice.o.valid & ~cmds.r_rdy
                & wrt.idle & ~outq.r_rdy
            ),
        ]  # fmt: skip
        return m
