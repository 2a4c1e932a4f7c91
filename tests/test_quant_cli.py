"""The quant commands end to end at toy sizes (seconds), one test each: they run, write a loadable
artifact with provenance metadata, and resume from their checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.paths import data_dir
from sw import artifact as artmod

torch.set_num_threads(1)  # shared CI machine: avoid thread-pool thrashing

pytestmark = pytest.mark.skipif(
    not (data_dir() / "weights" / "darknet" / "yolo-fastest-voc.weights").is_file()
    or not (data_dir() / "unlabeled" / "imagenet-1k-sample").is_dir(),
    reason="darknet weights / unlabeled images not found (run make data)",
)


def test_ptq_command(tmp_path: Path) -> None:
    from quant import ptq

    out = tmp_path / "p.npz"
    args = ["--model", "yolo-fastest-voc", "--dw-format", "int8", "--size", "64", "--out",
            str(out), "--calib", "4", "--calib-size", "64", "--iters", "2"]  # fmt: skip
    ptq.main(args)
    art = artmod.load(out)
    assert art.input_shape == (3, 64, 64)
    assert art.metadata["method"].startswith("ptq")
    assert "--iters" in art.metadata["command"]
    ck = torch.load(Path(str(out) + ".ckpt.pt"), weights_only=True)
    assert ck["state"]["done"] == sum(1 for n in art.nodes if n.op == "conv")
    ptq.main(args)  # resumes: nothing left to reconstruct, exports again
    assert artmod.load(out).metadata["method"].startswith("ptq")


@pytest.fixture(scope="module")
def qat_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short quant.qat run with 4-bit activations (shared: the sensitivity and continuation
    tests start from its checkpoint); the artifact's path."""
    from quant import qat

    out = tmp_path_factory.mktemp("qat") / "q.npz"
    qat.main(["--size", "64", "--out", str(out), "--steps", "2", "--batch", "2", "--crop", "64",
              "--images", "8", "--ckpt-every", "1", "--act-bits", "4", "--calib", "2"])  # fmt: skip
    return out


def test_qat_command(qat_out: Path) -> None:
    art = artmod.load(qat_out)
    assert art.node(art.nodes[0].name).quant.bits == 4
    assert torch.load(Path(str(qat_out) + ".ckpt.pt"), weights_only=True)["step"] == 2


def test_sensitivity_command(
    qat_out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Where that model loses: per-tensor activation sensitivity of its checkpoint."""
    from quant import sensitivity

    png = tmp_path / "sens.png"
    sensitivity.main(["--checkpoint", str(qat_out) + ".ckpt.pt", "--act-bits", "4", "--images",
                      "2", "--crop", "64", "--top", "3", "--plot", str(png)])  # fmt: skip
    printed = capsys.readouterr().out
    assert "every activation quantized" in printed and printed.count("-bit [") == 3
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit, match="does not fit yolo-fastest-xl-voc"):
        sensitivity.main(["--checkpoint", str(qat_out) + ".ckpt.pt", "--model",
                          "yolo-fastest-xl-voc"])  # fmt: skip


def test_qat_continues_a_run(qat_out: Path, tmp_path: Path) -> None:
    """Continue from that run's weights with a fresh schedule (how long runs are extended)."""
    from quant import qat

    cont = tmp_path / "q2.npz"
    qat.main(["--size", "64", "--out", str(cont), "--steps", "2", "--batch", "2", "--crop", "64",
              "--images", "8", "--act-bits", "4", "--init", str(qat_out) + ".ckpt.pt",
              "--warmup", "2", "--weights-only-frac", "0", "--equalize-acts"])  # fmt: skip
    md = artmod.load(cont).metadata
    assert md["init"] == str(qat_out) + ".ckpt.pt" and "after 2 warm-up steps" in md["training"]
    assert md["equalize_acts"] is True


def test_datafree_command(tmp_path: Path) -> None:
    from quant import datafree

    out = tmp_path / "d.npz"
    datafree.main(["--size", "64", "--out", str(out), "--images", "2", "--synth-size", "64",
                   "--synth-steps", "2", "--synth-batch", "2", "--iters", "1", "--steps", "2",
                   "--batch", "2", "--dw-format", "pow2"])  # fmt: skip
    md = artmod.load(out).metadata
    assert md["method"].startswith("datafree") and md["method"].endswith("distillation")
    ft = torch.load(Path(str(out) + ".ckpt.pt.ft.pt"), weights_only=True)
    assert ft["step"] == 2 and len(ft["losses"]) == 2


def test_lr_factor_warmup_then_cosine() -> None:
    from quant.qat import lr_factor

    assert [lr_factor(10, 0, s) for s in (0, 5, 10, 12)] == pytest.approx([1, 0.5, 0, 0])
    assert [lr_factor(10, 4, s) for s in (0, 1, 3)] == pytest.approx(
        [0.25 * lr_factor(10, 0, 0), 0.5 * lr_factor(10, 0, 1), lr_factor(10, 0, 3)]
    )


def test_plot_losses(tmp_path: Path) -> None:
    from quant import plot_losses

    ck = tmp_path / "run.ckpt.pt"
    torch.save({"losses": [float(v) for v in np.geomspace(2.0, 0.1, 120)]}, ck)  # as qat writes
    out = tmp_path / "img" / "loss.png"
    plot_losses.main([f"{ck}=run", "--out", str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    torch.save({"state": {}}, ck)
    with pytest.raises(SystemExit, match="records no losses"):
        plot_losses.main([str(ck), "--out", str(out)])
