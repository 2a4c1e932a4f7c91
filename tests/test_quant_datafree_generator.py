"""quant.datafree --generator (quant/generator.py): the BN-statistics loss, generator training
on a tiny random darknet, bit-identical resuming, and the command end to end at toy sizes."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from darknet_nets import random_bn

from models.darknet import Darknet, parse_cfg_text
from models.paths import data_dir
from quant.datafree import bn_statistics_loss
from quant.generator import Generator, GeneratorSource, class_balance, train_generator, yolo_specs
from sw import artifact as artmod

torch.set_num_threads(1)  # shared CI machine: avoid thread-pool thrashing

TINY_CFG = (Path(__file__).parent / "data" / "tiny.cfg").read_text()
ROOT = Path(__file__).resolve().parents[1]
PLAN = ROOT / "plans" / "yolo-fastest-voc-w4a8-mixed.json"
needs_data = pytest.mark.skipif(
    not (data_dir() / "weights" / "darknet" / "yolo-fastest-voc.weights").is_file(),
    reason="darknet weights not found (run make data)",
)


def tiny_net(seed: int) -> Darknet:
    """tests/data/tiny.cfg with random weights and random stored BN statistics."""
    torch.manual_seed(seed)
    net = Darknet(parse_cfg_text(TINY_CFG))
    random_bn(net, seed)
    return net.eval().requires_grad_(False)


def store_batch_statistics(net: Darknet, x: torch.Tensor) -> None:
    """Make ``x``'s batch statistics the stored ones, at every BN layer in one pass (a conv's
    forward hook runs before its BN normalises, so later layers see the new statistics)."""
    hooks = []
    for layer in net.conv_layers:
        if layer.bn is None:
            continue

        def hook(_m: object, _i: object, y: torch.Tensor, bn: torch.nn.Module = layer.bn) -> None:
            bn.running_mean.copy_(y.mean(dim=(0, 2, 3)))
            bn.running_var.copy_(y.var(dim=(0, 2, 3), unbiased=False))

        hooks.append(layer.conv.register_forward_hook(hook))
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()


@pytest.mark.parametrize("seed", [0, 1])
def test_bn_loss_is_zero_at_the_stored_statistics_and_grows_away(seed: int) -> None:
    net = tiny_net(seed)
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    assert float(bn_statistics_loss(net, x)) > 1e-3, f"seed {seed}: random stats already match"
    store_batch_statistics(net, x)
    with torch.no_grad():
        at = float(bn_statistics_loss(net, x))
        # contrast reduced step by step: the batch statistics move away from the stored ones
        away = [float(bn_statistics_loss(net, 0.5 + (x - 0.5) * s)) for s in (0.8, 0.5, 0.2)]
    assert at < 1e-10, f"seed {seed}: BN loss {at} at the stored statistics"
    assert at < away[0] < away[1] < away[2], f"seed {seed}: losses {at} then {away}"


def test_class_balance_is_zero_when_balanced_and_log_c_for_one_class() -> None:
    net = tiny_net(0)
    specs = yolo_specs(net)  # one head: 2 anchors x (5 + 4 classes)
    h = torch.full((2, 18, 4, 4), -20.0)
    h.view(2, 2, 9, 4, 4)[:, :, 4] = 0.0  # objectness 0.5 everywhere
    one = h.clone()
    one.view(2, 2, 9, 4, 4)[:, :, 5] = 5.0  # class 0 only
    both = h.clone()
    both.view(2, 2, 9, 4, 4)[:, :, 5:] = 5.0  # every class equally
    assert abs(float(class_balance([both], specs))) < 1e-6
    assert abs(float(class_balance([one], specs)) - np.log(4)) < 1e-3


def test_generator_steps_reduce_the_bn_loss(tmp_path: Path) -> None:
    """Stored statistics that images can have (those of a batch of uniform noise; random ones
    may be out of reach of any input): 40 steps bring the BN loss of unseen latents down."""
    seed = 3
    net = tiny_net(seed)
    store_batch_statistics(
        net, torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    )
    torch.manual_seed(seed)
    gen = Generator(64, z_dim=16, width=16, ups=2)
    probe = GeneratorSource(gen, seed=seed + 100)  # fixed latents, not the training ones
    before = float(bn_statistics_loss(net, probe.batch(8)))
    r = train_generator(net, gen, 40, 8, tmp_path / "g.pt", lr=1e-2, seed=seed,
                        div_weight=0.0, ckpt_every=100)  # fmt: skip
    after = float(bn_statistics_loss(net, GeneratorSource(gen, seed=seed + 100).batch(8)))
    assert after < 0.1 * before, f"seed {seed}: BN loss {before} -> {after} in 40 steps"
    first, last = r["bn_loss_first_last_20"]
    assert last < first, f"seed {seed}: training BN loss {first} -> {last}"
    ck = torch.load(tmp_path / "g.pt", weights_only=True)  # plain types only
    assert ck["step"] == 40 and len(ck["losses"]) == 40


def test_generator_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    seed = 5
    net = tiny_net(seed)

    def run(path: Path, steps: int) -> Generator:
        torch.manual_seed(seed + 1)  # a fresh process: the same initialisation
        gen = Generator(64, z_dim=16, width=16, ups=2)
        train_generator(net, gen, steps, 4, path, lr=1e-2, seed=seed, cls_weight=0.5,
                        ckpt_every=3)  # fmt: skip
        return gen

    whole = run(tmp_path / "a.pt", 6)
    run(tmp_path / "b.pt", 3)  # "killed" after step 3 (its checkpoint)
    resumed = run(tmp_path / "b.pt", 6)
    a, b = whole.state_dict(), resumed.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), f"seed {seed}: {k} differs after resuming"
    la = torch.load(tmp_path / "a.pt", weights_only=True)["losses"]
    lb = torch.load(tmp_path / "b.pt", weights_only=True)["losses"]
    assert la == lb, f"seed {seed}: losses differ"
    # the image stream resumes too: a source started at k continues one that made k batches
    s1, s2 = GeneratorSource(whole, seed=seed), GeneratorSource(whole, seed=seed, start=2)
    s1.batch(4), s1.batch(4)
    assert torch.equal(s1.batch(4), s2.batch(4)), f"seed {seed}: stream does not resume"


def test_a_foreign_generator_checkpoint_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "g.pt"
    torch.save({"model": {}, "step": 1}, path)
    with pytest.raises(SystemExit) as exc:
        train_generator(tiny_net(0), Generator(64, z_dim=16, width=16, ups=2), 2, 2, path)
    assert exc.value.code == 2
    assert "not a generator checkpoint" in capsys.readouterr().err


def _args(out: Path, steps: int = 2) -> list[str]:
    return ["--generator", "--device", "cpu", "--size", "64", "--out", str(out), "--images",
            "2", "--gen-size", "64", "--gen-steps", "2", "--gen-batch", "2", "--iters", "1",
            "--steps", str(steps), "--batch", "2", "--ckpt-every", "1", "--plan",
            str(PLAN)]  # fmt: skip


def _digest(path: Path) -> str:
    art = artmod.load(path)
    h = hashlib.sha256()
    for node in art.nodes:
        h.update(repr((node.name, node.op, node.attrs, node.quant.to_json())).encode())
        for k in sorted(node.tensors):
            h.update(k.encode() + np.ascontiguousarray(node.tensors[k]).tobytes())
    return h.hexdigest()


@needs_data
def test_command_writes_an_artifact_and_resumes_a_killed_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from quant import datafree, generator

    whole = tmp_path / "a" / "d.npz"
    whole.parent.mkdir()
    datafree.main(_args(whole, steps=3))
    art = artmod.load(whole)
    md = art.metadata
    assert art.input_shape == (3, 64, 64)
    assert md["method"].startswith("datafree-generator") and md["method"].endswith("distillation")
    assert md["plan"] == str(PLAN) and md["generator"]["steps"] == 2 and md["device"] == "cpu"
    ck = Path(str(whole) + ".ckpt.pt")
    assert torch.load(Path(str(ck) + ".gen.pt"), weights_only=True)["step"] == 2
    assert torch.load(Path(str(ck) + ".ft.pt"), weights_only=True)["step"] == 3

    # the same run killed at its second distillation batch, then the same command again
    killed = tmp_path / "b" / "d.npz"
    killed.parent.mkdir()
    real = generator.GeneratorSource.batch
    calls = {"n": 0}

    def dies(self: generator.GeneratorSource, n: int) -> torch.Tensor:
        if self.seed == 2:  # the distillation stream (seed 0 + 2)
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt
        return real(self, n)

    monkeypatch.setattr(generator.GeneratorSource, "batch", dies)
    with pytest.raises(KeyboardInterrupt):
        datafree.main(_args(killed, steps=3))
    monkeypatch.setattr(generator.GeneratorSource, "batch", real)
    assert not killed.exists()
    assert torch.load(Path(str(killed) + ".ckpt.pt.ft.pt"), weights_only=True)["step"] == 1
    datafree.main(_args(killed, steps=3))
    assert _digest(killed) == _digest(whole), "seed 0: the resumed run's integers differ"


@needs_data
def test_command_refuses_to_overwrite_an_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from quant import datafree

    plan = tmp_path / "plan.json"
    shutil.copy(PLAN, plan)
    before = plan.read_bytes()
    args = _args(plan)
    args[args.index("--plan") + 1] = str(plan)
    with pytest.raises(SystemExit) as exc:
        datafree.main(args)
    assert exc.value.code == 2 and "is an input" in capsys.readouterr().err
    assert plan.read_bytes() == before
    out = tmp_path / "d.npz"
    with pytest.raises(SystemExit) as exc:  # the artifact onto its own checkpoint
        datafree.main([*_args(out), "--checkpoint", str(out)])
    assert exc.value.code == 2 and "is an input" in capsys.readouterr().err
    assert not out.exists()
