"""`shiftdet detect`'s outputs for other tools: COCO results JSON (pycocotools loads and scores
it), MOTChallenge det.txt and per-image VOC XML (models.evaluate reads both back), one
annotated image per input image (same name, same size), a still image as an image, and the
output-safety rules (one line and exit 2 for bad values, no overwrite without --overwrite).

The model is the app tests' random network (conftest `model`), not a detector: the checks
compare the files with each other and with the JSON lines, never with what is in the images.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from app_run import run_detect
from app_run import sha256_of as _sha
from videos import mp4_frames, read_jsonl

from models.evaluate import detections_to_voc, parse_voc_xml, read_mot_gt
from sw import app, formats, sinks

RUN_ARGS = ("--conf", "0.3")  # run_detect adds --no-progress


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    return run_detect(capsys, *argv, *RUN_ARGS)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """Four images of three sizes: three VOC-sample JPEGs and a PNG made from one, halved."""
    imgs = sorted((data_dir / "voc2012-sample" / "JPEGImages").glob("*.jpg"))[:3]
    if len(imgs) < 3:
        pytest.skip("VOC sample images missing")
    d = tmp_path_factory.mktemp("in") / "photos"
    d.mkdir()
    for p in imgs:
        shutil.copy(p, d / p.name)
    small = cv2.imread(str(imgs[0]))
    cv2.imwrite(str(d / "zz-small.png"), cv2.resize(small, None, fx=0.5, fy=0.5))
    return d


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory: pytest.TempPathFactory, folder: Path, model: Path) -> Path:
    """One run over the folder with every format; the tests below read its outputs."""
    out = tmp_path_factory.mktemp("out")
    rc = app.main(["detect", str(folder), "--model", str(model), "--out-dir", str(out),
                   "--formats", "all", *RUN_ARGS])  # fmt: skip
    assert rc == 0
    return out


def _records(out: Path) -> list[dict]:
    recs = read_jsonl(out / "photos.jsonl")
    assert sum(len(r["detections"]) for r in recs) > 0, "no boxes: the checks would be empty"
    return recs


def test_folder_gives_one_annotated_image_per_input(folder: Path, folder_run: Path) -> None:
    names = sorted(p.name for p in folder.iterdir())
    for n in names:
        src, got = cv2.imread(str(folder / n)), cv2.imread(str(folder_run / n))
        assert got is not None and got.shape == src.shape, n  # each keeps its own size
        assert not np.array_equal(got, src), f"{n}: nothing drawn"
    assert not (folder_run / "photos.mp4").exists()
    recs = _records(folder_run)
    assert [r["file"] for r in recs] == names  # the results keyed by file name
    assert [tuple(r["size"]) for r in recs] == [
        cv2.imread(str(folder / n)).shape[1::-1] for n in names]  # fmt: skip
    rep = json.loads((folder_run / "photos.report.json").read_text())
    assert rep["annotated_images"] == 4 and rep["formats"] == ["coco", "mot", "voc"]


def test_voc_xml_reads_back(folder: Path, folder_run: Path) -> None:
    for r in _records(folder_run):
        ann = parse_voc_xml(folder_run / (Path(r["file"]).stem + ".xml"))
        w, h = r["size"]
        assert (ann.filename, ann.width, ann.height) == (r["file"], w, h)
        assert [o.name for o in ann.objects] == [d["class"] for d in r["detections"]]
        # darknet's VOC writer (what models.evaluate scores), rounded to whole pixels
        rows = [(d["class_id"], d["score"], *d["box"]) for d in r["detections"]]
        want = np.floor(detections_to_voc(rows, w, h)[:, 2:] + 0.5) if rows else np.zeros((0, 4))
        got = np.array([o.box for o in ann.objects]).reshape(-1, 4)
        np.testing.assert_allclose(got, want, atol=1.0)  # JSONL boxes are rounded to 0.1
        assert all(1 <= o.box[0] <= o.box[2] <= w and 1 <= o.box[1] <= o.box[3] <= h
                   for o in ann.objects)  # fmt: skip


def test_mot_det_txt_round_trips_into_the_mot_reader(folder_run: Path) -> None:
    recs = _records(folder_run)
    text = (folder_run / "photos.det.txt").read_text()
    rows = np.loadtxt(folder_run / "photos.det.txt", delimiter=",", ndmin=2)
    assert rows.shape[1] == 10 and (rows[:, [1, 7, 8, 9]] == -1).all()
    assert len(rows) == sum(len(r["detections"]) for r in recs) and text.endswith("\n")
    for r in recs:
        w, h = r["size"]
        frames = read_mot_gt(folder_run / "photos.det.txt", w, h)
        got = frames.get(r["image_id"], np.zeros((0, 4)))
        dets = [(d["class_id"], d["score"], *d["box"]) for d in r["detections"]]
        want = detections_to_voc(dets, w, h)[:, 2:] if dets else np.zeros((0, 4))
        np.testing.assert_allclose(got, want, atol=0.11)  # JSONL 0.1, det.txt 0.01 pixels


def test_coco_json_loads_in_pycocotools_and_scores(folder_run: Path) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    recs = _records(folder_run)
    res = json.loads((folder_run / "photos.coco.json").read_text())
    assert len(res) == sum(len(r["detections"]) for r in recs)
    # the random net puts some boxes wholly into the letterbox padding: clipped to the frame
    # they have no area, and pycocotools' IoU of an empty box is 0, so they are left out here
    res = [e for e in res if e["bbox"][2] > 0 and e["bbox"][3] > 0]
    companion = json.loads((folder_run / "photos.coco-images.json").read_text())
    assert [i["file_name"] for i in companion["images"]] == [r["file"] for r in recs]
    assert companion["categories"][0] == {"id": 1, "name": "random-0", "supercategory": "none"}
    # ground truth: class 1's boxes of the run itself on the first two images, none on the
    # others: on those two alone every box is found at every IoU (AP 1.0); with the others,
    # their class-1 boxes are false positives and nothing is missed (AR 1.0, AP < 1.0)
    ims = [{"id": i["id"], "file_name": i["file_name"], "width": r["size"][0],
            "height": r["size"][1]}
           for i, r in zip(companion["images"], recs, strict=True)]  # fmt: skip
    first = {recs[0]["image_id"], recs[1]["image_id"]}
    anns = []
    for e in res:
        if e["category_id"] == 1 and e["image_id"] in first:
            x, y, w, h = e["bbox"]
            anns.append({"id": len(anns) + 1, "image_id": e["image_id"], "category_id": 1,
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})  # fmt: skip
    extra = sum(e["category_id"] == 1 and e["image_id"] not in first for e in res)
    if not anns or not extra:
        pytest.skip("the random net gave class 1 no box on some images")
    gt = COCO()
    gt.dataset = {"images": ims, "categories": companion["categories"], "annotations": anns}
    gt.createIndex()
    assert len(gt.loadRes(str(folder_run / "photos.coco.json")).anns) >= len(res)  # the file
    dt = gt.loadRes(res)

    def ap_ar(image_ids: set[int]) -> tuple[float, float]:
        ev = COCOeval(gt, dt, "bbox")
        ev.params.catIds, ev.params.imgIds = [1], sorted(image_ids)
        ev.params.maxDets = [1, 10, 10000]  # the random net's many boxes per image all count
        ev.evaluate()
        ev.accumulate()
        prec = ev.eval["precision"][:, :, 0, 0, -1]  # IoUs x recall points, class 1, all areas
        rec = ev.eval["recall"][:, 0, 0, -1]
        return float(prec.mean()), float(rec.mean())

    assert ap_ar(first) == (pytest.approx(1.0), pytest.approx(1.0))
    ap, ar = ap_ar({r["image_id"] for r in recs})
    assert ar == pytest.approx(1.0) and 0.0 < ap < 0.999, (ap, ar)


def test_still_image_gives_an_annotated_image(tmp_path, capsys, folder: Path, model) -> None:
    src = folder / "zz-small.png"
    rc, out, err = _run(capsys, str(src), "--model", str(model), "--out-dir", str(tmp_path),
                        "--formats", "voc,coco")  # fmt: skip
    assert rc == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "zz-small.coco-images.json", "zz-small.coco.json", "zz-small.jsonl", "zz-small.png",
        "zz-small.report.json", "zz-small.timeline.png", "zz-small.xml"]  # fmt: skip
    assert cv2.imread(str(tmp_path / "zz-small.png")).shape == cv2.imread(str(src)).shape
    assert "zz-small.png" in out and ".mp4" not in out
    rc, _, err = _run(capsys, str(src), "--model", str(model), "--out-dir", str(tmp_path),
                      "--name", "shot")  # fmt: skip
    assert rc == 0 and (tmp_path / "shot.png").is_file(), err
    assert read_jsonl(tmp_path / "shot.jsonl")[0]["file"] == "zz-small.png"
    # an unreadable still image is one line, exit 2, nothing written
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    rc, _, err = _run(capsys, str(bad), "--model", str(model), "--out-dir", str(tmp_path / "o"))
    assert rc == 2 and err.count("\n") == 1 and "cannot read image" in err, err
    assert not (tmp_path / "o").exists()


def test_video_keeps_mp4_and_jsonl_and_takes_coco_and_mot(tmp_path, capsys, model, clip) -> None:
    rc, _, err = _run(capsys, str(clip), "--model", str(model), "--out-dir", str(tmp_path),
                      "--max-frames", "3", "--formats", "mot,coco")  # fmt: skip
    assert rc == 0, err
    assert mp4_frames(tmp_path / "TUD-Campus.mp4") == 3
    recs = read_jsonl(tmp_path / "TUD-Campus.jsonl")
    assert [r["frame"] for r in recs] == [0, 1, 2] and "file" not in recs[0]
    rows = np.loadtxt(tmp_path / "TUD-Campus.det.txt", delimiter=",", ndmin=2)
    assert sorted(set(rows[:, 0].astype(int))) == [1, 2, 3]  # 1-based frames
    ids = {e["image_id"] for e in json.loads((tmp_path / "TUD-Campus.coco.json").read_text())}
    assert ids == {1, 2, 3}
    from pycocotools.coco import COCO  # the companion lists every frame of the file (71)

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "TUD-Campus.coco-images.json"))
        dt = gt.loadRes(str(tmp_path / "TUD-Campus.coco.json"))
    assert len(gt.imgs) == 71 and gt.imgs[1]["file_name"] == "000001.jpg" and len(dt.anns) > 0
    rc, _, err = _run(capsys, str(clip), "--model", str(model), "--out-dir", str(tmp_path / "v"),
                      "--formats", "voc")  # fmt: skip
    assert rc == 2 and err.count("\n") == 1 and "--formats voc" in err, err
    assert not (tmp_path / "v").exists()


@pytest.mark.parametrize("value,expect", [("coco,xyz", "unknown format 'xyz'"),
                                          (",", "no format given")])  # fmt: skip
def test_bad_formats_value_is_one_line(tmp_path, capsys, model, clip, value, expect) -> None:
    rc, _, err = _run(capsys, str(clip), "--model", str(model), "--out-dir", str(tmp_path / "o"),
                      "--formats", value)  # fmt: skip
    assert rc == 2 and err.count("\n") == 1 and expect in err and "--formats" in err, err
    assert not (tmp_path / "o").exists()


def test_no_overwrite_without_overwrite(tmp_path, capsys, folder: Path, model) -> None:
    out = tmp_path / "out"
    args = [str(folder), "--model", str(model), "--out-dir", str(out), "--formats", "voc"]
    assert _run(capsys, *args)[0] == 0
    before = {p.name: _sha(p) for p in out.iterdir()}
    assert "2007_000027.jpg" in before and "2007_000027.xml" in before
    # only an annotated image of an earlier run is left: still refused
    for p in out.iterdir():
        if p.name != "2007_000032.jpg":
            p.unlink()
    rc, _, err = _run(capsys, *args)
    assert rc == 2 and err.count("\n") == 1 and "exists" in err and "2007_000032.jpg" in err
    assert sorted(p.name for p in out.iterdir()) == ["2007_000032.jpg"]
    rc, _, err = _run(capsys, *args, "--overwrite")
    assert rc == 0, err
    assert set(p.name for p in out.iterdir()) == set(before)
    # the input folder as the output folder: every annotated image would be its input
    rc, _, err = _run(capsys, str(folder), "--model", str(model), "--out-dir", str(folder),
                      "--overwrite")  # fmt: skip
    assert rc == 2 and "is the input" in err, err
    assert sorted(p.name for p in folder.iterdir()) == [
        "2007_000027.jpg", "2007_000032.jpg", "2007_000033.jpg", "zz-small.png"]  # fmt: skip


def test_outputs_that_would_clash_are_refused(tmp_path, capsys, model) -> None:
    d = tmp_path / "in"
    d.mkdir()
    img = np.random.default_rng(3).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    cv2.imwrite(str(d / "a.jpg"), img)
    cv2.imwrite(str(d / "a.png"), img)
    rc, _, err = _run(capsys, str(d), "--model", str(model), "--out-dir", str(tmp_path / "o"),
                      "--formats", "voc")  # fmt: skip
    assert rc == 2 and err.count("\n") == 1 and "written twice" in err and "a.xml" in err, err
    cv2.imwrite(str(d / "in.timeline.png"), img)  # an input named like the run's timeline
    rc, _, err = _run(capsys, str(d), "--model", str(model), "--out-dir", str(tmp_path / "o"))
    assert rc == 2 and "written twice" in err and "in.timeline.png" in err, err
    assert not (tmp_path / "o").exists()


def test_image_ids_from_file_names() -> None:
    assert formats.image_ids(["000000397133.jpg", "000000000139.jpg"]) == (
        [397133, 139], formats.RULE_STEM)  # fmt: skip
    assert formats.image_ids(["000001.jpg", "000002.jpg"])[0] == [1, 2]  # MOT's img1/
    # a name that is no number, or two stems of one number: positions in name order
    assert formats.image_ids(["1.jpg", "b.jpg"]) == ([1, 2], formats.RULE_POSITION)
    assert formats.image_ids(["01.jpg", "1.png"]) == ([1, 2], formats.RULE_POSITION)
    assert formats.image_ids(["٣.jpg"])[1] == formats.RULE_POSITION  # a non-ASCII digit
    assert formats.parse_formats("voc, COCO") == ("coco", "voc")
    assert formats.parse_formats("all") == formats.FORMATS


def test_coco_json_is_valid_after_every_frame_and_after_a_failed_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "r.coco.json"
    sink = sinks.CocoJsonSink(path)
    assert json.loads(path.read_text()) == []
    recs = [{"image_id": i, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}
            for i in range(3)]  # fmt: skip
    sink.write(recs[:2])
    assert json.loads(path.read_text()) == recs[:2]  # valid while still open (a hard kill)
    sink.write([])
    real = sinks._os_write

    def half(fd: int, data: bytes) -> int:
        real(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sinks, "_os_write", half)
    with pytest.raises(sinks.OutputError, match="disk full"):
        sink.write(recs[2:])
    assert json.loads(path.read_text()) == recs[:2]  # put back as it was
    monkeypatch.setattr(sinks, "_os_write", real)
    sink.write(recs[2:])
    sink.close()
    assert json.loads(path.read_text()) == recs


def test_a_full_disk_keeps_every_image_written_whole(tmp_path, capsys, folder: Path, model,
                                                     monkeypatch) -> None:  # fmt: skip
    checks = {"n": 0}

    def free(_folder: Path) -> int:
        checks["n"] += 1
        return 1 << 40 if checks["n"] <= 8 else sinks.RESERVE_BYTES  # full after a while

    monkeypatch.setattr(sinks, "free_bytes", free)
    out = tmp_path / "out"
    rc, _, err = _run(capsys, str(folder), "--model", str(model), "--out-dir", str(out),
                      "--formats", "all")  # fmt: skip
    assert rc == 1 and "disk full" in err, err
    recs = read_jsonl(out / "photos.jsonl")
    assert 1 <= len(recs) < 4
    for r in recs:  # every image in the JSON lines has all its outputs, whole
        assert cv2.imread(str(out / r["file"])) is not None
        assert parse_voc_xml(out / (Path(r["file"]).stem + ".xml")).filename == r["file"]
    ids = {e["image_id"] for e in json.loads((out / "photos.coco.json").read_text())}
    assert ids <= {r["image_id"] for r in recs} | {recs[-1]["image_id"] + 1}
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
