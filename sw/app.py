"""``shiftdet detect INPUT``: run a quantized YOLO detector over a video, camera, stream or folder.

    python -m sw.app detect data/video/TUD-Stadtmitte/TUD-Stadtmitte.mp4 --model M.npz
    python -m sw.app detect VIDEO --cfg my.cfg --weights my.weights   # float, OpenCV, CPU
    python -m sw.app classify IMAGES/ --model resnet20.npz            # a classifier artifact

Stages (threads, bounded queues, see ``sw/pipeline.py``): capture -> preprocess (letterbox) ->
accelerator (the compiled plan on a backend) -> postprocess (YOLO decode + per-class NMS) ->
output (draw; mp4 or one annotated image per input image, JSON lines, the --formats files
(COCO, MOTChallenge, VOC XML), window or MJPEG). At the end: fps, per-stage ms per frame, a
JSON report and a timeline PNG. Every failure is one line on stderr (``error: ...``) and an exit
status: 2 for bad input (missing input, wrong artifact, plan for another build, unwritable
output, an output that is an input or an earlier run's), found before any output is created;
1 for a failure while running (a full disk included); 128 + N for stop signal N (130 Ctrl-C,
143 SIGTERM, 129 SIGHUP). Whatever stops it, what was written until then is kept and valid.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sw import artifact as artifact_mod
from sw import formats, info, selftest
from sw.accel_config import AccelConfig, ConfigError
from sw.artifact import Artifact, ArtifactError
from sw.backends import BACKENDS, Backend, BackendUnavailable, make_backend
from sw.compiler import CompileError, compile_model
from sw.darknet.cfg import DarknetError, check_class_names, read_names
from sw.darknet.float_net import FloatDarknet
from sw.draw import draw_detections, draw_ranking
from sw.driver import AcceleratorError
from sw.pipeline import Item, Pipeline, PipelineResult, stage_stats, throughput_fps
from sw.plan import Plan
from sw.postprocess import FloatYoloDecoder, YoloDecoder
from sw.preprocess import classifier_input, letterbox
from sw.signals import Interrupted, StopSignals
from sw.sinks import (
    CocoJsonSink,
    ImageSink,
    JsonlSink,
    MjpegServer,
    MotSink,
    OutputError,
    VideoSink,
    WindowSink,
    check_writable,
    write_atomic,
)
from sw.sources import Source, SourceError, open_source
from sw.timeline import write_timeline_png
from sw.topk import TopK

REPO = Path(__file__).resolve().parent.parent
ARTIFACT_DIR = REPO / "models" / "artifacts"
OUTPUTS = (("video", ".mp4"), ("jsonl", ".jsonl"), ("report", ".report.json"),
           ("timeline", ".timeline.png"))  # fmt: skip
# --formats: what each writes beside the outputs above (voc: one STEM-less XML per image).
FORMAT_OUTPUTS = (("coco", ".coco.json"), ("coco_images", ".coco-images.json"),
                  ("mot", ".det.txt"))  # fmt: skip
IMAGE_KINDS = ("folder", "image")  # sources that give one annotated image per input
SNAPSHOT_S = 10.0  # a live run rewrites its report this often, so a hard kill keeps one
LIVE_SEGMENT_MINUTES = 10.0  # default video segment length of a live source


class UsageError(RuntimeError):
    """Bad input to the command; one line."""


def _proc_status_mb(key: str) -> float | None:
    """A memory figure of this process from Linux /proc (None elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def rss_mb() -> float | None:
    """Resident memory now."""
    return _proc_status_mb("VmRSS")


def peak_rss_mb() -> float | None:
    """Peak resident memory of this program (VmHWM: unlike getrusage's ru_maxrss it is not
    inherited from a parent that forked and exec'd us)."""
    return _proc_status_mb("VmHWM")


def _measured(meta: dict[str, Any]) -> tuple[float, float]:
    """(TUD person AP, VOC-sample mAP) stored in the metadata (quant/cli.py --eval,
    bench/accuracy.py --stamp), -1 for a figure that is not there."""
    m = meta.get("measured", {})
    m = m if isinstance(m, dict) else {}

    def num(key: str) -> float:
        v = m.get(key)
        return float(v) if isinstance(v, (int, float)) else -1.0

    return num("tud_person_ap"), num("voc_sample_map_all")


def find_default_artifact(folder: Path = ARTIFACT_DIR) -> Path:
    """The best committed Yolo-Fastest artifact for the surveillance demo: highest measured
    person AP on TUD-Stadtmitte in its metadata, then highest VOC-sample mAP, then name."""
    # Yolo-Fastest itself (not -XL): the demo model the issue names, and the faster one.
    cands = sorted(folder.glob("yolo-fastest-voc*.npz")) if folder.is_dir() else []
    if not cands:
        raise UsageError(f"no model artifact found under {folder}/ (pass --model PATH)")
    scored = []
    for p in cands:
        try:
            meta = artifact_mod.load(p).metadata
        except ArtifactError:
            continue
        scored.append((_measured(meta), p))
    if not scored:
        raise UsageError(f"no loadable artifact under {folder}/ (pass --model PATH)")
    return max(scored, key=lambda s: (s[0], str(s[1])))[1]


def load_config(path: str | None) -> AccelConfig:
    """The accelerator build: defaults, or a JSON object of AccelConfig fields."""
    if path is None:
        return AccelConfig().check()
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"cannot read accelerator config {path!r}: {e}") from None
    known = {f.name for f in fields(AccelConfig)}
    if not isinstance(raw, dict) or set(raw) - known:
        bad = sorted(set(raw) - known) if isinstance(raw, dict) else raw
        raise UsageError(f"accelerator config {path!r}: unknown field(s) {bad}")
    try:
        return AccelConfig(**raw).check()
    except (ConfigError, TypeError) as e:
        raise UsageError(f"accelerator config {path!r}: {e}") from None


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad argument as one line (and the hint to --help), not the usage."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _number(kind: type, text: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a{'n integer' if kind is int else ' number'}"
        ) from None


def _fraction(text: str) -> float:
    v = _number(float, text)
    if not 0.0 <= v <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1]")
    return v


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        v = _number(kind, text)
        if not 0 < v < math.inf:
            raise argparse.ArgumentTypeError(f"{text} must be > 0")
        return v

    return parse


def _port(text: str) -> int:
    v = _number(int, text)
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"port {v} is not in 0..65535")
    return v


def _formats(text: str) -> tuple[str, ...]:
    try:
        return formats.parse_formats(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{e} (choose from {', '.join(formats.FORMATS)}, or "
                                         f"all)") from None  # fmt: skip


def _minutes(text: str) -> float:
    v = _number(float, text)
    if not 0 <= v < math.inf:
        raise argparse.ArgumentTypeError(f"{text} must be >= 0")
    return v


def _run_options(d: argparse.ArgumentParser) -> None:
    """The options ``detect`` and ``classify`` share: backend, outputs, pipeline, limits."""
    d.add_argument("--backend", choices=BACKENDS, default=None, help="default: emu")
    d.add_argument("--config", help="accelerator build as JSON (AccelConfig fields)")
    d.add_argument("--bitstream", help="pynq: the .bit file (its .hwh beside it)")
    d.add_argument("--out-dir", default="out", help="where outputs go (default: out/)")
    d.add_argument("--name", help="base name of the outputs, a plain file name (default: the "
                   "input's name, 'live' for a camera or stream)")  # fmt: skip
    d.add_argument("--overwrite", action="store_true",
                   help="replace an earlier run's outputs of the same name (removed only once "
                        "every check has passed); without it they are refused")  # fmt: skip
    d.add_argument("--no-video", action="store_true",
                   help="do not write the annotated mp4 (or, for an image input, the annotated "
                        "images)")  # fmt: skip
    d.add_argument("--segment-minutes", type=_minutes, metavar="M",
                   help="write the video as STEM.NNNN.mp4 segments of M minutes, each playable "
                        "once the next starts, so a hard kill or power loss loses at most the "
                        f"last one (default: {LIVE_SEGMENT_MINUTES:g} for a camera or stream, "
                        "0 = one file for a video file or folder)")  # fmt: skip
    d.add_argument("--show", action="store_true", help="show a window (GUI OpenCV only)")
    d.add_argument("--serve", type=_port, metavar="PORT",
                   help="serve the annotated video as MJPEG on http://HOST:PORT/ (0: any free "
                        "port). The stream has no authentication or encryption: anyone who "
                        "reaches the address sees the video")  # fmt: skip
    d.add_argument("--serve-host", default="127.0.0.1", metavar="HOST",
                   help="address --serve binds (default 127.0.0.1: this machine only; 0.0.0.0 "
                        "on a headless board exposes it to the network)")  # fmt: skip
    d.add_argument("--max-frames", type=_positive(int), help="stop after this many frames")
    d.add_argument("--queue-depth", type=_positive(int), default=4,
                   help="frames queued between stages")  # fmt: skip
    d.add_argument("--sequential", action="store_true", help="run the stages one after another")
    d.add_argument(
        "--cpu-fallback",
        action="store_true",
        help="run layers beyond the build's limits on the CPU instead of failing",
    )
    d.add_argument("--timeout", type=_positive(float), default=5.0,
                   help="accelerator timeout per run (s)")  # fmt: skip
    d.add_argument("--source-timeout", type=_positive(float), default=10.0, metavar="S",
                   help="a camera or stream that delivers no frame for S seconds ends the run "
                        "(exit 1)")  # fmt: skip
    d.add_argument("--print-plan", action="store_true", help="print the execution plan table")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    d.add_argument("--emulate-build", metavar="JSON",
                   help="emu: model the accelerator as this other build (to check the refusal of "
                        "a plan compiled for another configuration)")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="shiftdet", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    d = sub.add_parser(
        "detect",
        help="detect objects in a video, camera, stream or folder",
        description="Outputs STEM.mp4 (or STEM.NNNN.mp4 segments) for a video, camera or "
        "stream, one annotated image per input (same file name) for an image folder or a still "
        "image, and STEM.jsonl, STEM.report.json and STEM.timeline.png, in --out-dir; --formats "
        "adds COCO results JSON, MOTChallenge det.txt and per-image VOC XML. An output that is "
        "one of the inputs (also through a symlink or hard link) is refused, and so are an "
        "earlier run's outputs of the same name unless --overwrite is given. Exit status: 0 "
        "done, 1 failure while running (a full disk included), 2 bad input (nothing written), "
        "130/143/129 stopped by SIGINT/SIGTERM/SIGHUP (outputs finalised up to the last frame).",
    )
    d.add_argument("input", help="video file (also file://), camera index (0) or /dev/videoN, "
                   "stream URL, or image folder")  # fmt: skip
    d.add_argument("--model", help="model artifact (.npz); default: best under models/artifacts/")
    _run_options(d)
    d.add_argument("--cfg", help="instead of --model: your own darknet detector's .cfg, run in "
                   "float on the CPU by OpenCV (to see it before quantizing; the accelerator "
                   "runs artifacts: python -m quant.ptq --cfg ... makes one)")  # fmt: skip
    d.add_argument("--weights", help="with --cfg: its darknet .weights")
    d.add_argument("--names", help="with --cfg: its class names, one per line (default: the "
                   "class numbers)")  # fmt: skip
    d.add_argument("--size", type=_positive(int), default=None,
                   help="with --cfg: the square letterbox size it runs at (default 512, the "
                        "quantizer's; an artifact fixes its own)")  # fmt: skip
    d.add_argument("--formats", type=_formats, default=(), metavar="LIST",
                   help="also write these, comma-separated: coco (STEM.coco.json, COCO results; "
                        "ids in STEM.coco-images.json), mot (STEM.det.txt, MOTChallenge), voc "
                        "(one PASCAL VOC XML per image, IMAGE_STEM.xml; image inputs only), or "
                        "all")  # fmt: skip
    d.add_argument("--conf", type=_fraction, default=0.25,
                   help="score threshold in [0, 1] (darknet: 0.25)")  # fmt: skip
    d.add_argument("--nms", type=_fraction, default=0.45,
                   help="per-class NMS IoU threshold in [0, 1]")  # fmt: skip
    d.set_defaults(task="detect")
    c = sub.add_parser(
        "classify",
        help="classify images, a video, camera or stream with a classifier artifact",
        description="Runs a classifier artifact (e.g. models/artifacts/resnet20-cifar10-*.npz) "
        "on each image or frame: the centred crop of the model's aspect ratio, resized to its "
        "input, normalised with the mean/std its metadata records, through the accelerator "
        "path; writes STEM.jsonl (the top classes with softmax probabilities per input), "
        "STEM.report.json, STEM.timeline.png and the labelled images or STEM.mp4, in "
        "--out-dir, with the same checks and exit statuses as detect.",
    )
    c.add_argument("input", help="image folder, still image, video file, camera or stream")
    c.add_argument("--model", required=True, help="classifier artifact (.npz)")
    _run_options(c)
    c.add_argument("--top", type=_positive(int), default=5, help="classes per input (default 5)")
    c.set_defaults(task="classify", formats=(), cfg=None, weights=None, names=None, size=None,
                   conf=0.25, nms=0.45)  # fmt: skip
    # The board's checks: sw/selftest.py and sw/info.py own their options.
    t = sub.add_parser(
        "selftest",
        help="check the accelerator bit for bit: fixed layer cases and one frame",
        description="Runs fixed layer cases and one frame of a committed detector through the "
        "backend and the emulator, compares every output code and the golden SHA-256 digests "
        "of the NumPy reference, checks the ID and CONFIG registers, and prints a table with "
        "the PERF cycles beside the cycle model's. Exit status: 0 all passed, 1 a check "
        "failed, 2 it could not start.",
    )
    selftest.add_arguments(t)
    i = sub.add_parser(
        "info",
        help="the board, the overlay build (its registers) and the runtime's configuration",
        description="Prints the board (/proc/device-tree/model), the package and contract "
        "versions, the accelerator configuration and, when a backend can start, the overlay's "
        "ID and CONFIG registers.",
    )
    info.add_arguments(i)
    return p


class Detector:
    """The stage functions of one run, holding the model, the backend and the outputs."""

    def __init__(self, input_shape: tuple[int, int, int], backend: Backend | FloatDarknet,
                 names: list[str], decoder: Any, sinks: list[Any], jsonl: JsonlSink | None,
                 out: ImageOutputs | None = None,
                 prepare: Callable[[np.ndarray], tuple[np.ndarray, Any]] | None = None,
                 hwc: bool = True) -> None:  # fmt: skip
        self.backend, self.names = backend, names
        _, self.h, self.w = input_shape
        # frame -> (the backend's input, its geometry for the decoder); darknet's letterbox
        self.prepare = prepare or (lambda f: letterbox(f, self.w, self.h))
        self.hwc = hwc
        self.decoder = decoder
        self.sinks, self.jsonl = sinks, jsonl
        self.out = out or ImageOutputs()
        self.video = next((s for s in sinks if isinstance(s, VideoSink)), None)
        self.t0 = time.perf_counter()
        self.accel_s = {"pl": 0.0, "cpu": 0.0}
        self.detections = 0
        self.frames = 0
        self.rss_at: dict[str, float | None] = {}  # after 100 and 500 frames (a leak shows)

    def preprocess(self, item: Item) -> None:
        item.data["x"], item.data["lb"] = self.prepare(item.frame)

    def accelerate(self, item: Item) -> None:
        item.data["out"] = self.backend.run(item.data.pop("x"), hwc=self.hwc)
        st = self.backend.stats
        self.accel_s["pl"] += st.pl_s
        self.accel_s["cpu"] += st.cpu_s

    def postprocess(self, item: Item) -> None:
        item.data["det"] = self.decoder(item.data.pop("out"), item.data["lb"])

    def output(self, item: Item) -> None:
        det = item.data["det"]
        o = self.out
        h, w = item.frame.shape[:2]
        name = o.file_name(item.index)
        image_id = o.image_id(item.index)
        # The format files first and the JSON line last: a frame in the JSON lines is in every
        # output (a failure in between stops the run before its line).
        if o.coco is not None:
            o.coco.write(formats.coco_records(det, image_id))
        if o.mot is not None:
            o.mot.write(formats.mot_lines(det, image_id, w, h))
        if o.voc is not None and name is not None:
            o.voc.write_file(
                o.xml_name(item.index),
                formats.voc_xml(
                    det, self.names, name, w, h, folder=o.folder_name, depth=item.frame.shape[2]
                ),
            )
        self._draw(item, lambda f: draw_detections(f, det, self.names))
        if self.jsonl is not None:
            rec: dict[str, Any] = {"frame": item.index}
            if name is not None:  # an image input: the results keyed by file name
                rec.update(file=name, image_id=image_id, size=[w, h])
            rec["detections"] = det.to_json(self.names)
            self.jsonl.write(rec)
        self.detections += len(det)  # counted once written, so the report matches the files
        self._count()

    def _draw(self, item: Item, draw: Callable[[np.ndarray], np.ndarray]) -> None:
        """The annotated frame to the video sinks and, for an image input, its own file."""
        o = self.out
        name = o.file_name(item.index)
        if self.sinks or o.images is not None:
            frame = draw(item.frame)
            for s in self.sinks:
                s.write(frame)
            if o.images is not None and name is not None:
                o.images.write(o.image_name(item.index), frame)

    def _count(self) -> None:
        self.frames += 1
        if self.frames in (100, 500):  # compared with the end of the run: a leak shows as growth
            self.rss_at[f"after_{self.frames}_frames"] = rss_mb()

    def stages(self) -> list[tuple[str, Any]]:
        return [("preprocess", self.preprocess), ("accelerator", self.accelerate),
                ("postprocess", self.postprocess), ("output", self.output)]  # fmt: skip


class Classifier(Detector):
    """``shiftdet classify``: the stages of :class:`Detector` with a classifier's input (crop,
    resize, normalise: ``sw.preprocess.classifier_input``), ranking (``sw.topk``) and outputs
    (the top-1 label drawn; the top classes per input in the JSON lines)."""

    def output(self, item: Item) -> None:
        rank = item.data["det"]
        o = self.out
        name = o.file_name(item.index)
        self._draw(item, lambda f: draw_ranking(f, rank, self.names))
        if self.jsonl is not None:
            rec: dict[str, Any] = {"frame": item.index}
            if name is not None:
                rec.update(file=name, size=[item.frame.shape[1], item.frame.shape[0]])
            rec["top"] = rank.to_json(self.names)
            self.jsonl.write(rec)
        self._count()


class ImageOutputs:
    """What a run writes per input beside the mp4 and the JSON lines: the names and ids of its
    images (an image folder, a still image; None for a video) and the --formats sinks."""

    def __init__(self, source: Source | None = None, stem: str = "",
                 want: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.source = source
        self.kind = source.kind if source is not None else "video"
        self.coco: CocoJsonSink | None = None
        self.mot: MotSink | None = None
        self.voc: ImageSink | None = None
        self.images: ImageSink | None = None
        self.want = want
        self.names: list[str] = []  # input file names, by frame index (image inputs)
        self.out_names: list[str] = []  # annotated image names, by frame index
        self.ids: list[int] = []
        self.id_rule = formats.RULE_FRAME
        self.folder_name = ""
        if source is not None and self.kind in IMAGE_KINDS:
            self.names = [source.file_name(i) or "" for i in range(source.total or 0)]
            self.ids, self.id_rule = formats.image_ids(self.names)
            if self.kind == "image":  # a still: STEM (the input's stem unless --name) + suffix
                self.out_names = [stem + Path(self.names[0]).suffix]
                self.folder_name = Path(source.name).resolve().parent.name
            else:
                self.out_names = list(self.names)
                self.folder_name = Path(source.name).resolve().name

    def file_name(self, index: int) -> str | None:
        return self.names[index] if self.names else None

    def image_id(self, index: int) -> int:
        return self.ids[index] if self.ids else index + 1

    def image_name(self, index: int) -> str:
        return self.out_names[index]

    def xml_name(self, index: int) -> str:
        return Path(self.out_names[index]).stem + ".xml"

    def per_image_paths(self, out_dir: Path, annotated: bool) -> list[tuple[Path, str]]:
        """(path, what) of every per-image output of this run."""
        out: list[tuple[Path, str]] = []
        for i in range(len(self.out_names)):
            if annotated:
                out.append((out_dir / self.image_name(i), f"annotated image of {self.names[i]!r}"))
            if "voc" in self.want:
                out.append((out_dir / self.xml_name(i), f"VOC XML of {self.names[i]!r}"))
        return out

    def companion(self, names: list[str]) -> dict[str, Any]:
        """STEM.coco-images.json: the image and category ids of STEM.coco.json. It has COCO's
        dataset keys (images, categories, an empty annotations list), so pycocotools'
        ``COCO(path).loadRes(STEM.coco.json)`` loads the results against it."""
        images = [{"id": i, "file_name": n} for i, n in zip(self.ids, self.names)]
        total = self.source.total if self.source is not None else None
        if not images and self.kind == "video" and total:
            # a video file's frame k under MOTChallenge's img1/ name of it (000001.jpg, ...)
            images = [{"id": k, "file_name": f"{k:06d}.jpg"} for k in range(1, total + 1)]
        return {
            "info": {
                "description": "shiftdet detect: ids of the COCO results file",
                "image_id_rule": self.id_rule,
                "category_id_rule": formats.CATEGORY_RULE,
            },  # fmt: skip
            "images": images,
            "categories": formats.categories(names),
            "annotations": [],
        }


@dataclass
class Model:
    """What a run detects with: an artifact compiled to a plan for a backend, or (``--cfg``) a
    darknet detector in float on OpenCV, behind the same decoder, names and input shape."""

    path: Path  # the artifact, or the cfg
    name: str
    files: list[Path]  # what it reads: never an output
    names: list[str]
    input_shape: tuple[int, int, int]
    decoder: YoloDecoder | FloatYoloDecoder
    backend: str
    plan: Plan | None = None
    float_net: FloatDarknet | None = None
    measured: dict[str, Any] = field(default_factory=dict)
    float_info: dict[str, Any] | None = None
    prepare: Callable[[np.ndarray], tuple[np.ndarray, Any]] | None = None  # default letterbox
    hwc: bool = True  # the backend's input layout


def _floating(args: argparse.Namespace) -> bool:
    return any(getattr(args, k) is not None for k in ("cfg", "weights", "names"))


def load_model(args: argparse.Namespace) -> Model:
    """The artifact of ``--model`` (or the default one), compiled for ``--config``."""
    if args.size is not None:
        raise UsageError("--size goes with --cfg: an artifact runs at its own input size")
    args.backend = args.backend or "emu"
    model_path = Path(args.model) if args.model else find_default_artifact()
    art: Artifact = artifact_mod.load(model_path)
    if args.task == "classify":
        return _classifier(args, model_path, art)
    if not any(o.kind == "yolo" for o in art.outputs):
        hint = " (a classifier: shiftdet classify)" if _preprocess_of(art) else ""
        raise UsageError(f"{model_path}: the model has no YOLO outputs{hint}")
    names = art.classes or [str(i) for i in range(art.outputs[0].attrs.get("classes", 0))]
    plan = _compile(args, art)
    try:
        decoder = YoloDecoder.for_plan(plan, conf_thresh=args.conf, nms_thresh=args.nms)
    except (ValueError, TypeError, KeyError) as e:
        raise UsageError(f"{model_path}: cannot decode its YOLO outputs: {e}") from None
    return Model(model_path, art.name, [model_path], names, plan.input_shape, decoder,
                 args.backend, plan=plan, measured=art.metadata.get("measured", {}))  # fmt: skip


def _compile(args: argparse.Namespace, art: Artifact) -> Plan:
    """The artifact compiled for ``--config`` (``--cpu-fallback``), its table printed on
    ``--print-plan``."""
    plan = compile_model(art, load_config(args.config), cpu_fallback=args.cpu_fallback)
    if args.print_plan:
        print(plan.table())
    return plan


def _preprocess_of(art: Artifact) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """A classifier's input normalisation from its metadata (mean, std per RGB channel)."""
    pre = art.metadata.get("preprocess")
    if not isinstance(pre, dict) or pre.get("layout", "RGB") != "RGB":
        return None
    try:
        mean = tuple(float(v) for v in pre["mean"])
        std = tuple(float(v) for v in pre["std"])
    except (KeyError, TypeError, ValueError):
        return None
    ok = len(mean) == len(std) == 3 and all(math.isfinite(v) for v in mean + std)
    return (mean, std) if ok and min(std) > 0 else None


def _classifier(args: argparse.Namespace, model_path: Path, art: Artifact) -> Model:
    """A classifier artifact: one raw output of class scores, its normalisation recorded."""
    pre = _preprocess_of(art)
    raw = [o for o in art.outputs if o.kind == "raw"]
    if any(o.kind == "yolo" for o in art.outputs):
        raise UsageError(f"{model_path}: a detector (YOLO outputs): shiftdet detect runs it")
    if pre is None or len(raw) != 1 or len(art.outputs) != 1:
        raise UsageError(f"{model_path}: not a classifier artifact (it needs one raw output "
                         "and an RGB mean/std under metadata.preprocess)")  # fmt: skip
    plan = _compile(args, art)
    node = raw[0].node
    region = plan.regions[node]
    assert region.shape is not None and region.quant is not None  # an output is an activation
    c, h, w = region.shape
    if (h, w) != (1, 1) or (art.classes and len(art.classes) != c):
        raise UsageError(f"{model_path}: output {node!r} is {c}x{h}x{w}; a classifier's is "
                         f"one score per class (C x 1 x 1)")  # fmt: skip
    names = art.classes or [str(i) for i in range(c)]
    ranker = TopK(node, region.quant, c, args.top)
    q = plan.input_quant
    mean, std = pre
    _, ih, iw = plan.input_shape

    def prepare(frame: np.ndarray) -> tuple[np.ndarray, None]:
        return classifier_input(frame, iw, ih, mean, std, q.zero, q.scale, q.bits), None  # type: ignore[arg-type]

    return Model(model_path, art.name, [model_path], names, plan.input_shape, ranker,
                 args.backend, plan=plan, measured=art.metadata.get("measured", {}),
                 prepare=prepare, hwc=False)  # fmt: skip


def load_float_model(args: argparse.Namespace) -> Model:
    """``--cfg --weights [--names] [--size]``: the darknet detector in float on OpenCV. The
    accelerator's options have nothing to run here: each is refused in one line."""
    if args.cfg is None or args.weights is None:
        raise UsageError("--cfg and --weights go together (a darknet .cfg and its .weights); "
                         "--names goes with them")  # fmt: skip
    if args.model is not None:
        raise UsageError("give either --model (an artifact) or --cfg/--weights, not both")
    accel = {"--backend": args.backend, "--config": args.config, "--bitstream": args.bitstream,
             "--emulate-build": args.emulate_build,
             "--cpu-fallback": args.cpu_fallback or None}  # fmt: skip
    given = [k for k, v in accel.items() if v is not None]
    if given:
        raise UsageError(
            f"{', '.join(given)}: --cfg runs the float model on the CPU (OpenCV); the "
            "accelerator runs artifacts: make one with python -m quant.ptq --cfg ... --weights "
            "... --out M.npz, then --model M.npz"
        )
    cfg, weights = Path(args.cfg), Path(args.weights)
    for opt, p in (("--cfg", cfg), ("--weights", weights), ("--names", args.names)):
        if p is not None and not Path(p).is_file():
            raise UsageError(f"{opt} {p}: no such file")
    size = args.size or 512
    net = FloatDarknet(cfg, weights, size, size)
    if args.names is not None:
        names = read_names(args.names)
        check_class_names(net.cfg, len(names), f"--names {args.names}", cfg)
    else:
        names = [str(i) for i in range(max(h.classes for h in net.heads))]
    decoder = FloatYoloDecoder(net.heads, size, size, conf_thresh=args.conf,
                               nms_thresh=args.nms)  # fmt: skip
    if args.print_plan:
        heads = [tuple(s) for s in net.head_shapes]
        print(f"{cfg.name}: float on the CPU (OpenCV DNN), {len(net.cfg.layers)} darknet "
              f"layers, heads {heads}; no accelerator plan")  # fmt: skip
    files = [cfg, weights, *([Path(args.names)] if args.names else [])]
    float_info = {"cfg": str(cfg), "weights": str(weights),
            "names": None if args.names is None else str(args.names), "size": size,
            "runs_on": "CPU, float32, OpenCV DNN (not the accelerator)"}  # fmt: skip
    return Model(cfg, cfg.stem, files, names, net.input_shape, decoder, net.name,
                 float_net=net, float_info=float_info)  # fmt: skip


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _describe_skips(idx: list[int], reasons: dict[int, str] | None = None) -> str:
    if not idx:
        return ""
    why = sorted({(reasons or {}).get(i, "undecodable") for i in idx})
    if why == ["undecodable"]:
        return f"{len(idx)} undecodable frame(s) skipped (indices {idx[0]}..{idx[-1]})"
    return (f"{len(idx)} input frame(s) skipped (indices {idx[0]}..{idx[-1]}): "
            f"{why[0]}{f' and {len(why) - 1} other reason(s)' if len(why) > 1 else ''}; "
            f"skip_reasons in the report")  # fmt: skip


def check_name(name: str) -> str:
    """``--name``: a plain file name, so the outputs stay inside ``--out-dir``."""
    if (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
            or name != name.strip()):  # fmt: skip
        raise UsageError(f"--name {name!r} must be a plain file name (no folders, not '..')")
    return name


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def check_outputs(outputs: list[Path], inputs: list[Path], overwrite: bool) -> None:
    """Refuse an output that is an input (same file through any path, symlink or hard link),
    and, without ``overwrite``, one that exists already (an earlier run's)."""
    stats = []
    for p in inputs:
        try:
            stats.append((p, os.stat(p)))
        except OSError:
            pass
    for out in outputs:
        try:
            st = os.stat(out)
        except OSError:
            st = None
        if st is not None:
            for p, ist in stats:
                if _same_file(st, ist):
                    raise UsageError(f"output {str(out)!r} is the input {str(p)!r}: choose "
                                     f"another --out-dir or --name")  # fmt: skip
        if os.path.lexists(out) and not overwrite:
            raise UsageError(f"output {str(out)!r} exists (an earlier run's?): pass --overwrite "
                             f"to replace it, or another --name or --out-dir")  # fmt: skip


def check_clashes(outputs: list[tuple[Path, str]]) -> None:
    """Refuse two outputs of one run on the same path (an input image named like the timeline
    PNG, images ``a.jpg`` and ``a.png`` that would both write ``a.xml``)."""
    seen: dict[str, str] = {}
    for path, what in outputs:
        key = os.path.normcase(os.path.abspath(path))
        if key in seen:
            raise UsageError(f"output {str(path)!r} would be written twice ({seen[key]} and "
                             f"{what}): choose another --name or rename the input")  # fmt: skip
        seen[key] = what


def _segments_of(video: Path) -> list[Path]:
    """Existing STEM.NNNN.mp4 segments of an earlier run."""
    pat = glob.escape(str(video.with_suffix(""))) + ".[0-9][0-9][0-9][0-9]" + video.suffix
    return sorted(Path(p) for p in glob.glob(pat))


def run_detect(args: argparse.Namespace) -> int:
    """The ``detect`` command; returns the exit status."""
    with StopSignals() as stops:
        try:
            return _run_detect(args, stops)
        except Interrupted as e:
            # A stop signal during start-up: nothing has been written (sinks open last).
            _say(f"interrupted ({e}) during start-up: nothing written")
            return 128 + e.signum


def _run_detect(args: argparse.Namespace, stops: StopSignals) -> int:
    opened: list[Any] = []  # closed in reverse order, whatever happens
    try:
        # -- every check first; nothing below creates or truncates an output ----------------
        if args.name is not None:
            check_name(args.name)
        model = load_float_model(args) if _floating(args) else load_model(args)
        names, decoder = model.names, model.decoder
        source = open_source(args.input, read_timeout_s=args.source_timeout)
        opened.append(source)
        out_dir = Path(args.out_dir)
        stem = args.name or ("live" if source.live else Path(source.name).stem or "out")
        per_image = source.kind in IMAGE_KINDS
        if "voc" in args.formats and not per_image:
            raise UsageError("--formats voc writes one XML per image: it needs an image "
                             "folder or a still image as INPUT (coco and mot take a video "
                             "too)")  # fmt: skip
        kinds = [(k, ext) for k, ext in OUTPUTS if not (k == "video" and per_image)]
        kinds += [(k, ext) for k, ext in FORMAT_OUTPUTS if k.split("_")[0] in args.formats]
        paths = {k: out_dir / f"{stem}{ext}" for k, ext in kinds}
        outs = ImageOutputs(source, stem, args.formats)
        image_paths = outs.per_image_paths(out_dir, annotated=not args.no_video)
        minutes = args.segment_minutes
        if minutes is None:
            minutes = LIVE_SEGMENT_MINUTES if source.live else 0.0
        seg_frames = max(1, round(minutes * 60 * source.fps)) if minutes > 0 else None
        inputs = [*source.files, *model.files]
        for extra in (args.config, args.emulate_build, args.bitstream):
            if extra:
                inputs += [Path(extra), Path(extra).with_suffix(".hwh")]
        earlier = [] if per_image else _segments_of(paths["video"])
        all_outputs = [*paths.values(), *earlier, *(p for p, _ in image_paths)]
        check_outputs(all_outputs, inputs, args.overwrite)
        check_clashes([*((p, f"the {k} output") for k, p in paths.items()), *image_paths])
        for p in paths.values():
            check_writable(p)
        for p, _ in image_paths:
            if os.path.isdir(p):
                raise OutputError(f"cannot write {str(p)!r}: it is a folder")
        opts: dict[str, Any] = {"timeout_s": args.timeout}
        if args.backend == "pynq" and args.bitstream:
            opts["bitstream"] = args.bitstream
        if args.emulate_build:
            if args.backend != "emu":
                raise UsageError("--emulate-build applies to the emu backend only")
            opts["device_cfg"] = load_config(args.emulate_build)
        if model.plan is None:  # the float model: OpenCV is its backend
            backend = model.float_net
        else:
            backend = make_backend(args.backend or "emu", model.plan, **opts)
        opened.append(backend)
        sinks: list[Any] = []
        if args.show:
            sinks.append(WindowSink())
            opened.append(sinks[-1])
        if args.serve is not None:
            server = MjpegServer(args.serve, host=args.serve_host)
            sinks.append(server)
            opened.append(server)
            _say(f"serving MJPEG on {server.url} (no authentication: anyone who reaches it "
                 f"sees the video)")  # fmt: skip
        # -- all checks passed: now the files --------------------------------------------------
        # From here a stop signal no longer unwinds (files exist): it is recorded, and the
        # pipeline, once made, stops at once and finalises what there is.
        stops.on_stop = lambda _name: None
        if args.overwrite:  # the earlier run's outputs of this name go, all of them
            for p in all_outputs:
                if os.path.lexists(p):
                    p.unlink()
        if not args.no_video and not per_image:
            video = VideoSink(paths["video"], source.fps, segment_frames=seg_frames)
            sinks.insert(0, video)
            opened.append(video)
        if not args.no_video and per_image:
            outs.images = ImageSink(out_dir)
        if "voc" in args.formats:
            outs.voc = ImageSink(out_dir)
        if "coco" in args.formats:
            write_atomic(paths["coco_images"], _report_bytes(outs.companion(names)))
            outs.coco = CocoJsonSink(paths["coco"])
            opened.append(outs.coco)
        if "mot" in args.formats:
            outs.mot = MotSink(paths["mot"])
            opened.append(outs.mot)
        jsonl = JsonlSink(paths["jsonl"])
        opened.append(jsonl)
    except (UsageError, ArtifactError, CompileError, SourceError, OutputError,
            BackendUnavailable, AcceleratorError, DarknetError) as e:  # fmt: skip
        _say(f"error: {e}")
        _close_all(opened)
        return 2
    except BaseException:
        _close_all(opened)
        raise

    task = Classifier if args.task == "classify" else Detector
    det = task(model.input_shape, backend, names, decoder, sinks, jsonl, outs, model.prepare,
               model.hwc)  # fmt: skip
    total = source.total if args.max_frames is None else min(source.total or 10**9,
                                                             args.max_frames)  # fmt: skip
    bar = None
    if not args.no_progress:
        try:
            from tqdm import tqdm
        except ImportError:  # not a dependency of the board wheel: no bar then
            tqdm = None
        if tqdm is not None:
            bar = tqdm(total=total, unit="frame", desc=Path(args.input).name[:30],
                       file=sys.stderr)  # fmt: skip
    ctx = {"args": args, "model": model, "source": source, "det": det, "stops": stops}
    last_snapshot = [time.monotonic()]

    def on_output(_item: Item) -> None:
        if bar is not None:
            bar.update(1)
        if time.monotonic() - last_snapshot[0] > SNAPSHOT_S:  # survives a hard kill
            last_snapshot[0] = time.monotonic()
            snap = make_report(res=pipe.result, final=False, **ctx)
            write_atomic(paths["report"], _report_bytes(snap))

    pipe = Pipeline(source, det.stages(), queue_depth=args.queue_depth, on_output=on_output,
                    max_frames=args.max_frames)  # fmt: skip
    stops.on_stop = pipe.request_stop  # from here a signal stops the pipeline, not start-up
    if stops.name is not None:  # it came while the outputs were being opened
        pipe.request_stop(stops.name)
    try:
        res = pipe.run_sequential() if args.sequential else pipe.run_threaded()
    finally:
        if bar is not None:
            bar.close()
        _close_all(opened)
    if source.end_reason and res.error is None and not res.interrupted:
        res.error = f"capture: {source.end_reason}"
    report = make_report(res=res, final=True, **ctx)
    finalised = True  # the report and the timeline were written
    try:
        write_atomic(paths["report"], _report_bytes(report))
    except OutputError as e:
        _say(f"error: {e}")
        finalised = False
    try:
        drew = write_timeline_png(res, paths["timeline"], title=f"{model.name} on {model.backend}")
    except OutputError as e:
        _say(f"error: {e}")
        drew = finalised = False
    print_summary(report, paths, drew, det.video, outs)
    if res.interrupted or stops.received is not None:
        why = stops.name or "Ctrl-C"
        _say(f"interrupted ({why}): outputs finalised up to the last frame handled")
        return stops.exit_status or 130
    if res.error:
        _say(f"error: {res.error}")
        return 1
    return 0 if finalised else 1


def _close_all(opened: list[Any]) -> None:
    for o in reversed(opened):
        try:
            o.close()
        except Exception as e:  # noqa: BLE001 - one failing close must not hide the rest
            _say(f"warning: closing {type(o).__name__}: {e}")
    opened.clear()


def _report_bytes(report: dict[str, Any]) -> bytes:
    return json.dumps(report, indent=1).encode()


def make_report(args: argparse.Namespace, model: Model, source: Source, res: PipelineResult,
                det: Detector, stops: StopSignals, final: bool) -> dict[str, Any]:  # fmt: skip
    """The run's JSON report; ``final`` False for the snapshots a long run writes on the way."""
    n = max(res.frames_out, 1)
    return {
        "final": final,
        "input": args.input,
        "model": str(model.path),
        "model_name": model.name,
        "task": args.task,
        # The accuracy measured for this model (VOC sample, TUD person AP), so a reader of the
        # report knows what the boxes are worth.
        "model_measured": model.measured,
        # The float model (--cfg): its files and that it ran in float, not on the accelerator.
        "float_model": model.float_info,
        "backend": model.backend,
        "mode": res.mode,
        "input_size": list(model.input_shape[1:]),
        "frames_in": res.frames_in,
        "frames_out": res.frames_out,
        "dropped_live": res.dropped,
        "skipped_undecodable": list(source.skipped),
        "skip_reasons": {str(i): r for i, r in source.skip_reasons.items()},
        "detections": det.detections if args.task == "detect" else None,
        "wall_s": round(res.wall_s if final else time.perf_counter() - res.t0, 3),
        "fps": round(throughput_fps(res), 3),
        "stage_ms": stage_stats(res),
        "accelerator_ms": {
            "pl": round(det.accel_s["pl"] * 1e3 / n, 3),
            "cpu_steps": round(det.accel_s["cpu"] * 1e3 / n, 3),
        },  # fmt: skip
        "plan": None if model.plan is None else model.plan.summary(),
        "rss_mb": {**det.rss_at, "end": rss_mb(), "peak": peak_rss_mb()},
        "video": None if det.video is None else [p.name for p in det.video.segments],
        "annotated_images": (
            None if det.out.images is None else len(det.out.images.written)
        ),  # fmt: skip
        "formats": list(args.formats),
        "image_id_rule": det.out.id_rule,
        "interrupted": res.interrupted,
        "signal": stops.name,
        "error": res.error,
    }


def print_summary(report: dict[str, Any], paths: dict[str, Path], drew: bool,
                  video: VideoSink | None, outs: ImageOutputs | None = None) -> None:  # fmt: skip
    st = report["stage_ms"]
    line = ", ".join(f"{k} {v['mean']:.1f}" for k, v in st.items())
    print(f"{report['frames_out']} frames, {report['fps']:.2f} fps ({report['mode']}); "
          f"ms/frame: {line}")  # fmt: skip
    if report["skipped_undecodable"]:
        reasons = {int(i): r for i, r in report["skip_reasons"].items()}
        _say(f"warning: {_describe_skips(report['skipped_undecodable'], reasons)}")
    if report["dropped_live"]:
        _say(f"warning: dropped {report['dropped_live']} frame(s): the pipeline fell behind the "
             f"live source")  # fmt: skip
    wrote = [] if video is None else [str(p) for p in video.segments]
    if len(wrote) > 3:
        wrote = [f"{wrote[0]} .. {wrote[-1]} ({len(wrote)} segments)"]
    for sink, what in ((outs and outs.images, "annotated image"), (outs and outs.voc, "VOC XML")):
        if sink is not None and sink.written:
            n = len(sink.written)
            wrote.append(str(sink.written[0]) if n == 1 else
                         f"{n} {what}s in {sink.folder}/")  # fmt: skip
    keys = ("coco", "coco_images", "mot", "jsonl", "report")
    wrote += [str(paths[k]) for k in keys if k in paths and paths[k].exists()]
    if drew:
        wrote.append(str(paths["timeline"]))
    print("wrote " + ", ".join(wrote))
    if not drew:
        _say("warning: timeline PNG left out (no matplotlib, no frame, or not writable)")


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        _say("interrupted during start-up: nothing written")
        return 130
    if args.command in ("detect", "classify"):
        return run_detect(args)
    if args.command in ("selftest", "info"):
        return _run_board_command(args)
    return 2


def _run_board_command(args: argparse.Namespace) -> int:
    """``selftest`` and ``info``: a bad option or a backend that cannot start is one line and
    exit 2, as for ``detect``."""
    try:
        if args.command == "selftest":
            return selftest.run_command(args, load_config)
        return info.run_command(args, load_config)
    except (UsageError, selftest.SelftestError, BackendUnavailable, ArtifactError) as e:
        _say(f"error: {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
