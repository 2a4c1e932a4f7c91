"""Hardware-aware mixed precision (quant.knapsack, quant.hessian, quant.plan, quant.mixed): the
knapsack greedy against the exact DP, the convex hull, the Hutchinson trace on a known Hessian,
plan validation and application, and plan cycles against the compiler's descriptors.

Random instances use fixed seeds, printed in every assertion message."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from models.darknet import Darknet, parse_cfg_text
from models.paths import REPO_ROOT, data_dir
from quant import knapsack
from quant.hessian import conv_traces, hutchinson_traces, quant_error
from quant.model import LayerFormat, QuantDetector
from quant.plan import FORMAT, VERSION, PlanError, detector_kwargs, layer_kinds, load, validate
from quant.plan import write as write_plan

torch.set_num_threads(1)  # shared CI machine: avoid thread-pool thrashing

# tests/data/tiny.cfg with its shortcut made relu (the contract's add is linear or relu), as
# tests/test_quant_export.py: conv0 dense, conv2 depthwise, conv3 dense, add4, conv7, conv8,
# conv12 (the head); route6 ties add4's group to conv3's, route10 conv8's to conv0's.
TINY_CFG = (
    (Path(__file__).parent / "data" / "tiny.cfg")
    .read_text()
    .replace("from=-3\nactivation=leaky", "from=-3\nactivation=relu", 1)
)
needs_data = pytest.mark.skipif(
    not (data_dir() / "weights" / "darknet" / "yolo-fastest-voc.cfg").is_file(),
    reason="darknet cfgs not found (run make data)",
)
PLANS = sorted((REPO_ROOT / "plans").glob("*-mixed.json"))


def tiny_net() -> Darknet:
    torch.manual_seed(0)
    return Darknet(parse_cfg_text(TINY_CFG))


# ----------------------------------------------------------------------------------------------
# quant.knapsack


def random_groups(rng: np.random.Generator, n_groups: int, max_opts: int, max_cost: int):
    return [
        [(int(rng.integers(0, max_cost + 1)), float(rng.random()))
         for _ in range(int(rng.integers(1, max_opts + 1)))]
        for _ in range(n_groups)
    ]  # fmt: skip


def test_lower_hull_properties() -> None:
    for seed in range(300):
        rng = np.random.default_rng(seed)
        g = random_groups(rng, 1, 8, 20)[0]
        h = lower_hull_checked(g, seed)
        # every option lies on or above the hull: for any slope lam >= 0 the option minimising
        # loss + lam * cost is on the hull (the supporting-line definition of the lower hull)
        for lam in (0.0, 0.01, 0.1, 1.0, 10.0, 1e6):
            best_all = min(lo + lam * c for c, lo in g)
            best_hull = min(g[i][1] + lam * g[i][0] for i in h)
            assert math.isclose(best_all, best_hull, rel_tol=1e-12, abs_tol=1e-12), (
                f"seed {seed}, lambda {lam}: an option below the hull {h} of {g}"
            )


def lower_hull_checked(g, seed: int) -> list[int]:
    h = knapsack.lower_hull(g)
    assert h and len(set(h)) == len(h), f"seed {seed}: hull {h} of {g}"
    cs, ls = [g[i][0] for i in h], [g[i][1] for i in h]
    assert all(a < b for a, b in zip(cs, cs[1:], strict=False)), f"seed {seed}: costs {cs}"
    assert all(a > b for a, b in zip(ls, ls[1:], strict=False)), f"seed {seed}: losses {ls}"
    # strictly convex: the loss saved per unit cost falls along the hull
    eff = [(ls[k] - ls[k + 1]) / (cs[k + 1] - cs[k]) for k in range(len(h) - 1)]
    assert all(a > b for a, b in zip(eff, eff[1:], strict=False)), f"seed {seed}: slopes {eff}"
    # ends: the cheapest option (least loss among those) and the least loss (cheapest of them)
    assert (cs[0], ls[0]) == min(g), f"seed {seed}: first hull point {h[0]} of {g}"
    assert (ls[-1], cs[-1]) == min((lo, c) for c, lo in g), f"seed {seed}: last of {h} in {g}"
    return h


def test_lower_hull_drops_dominated_and_concave_points() -> None:
    g = [(0, 10.0), (1, 10.0), (2, 4.0), (4, 3.9), (5, 0.0), (3, 6.0), (6, 1.0)]
    # (1, 10) dominated by (0, 10); (3, 6) costs more than (2, 4) and loses more; (4, 3.9)
    # lies above the segment (2, 4) -> (5, 0); (6, 1) dominated by (5, 0)
    assert knapsack.lower_hull(g) == [0, 2, 4]


def test_greedy_never_beats_dp_and_stays_within_its_gap() -> None:
    checked = 0
    for seed in range(400):
        rng = np.random.default_rng(1000 + seed)
        groups = random_groups(rng, int(rng.integers(1, 6)), 4, 12)
        lo = sum(min(c for c, _ in g) for g in groups)
        hi = sum(max(c for c, _ in g) for g in groups)
        budget = int(rng.integers(lo, hi + 1))
        exact = knapsack.dp(groups, budget)
        gr = knapsack.greedy(groups, budget)
        assert exact is not None and gr is not None, f"seed {1000 + seed}: feasible budget"
        msg = f"seed {1000 + seed}, budget {budget}, groups {groups}: greedy {gr}, dp {exact}"
        assert gr.cost <= budget and exact.cost <= budget, msg
        assert gr.loss >= exact.loss - 1e-9, msg  # the DP is optimal
        assert gr.lp_loss <= exact.loss + 1e-9, msg  # the LP relaxation bounds the optimum
        assert gr.loss <= gr.lp_loss + gr.gap + 1e-9, msg  # the greedy's stated gap holds
        if gr.gap == 0.0:
            assert math.isclose(gr.loss, exact.loss, abs_tol=1e-9), msg
        checked += gr.loss > exact.loss + 1e-9  # instances where the greedy is suboptimal
    assert checked > 0, "no instance where the greedy is suboptimal: the test checks nothing"


def test_greedy_is_optimal_at_hull_vertices() -> None:
    """A budget equal to the cost after the first k upgrades (in falling efficiency) is a vertex
    of the LP relaxation: the greedy must be exactly optimal there, with no gap."""
    for seed in range(200):
        rng = np.random.default_rng(5000 + seed)
        groups = random_groups(rng, int(rng.integers(1, 6)), 5, 15)
        ups = []
        for g in groups:
            h = knapsack.lower_hull(g)
            for a, b in zip(h, h[1:], strict=False):
                dc, dl = g[b][0] - g[a][0], g[a][1] - g[b][1]
                ups.append((dl / dc, dc))
        ups.sort(key=lambda u: -u[0])
        budget = sum(g[knapsack.lower_hull(g)[0]][0] for g in groups)
        for k in range(len(ups) + 1):
            if k:
                budget += ups[k - 1][1]
            exact = knapsack.dp(groups, budget)
            gr = knapsack.greedy(groups, budget)
            msg = f"seed {5000 + seed}, vertex {k}, budget {budget}: greedy {gr}, dp {exact}"
            assert gr is not None and exact is not None, msg
            assert math.isclose(gr.loss, exact.loss, abs_tol=1e-9), msg
            assert gr.gap == 0.0 and math.isclose(gr.lp_loss, gr.loss, abs_tol=1e-9), msg


def test_infeasible_budgets_and_dp_scaled() -> None:
    groups = [[(3, 1.0), (5, 0.0)], [(2, 1.0), (4, 0.5)]]
    assert knapsack.greedy(groups, 4.9) is None and knapsack.dp(groups, 4) is None
    for seed in range(100):
        rng = np.random.default_rng(9000 + seed)
        groups = [[(float(c) + rng.random(), lo) for c, lo in g]
                  for g in random_groups(rng, 4, 4, 10)]  # fmt: skip
        budget = sum(max(c for c, _ in g) for g in groups) * 0.7
        s = knapsack.dp_scaled(groups, budget, units=400)
        exact = knapsack.dp_scaled(groups, budget, units=40000)
        if s is None:
            continue
        msg = f"seed {9000 + seed}: {s} vs {exact}"
        assert s.cost <= budget + 1e-9, msg  # costs rounded up: always feasible
        gr = knapsack.greedy(groups, budget)
        assert gr is not None and gr.lp_loss <= s.loss + 1e-9, msg


# ----------------------------------------------------------------------------------------------
# quant.hessian


def test_hutchinson_exact_on_a_diagonal_hessian() -> None:
    # Rademacher v_i^2 = 1: with a diagonal Hessian every sample (so the mean) is the trace
    d = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=torch.float64)
    a = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(2, dtype=torch.float64, requires_grad=True)

    def loss() -> torch.Tensor:
        x = torch.cat([a.flatten()[:3], b, a.flatten()[3:]])
        return 0.5 * (torch.cat([x[:5] * d, x[5:] * 7.0]) * x).sum()

    t = hutchinson_traces(loss, {"a": a, "b": b}, samples=3, seed=3)
    assert t["a"] == pytest.approx(1 + 2 + 3 + 3 * 7.0, abs=1e-12), f"seed 3: {t}"
    assert t["b"] == pytest.approx(4 + 5.0, abs=1e-12), f"seed 3: {t}"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hutchinson_converges_on_a_known_quadratic(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    n1, n2 = 6, 9
    m = torch.randn(n1 + n2, n1 + n2, generator=g, dtype=torch.float64)
    h = m @ m.T / (n1 + n2) + torch.diag(torch.rand(n1 + n2, generator=g, dtype=torch.float64))
    p = torch.zeros(n1, requires_grad=True, dtype=torch.float64)
    q = torch.zeros(n2, requires_grad=True, dtype=torch.float64)

    def loss() -> torch.Tensor:
        x = torch.cat([p, q]) + 0.3  # away from 0: the loss is not only its Hessian term
        return 0.5 * x @ h @ x + x.sum()

    samples = 3000
    t = hutchinson_traces(loss, {"p": p, "q": q}, samples=samples, seed=seed)
    for name, sl in (("p", slice(0, n1)), ("q", slice(n1, n1 + n2))):
        exact = float(torch.diagonal(h)[sl].sum())
        # per-sample variance of v_l^T (H v)_l: each off-diagonal term of the block's rows once
        # (twice inside the block: H_ij v_i v_j and H_ji v_j v_i are the same product)
        off = h[sl].clone()
        off[:, sl] += off[:, sl].T
        off[:, sl].fill_diagonal_(0)
        rows = torch.ones(n1 + n2, dtype=torch.bool)
        rows[sl] = False
        var = float((h[sl][:, rows] ** 2).sum() + (torch.triu(off[:, sl], 1) ** 2).sum())
        tol = 5 * math.sqrt(var / samples)
        assert abs(t[name] - exact) < tol, f"seed {seed}, {name}: {t[name]} vs {exact} +- {tol}"
    t2 = hutchinson_traces(loss, {"p": p, "q": q}, samples=samples, seed=seed)
    assert t == t2, f"seed {seed}: not deterministic"


def test_conv_traces_restore_the_detector() -> None:
    qdet = QuantDetector(tiny_net())
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    flags = {n: p.requires_grad for n, p in qdet.named_parameters()}
    t = conv_traces(qdet, x, samples=4, seed=4, progress=False)
    assert set(t) == {n.name for n in qdet.conv_nodes()}
    assert qdet.mode == "fake"
    assert flags == {n: p.requires_grad for n, p in qdet.named_parameters()}
    # the Gauss-Newton trace of the head's own weights is positive (seed 4)
    assert t["conv12"] > 0, f"seed 4: {t}"
    assert t == conv_traces(qdet, x, samples=4, seed=4, progress=False), "seed 4: not repeatable"


def test_quant_error_uses_the_real_pow2x2_set() -> None:
    from sw.contract.codes import pow2x2_values

    vals = torch.from_numpy(pow2x2_values().astype(np.float32))
    g = torch.Generator().manual_seed(7)
    # every channel holds only pow2x2 values times 2^-6, the largest (96) included
    idx = torch.randint(0, len(vals), (8, 4, 3, 3), generator=g)
    w = vals[idx] * 2.0**-6
    w[:, 0, 0, 0] = 96 * 2.0**-6
    assert quant_error(w, "pow2x2", 8) < 1e-10 * float((w**2).sum()), "seed 7"
    assert quant_error(w, "pow2", 4) > 1e-3 * float((w**2).sum()), "seed 7"
    r = torch.randn(16, 8, 3, 3, generator=g)
    e = [quant_error(r, f, b) for f, b in (("pow2", 3), ("pow2", 4), ("pow2x2", 8))]
    assert e[0] > e[1] > e[2] > 0, f"seed 7: errors pow2-3, pow2-4, pow2x2 {e}"


# ----------------------------------------------------------------------------------------------
# quant.plan


def tiny_plan(**layers: dict) -> dict:
    base = {"conv0": {"weights": "pow2x2", "bits": 8, "act_bits": 4},
            "conv2": {"weights": "int", "bits": 8}, "add4": {"act_bits": 4}}  # fmt: skip
    base.update(layers)
    return {"format": FORMAT, "version": VERSION, "model": "tiny", "size": 64,
            "layers": base}  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda p: p["layers"].update(conv99={"act_bits": 8}),
         "plan: layers.conv99: no such layer in tiny"),
        (lambda p: p["layers"]["conv0"].update(weights="pow3"),
         "plan: layers.conv0.weights: 'pow3' is not allowed for a dense conv"),
        (lambda p: p["layers"]["conv0"].update(weights="int", bits=8),
         "plan: layers.conv0.weights: 'int' is not allowed for a dense conv"),
        (lambda p: p["layers"]["conv0"].update(weights="pow2", bits=5),
         "plan: layers.conv0.bits: 5 bits of pow2 is not allowed for a dense conv"),
        (lambda p: p["layers"]["conv0"].update(bits="4"),
         "plan: layers.conv0.bits: '4' bits of pow2x2 is not allowed"),
        (lambda p: p["layers"]["conv2"].update(weights="pow2x2", bits=8),
         "plan: layers.conv2.weights: 'pow2x2' is not allowed for a depthwise conv"),
        (lambda p: p["layers"]["conv3"].update(act_bits=6),
         "plan: layers.conv3.act_bits: 6, must be 4 or 8"),
        (lambda p: p["layers"]["add4"].update(weights="pow2", bits=4),
         "plan: layers.add4: an add has no weights"),
        (lambda p: p["layers"]["conv3"].update(weights="pow2"),
         "plan: layers.conv3: weights and bits go together"),
        (lambda p: p["layers"]["conv3"].update(bitz=4),
         "plan: layers.conv3.bitz: unknown field"),
        (lambda p: p.update(model="yolo-fastest-voc"),
         "plan: model: the plan is for 'yolo-fastest-voc', not 'tiny'"),
        (lambda p: p.update(version=2), "plan: version: 2, this tool reads version 1"),
        (lambda p: p.update(format="pow2det.artifact"), "plan: format: 'pow2det.artifact'"),
    ],
)  # fmt: skip
def test_plan_validation_errors(edit, expected: str) -> None:
    kinds = layer_kinds(tiny_net().cfg)
    plan = tiny_plan(conv3={"act_bits": 8})
    assert validate(plan, kinds, "tiny") is plan
    edit(plan)
    with pytest.raises(PlanError) as e:
        validate(plan, kinds, "tiny")
    msg = str(e.value)
    assert msg.startswith(expected), msg
    assert "\n" not in msg, msg


def test_plan_file_round_trip_and_file_errors(tmp_path: Path) -> None:
    kinds = layer_kinds(tiny_net().cfg)
    plan = tiny_plan()
    plan["predicted"] = {"fps_200mhz": 1.0}
    write_plan(tmp_path / "p.json", plan)
    assert load(tmp_path / "p.json", kinds, "tiny") == plan
    text = (tmp_path / "p.json").read_text()
    assert text.count("\n") >= len(plan["layers"]) + 4, "one layer per line"
    (tmp_path / "bad.json").write_text(text.replace('"version": 1,', '"version": 1'))
    with pytest.raises(PlanError, match=r"bad\.json: not JSON: line \d+ column \d+"):
        load(tmp_path / "bad.json", kinds)
    with pytest.raises(PlanError, match=r"missing\.json: cannot read"):
        load(tmp_path / "missing.json", kinds)


def test_plan_sets_formats_and_act_bits_of_a_detector() -> None:
    net = tiny_net()
    plan = tiny_plan(conv7={"weights": "pow2", "bits": 3}, conv12={"act_bits": 4})
    formats, acts = detector_kwargs(validate(plan, layer_kinds(net.cfg), "tiny"))
    qdet = QuantDetector(net, LayerFormat(("pow2", 4), ("pow2", 4), layers=formats), 8,
                         head_bits=8, act_bits_of=acts)  # fmt: skip
    want = {"conv0": ("pow2x2", 8), "conv2": ("int", 8), "conv3": ("pow2", 4),
            "conv7": ("pow2", 3), "conv8": ("pow2", 4), "conv12": ("pow2", 4)}  # fmt: skip
    for name, (fmt, bits) in want.items():
        n = qdet.by_name[name]
        assert (n.attrs["weight_format"], n.attrs["weight_bits"]) == (fmt, bits), name
        assert (qdet.wq[name].fmt, qdet.wq[name].bits) == (fmt, bits), name
    bits = {n.name: qdet.aq[n.group].bits for n in qdet.nodes if n.op in ("conv", "add")}
    # a tied group takes its members' largest request; unlisted members request nothing
    # (route6 ties add4 to conv3, route10 conv0 to conv8)
    assert bits["add4"] == bits["conv3"] == 4, bits
    assert bits["conv12"] == 8, "the head output stays 8-bit"
    assert bits["conv2"] == bits["conv7"] == 8, bits
    assert bits["conv0"] == bits["conv8"] == 4, bits
    plan["layers"]["conv8"] = {"act_bits": 8}
    _, acts = detector_kwargs(plan)
    qdet = QuantDetector(net, LayerFormat(layers=formats), 8, head_bits=8, act_bits_of=acts)
    assert qdet.aq[qdet.by_name["conv0"].group].bits == 8, "a tied group takes the largest"
    assert qdet.wq["conv0"].fmt == "pow2x2"


# ----------------------------------------------------------------------------------------------
# plans of the real models: their cycles against the compiler's descriptors


@needs_data
@pytest.mark.parametrize("path", PLANS, ids=[p.name for p in PLANS])
def test_plan_cycles_equal_the_compiled_layers(path: Path) -> None:
    from quant import mixed
    from quant.export import to_artifact
    from quant.zoo import build, voc_names
    from sw.compiler import compile_model
    from sw.contract.cycles import layer_cycles

    plan = json.loads(path.read_text())
    model, size = plan["model"], plan["size"]
    cfg, mem = mixed.board_memory(plan["budget"]["board"])
    formats, _ = detector_kwargs(plan)
    cm = mixed.cost_model(model, size)
    pred = plan["predicted"]
    assert cm.cycles(formats) == pred["cycles"], f"{path.name}: stale plan (cost model changed)"
    assert cm.cycles(cm.uniform(("pow2", 4), ("pow2", 4))) == pred["w4_cycles"], path.name
    if "fraction_of_w4" in plan["budget"]:
        assert pred["fps_fraction_of_w4"] >= plan["budget"]["fraction_of_w4"], path.name

    def compiled(plan_or_none: dict | None) -> dict[str, object]:
        _, qdet = build(model, 4, "pow2", plan=plan_or_none)
        art = to_artifact(qdet, size, name="t", classes=voc_names())
        p = compile_model(art, cfg)
        out = {li.name: layer_cycles(p.descriptors[li.descriptor].as_dict(), cfg, mem)
               for li in p.layers if li.descriptor is not None}  # fmt: skip
        assert len(out) == len(p.descriptors)
        return out

    mixed_cyc, w4_cyc = compiled(plan), compiled(None)
    assert sum(c.total for c in mixed_cyc.values()) == pred["cycles"], path.name
    assert sum(c.total for c in w4_cyc.values()) == pred["w4_cycles"], path.name
    n2 = 0
    for name, spec in plan["layers"].items():
        if spec.get("weights") == "pow2x2":
            n2 += 1
            assert mixed_cyc[name].dense == 2 * w4_cyc[name].dense > 0, name
            assert mixed_cyc[name].total > w4_cyc[name].total, name
    assert n2 > 0, f"{path.name}: no pow2x2 layer"
    # a conv the plan leaves at pow2-4 costs what it costs in the all-pow2-4 model, whatever
    # its activation bits: activations are bytes in DDR (the cycle model has no act bits)
    same = [
        n for n, sp in plan["layers"].items() if (sp.get("weights"), sp.get("bits")) == ("pow2", 4)
    ]
    assert same, path.name
    for name in same:
        assert mixed_cyc[name].total == w4_cyc[name].total, name


def test_solve_weights_fits_the_budget_and_beats_the_greedy_alone() -> None:
    from quant import mixed

    dp_won = 0
    for seed in range(40):
        rng = np.random.default_rng(7000 + seed)
        layers = {"add1": mixed.LayerCost("add1", "add", {("-", 0): 500}, {}, 10)}
        losses = {}
        for j in range(12):
            opts = [("pow2", 3), ("pow2", 4), ("pow2x2", 8)]
            c = int(rng.integers(1000, 50000))
            cyc = {opts[0]: c, opts[1]: c, opts[2]: 2 * c - int(rng.integers(0, 500))}
            wb = {o: int(rng.integers(10, 100)) for o in opts}
            layers[f"conv{j}"] = mixed.LayerCost(f"conv{j}", "dense", cyc, wb, 10)
            e = sorted(rng.random(3), reverse=True)
            losses[f"conv{j}"] = dict(zip(opts, e, strict=True))
        cm = mixed.CostModel(layers, 200e6, "test")
        lo = cm.cycles(cm.uniform(("pow2", 4), ("pow2", 4)))
        hi = cm.cycles(cm.uniform(("pow2x2", 8), ("pow2", 4)))
        target = float(rng.uniform(lo * 1.05, hi))
        formats, sol = mixed.solve_weights(cm, losses, target, 0.01)
        msg = f"seed {7000 + seed}, target {target:.0f}: {sol}"
        assert cm.cycles(formats) <= target, msg
        assert math.isclose(sol.loss, sum(losses[n][f] for n, f in formats.items())), msg
        assert sol.lp_loss <= sol.loss + 1e-12 <= sol.lp_loss + sol.gap + 2e-12, msg
        dp_won += sol.solver == "dp"
    assert dp_won > 0, "the DP never beat the greedy: its branch is untested"


@needs_data
@pytest.mark.parametrize("path", PLANS, ids=[p.name for p in PLANS])
def test_committed_plan_is_what_its_command_makes(path: Path, tmp_path: Path) -> None:
    """budget.command reproduces the plan (weights only: the activation sensitivities of a W4A4
    plan take minutes; the cached Hessian traces in plans/ make the rest seconds)."""
    import shlex

    from quant import mixed

    plan = json.loads(path.read_text())
    argv = shlex.split(plan["budget"]["command"])
    assert argv[:3] == ["python", "-m", "quant.mixed"], plan["budget"]["command"]
    argv = argv[3:]
    argv[argv.index("--out") + 1] = str(tmp_path / "p.json")
    if "--act-avg-bits" in argv:  # same weights budget, 8-bit activations
        i = argv.index("--act-avg-bits")
        del argv[i : i + 2]
    traces = REPO_ROOT / "plans" / f"{plan['model']}.traces.json"
    if traces.is_file():  # a copy: a stale cache is recomputed into tmp, not into plans/
        (tmp_path / "traces.json").write_text(traces.read_text())
    mixed.main([*argv, "--traces", str(tmp_path / "traces.json")])
    new = json.loads((tmp_path / "p.json").read_text())
    weights = {n: (s.get("weights"), s.get("bits")) for n, s in plan["layers"].items()}
    assert {n: (s.get("weights"), s.get("bits")) for n, s in new["layers"].items()} == weights
    assert new["predicted"]["cycles"] == plan["predicted"]["cycles"], path.name
