"""Draw docs/img/architecture.png, the one-page picture of docs/architecture.md.

``.venv/bin/python docs/img/architecture.py [--out PATH]``: boxes and arrows only (matplotlib),
so the picture is redrawn from this file whenever a block moves; nothing is measured here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).resolve().parent / "architecture.png"

# One colour per kind of box, the same in every panel.
KIND = {
    "torch": "#f6d5c3",  # PyTorch side (quant/, models/)
    "file": "#fff2a8",  # data handed over: artifact, Plan, DDR
    "sw": "#cfe3f7",  # runtime code (sw/)
    "target": "#d7ecd0",  # what executes the plan
    "hw": "#e2dcf2",  # RTL blocks (hw/)
    "mem": "#f0f0f0",  # on-chip buffers
    "contract": "#ffffff",
}


def box(ax, x, y, w, h, title, body="", kind="sw", size=10.5, lw=1.2):
    ax.add_patch(
        FancyBboxPatch(
            (x, y),
            w,
            h,
            boxstyle="round,pad=0.02,rounding_size=0.6",
            fc=KIND[kind],
            ec="#333333",
            lw=lw,
        )
    )
    if body:
        ax.text(x + w / 2, y + h - 0.9, title, ha="center", va="top", fontsize=size, weight="bold")
        ax.text(
            x + w / 2,
            y + h - 2.9,
            body,
            ha="center",
            va="top",
            fontsize=size - 1.5,
            linespacing=1.25,
        )
    else:
        ax.text(x + w / 2, y + h / 2, title, ha="center", va="center", fontsize=size, weight="bold")
    return (x, y, w, h)


def arrow(
    ax,
    a,
    b,
    label="",
    style="-|>",
    ls="-",
    color="#222222",
    rad=0.0,
    lpos=0.5,
    loff=(0.0, 0.9),
    size=8.5,
):
    ax.add_patch(
        FancyArrowPatch(
            a,
            b,
            arrowstyle=style,
            mutation_scale=14,
            lw=1.3,
            ls=ls,
            color=color,
            connectionstyle=f"arc3,rad={rad}",
            shrinkA=1,
            shrinkB=1,
        )
    )
    if label:
        mx = a[0] + (b[0] - a[0]) * lpos + loff[0]
        my = a[1] + (b[1] - a[1]) * lpos + loff[1]
        ax.text(mx, my, label, ha="center", va="bottom", fontsize=size, color=color, style="italic")


def right(b, f=0.5):
    return (b[0] + b[2], b[1] + b[3] * f)


def left(b, f=0.5):
    return (b[0], b[1] + b[3] * f)


def top(b, f=0.5):
    return (b[0] + b[2] * f, b[1] + b[3])


def bottom(b, f=0.5):
    return (b[0] + b[2] * f, b[1])


def panel(ax, x, y, w, h, title):
    ax.add_patch(
        FancyBboxPatch(
            (x, y),
            w,
            h,
            boxstyle="round,pad=0.02,rounding_size=1.0",
            fc="none",
            ec="#888888",
            lw=1.0,
            ls="--",
        )
    )
    ax.text(
        x + 0.8,
        y + h - 0.6,
        title,
        ha="left",
        va="top",
        fontsize=12,
        weight="bold",
        color="#444444",
    )


def draw(out: Path) -> None:
    fig = plt.figure(figsize=(17, 13.6), dpi=110)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 125)
    ax.set_ylim(0, 100)
    ax.axis("off")
    ax.text(
        1.5,
        99,
        "pow2det: from a trained detector to boxes on the accelerator",
        ha="left",
        va="top",
        fontsize=15,
        weight="bold",
    )

    # -- A: build time, artifact -> Plan -> backend ---------------------------------------------
    panel(
        ax,
        1,
        61,
        98,
        35,
        "A  Model to accelerator (quant/ -> artifact -> sw compiler -> Plan -> backend)",
    )
    m = box(
        ax,
        3,
        79,
        15,
        11,
        "models/",
        "darknet cfg + weights\n-> float PyTorch\n(Yolo-Fastest, -XL)",
        "torch",
    )
    q = box(
        ax,
        22,
        79,
        16,
        11,
        "quant/",
        "PTQ / QAT / data-free\npow2 weights, integer\nmode, export",
        "torch",
    )
    art = box(
        ax,
        42,
        79,
        17,
        11,
        "artifact .npz",
        "sw/artifact.py\npow2det.artifact v2\ngraph, codes, constants",
        "file",
    )
    comp = box(
        ax,
        63,
        79,
        16,
        11,
        "compiler",
        "sw/compiler.py\ncompile_model(art, cfg)\nengines, strips, memory",
        "sw",
    )
    plan = box(
        ax, 83, 79, 14.5, 11, "Plan", "sw/plan.py\ndescriptors, DDR image,\nregions, steps", "file"
    )
    arrow(ax, right(m), left(q))
    arrow(ax, right(q), left(art), "save")
    arrow(ax, right(art), left(comp), "load")
    arrow(ax, right(comp), left(plan))
    cfg = box(ax, 63, 73.6, 16, 3.4, "AccelConfig (the build)", kind="file", size=9)
    arrow(ax, top(cfg), bottom(comp))

    be = box(
        ax,
        73,
        63,
        24.5,
        9,
        "Backend",
        "make_backend('emu' | 'pynq', plan)\n.run(image) -> head codes",
        "sw",
    )
    arrow(ax, bottom(plan), (top(be)[0] + 7, top(be)[1]))
    drv = box(
        ax,
        47,
        63,
        22,
        9,
        "driver",
        "sw/driver.py, one for all:\nID/CONFIG check, DESC_ADDR,\nSTART, wait, CPU steps",
        "sw",
    )
    arrow(ax, left(be), right(drv), "transport")
    emu = box(ax, 3, 71, 20, 5.5, "emu: sw/emu.py EmuDevice", kind="target", size=9.5)
    pyq = box(ax, 3, 67.2, 20, 3.4, "pynq: Zynq PL via PYNQ", kind="target", size=9.5)
    rtl = box(ax, 3, 63, 20, 3.8, "rtl: cocotb + Verilator", kind="target", size=9.5)
    for t in (emu, pyq, rtl):
        arrow(ax, left(drv), right(t), style="-|>")
    ax.text(
        35,
        73.0,
        "registers + DDR over a transport",
        fontsize=8.5,
        style="italic",
        ha="center",
        va="bottom",
    )

    # -- B: the runtime pipeline ------------------------------------------------------------------
    panel(
        ax,
        1,
        45,
        98,
        14.5,
        "B  shiftdet detect INPUT: one thread per stage, bounded queues, frame order kept",
    )
    stages = [
        ("source", "video, camera,\nstream, folder", "file"),
        ("capture", "sw/sources.py", "sw"),
        ("preprocess", "letterbox to the\nmodel's size", "sw"),
        ("accelerator", "backend.run(image)\n(panel A)", "target"),
        ("postprocess", "YOLO decode,\nper-class NMS", "sw"),
        ("output", "draw; mp4, JSON lines,\nreport, MJPEG, timeline", "sw"),
    ]
    prev = None
    x = 3.0
    for i, (t, b, k) in enumerate(stages):
        w = 17.0 if i == len(stages) - 1 else 12.6
        cur = box(ax, x, 47, w, 9, t, b, k)
        if prev is not None:
            arrow(ax, right(prev), left(cur))
        prev = cur
        x += w + 2.8

    # -- C: the accelerator ----------------------------------------------------------------------
    panel(
        ax, 1, 1, 98, 42.5, "C  pow2det_accel (hw/): one layer per 64-byte descriptor, DDR to DDR"
    )
    lite = box(ax, 3, 31, 15, 6.5, "AXI4-Lite", "s_axi_control", "hw")
    regs = box(ax, 22, 31, 16, 6.5, "register file", "CTRL/STATUS, DESC_*,\nPERF, ID/CONFIG", "hw")
    fsm = box(ax, 42, 31, 19, 6.5, "descriptor fetch + CHECK", "refusals -> ERROR_CODE", "hw")
    seq = box(
        ax, 65, 31, 15, 6.5, "address sequencer", "reads in a fixed order,\n<= 8 rows ahead", "hw"
    )
    rd = box(ax, 84, 31, 13.5, 6.5, "AXI reader", "m_axi_gmem R,\nbursts <= 16, 8 in flight", "hw")
    arrow(ax, right(lite), left(regs))
    arrow(ax, right(regs), left(fsm), "START")
    arrow(ax, right(fsm), left(seq), "layer")
    arrow(ax, right(seq), left(rd), "addr, beats")

    ddr = box(
        ax, 84, 19.5, 13.5, 8, "DDR", "plan's image:\nprogram, weights,\nrecords, tensors", "file"
    )
    arrow(ax, bottom(rd, 0.3), top(ddr, 0.3), style="<|-")
    router = box(
        ax, 65, 19.5, 15, 8, "data router", "beats -> buffers\n(by tag FIFO),\nborders = z_in", "hw"
    )
    arrow(ax, bottom(seq), top(router), "tags", loff=(1.5, -0.3))
    arrow(ax, left(ddr), right(router), "R beats", loff=(0, 0.3))

    bufs = [
        ("constants", 27.5),
        ("dense weights", 25.0),
        ("dw weights", 22.5),
        ("line buffer 8 banks", 20.0),
    ]
    for name, yy in bufs:
        box(ax, 45, yy, 16, 2.1, name, kind="mem", size=8.5)
    ax.text(53, 30.0, "on-chip buffers", ha="center", va="bottom", fontsize=9, style="italic")
    arrow(ax, left(router), (61, 23.5))

    cc = box(
        ax,
        22,
        19.5,
        18,
        8,
        "compute controller",
        "strip -> row -> group,\nissues engines, queues\nwrite commands",
        "hw",
    )
    arrow(ax, (45, 23.5), right(cc), style="<|-|>")
    ax.text(
        53, 18.9, "(read by the engines)", ha="center", va="center", fontsize=8.5, style="italic"
    )

    dense = box(ax, 3, 10, 16, 7.5, "dense engine", "16x16 shift-and-add\n(no multipliers)", "hw")
    dw = box(ax, 22, 10, 18, 7.5, "depthwise engine", "16 lanes x 9 taps\n(DSP multipliers)", "hw")
    arrow(ax, bottom(cc, 0.3), top(dense, 0.7))
    arrow(ax, bottom(cc, 0.6), top(dw, 0.6))
    rq = box(
        ax,
        45,
        10,
        16,
        7.5,
        "requant + add",
        "bias, M_pos/M_neg, round,\nz_out, clamp; residual",
        "hw",
    )
    arrow(ax, right(dw), left(rq), "acc")
    ax.plot([11, 11, 53], [10, 8.3, 8.3], color="#222222", lw=1.3)
    arrow(ax, (53, 8.3), bottom(rq), style="-|>")
    ax.text(32, 8.6, "acc", ha="center", va="bottom", fontsize=8.5, style="italic")
    fifo = box(ax, 65, 10, 15, 7.5, "output FIFO", "requantized vectors", "hw")
    wr = box(ax, 84, 10, 13.5, 7.5, "AXI writer", "m_axi_gmem W,\nAW/W/B, <= 16", "hw")
    arrow(ax, right(rq), left(fifo))
    arrow(ax, right(fifo), left(wr))
    arrow(ax, top(wr, 0.7), bottom(ddr, 0.7))
    ax.text(
        4,
        3.0,
        "irq on done or error; PERF counters match the cycle model within 5 % "
        "(tested). Layers CHECK would refuse (maxpool, upsample, other weight formats) "
        "are the plan's CPU steps.",
        fontsize=9.5,
        ha="left",
        va="bottom",
    )

    # -- the contract ----------------------------------------------------------------------------
    ctr = box(
        ax,
        101.5,
        52,
        22.5,
        24,
        "arithmetic contract",
        "docs/arithmetic.md\n(every integer: weight codes,\nasymmetric activations,\n"
        "32-bit accumulator,\nrequantization, DDR layout,\nstrips, artifact format)\n\n"
        "docs/accelerator-interface.md\n(ports, registers,\ndescriptors)\n\n"
        "in code: sw/contract/\n(numpy-only constants)\n\n"
        "executable form:\nsim/reference/ (NumPy, int64)",
        "contract",
        size=11,
        lw=2.2,
    )
    ax.text(
        112.75,
        50.5,
        "bit for bit equal to\nsim.reference (tested):\nquant integer mode,\nsw emu, hw RTL",
        ha="center",
        va="top",
        fontsize=9.5,
        color="#8a1c1c",
        style="italic",
    )
    red = "#8a1c1c"
    # above row A: down into quant/ (its integer mode) and the artifact (format, loader checks)
    ax.plot([112.75, 112.75, 30], [76, 92.6, 92.6], ls="--", color=red, lw=1.3)
    for bx, lab in ((q, "integer mode"), (art, "format, loader checks")):
        x0 = top(bx)[0]
        arrow(ax, (x0, 92.6), top(bx), ls="--", color=red)
        ax.text(
            x0 + 0.8, 91.2, lab, ha="left", va="center", fontsize=8.5, color=red, style="italic"
        )
    arrow(
        ax, left(ctr, 0.7), right(be, 0.6), ls="--", color=red, label="emu", lpos=0.5, loff=(0, 0.2)
    )
    arrow(
        ax,
        bottom(ctr, 0.12),
        (99.2, 41.5),
        ls="--",
        color=red,
        label="RTL",
        lpos=0.5,
        loff=(-1.6, -0.4),
    )

    # legend
    ly = 37.0
    for name, k in (
        ("PyTorch (quant/, models/)", "torch"),
        ("data handed over", "file"),
        ("runtime (sw/)", "sw"),
        ("what runs the plan", "target"),
        ("RTL block (hw/)", "hw"),
        ("on-chip memory", "mem"),
    ):
        ax.add_patch(
            FancyBboxPatch(
                (102.5, ly),
                2.2,
                1.6,
                boxstyle="round,pad=0.02,rounding_size=0.3",
                fc=KIND[k],
                ec="#333333",
                lw=0.8,
            )
        )
        ax.text(105.5, ly + 0.8, name, va="center", fontsize=9.5)
        ly -= 2.6
    ax.plot([102.5, 104.7], [ly + 0.8, ly + 0.8], ls="--", color=red, lw=1.3)
    ax.text(105.5, ly + 0.8, "checked against the contract", va="center", fontsize=9.5, color=red)

    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    draw(ap.parse_args().out)


if __name__ == "__main__":
    main()
