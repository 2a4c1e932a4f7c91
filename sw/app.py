"""``shiftdet detect INPUT``: run a quantized YOLO detector over a video, camera, stream or folder.

    python -m sw.app detect data/video/TUD-Stadtmitte/TUD-Stadtmitte.mp4 --model M.npz

Stages (threads, bounded queues, see ``sw/pipeline.py``): capture -> preprocess (letterbox) ->
accelerator (the compiled plan on a backend) -> postprocess (YOLO decode + per-class NMS) ->
output (draw; mp4, JSON lines, window or MJPEG). At the end: fps, per-stage ms per frame, a
JSON report and a timeline PNG. Every failure is one line on stderr (``error: ...``) and an exit
status: 2 for bad input (missing input, wrong artifact, plan for another build, unwritable
output), 1 for a failure while running, 130 for Ctrl-C; what was written until then is kept.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from sw import artifact as artifact_mod
from sw.accel_config import AccelConfig, ConfigError
from sw.artifact import Artifact, ArtifactError
from sw.backends import BACKENDS, Backend, BackendUnavailable, make_backend
from sw.compiler import CompileError, compile_model
from sw.draw import draw_detections
from sw.driver import AcceleratorError
from sw.pipeline import Item, Pipeline, PipelineResult, stage_stats, throughput_fps
from sw.plan import Plan
from sw.postprocess import YoloDecoder
from sw.preprocess import letterbox
from sw.sinks import JsonlSink, MjpegServer, OutputError, VideoSink, WindowSink, check_writable
from sw.sources import Source, SourceError, open_source
from sw.timeline import write_timeline_png

REPO = Path(__file__).resolve().parent.parent
ARTIFACT_DIR = REPO / "models" / "artifacts"


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
        return float(v) if isinstance(v, int | float) else -1.0

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shiftdet", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("detect", help="detect objects in a video, camera, stream or folder")
    d.add_argument("input", help="video file, camera index (0), stream URL or image folder")
    d.add_argument("--model", help="model artifact (.npz); default: best under models/artifacts/")
    d.add_argument("--backend", choices=BACKENDS, default="emu")
    d.add_argument("--config", help="accelerator build as JSON (AccelConfig fields)")
    d.add_argument("--bitstream", help="pynq: the .bit file (its .hwh beside it)")
    d.add_argument("--out-dir", default="out", help="where outputs go (default: out/)")
    d.add_argument("--name", help="base name of the outputs (default: the input's name)")
    d.add_argument("--no-video", action="store_true", help="do not write the annotated mp4")
    d.add_argument("--show", action="store_true", help="show a window (GUI OpenCV only)")
    d.add_argument("--serve", type=int, metavar="PORT", help="serve MJPEG on 127.0.0.1:PORT")
    d.add_argument("--conf", type=float, default=0.25, help="score threshold (darknet: 0.25)")
    d.add_argument("--nms", type=float, default=0.45, help="per-class NMS IoU threshold")
    d.add_argument("--max-frames", type=int, help="stop after this many frames")
    d.add_argument("--queue-depth", type=int, default=4, help="frames queued between stages")
    d.add_argument("--sequential", action="store_true", help="run the stages one after another")
    d.add_argument(
        "--cpu-fallback",
        action="store_true",
        help="run layers beyond the build's limits on the CPU instead of failing",
    )
    d.add_argument("--timeout", type=float, default=5.0, help="accelerator timeout per run (s)")
    d.add_argument("--print-plan", action="store_true", help="print the execution plan table")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    d.add_argument("--emulate-build", metavar="JSON",
                   help="emu: model the accelerator as this other build (to check the refusal of "
                        "a plan compiled for another configuration)")  # fmt: skip
    return p


class Detector:
    """The stage functions of one run, holding the model, the backend and the outputs."""

    def __init__(self, plan: Plan, backend: Backend, names: list[str], conf: float,
                 nms: float, sinks: list[Any], jsonl: JsonlSink | None) -> None:  # fmt: skip
        self.plan, self.backend, self.names = plan, backend, names
        _, self.h, self.w = plan.input_shape
        self.decoder = YoloDecoder.for_plan(plan, conf_thresh=conf, nms_thresh=nms)
        self.sinks, self.jsonl = sinks, jsonl
        self.t0 = time.perf_counter()
        self.accel_s = {"pl": 0.0, "cpu": 0.0}
        self.detections = 0
        self.frames = 0
        self.rss_at: dict[str, float | None] = {}  # memory after 100 frames, and at the end

    def preprocess(self, item: Item) -> None:
        item.data["rgb"], item.data["lb"] = letterbox(item.frame, self.w, self.h)

    def accelerate(self, item: Item) -> None:
        item.data["out"] = self.backend.run(item.data.pop("rgb"), hwc=True)
        st = self.backend.stats
        self.accel_s["pl"] += st.pl_s
        self.accel_s["cpu"] += st.cpu_s

    def postprocess(self, item: Item) -> None:
        item.data["det"] = self.decoder(item.data.pop("out"), item.data["lb"])

    def output(self, item: Item) -> None:
        det = item.data["det"]
        self.detections += len(det)
        self.frames += 1
        if self.frames == 100:  # compared with the end of the run: a leak shows as growth
            self.rss_at["after_100_frames"] = rss_mb()
        if self.sinks:
            frame = draw_detections(item.frame, det, self.names)
            for s in self.sinks:
                s.write(frame)
        if self.jsonl is not None:
            self.jsonl.write({"frame": item.index, "detections": det.to_json(self.names)})

    def stages(self) -> list[tuple[str, Any]]:
        return [("preprocess", self.preprocess), ("accelerator", self.accelerate),
                ("postprocess", self.postprocess), ("output", self.output)]  # fmt: skip


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _describe_skips(idx: list[int]) -> str:
    if not idx:
        return ""
    return f"{len(idx)} undecodable frame(s) skipped (indices {idx[0]}..{idx[-1]})"


def run_detect(args: argparse.Namespace) -> int:
    """The ``detect`` command; returns the exit status."""
    opened: list[Any] = []  # closed in reverse order, whatever happens
    res: PipelineResult | None = None
    report: dict[str, Any] = {}
    try:
        model_path = Path(args.model) if args.model else find_default_artifact()
        art: Artifact = artifact_mod.load(model_path)
        if not any(o.kind == "yolo" for o in art.outputs):
            raise UsageError(f"{model_path}: the model has no YOLO outputs")
        names = art.classes or [str(i) for i in range(art.outputs[0].attrs.get("classes", 0))]
        cfg = load_config(args.config)
        plan = compile_model(art, cfg, cpu_fallback=args.cpu_fallback)
        if args.print_plan:
            print(plan.table())
        source = open_source(args.input)
        opened.append(source)
        out_dir = Path(args.out_dir)
        stem = args.name or (Path(args.input).stem if not source.live else "live")
        paths = {k: out_dir / f"{stem}{ext}" for k, ext in
                 [("video", ".mp4"), ("jsonl", ".jsonl"), ("report", ".report.json"),
                  ("timeline", ".timeline.png")]}  # fmt: skip
        for k in ("report", "timeline"):
            check_writable(paths[k])
        sinks: list[Any] = []
        if not args.no_video:
            sinks.append(VideoSink(paths["video"], source.fps))
        if args.show:
            sinks.append(WindowSink())
        if args.serve is not None:
            server = MjpegServer(args.serve)
            sinks.append(server)
            _say(f"serving MJPEG on {server.url}")
        jsonl = JsonlSink(paths["jsonl"])
        opened += sinks + [jsonl]
        opts: dict[str, Any] = {"timeout_s": args.timeout}
        if args.backend == "pynq" and args.bitstream:
            opts["bitstream"] = args.bitstream
        if args.emulate_build:
            if args.backend != "emu":
                raise UsageError("--emulate-build applies to the emu backend only")
            opts["device_cfg"] = load_config(args.emulate_build)
        backend = make_backend(args.backend, plan, **opts)
        opened.append(backend)
    except (UsageError, ArtifactError, CompileError, SourceError, OutputError,
            BackendUnavailable, AcceleratorError) as e:  # fmt: skip
        _say(f"error: {e}")
        for o in reversed(opened):
            o.close()
        return 2

    det = Detector(plan, backend, names, args.conf, args.nms, sinks, jsonl)
    total = source.total if args.max_frames is None else min(source.total or 10**9,
                                                             args.max_frames)  # fmt: skip
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="frame", desc=Path(args.input).name[:30], file=sys.stderr)
    pipe = Pipeline(source, det.stages(), queue_depth=args.queue_depth,
                    on_output=(lambda _item: bar.update(1)) if bar else None,
                    max_frames=args.max_frames)  # fmt: skip
    try:
        res = pipe.run_sequential() if args.sequential else pipe.run_threaded()
    finally:
        if bar is not None:
            bar.close()
        for o in reversed(opened):
            try:
                o.close()
            except Exception as e:  # noqa: BLE001 - one failing close must not hide the rest
                _say(f"warning: closing {type(o).__name__}: {e}")
    report = make_report(args, model_path, art, plan, source, res, det)
    paths["report"].write_text(json.dumps(report, indent=1))
    drew = write_timeline_png(res, paths["timeline"], title=f"{art.name} on {args.backend}")
    print_summary(report, paths, drew)
    if res.interrupted:
        _say("interrupted: outputs finalised up to the last frame handled")
        return 130
    if res.error:
        _say(f"error: {res.error}")
        return 1
    return 0


def make_report(args: argparse.Namespace, model_path: Path, art: Artifact, plan: Plan,
                source: Source, res: PipelineResult, det: Detector) -> dict[str, Any]:  # fmt: skip
    n = max(res.frames_out, 1)
    return {
        "input": args.input,
        "model": str(model_path),
        "model_name": art.name,
        # The accuracy measured for this model (VOC sample, TUD person AP), so a reader of the
        # report knows what the boxes are worth.
        "model_measured": art.metadata.get("measured", {}),
        "backend": args.backend,
        "mode": res.mode,
        "input_size": list(plan.input_shape[1:]),
        "frames_in": res.frames_in,
        "frames_out": res.frames_out,
        "dropped_live": res.dropped,
        "skipped_undecodable": list(source.skipped),
        "detections": det.detections,
        "wall_s": round(res.wall_s, 3),
        "fps": round(throughput_fps(res), 3),
        "stage_ms": stage_stats(res),
        "accelerator_ms": {
            "pl": round(det.accel_s["pl"] * 1e3 / n, 3),
            "cpu_steps": round(det.accel_s["cpu"] * 1e3 / n, 3),
        },  # fmt: skip
        "plan": plan.summary(),
        "rss_mb": {**det.rss_at, "end": rss_mb(), "peak": peak_rss_mb()},
        "video": not args.no_video,
        "interrupted": res.interrupted,
        "error": res.error,
    }


def print_summary(report: dict[str, Any], paths: dict[str, Path], drew: bool) -> None:
    st = report["stage_ms"]
    line = ", ".join(f"{k} {v['mean']:.1f}" for k, v in st.items())
    print(f"{report['frames_out']} frames, {report['fps']:.2f} fps ({report['mode']}); "
          f"ms/frame: {line}")  # fmt: skip
    if report["skipped_undecodable"]:
        _say(f"warning: {_describe_skips(report['skipped_undecodable'])}")
    if report["dropped_live"]:
        _say(f"warning: dropped {report['dropped_live']} frame(s): the pipeline fell behind the "
             f"live source")  # fmt: skip
    made = {"video": report["video"], "timeline": drew}
    outs = [str(p) for k, p in paths.items() if p.exists() and made.get(k, True)]
    print("wrote " + ", ".join(outs))
    if not drew:
        _say("warning: timeline PNG left out (no matplotlib, or no frame)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "detect":
        return run_detect(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
