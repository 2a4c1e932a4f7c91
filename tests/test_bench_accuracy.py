"""bench/accuracy.py's results file: a VOC-only rerun keeps a TUD figure only for the same file."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from models.paths import REPO_ROOT

# bench/ holds scripts, not an installed package: load the module from its file
_spec = importlib.util.spec_from_file_location("bench_accuracy", REPO_ROOT / "bench/accuracy.py")
assert _spec is not None and _spec.loader is not None
accuracy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(accuracy)
KEYS, merge_result = accuracy.KEYS, accuracy.merge_result


def test_merge_keeps_tud_only_for_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "accuracy.json"
    key = "w4a8_qat_map_xl_512"
    base = {"map": 0.7, "map_11pt": 0.7, "size": 512, "source": "a.npz", "sha256": "aa"}
    merge_result(key, {**base, "tud_person_ap": 0.8, "command": "x --mot"}, path)
    merge_result(key, {**base, "map": 0.71}, path)  # same file, VOC only
    doc = json.loads(path.read_text())
    assert doc["results"][key]["map"] == 0.71
    assert doc["results"][key]["tud_person_ap"] == 0.8
    assert doc["results"][key]["tud_command"] == "x --mot"
    merge_result(key, {**base, "sha256": "bb"}, path)  # the file changed: TUD is stale
    doc = json.loads(path.read_text())
    assert "tud_person_ap" not in doc["results"][key]
    # every key the issue names is either measured or listed as missing with a reason
    assert set(KEYS) <= set(doc["results"]) | set(doc["missing"])
    assert "float_map_xl_320" in KEYS and key not in doc["missing"]


def test_stamp_tud_writes_the_figure_into_the_artifact(tmp_path: Path) -> None:
    import numpy as np

    from sim.reference.randnet import random_network
    from sw import artifact as artmod

    path = tmp_path / "m.npz"
    art = random_network(np.random.default_rng(1), height=32, width=32)
    art.metadata = {"measured": {"voc_sample_map_all": 0.5}, "command": "c"}
    artmod.save(art, path)
    entry: dict = {"sha256": accuracy.file_sha256(path)}
    before = entry["sha256"]
    accuracy.stamp_tud(path, artmod.load(path), 0.75, entry)
    md = artmod.load(path).metadata
    assert md["measured"]["tud_person_ap"] == 0.75
    assert md["measured"]["voc_sample_map_all"] == 0.5 and md["command"] == "c"
    assert entry["sha256"] == accuracy.file_sha256(path) != before


def _xl_artifact(pow2x2_layers: int, plan: bool) -> object:
    """Yolo-Fastest-XL at 256 with random pow2-4 weights; the first ``pow2x2_layers`` 1x1 dense
    convs re-coded as pow2x2 (every pow2-4 value is a pow2x2 value)."""
    import dataclasses

    from models.paths import data_dir
    from sim.darknet_net import random_artifact_from_cfg
    from sw.contract.codes import decode_codes, encode_codes

    cfg = data_dir() / "weights" / "darknet" / "yolo-fastest-xl-voc.cfg"
    art = random_artifact_from_cfg(str(cfg), 256, seed=3, dense_bits=4, dw_format="pow2")
    left = pow2x2_layers
    for i, n in enumerate(art.nodes):
        if left and n.op == "conv" and n.attrs["groups"] == 1 and n.attrs["kernel"] == 1:
            v = decode_codes(n.tensors["codes"], "pow2", 4)
            t = {**n.tensors, "codes": encode_codes(v, "pow2x2", 8)}
            attrs = {**n.attrs, "weight_format": "pow2x2", "weight_bits": 8}
            art.nodes[i] = dataclasses.replace(n, attrs=attrs, tensors=t)
            left -= 1
    art.metadata = {"source_model": f"{cfg.parent}/yolo-fastest-xl-voc.cfg/.weights"}
    if plan:
        art.metadata["plan"] = "plans/x.json"
    return art


def test_mixed_keys_and_their_speed() -> None:
    import pytest

    if not (
        Path(accuracy.data_dir()) / "weights" / "darknet" / "yolo-fastest-xl-voc.cfg"
    ).is_file():
        pytest.skip("no darknet cfg (run make data)")
    base, mixed = _xl_artifact(0, plan=False), _xl_artifact(6, plan=True)
    assert accuracy.key_of(mixed) == "mixed_w4a8_map_xl_256"
    mixed.metadata["generator"] = True
    assert accuracy.key_of(mixed) == "datafree_gen_map_xl_256"
    s0, s1 = accuracy.accelerator_speed(base), accuracy.accelerator_speed(mixed)
    assert s0["fps_fraction_of_w4"] == 1.0 and s0["cycles"] == s0["w4_cycles"]
    assert s1["w4_cycles"] == s0["cycles"] and s1["cycles"] > s0["cycles"]
    assert s1["fps_200mhz"] == round(200e6 / s1["cycles"], 2)
    assert (
        accuracy.plan_fields(base) == {} and accuracy.plan_fields(mixed)["plan"] == "plans/x.json"
    )


def _darknet(name: str = "yolo-fastest-voc") -> tuple[Path, Path]:
    import pytest

    d = Path(accuracy.data_dir()) / "weights" / "darknet"
    if not (d / f"{name}.weights").is_file():
        pytest.skip("no darknet weights (run make data)")
    return d / f"{name}.cfg", d / f"{name}.weights"


def _main(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        accuracy.main(list(argv))
        rc = 0
    except SystemExit as e:
        rc = int(e.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def test_float_by_cfg_scores_a_coco_folder(tmp_path: Path, capsys) -> None:
    """Any darknet detector by path on a COCO-format folder: pycocotools' figures, the full
    result and the PR-curve PNG in --out-dir, accuracy.json untouched."""
    from coco_folder import make_coco_folder

    cfg, weights = _darknet()
    mine = tmp_path / "mine"
    mine.mkdir()
    for p in (cfg, weights):  # a user's own files, under their own names
        (mine / p.name.replace("yolo-fastest-voc", "my-det")).write_bytes(p.read_bytes())
    names = mine / "my.names"
    names.write_text((cfg.parent / "voc.names").read_text())
    folder = make_coco_folder(Path(accuracy.data_dir()) / "voc2012-sample", tmp_path / "coco")
    before = accuracy.RESULTS.read_bytes() if accuracy.RESULTS.is_file() else None
    out = tmp_path / "eval"
    rc, text, err = _main(capsys, "float", "--cfg", str(mine / "my-det.cfg"), "--weights",
                          str(mine / "my-det.weights"), "--names", str(names), "--size", "160",
                          "--coco", str(folder), "--out-dir", str(out))  # fmt: skip
    assert rc == 0, err
    entry = json.loads(text[: text.rindex("}") + 1])["float_map_my_det_160"]
    assert 0.0 < entry["map"] <= entry["map50"] <= 1.0 and entry["images"] == 4
    assert "my-det.cfg" in entry["source"] and entry["dataset"] == str(folder)
    full = json.loads((out / "float_map_my_det_160.coco_coco.json").read_text())
    assert full["unmatched_categories"] == ["unicorn"] and full["map"] == entry["map"]
    png = out / "float_map_my_det_160.coco_coco.pr.png"
    assert png.stat().st_size > 5000 and str(png) in text
    assert (accuracy.RESULTS.read_bytes() if accuracy.RESULTS.is_file() else None) == before


def test_float_on_a_vocdevkit_uses_its_image_set(tmp_path: Path, capsys) -> None:
    import shutil

    _darknet()
    voc = Path(accuracy.data_dir()) / "voc2012-sample"
    root = tmp_path / "VOCdevkit" / "VOC2007"
    ids = sorted(p.stem for p in (voc / "Annotations").glob("*.xml"))[:3]
    for sub, ext in (("Annotations", "xml"), ("JPEGImages", "jpg")):
        (root / sub).mkdir(parents=True)
        for i in ids:
            shutil.copy(voc / sub / f"{i}.{ext}", root / sub)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "test.txt").write_text("\n".join(ids[:2]) + "\n")
    out = tmp_path / "eval"
    rc, text, err = _main(capsys, "float", "--size", "160", "--voc", str(tmp_path / "VOCdevkit"),
                          "--out-dir", str(out))  # fmt: skip
    assert rc == 0, err
    full = json.loads((out / "float_map_yolo_fastest_160.voc_voc2007.json").read_text())
    assert full["image_set"] == "test" and full["num_images"] == 2
    assert (out / "float_map_yolo_fastest_160.voc_voc2007.pr.png").is_file()
    assert "not merged" in text


def test_the_voc_sample_run_writes_its_pr_curves(tmp_path: Path, capsys) -> None:
    _darknet()
    rc, text, err = _main(capsys, "float", "--size", "160", "--limit", "3", "--no-save",
                          "--out-dir", str(tmp_path))  # fmt: skip
    assert rc == 0, err
    assert (tmp_path / "float_map_yolo_fastest_160.voc.pr.png").stat().st_size > 5000
    assert json.loads((tmp_path / "float_map_yolo_fastest_160.voc.json").read_text())[
        "num_images"] == 3  # fmt: skip


def test_bad_options_are_one_line_exit_2(tmp_path: Path, capsys) -> None:
    cfg, weights = _darknet()
    bad_names = tmp_path / "three.names"
    bad_names.write_text("a\nb\nc\n")
    cases = [
        (["--cfg", str(cfg)], "--cfg and --weights go together"),
        (
            ["--cfg", str(cfg), "--weights", str(weights), "--names", str(bad_names)],
            "has 3",
        ),  # fmt: skip
        (
            ["--model", "yolo-fastest-voc", "--cfg", str(cfg), "--weights", str(weights)],
            "give one model",
        ),  # fmt: skip
        (["--voc", str(tmp_path / "nope")], "no such folder"),
        (["--voc", str(tmp_path), "--coco", str(tmp_path)], "give one dataset"),
        (["--coco", str(tmp_path)], "no COCO annotations JSON"),
    ]
    for extra, expect in cases:
        rc, _, err = _main(capsys, "float", "--size", "160", "--out-dir", str(tmp_path / "o"),
                           *extra)  # fmt: skip
        assert rc == 2 and err.count("\n") == 1 and expect in err, (extra, err)
    assert not (tmp_path / "o").exists()


def test_speed_refresh_recomputes_fps_and_keeps_the_accuracy(tmp_path: Path) -> None:
    """`bench/accuracy.py speed` puts the cycle model's fps of the same artifact into an entry
    (a stale figure is replaced, the mAP stays) and refuses an entry whose file changed."""
    import pytest

    from sw import artifact as artmod

    key = "mixed_w4a8_map_yolo_fastest_512"
    entry = json.loads(accuracy.RESULTS.read_text())["results"].get(key)
    if not entry or not (REPO_ROOT / entry["source"]).is_file():
        pytest.skip(f"no committed {key} entry or artifact")
    path = tmp_path / "accuracy.json"
    stale = {**entry, "fps_200mhz": 1.0, "cycles": 1}
    path.write_text(json.dumps({"results": {key: stale, "float_map_xl_512": {"map": 0.8}}}))
    assert accuracy.refresh_speed(path) == [key]
    got = json.loads(path.read_text())["results"]
    want = accuracy.accelerator_speed(artmod.load(REPO_ROOT / entry["source"]))
    assert got[key]["fps_200mhz"] == want["fps_200mhz"] > 1.0
    assert got[key]["cycles"] == want["cycles"] and got[key]["map"] == entry["map"]
    assert got["float_map_xl_512"] == {"map": 0.8}
    path.write_text(json.dumps({"results": {key: {**stale, "sha256": "0" * 64}}}))
    with pytest.raises(SystemExit, match="is not the file it measured"):
        accuracy.refresh_speed(path)
