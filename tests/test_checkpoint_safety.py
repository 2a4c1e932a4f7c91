"""No code runs from a checkpoint file: every quant command reads checkpoints with
torch.load(weights_only=True), and a crafted pickle ends the command with one line naming the
file (exit status 2) instead of running its payload.

Each entry point is driven through its own main() with tiny arguments (seconds); the crafted
file's payload would create a marker file, which must never appear."""

from __future__ import annotations

import pathlib
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from models.paths import data_dir
from quant import checkpoint

torch.set_num_threads(1)

needs_weights = pytest.mark.skipif(
    not (data_dir() / "weights" / "darknet" / "yolo-fastest-voc.weights").is_file(),
    reason="darknet weights not found (run make data)",
)
needs_images = pytest.mark.skipif(
    not (data_dir() / "unlabeled" / "imagenet-1k-sample").is_dir(),
    reason="unlabeled images not found (run make data)",
)


class Payload:
    """Unpickling this calls Path.touch(marker): what an attacker's file would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def evil_checkpoints(tmp_path: Path) -> list[tuple[Path, Path]]:
    """(file, marker) pairs: a torch.save'd checkpoint with the payload among real-looking
    entries, and a plain pickle of the payload."""
    out = []
    for kind in ("torch", "pickle"):
        marker = tmp_path / f"MARKER-{kind}"
        path = tmp_path / f"evil-{kind}.ckpt.pt"
        if kind == "torch":
            obj = {"model": {"w": torch.zeros(2)}, "step": 1, "losses": [1.0], "x": Payload(marker)}
            torch.save(obj, path)
        else:
            path.write_bytes(pickle.dumps(Payload(marker), protocol=2))
        out.append((path, marker))
    return out


def test_payload_does_run_without_weights_only(tmp_path: Path) -> None:
    """The crafted files are live: the unsafe load this project used to do runs the payload."""
    for path, marker in evil_checkpoints(tmp_path):
        if path.name.startswith("evil-torch"):
            torch.load(path, weights_only=False)
        else:
            pickle.loads(path.read_bytes())
        assert marker.exists()


def assert_refused(
    run: Callable[[], object], path: Path, marker: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        run()
    assert exc.value.code == 2
    assert not marker.exists(), "the checkpoint's payload ran"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"error: {path}: not a checkpoint this tool can load safely (")


def test_plot_losses_refuses_a_crafted_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from quant import plot_losses

    png = tmp_path / "loss.png"
    for path, marker in evil_checkpoints(tmp_path):
        args = [str(path), "--out", str(png)]
        assert_refused(lambda a=args: plot_losses.main(a), path, marker, capsys)
    assert not png.exists()


def test_qat_init_refuses_a_crafted_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from quant import qat

    for path, marker in evil_checkpoints(tmp_path):
        args = ["--out", str(tmp_path / "q.npz"), "--init", str(path), "--steps", "1"]
        assert_refused(lambda a=args: qat.main(a), path, marker, capsys)


@needs_weights
@needs_images
def test_resume_refuses_a_crafted_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The resume path of quant.checkpoint (load_checkpoint), through quant.ptq and quant.qat: the
    crafted file sits where the command's own checkpoint would be."""
    from quant import ptq, qat

    for path, marker in evil_checkpoints(tmp_path):
        out = tmp_path / "r.npz"
        ptq_args = ["--out", str(out), "--checkpoint", str(path), "--calib", "1",
                    "--calib-size", "32", "--iters", "1"]  # fmt: skip
        assert_refused(lambda a=ptq_args: ptq.main(a), path, marker, capsys)
        qat_args = ["--out", str(out), "--checkpoint", str(path), "--steps", "1", "--images",
                    "1", "--calib", "1", "--crop", "32"]  # fmt: skip
        assert_refused(lambda a=qat_args: qat.main(a), path, marker, capsys)
        assert not out.exists()


@needs_weights
def test_datafree_synth_cache_refuses_a_crafted_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from quant import datafree

    for path, marker in evil_checkpoints(tmp_path):
        out = tmp_path / "d.npz"
        synth = Path(str(out) + ".synth.pt")  # where datafree keeps its synthetic images
        synth.write_bytes(path.read_bytes())
        args = ["--out", str(out), "--images", "1", "--synth-size", "32", "--synth-steps", "1"]
        assert_refused(lambda a=args: datafree.main(a), synth, marker, capsys)
        assert not out.exists()


def test_damaged_and_foreign_files_fail_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(SystemExit) as exc:
        checkpoint.load_plain(garbage)
    assert exc.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {garbage}: not a checkpoint this tool can load safely (")

    no_model = tmp_path / "no-model.pt"
    torch.save({"losses": [1.0]}, no_model)
    with pytest.raises(SystemExit) as exc:
        checkpoint.load_checkpoint(no_model, nn.Linear(1, 1))  # type: ignore[arg-type]
    assert exc.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == f"error: {no_model}: not a checkpoint of quant.ptq/qat/datafree (no model state)"

    with pytest.raises(SystemExit) as exc:
        checkpoint.load_plain(tmp_path / "absent.pt")
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'absent.pt'}: no such checkpoint"


def test_what_the_commands_write_loads_with_weights_only(tmp_path: Path) -> None:
    """The writer's checkpoint (model, Adam and LambdaLR state, step, losses, reconstruction
    log), as quant.qat and quant.ptq save it, loads with weights_only=True and resumes."""
    from functools import partial

    from quant.qat import lr_factor

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, partial(lr_factor, 10, 2))
    model(torch.rand(2, 3, 8, 8)).sum().backward()
    opt.step()
    sched.step()
    path = tmp_path / "run.ckpt.pt"
    state = {"done": 3, "log": [{"node": "conv0", "mse_before": 0.5, "mse_after": 0.25}]}
    extra = {"step": 1, "opt": opt.state_dict(), "sched": sched.state_dict(), "losses": [0.5],
             "state": state}  # fmt: skip
    checkpoint.save_checkpoint(path, model, extra)  # type: ignore[arg-type]
    torch.load(path, weights_only=True)  # no error: plain types only

    fresh = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    fresh.invalidate = lambda: None  # type: ignore[attr-defined]  # QuantDetector's cache hook
    ck = checkpoint.load_checkpoint(path, fresh)  # type: ignore[arg-type]
    assert ck is not None and ck["step"] == 1 and ck["state"] == state
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    opt2 = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    opt2.load_state_dict(ck["opt"])
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, partial(lr_factor, 10, 2))
    sched2.load_state_dict(ck["sched"])
    assert sched2.last_epoch == 1
