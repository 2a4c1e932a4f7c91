"""Bring your own detector: every quant command takes ``--cfg FILE --weights FILE [--names FILE]``
instead of a built-in ``--model``, gives the same integers for the same files, and refuses what
it cannot import with one line naming the file, the layer and the op (exit 2)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from models.paths import data_dir
from sw import artifact as artmod

torch.set_num_threads(1)  # shared CI machine: avoid thread-pool thrashing

DARKNET = data_dir() / "weights" / "darknet"
MODEL = "yolo-fastest-voc"

pytestmark = pytest.mark.skipif(
    not (DARKNET / f"{MODEL}.weights").is_file()
    or not (data_dir() / "unlabeled" / "imagenet-1k-sample").is_dir(),
    reason="darknet weights / unlabeled images not found (run make data)",
)

PTQ = ["--dw-format", "int8", "--size", "64", "--calib", "2", "--calib-size", "64", "--iters", "1"]


@pytest.fixture(scope="module")
def user_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A user's copy of the built-in detector under other names, and 20 class names of its own."""
    d = tmp_path_factory.mktemp("byo")
    files = {"cfg": d / "my det.cfg", "weights": d / "my det.weights", "names": d / "my.names"}
    shutil.copy(DARKNET / f"{MODEL}.cfg", files["cfg"])
    shutil.copy(DARKNET / f"{MODEL}.weights", files["weights"])
    files["names"].write_text("".join(f"thing{i}\n" for i in range(20)))
    return files


def _error_line(capsys: pytest.CaptureFixture[str], run: object, *argv: str) -> str:
    with pytest.raises(SystemExit) as e:
        run(list(argv))  # type: ignore[operator]
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_ptq_by_path_equals_the_builtin_model(user_model: dict[str, Path], tmp_path: Path) -> None:
    from quant import ptq

    mine, builtin = tmp_path / "mine.npz", tmp_path / "builtin.npz"
    ptq.main(["--cfg", str(user_model["cfg"]), "--weights", str(user_model["weights"]),
              "--names", str(user_model["names"]), "--out", str(mine), *PTQ])  # fmt: skip
    ptq.main(["--model", MODEL, "--out", str(builtin), *PTQ])
    a, b = artmod.load(mine), artmod.load(builtin)
    assert a.classes == [f"thing{i}" for i in range(20)]
    assert str(user_model["cfg"]) in a.metadata["source_model"]
    assert "--cfg" in a.metadata["command"]
    assert [n.name for n in a.nodes] == [n.name for n in b.nodes]
    for na, nb in zip(a.nodes, b.nodes, strict=True):  # the same files give the same integers
        for key, t in na.tensors.items():
            np.testing.assert_array_equal(t, nb.tensors[key], err_msg=f"{na.name}.{key}")


@pytest.mark.parametrize(
    ("edit", "expect"),
    [
        (
            lambda t: t.replace("activation=leaky", "activation=mish", 1),
            "unsupported activation 'mish'",
        ),
        (lambda t: t.replace("activation=linear", "activation=swish", 1), "'swish'"),
        (lambda t: t.replace("[upsample]", "[bogus]", 1), "bogus"),
    ],
    ids=["mish", "swish", "unknown-layer"],
)
def test_unsupported_layer_is_one_line_naming_it(
    user_model: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    edit: object, expect: str,
) -> None:  # fmt: skip
    from quant import ptq

    cfg = tmp_path / "edited.cfg"
    cfg.write_text(edit(user_model["cfg"].read_text()))  # type: ignore[operator]
    err = _error_line(capsys, ptq.main, "--cfg", str(cfg), "--weights", str(user_model["weights"]),
                      "--out", str(tmp_path / "o.npz"), *PTQ)  # fmt: skip
    assert err.startswith("error: edited.cfg") and expect in err, err
    assert "layer" in err or "section" in err, err  # it says where
    assert not (tmp_path / "o.npz").exists()


def test_bad_options_are_one_line(
    user_model: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from quant import mixed, ptq, sensitivity

    cfg, weights, names = (str(user_model[k]) for k in ("cfg", "weights", "names"))
    out = str(tmp_path / "o.npz")
    cases = [
        (["--cfg", cfg, "--out", out], "--cfg and --weights go together"),
        (["--model", MODEL, "--cfg", cfg, "--weights", weights, "--out", out], "not both"),
        (["--cfg", cfg, "--weights", str(tmp_path / "none.weights"), "--out", out],
         "none.weights: no such file"),
        (["--cfg", cfg, "--weights", weights, "--names", cfg, "--out", out], "classes"),
        (["--cfg", cfg, "--weights", weights, "--names", names, "--eval", "--out", out],
         "--eval scores data/voc2012-sample"),
        (["--cfg", cfg, "--weights", weights, "--out", cfg], "is an input of this command"),
        (["--model", MODEL, "--names", names, "--out", out], "--names goes with --cfg"),
    ]  # fmt: skip
    for argv, expect in cases:
        err = _error_line(capsys, ptq.main, *argv, *PTQ)
        assert expect in err, (argv, err)
    short = tmp_path / "short.weights"
    short.write_bytes(user_model["weights"].read_bytes()[:5000])
    err = _error_line(capsys, ptq.main, "--cfg", cfg, "--weights", str(short), "--out", out, *PTQ)
    assert "short.weights" in err, err
    assert not Path(out).exists()
    err = _error_line(capsys, mixed.main, "--cfg", cfg, "--fps", "10", "--out", out)
    assert "--cfg and --weights go together" in err
    err = _error_line(capsys, sensitivity.main, "--cfg", cfg, "--weights", weights, "--names",
                      names, "--checkpoint", out, "--map")  # fmt: skip
    assert "--eval scores data/voc2012-sample" in err


def test_cost_model_by_path_equals_the_builtin(user_model: dict[str, Path]) -> None:
    from quant.mixed import cost_model
    from quant.zoo import source

    mine = cost_model(source(cfg=user_model["cfg"], weights=user_model["weights"]), size=128)
    builtin = cost_model(MODEL, size=128)
    assert mine.layers == builtin.layers


def test_eval_draws_the_pr_curves(tmp_path: Path) -> None:
    """--eval's VOC-sample score comes with its precision-recall figure beside the artifact."""
    from quant import ptq
    from quant.cli import evaluate_artifact, pr_curve_path

    out = tmp_path / "m.npz"
    ptq.main(["--model", MODEL, "--out", str(out), *PTQ])
    png = pr_curve_path(out)
    m = evaluate_artifact(artmod.load(out), png, limit=3)
    assert 0.0 <= m["map"] <= 1.0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
