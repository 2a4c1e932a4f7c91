"""QONNX in and out (quant/qonnx/): exported artifacts run in qonnx's executor to the reference's
integers bit for bit (every node's tensor, rounding ties included), export -> import gives the
same artifact, a Brevitas-style QONNX model imports and runs in the emulator to the codes qonnx
computes, and what the contract cannot hold is refused with one line."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.cleanup import cleanup_model

from quant.qonnx import QonnxError, export_model, import_model
from quant.qonnx.__main__ import main
from quant.qonnx.common import FLOAT32_EXACT, META_DIGEST, META_FORMAT, QONNX_DOMAIN
from quant.qonnx.export import accumulator_bound
from sim.reference import ops, run_network, run_node
from sim.reference.randnet import conv_chain, random_conv, random_network, with_small_shifts
from sw.accel_config import AccelConfig
from sw.artifact import (
    Artifact,
    Node,
    Output,
    Quant,
    content_digest,
    decode_codes,
    header_and_arrays,
    load,
    save,
)
from sw.backends.emu import EmuBackend
from sw.compiler import compile_model


def _real(codes: np.ndarray, q: Quant) -> np.ndarray:
    """The real tensor a QONNX Quant gives for these codes: (q - z) * s in float32, batch 1."""
    return ((codes.astype(np.float32) - np.float32(q.zero)) * np.float32(q.scale))[None]


def _codes(x: np.ndarray, q: Quant) -> np.ndarray:
    """Codes back from a real tensor (exact: |q - z| < 2^9, far inside float32's precision)."""
    return (np.round(x[0] / np.float32(q.scale)) + q.zero).astype(np.int64)


def _run_qonnx(model: onnx.ModelProto, art: Artifact, img: np.ndarray, clean: bool = False
               ) -> dict[str, np.ndarray]:  # fmt: skip
    """Codes of every artifact tensor the qonnx execution has under its node name (all of them
    unless ``clean`` ran qonnx's cleanup, which renames tensors: then the outputs, in order)."""
    mw = ModelWrapper(model)
    mw = cleanup_model(mw) if clean else mw.transform(InferShapes())
    ctx = execute_onnx(mw, {mw.graph.input[0].name: _real(img, art.input_quant)},
                       return_full_exec_context=not clean)  # fmt: skip
    if clean:
        return {
            o.node: _codes(ctx[g.name], art.quant_of(o.node))
            for o, g in zip(art.outputs, mw.graph.output, strict=True)
        }
    return {n.name: _codes(ctx[n.name], n.quant) for n in art.nodes}


def _check_exact(
    art: Artifact, seed: int, clean: bool = False, img: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    if img is None:
        rng = np.random.default_rng(seed)
        img = rng.integers(0, art.input_quant.qmax + 1, art.input_shape).astype(np.uint8)
    want = run_network(art, img, keep_all=True)
    got = _run_qonnx(export_model(art), art, img, clean)
    assert got, "nothing compared"
    for name, codes in got.items():
        np.testing.assert_array_equal(codes, want[name], err_msg=f"seed {seed}, tensor {name}")
    return want


def _digest(art: Artifact) -> str:
    return content_digest(*header_and_arrays(art))


# ---------------------------------------------------------------------------------------------
# export: qonnx execution == the reference, every tensor


@pytest.mark.parametrize(
    "seed, dw, act_bits, wbits, dense",
    [
        (0, "int", 8, 4, "pow2"),
        (1, "pow2", 4, 3, "pow2"),
        (2, "int", 8, 5, "pow2x2"),
        (3, "pow2", 8, 4, "pow2"),
    ],
)
def test_export_runs_to_the_reference_codes(
    seed: int, dw: str, act_bits: int, wbits: int, dense: str
) -> None:
    """Every op of the contract (conv pow2/pow2x2/int, dense/depthwise, 1x1/3x3/5x5, stride 1/2,
    leaky/relu/linear; add; concat; upsample; maxpool): each node's codes, in qonnx."""
    rng = np.random.default_rng(100 + seed)
    art = random_network(rng, height=16, width=12, weight_bits=wbits, act_bits=act_bits,
                         depthwise_format=dw, dense_format=dense)  # fmt: skip
    _check_exact(art, seed)


def test_export_after_qonnx_cleanup_and_in_the_emulator() -> None:
    """After qonnx's usual cleanup (shape inference, constant folding, renaming) the outputs
    still equal the emulator backend's (the board runtime's own computation)."""
    rng = np.random.default_rng(7)
    art = random_network(rng, height=16, width=16, act_bits=8, depthwise_format="int")
    img = rng.integers(0, 256, art.input_shape).astype(np.uint8)
    with EmuBackend(compile_model(art, AccelConfig())) as be:
        emu = be.run(img)
    got = _run_qonnx(export_model(art), art, img, clean=True)
    assert set(got) == set(emu)
    for name in emu:
        np.testing.assert_array_equal(got[name], emu[name], err_msg=name)


def test_export_binary_int2_pow2_8bit_and_relu_chain() -> None:
    """The formats the random network does not draw: binary (BipolarQuant), 2-bit int, 8-bit
    pow2 (17-bit Quant), a depthwise pow2 conv, relu, 4-bit activations, no padding."""
    rng = np.random.default_rng(11)
    specs = [
        {"out_channels": 6, "weight_format": "binary", "weight_bits": 1, "activation": "relu"},
        {"out_channels": 5, "weight_format": "int", "weight_bits": 2, "stride": 2},
        {"depthwise": True, "weight_format": "pow2", "weight_bits": 4, "kernel": 5},
        {"out_channels": 4, "weight_format": "pow2", "weight_bits": 8, "kernel": 1,
         "activation": "linear", "out_bits": 4},
        {"out_channels": 3, "kernel": 3, "pad": 0, "activation": "relu"},
    ]  # fmt: skip
    art = conv_chain(rng, specs, shape=(3, 13, 11))
    _check_exact(art, 11)


def _tie_network(rng: np.random.Generator) -> Artifact:
    """Convs with shifts 1..3 (an accumulator is a tie about one time in 2^S) and an add with
    shift 1 and odd multipliers, negative and positive results: ties of every kind."""
    art = conv_chain(
        rng,
        [
            {"out_channels": 6, "activation": "leaky"},
            {"out_channels": 6, "activation": "linear"},
            {"out_channels": 6, "activation": "relu"},
        ],
        shape=(3, 10, 9),
    )
    nodes = [with_small_shifts(rng, n) for n in art.nodes]
    assert not nodes[2].tensors["m_neg"].any()  # a relu conv's M_neg stays 0
    q = Quant(8, 128, nodes[1].quant.scale)
    add = Node("sum", "add", ["c1", "c2"], {"m_a": 3, "m_b": 1, "shift": 1,
                                            "activation": "linear"}, q)  # fmt: skip
    nodes = [*nodes, add]
    return dataclasses.replace(art, nodes=nodes, outputs=[Output("sum"), Output("c0")])


def _tie_count(art: Artifact, values: dict[str, np.ndarray]) -> int:
    """How many results of ``art``'s convs and add were exact ties (``acc * M`` with its low
    ``S`` bits exactly ``2^(S-1)``), from the reference's own integers."""
    ties = 0
    for n in art.nodes:
        q_in = [art.quant_of(s) for s in n.inputs]
        if n.op == "conv":
            a, t = n.attrs, n.tensors
            v = decode_codes(t["codes"], a["weight_format"], a["weight_bits"])
            acc = ops.conv2d(values[n.inputs[0]], q_in[0].zero, v, t["bias"], a["stride"],
                             a["pad"], a["groups"]).astype(np.int64)  # fmt: skip
            m = np.where(acc >= 0, t["m_pos"][:, None, None], t["m_neg"][:, None, None])
            p, s = acc * m, t["shift"].astype(np.int64)[:, None, None]
        elif n.op == "add":
            a = n.attrs
            p = a["m_a"] * (values[n.inputs[0]].astype(np.int64) - q_in[0].zero) + a["m_b"] * (
                values[n.inputs[1]].astype(np.int64) - q_in[1].zero
            )
            s = np.int64(a["shift"])
        else:
            continue
        ties += int(((s > 0) & ((p & ((1 << s) - 1)) == (1 << np.maximum(s - 1, 0)))).sum())
    return ties


def test_export_rounding_ties_are_half_up() -> None:
    """A network full of exact ties runs to the reference's codes; the same graph with the
    contract's round half up replaced by half-to-even or half-away-from-zero (what a slip to
    Quant's ROUND or HALF_UP without the 2^(S-1) offset gives) does not."""
    rng = np.random.default_rng(5)
    art = _tie_network(rng)
    img = rng.integers(0, 256, art.input_shape).astype(np.uint8)
    want = run_network(art, img, keep_all=True)
    assert _tie_count(art, want) > 50, "the case must hold ties (seed 5)"
    model = export_model(art)
    got = _run_qonnx(model, art, img)
    for name, codes in got.items():
        np.testing.assert_array_equal(codes, want[name], err_msg=name)

    # The slips: the mode of the requantizing Quant changed, or the 2^(S-1) offset dropped, or
    # both (Quant's ROUND is half to even). (HALF_UP with no offset would be no slip: qonnx
    # clamps before it rounds, so after the zero point only values >= 0 are ever rounded.)
    for mode, offset in (("ROUND", False), ("FLOOR", False), ("ROUND", True)):
        bad = onnx.ModelProto()
        bad.CopyFrom(model)
        for init in bad.graph.initializer:
            if init.name.endswith("/half") and not offset:
                zero = np.zeros_like(numpy_helper.to_array(init))
                init.CopyFrom(numpy_helper.from_array(zero, init.name))
        for node in bad.graph.node:
            for at in node.attribute:
                if at.name == "rounding_mode" and at.s == b"FLOOR":
                    at.s = mode.encode()
        got = _run_qonnx(bad, art, img)
        wrong = sum(int((got[k] != want[k]).sum()) for k in got)
        assert wrong > 0, f"{mode} with offset={offset} not caught"


def test_export_refuses_beyond_the_float32_bound(tmp_path) -> None:  # noqa: ANN001
    """A conv whose accumulator can pass 2^24 is refused (one line, exit 2), not exported
    inexactly; the metadata of a model that passes names the digest and format version."""
    rng = np.random.default_rng(3)
    art = conv_chain(rng, [{"out_channels": 4, "activation": "linear"}])
    model = export_model(art)
    props = {p.key: p.value for p in model.metadata_props}
    assert props[META_DIGEST] == _digest(art)
    assert props[META_FORMAT] == "pow2det.artifact version 2"

    n = art.nodes[0]
    bound = accumulator_bound(n, art.input_quant)
    at = n.tensors["bias"].copy()
    at[1] = -(FLOAT32_EXACT - (bound[1] - abs(int(at[1]))))  # channel 1 exactly at the bound
    edge = dataclasses.replace(
        art, nodes=[dataclasses.replace(n, tensors={**n.tensors, "bias": at})]
    )
    assert accumulator_bound(edge.nodes[0], art.input_quant).max() == FLOAT32_EXACT
    _check_exact(edge, 3)  # at the bound: still exact
    at = at.copy()
    at[1] -= 1
    over = dataclasses.replace(
        art, nodes=[dataclasses.replace(n, tensors={**n.tensors, "bias": at})]
    )
    with pytest.raises(QonnxError, match=r"node 'c0': output channel 1 .* > 2\^24"):
        export_model(over)
    src = tmp_path / "over.npz"
    save(over, src)
    assert main(["export", str(src), str(tmp_path / "over.onnx")]) == 2
    assert not (tmp_path / "over.onnx").exists()


# ---------------------------------------------------------------------------------------------
# round trip


@pytest.mark.parametrize("seed", range(4))
def test_export_import_round_trip(seed: int) -> None:
    """export -> import gives the same artifact: same digest, so every node, attribute,
    tensor, quantization, output and name is equal."""
    rng = np.random.default_rng(200 + seed)
    art = random_network(
        rng, height=16, width=12, weight_bits=[3, 4, 5, 4][seed], act_bits=[8, 4][seed % 2],
        depthwise_format=["int", "pow2"][seed % 2], dense_format=["pow2", "pow2x2"][seed // 2],
    )  # fmt: skip
    back = import_model(export_model(art))
    assert back.notes == []
    assert _digest(back.artifact) == _digest(art)


def test_import_after_qonnx_cleanup_gives_the_same_model_renamed() -> None:
    """qonnx's cleanup renames every tensor; the import still gives the same nodes, formats,
    constants, quantizations and outputs (the code formats ride in each Conv's doc string)."""
    rng = np.random.default_rng(41)
    art = random_network(rng, height=16, width=12, act_bits=8, depthwise_format="int",
                         dense_format="pow2x2")  # fmt: skip
    cleaned = cleanup_model(ModelWrapper(export_model(art))).model
    back = import_model(cleaned).artifact
    assert back.classes == art.classes

    def content(a: Artifact) -> list[tuple]:  # every node but its name and inputs' names
        return sorted(
            (n.op, json.dumps(n.attrs, sort_keys=True), n.quant.to_json().items().__repr__(),
             tuple((r, t.dtype.str, t.tobytes()) for r, t in sorted(n.tensors.items())))
            for n in a.nodes
        )  # fmt: skip

    assert content(back) == content(art)  # qonnx's cleanup may also reorder the nodes
    img = rng.integers(0, 256, art.input_shape).astype(np.uint8)
    want, got = run_network(art, img), run_network(back, img)
    for o, p in zip(art.outputs, back.outputs, strict=True):
        np.testing.assert_array_equal(got[p.node], want[o.node])
    assert [(o.kind, o.attrs) for o in back.outputs] == [(o.kind, o.attrs) for o in art.outputs]


def test_round_trip_through_files_and_the_command_line(tmp_path, capsys) -> None:  # noqa: ANN001
    rng = np.random.default_rng(9)
    art = _tie_network(rng)  # relu, leaky, linear and an add with small constants
    src, mid, out = tmp_path / "a.npz", tmp_path / "a.onnx", tmp_path / "b.npz"
    save(art, src)
    assert main(["export", str(src), str(mid)]) == 0
    assert main(["import", str(mid), str(out)]) == 0
    assert _digest(load(out)) == _digest(load(src))
    capsys.readouterr()
    assert main(["import", str(mid), str(mid)]) == 2  # never over the input
    assert "is the input file" in capsys.readouterr().err
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    assert main(["import", str(tmp_path / "junk.onnx"), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an ONNX model" in err


# ---------------------------------------------------------------------------------------------
# import: a Brevitas-style QONNX model


def _f32(name: str, a: np.ndarray | float) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(a, np.float32), name)


class _Brevitas:
    """A QONNX graph as Brevitas exports one: real tensors, Quant on weights (per output
    channel, 4-bit, narrow), Int32-style Quant-ed biases, Relu + Quant activations. Scales are
    powers of two (Brevitas' POWER_OF_TWO scaling), so the float graph computes exactly and
    equals the contract's integers but for the rounding of exact ties."""

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int, int] = (3, 10, 10)):
        self.rng, self.shape = rng, shape
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.scale: dict[str, float] = {}
        self.ch: dict[str, int] = {}
        self.k = 0

    def quant(self, x: str, out: str, scale: float, zero: int, bits: int, signed: int = 0,
              rounding: str = "HALF_UP", narrow: int = 0) -> str:  # fmt: skip
        self.k += 1
        names = [f"q{self.k}_s", f"q{self.k}_z", f"q{self.k}_b"]
        for nm, v in zip(names, (scale, zero, bits), strict=True):
            self.inits.append(_f32(nm, v))
        self.nodes.append(helper.make_node(
            "Quant", [x, *names], [out], domain=QONNX_DOMAIN, name=f"Quant_{self.k}",
            signed=signed, narrow=narrow, rounding_mode=rounding))  # fmt: skip
        self.scale[out] = scale
        return out

    def image(self) -> str:
        self.ch["x"] = self.shape[0]
        return self.quant("inp", "x", 2.0**-8, 0, 8, rounding="ROUND")

    def conv(self, x: str, out: str, cout: int | None = None, k: int = 3, depthwise: bool = False,
             act: str = "relu", out_scale: float = 2.0**-4, signed: int = 0,
             rounding: str = "HALF_UP") -> str:  # fmt: skip
        rng, cin = self.rng, self.ch[x]
        cout = cin if depthwise else cout
        s_w = np.exp2(-rng.integers(4, 8, size=cout)).astype(np.float32)
        v = rng.integers(-7, 8, size=(cout, 1 if depthwise else cin, k, k))
        grid = self.scale[x] * s_w
        b = rng.integers(-300, 300, size=cout) * grid
        self.inits += [_f32(f"{out}_w", v * s_w[:, None, None, None]),
                       _f32(f"{out}_ws", s_w.reshape(cout, 1, 1, 1)), _f32(f"{out}_w0", 0.0),
                       _f32(f"{out}_wb", 4.0), _f32(f"{out}_b", b), _f32(f"{out}_bs", grid),
                       _f32(f"{out}_b0", 0.0), _f32(f"{out}_bb", 32.0)]  # fmt: skip
        self.nodes += [
            helper.make_node("Quant", [f"{out}_w", f"{out}_ws", f"{out}_w0", f"{out}_wb"],
                             [f"{out}_wq"], domain=QONNX_DOMAIN, signed=1, narrow=1,
                             rounding_mode="ROUND", name=f"{out}_weight_quant"),
            helper.make_node("Quant", [f"{out}_b", f"{out}_bs", f"{out}_b0", f"{out}_bb"],
                             [f"{out}_bq"], domain=QONNX_DOMAIN, signed=1, narrow=0,
                             rounding_mode="ROUND", name=f"{out}_bias_quant"),
            helper.make_node("Conv", [x, f"{out}_wq", f"{out}_bq"], [f"{out}_acc"],
                             kernel_shape=[k, k], pads=[k // 2] * 4, strides=[1, 1],
                             group=cin if depthwise else 1, name=f"{out}_conv"),
        ]  # fmt: skip
        pre = f"{out}_acc"
        if act == "relu":
            self.nodes.append(helper.make_node("Relu", [pre], [f"{out}_relu"], name=f"{out}_r"))
            pre = f"{out}_relu"
        self.ch[out] = cout
        return self.quant(pre, out, out_scale, 0, 8, signed=signed, rounding=rounding)

    def add(self, a: str, b: str, out: str) -> str:
        self.nodes += [helper.make_node("Add", [a, b], [f"{out}_sum"], name=f"{out}_add"),
                       helper.make_node("Relu", [f"{out}_sum"], [f"{out}_relu"])]  # fmt: skip
        self.ch[out] = self.ch[a]
        return self.quant(f"{out}_relu", out, 2.0**-3, 0, 8)

    def pool(self, x: str, out: str) -> str:
        self.nodes.append(helper.make_node("MaxPool", [x], [out], kernel_shape=[2, 2],
                                           strides=[2, 2], name=f"{out}_pool"))  # fmt: skip
        self.ch[out], self.scale[out] = self.ch[x], self.scale[x]
        return out

    def model(self, outputs: list[str]) -> onnx.ModelProto:
        c, h, w = self.shape
        g = helper.make_graph(
            self.nodes, "brevitas-style",
            [helper.make_tensor_value_info("inp", TensorProto.FLOAT, [1, c, h, w])],
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
            initializer=self.inits,
        )  # fmt: skip
        return helper.make_model(
            g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QONNX_DOMAIN, 1)]
        )


def _brevitas_net(rng: np.random.Generator, head_rounding: str = "ROUND") -> onnx.ModelProto:
    b = _Brevitas(rng)
    x = b.image()
    c1 = b.conv(x, "c1", cout=8, out_scale=2.0**-3)
    c2 = b.conv(c1, "c2", depthwise=True, out_scale=2.0**-3)
    s = b.add(c1, c2, "res")
    p = b.pool(s, "pool")
    head = b.conv(p, "head", cout=5, k=1, act="linear", out_scale=2.0**-2, signed=1,
                  rounding=head_rounding)  # fmt: skip
    return b.model([head])


def test_import_brevitas_style_runs_to_qonnx_codes() -> None:
    """4-bit per-channel weights, Int32 biases, Relu + Quant activations, a residual add, a
    depthwise conv, a maxpool and a signed linear head: imported, run by the emulator backend,
    equal to qonnx's execution of the original graph, code for code. The unsigned HALF_UP
    Quants are the contract's half up exactly (qonnx clamps at 0 before rounding), and their
    ties do occur (checked); the head's ROUND (half to even) differs from half up at exact ties
    only: there the emulator must give the half-up code and everywhere else qonnx's."""
    rng = np.random.default_rng(21)
    model = _brevitas_net(rng)
    imp = import_model(model)
    art = imp.artifact
    assert [n.op for n in art.nodes] == ["conv", "conv", "add", "maxpool", "conv"]
    assert [n.attrs.get("weight_format") for n in art.nodes] == ["int", "int", None, None, "int"]
    assert art.nodes[1].attrs["groups"] == 8 and art.nodes[2].attrs["activation"] == "relu"
    assert art.nodes[-1].quant == Quant(8, 128, 0.25)  # signed 8-bit: zero point 2^7
    assert len(imp.notes) == 1 and "half to even" in imp.notes[0]  # the head's ROUND only

    img = rng.integers(0, 256, art.input_shape).astype(np.uint8)
    mw = ModelWrapper(model).transform(InferShapes())
    ctx = execute_onnx(mw, {"inp": _real(img, art.input_quant)}, return_full_exec_context=True)
    ref = run_network(art, img, keep_all=True)
    ties = 0
    for n, pre in zip(art.nodes[:3], ["c1_relu", "c2_relu", "res_relu"], strict=True):
        y = ctx[pre] / np.float32(n.quant.scale)
        ties += int((y - np.floor(y) == 0.5).sum())
        np.testing.assert_array_equal(ref[n.name], _codes(ctx[n.name.split("/")[0]], n.quant),
                                      err_msg=n.name)  # fmt: skip
    assert ties >= 10, f"the case must hold rounding ties (seed 21): {ties}"

    with EmuBackend(compile_model(art, AccelConfig())) as be:
        emu = be.run(img)
    head = art.outputs[0].node
    np.testing.assert_array_equal(emu[head], ref[head])
    y = ctx["head_acc"][0] / np.float32(0.25)  # the head Quant's input, in codes (+ 128)
    tie = y - np.floor(y) == 0.5
    assert tie.any() and (~tie).any()
    qonnx_codes = _codes(ctx["head"], art.nodes[-1].quant)
    np.testing.assert_array_equal(emu[head][~tie], qonnx_codes[~tie])
    np.testing.assert_array_equal(emu[head][tie], np.floor(y[tie] + 0.5) + 128)


def test_import_exact_roundings_give_no_note() -> None:
    """HALF_UP on unsigned activations is the contract's rounding exactly: nothing to say."""
    imp = import_model(_brevitas_net(np.random.default_rng(21), head_rounding="HALF_UP"))
    assert imp.notes == [
        "signed HALF_UP activation Quants (half away from zero) taken as the contract's round "
        "half up: exact negative ties may differ by one code"
    ]


def test_import_brevitas_float_scales_is_noted_and_close() -> None:
    """Brevitas' default float scales: the 16-bit multipliers approximate them (said in a
    note), so a code may differ by one near a rounding boundary; layer by layer (each fed
    qonnx's own input codes) at most one code, and rarely."""
    b = _Brevitas(np.random.default_rng(3))
    x = b.image()
    c1 = b.conv(x, "c1", cout=8, out_scale=0.1137)
    c2 = b.conv(c1, "c2", cout=8, out_scale=0.0731, act="linear", signed=1)
    model = b.model([c2])
    imp = import_model(model)
    assert "float scales approximated by the contract's 16-bit multipliers" in imp.notes
    art = imp.artifact
    mw = ModelWrapper(model).transform(InferShapes())
    img = np.random.default_rng(4).integers(0, 256, art.input_shape).astype(np.uint8)
    ctx = execute_onnx(mw, {"inp": _real(img, art.input_quant)}, return_full_exec_context=True)
    codes = {art.input_name: img, **{n.name: _codes(ctx[n.name], n.quant) for n in art.nodes}}
    for n in art.nodes:
        got = run_node(n, [codes[s].astype(np.uint8) for s in n.inputs],
                       [art.quant_of(s) for s in n.inputs]).astype(np.int64)  # fmt: skip
        diff = np.abs(got - codes[n.name])
        assert diff.max() <= 1 and diff.mean() < 0.01, (n.name, diff.max(), diff.mean())


# ---------------------------------------------------------------------------------------------
# import: what the contract cannot hold, one line each


def _edit(model: onnx.ModelProto, fn) -> onnx.ModelProto:  # noqa: ANN001
    m = onnx.ModelProto()
    m.CopyFrom(model)
    fn(m)
    return m


def _sigmoid_head(m: onnx.ModelProto) -> None:
    node = next(n for n in m.graph.node if n.op_type == "Relu")
    node.op_type = "Sigmoid"


def _set_init(name: str, value: np.ndarray):  # noqa: ANN202
    def fn(m: onnx.ModelProto) -> None:
        for t in m.graph.initializer:
            if t.name == name:
                t.CopyFrom(_f32(name, value))

    return fn


def _floor_act(m: onnx.ModelProto) -> None:
    node = next(n for n in m.graph.node if n.output[0] == "c1")
    next(a for a in node.attribute if a.name == "rounding_mode").s = b"FLOOR"


@pytest.mark.parametrize(
    "edit, message",
    [
        (_sigmoid_head, r"node 'c1_r' \(Sigmoid\): op Sigmoid is not supported"),
        (_set_init("q2_b", 16.0), r"node 'Quant_2' \(Quant\): 16-bit activations"),
        (_set_init("q2_s", np.full((1, 8, 1, 1), 0.125)), r"'Quant_2'.*one value per tensor"),
        (_set_init("c1_w0", 1.0), r"'c1_weight_quant'.*weight zero point 1"),
        (_floor_act, r"'Quant_2'.*rounding_mode FLOOR on an activation"),
    ],
    ids=["unsupported-op", "16-bit-act", "per-channel-act", "asymmetric-weights", "floor-act"],
)
def test_import_refuses_with_one_line(edit, message: str, tmp_path, capsys) -> None:  # noqa: ANN001
    model = _edit(_brevitas_net(np.random.default_rng(21)), edit)
    with pytest.raises(QonnxError, match=message):
        import_model(model)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert main(["import", str(path), str(tmp_path / "m.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "m.npz").exists()


def test_import_refuses_a_concat_of_differently_quantized_inputs() -> None:
    b = _Brevitas(np.random.default_rng(4))
    x = b.image()
    c1 = b.conv(x, "c1", cout=4, out_scale=2.0**-3)
    c2 = b.conv(x, "c2", cout=4, out_scale=2.0**-2)
    b.nodes.append(helper.make_node("Concat", [c1, c2], ["cat"], axis=1, name="cat"))
    with pytest.raises(QonnxError, match=r"node 'cat' \(Concat\): inputs quantized differently"):
        import_model(b.model(["cat"]))


def test_random_conv_depthwise_export_import() -> None:
    """A lone depthwise int8 conv with 4-bit activations both ways: exact, and back."""
    rng = np.random.default_rng(13)
    inq = Quant(8, 0, float(np.float32(1 / 255)))
    n = random_conv(rng, "dw", "image", (5, 9, 7), inq, depthwise=True, weight_format="int",
                    weight_bits=8, activation="leaky", out_bits=4)  # fmt: skip
    art = Artifact("dw", "image", (5, 9, 7), inq, [n], [Output("dw")])
    _check_exact(art, 13)
    assert _digest(import_model(export_model(art)).artifact) == _digest(art)


# ---------------------------------------------------------------------------------------------
# the global average pool (classifiers: conv body, avgpool, a 1x1 conv as the linear layer)


def _pool_net(rng: np.random.Generator, multiplier: int, shift: int) -> Artifact:
    """The image (64 channels of 2x2) averaged: ``round_shift(sum * M, S)``; with M = 1, S = 2
    a quarter of the channels are exact ties; then a 1x1 conv as the fully connected layer."""
    inq = Quant(8, 0, float(np.float32(1 / 255)))
    q = Quant(8, 3, float(np.float32(inq.scale * 4 * 2.0**shift / multiplier / 4)))
    pool = Node("pool", "avgpool", ["image"], {"multiplier": multiplier, "shift": shift}, q)
    fc = random_conv(rng, "fc", "pool", (64, 1, 1), q, out_channels=10, kernel=1,
                     weight_format="pow2", weight_bits=4, activation="linear")  # fmt: skip
    return Artifact("cls", "image", (64, 2, 2), inq, [pool, fc], [Output("fc")],
                    classes=[f"c{i}" for i in range(10)])  # fmt: skip


def test_export_avgpool_classifier_exact_with_ties_and_round_trip() -> None:
    rng = np.random.default_rng(31)
    art = _pool_net(rng, 1, 2)
    img = rng.integers(0, 256, art.input_shape).astype(np.uint8)
    total = img.astype(np.int64).sum(axis=(1, 2))
    assert int((total % 4 == 2).sum()) >= 8, "the case must hold ties (seed 31)"
    _check_exact(art, 31, img=img)
    assert _digest(import_model(export_model(art)).artifact) == _digest(art)
    _check_exact(_pool_net(rng, 40961, 18), 32)


def test_import_brevitas_global_average_pool() -> None:
    """Conv + Relu + Quant, GlobalAveragePool + Quant, a 1x1 conv head: power-of-two scales
    over an 8x8 map make the float graph exact, so the emulator equals qonnx code for code."""
    b = _Brevitas(np.random.default_rng(33), shape=(3, 8, 8))
    x = b.image()
    c1 = b.conv(x, "c1", cout=6, out_scale=2.0**-3)
    b.nodes.append(helper.make_node("GlobalAveragePool", [c1], ["gap"], name="gap"))
    b.ch["pool"] = 6
    pool = b.quant("gap", "pool", 2.0**-4, 0, 8)
    head = b.conv(pool, "head", cout=4, k=1, act="relu", out_scale=2.0**-3)
    model = b.model([head])
    art = import_model(model).artifact
    assert [n.op for n in art.nodes] == ["conv", "avgpool", "conv"]
    assert art.nodes[1].attrs == {"multiplier": 32768, "shift": 20}  # 2^-3 / (64 * 2^-4) = 2^-5
    rng = np.random.default_rng(34)
    mw = ModelWrapper(model).transform(InferShapes())
    for _ in range(3):
        img = rng.integers(0, 256, art.input_shape).astype(np.uint8)
        ctx = execute_onnx(mw, {"inp": _real(img, art.input_quant)}, return_full_exec_context=True)
        ref = run_network(art, img, keep_all=True)
        for n, t in zip(art.nodes, ["c1", "pool", "head"], strict=True):
            np.testing.assert_array_equal(ref[n.name], _codes(ctx[t], n.quant), err_msg=n.name)


def test_import_of_damaged_graphs_fails_with_one_line_only() -> None:
    """Deleted inputs and attributes, swapped operands, changed op types, cut or scaled
    constants, renamed outputs: each import either works or raises QonnxError (never another
    exception, which the command would show as a traceback)."""
    rng = np.random.default_rng(51)
    bases = [export_model(random_network(np.random.default_rng(1), height=16, width=12)),
             _brevitas_net(np.random.default_rng(21))]  # fmt: skip
    ops_ = ["Add", "Mul", "Conv", "Quant", "Relu", "Concat", "MaxPool", "Div", "Round", "Cast"]
    refused = 0
    for it in range(150):
        m = onnx.ModelProto()
        m.CopyFrom(bases[it % 2])
        n = m.graph.node[int(rng.integers(0, len(m.graph.node)))]
        r = int(rng.integers(0, 5))
        if r == 0 and n.input:
            del n.input[int(rng.integers(0, len(n.input)))]
        elif r == 1:
            n.op_type = str(rng.choice(ops_))
        elif r == 2 and n.attribute:
            del n.attribute[int(rng.integers(0, len(n.attribute)))]
        elif r == 3:
            t = m.graph.initializer[int(rng.integers(0, len(m.graph.initializer)))]
            a = numpy_helper.to_array(t)
            a = a.reshape(-1)[: max(1, a.size // 2)] if rng.random() < 0.5 else a * 3
            t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(a), t.name))
        elif len(n.input) > 1:
            n.input[0], n.input[1] = n.input[1], n.input[0]
        try:
            import_model(m)
        except QonnxError as e:
            assert "\n" not in str(e)
            refused += 1
    assert refused > 50, f"seed 51: only {refused} of 150 damaged graphs refused"
