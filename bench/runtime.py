"""Runtime benchmark of the host software (``make bench-sw``) -> bench/results/runtime.json.

    .venv/bin/python bench/runtime.py [--quick] [--model ART.npz] [--out bench/results/runtime.json]

Measured side by side in one run, on TUD-Stadtmitte frames (640x480), at the model's input size
(512x512 for the Yolo-Fastest artifacts):

* ``cpu_stages_ms``: the ARM-side work per frame, one thread (OpenCV and BLAS limited to one):
  pre-processing (letterbox), decode + NMS, drawing; median over frames. Target <= 5 ms total.
* ``pipeline_speedup``: frames per second of the threaded pipeline over the same stage
  functions run one after another (same frames, same backend, same process; the median ratio
  of rounds, each a sequential run then a threaded run). With ``emu`` the accelerator stage is
  CPU work (about 97 % of a frame), so this gains only what an idle core allows;
  ``pipeline_speedup_modelled_pl`` repeats it with the accelerator stage waiting as long as
  hw/cycle_model.py predicts the PL takes (the CPU free meanwhile, as on the board).
* ``emu_vs_torch_float_ratio``: milliseconds per frame of the ``emu`` backend (the functional
  model of the accelerator, NumPy) over float PyTorch inference of the same darknet network
  (``models/darknet/``, cfg + weights), both on one CPU thread, alternating frame by frame;
  medians. > 1 means emu is slower. ``emu_vs_opencv_float_ratio``: the same against OpenCV's
  DNN module running the darknet cfg + weights in float (one thread, in the same rotation);
  target <= 2.
* ``peak_rss_mb``, ``rss_growth_fraction`` and ``threads_after_exit``: the real command
  (``sw.app.main``, what ``shiftdet detect`` runs) in its own process on the 640x480 clip
  looped to ``--rss-frames`` (6,000) frames, with every output on (mp4, JSON lines, report):
  RSS at the end against RSS after 500 frames (a leak shows as growth; target <= 0.005), its
  peak RSS, and the threads still alive in that process after ``main`` returned (target 0).
  The model there is the same artifact at ``--rss-size`` (128x128: the same layers and
  per-frame bookkeeping, 16x fewer pixels, so that 6,000 frames take minutes, not an hour).

The model is the best quantized Yolo-Fastest under models/artifacts/ when there is one; until
then a *structural stand-in*: the Yolo-Fastest cfg at 512x512 with random pow2/int8 weights
(same layers, shapes and descriptors, so the same emu and CPU work per frame; head biases set low
so that a frame has a realistic few dozen candidate boxes). The JSON says which was used.
This is a benchmark, not a test: it asserts nothing and is not timed by the test suite.
"""

from __future__ import annotations

import os

# One BLAS / OpenMP thread everywhere: "on one core" figures, and a fair emu-vs-torch ratio.
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from models.paths import data_dir  # noqa: E402
from sim.darknet_net import random_artifact_from_cfg  # noqa: E402
from sw import app  # noqa: E402
from sw.accel_config import AccelConfig  # noqa: E402
from sw.artifact import Artifact, Output, Quant  # noqa: E402
from sw.backends.emu import EmuBackend  # noqa: E402
from sw.compiler import compile_model  # noqa: E402
from sw.draw import draw_detections  # noqa: E402
from sw.pipeline import Item, Pipeline, PipelineResult, stage_stats, throughput_fps  # noqa: E402
from sw.plan import Plan  # noqa: E402
from sw.postprocess import YoloDecoder  # noqa: E402
from sw.preprocess import letterbox  # noqa: E402
from sw.sinks import JsonlSink, VideoSink  # noqa: E402
from sw.sources import Frame, Source, VideoFileSource  # noqa: E402

CFG = "weights/darknet/yolo-fastest-voc.cfg"
WEIGHTS = "weights/darknet/yolo-fastest-voc.weights"
CLIP = "video/TUD-Stadtmitte/TUD-Stadtmitte.mp4"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def structural_artifact(cfg_path: Path, size: int = 512, seed: int = 0) -> Artifact:
    """The darknet cfg's layers as an artifact with random weights (see the module docstring):
    sim.darknet_net's generator, which bench/accelerator.py uses too, with the VOC names."""
    art = random_artifact_from_cfg(str(cfg_path), size, seed)
    art.name = f"structural stand-in of {cfg_path.stem} (random weights)"
    art.classes = (data_dir() / "weights/darknet/voc.names").read_text().split()
    art.shapes()
    return art


def calibrate_heads(art: Artifact, image: np.ndarray, candidates: int = 3) -> None:
    """Make the stand-in's random heads produce a detector-like number of boxes on real frames:
    per anchor, objectness 0.9 at the ``candidates`` strongest cells of ``image`` and 0.2 at
    twice as many; per class 0.6 at the top 1 % of cells and 0.2 at the top 2 % (darknet
    keeps a box for a class when objectness x class > 0.25). Only head constants change (bias,
    multiplier, output range); layers, shapes and so the emu's and the pipeline's work stay
    those of the real network."""
    from sim.reference.requant import quantize_multiplier
    from sw import kernels
    from sw.artifact import decode_codes

    probe = Artifact(art.name, art.input_name, art.input_shape, art.input_quant, art.nodes,
                     [Output(art.node(o.node).inputs[0]) for o in art.outputs])  # fmt: skip
    feats = EmuBackend(compile_model(probe, AccelConfig())).run(image, hwc=True)
    for o in art.outputs:
        node = art.node(o.node)
        # A trained head's codes cover logits of about -16 .. +4 (mostly "nothing here").
        node.quant = q = Quant(8, 200, 0.08)
        t, a = node.tensors, node.attrs
        src = node.inputs[0]
        v = decode_codes(t["codes"], a["weight_format"], a["weight_bits"])
        acc = kernels.conv_dense(feats[src], art.quant_of(src).zero, v, t["bias"] * 0, 1, 0)
        per = 5 + int(o.attrs["classes"])
        bias, mp, sh = t["bias"].astype(np.int64), t["m_pos"].copy(), t["shift"].copy()
        for ch in range(acc.shape[0]):
            k = ch % per
            if k < 4:
                continue
            n = candidates if k == 4 else max(1, acc[ch].size // 100)
            hi = 0.9 if k == 4 else 0.6
            srt = np.sort(acc[ch].ravel())[::-1]
            a_hi, a_lo = srt[n - 1], srt[min(2 * n, srt.size) - 1]
            t_hi, t_lo = np.log(hi / (1 - hi)), np.log(0.2 / 0.8)  # logits wanted there
            m = (t_hi - t_lo) / q.scale / max(a_hi - a_lo, 1.0)  # codes per accumulator unit
            mp[ch], sh[ch] = quantize_multiplier(m)
            bias[ch] = int(round(t_hi / q.scale / m - a_hi))
        t["bias"], t["m_pos"], t["m_neg"], t["shift"] = bias.astype(np.int32), mp, mp.copy(), sh
    art.shapes()


class LoopingVideo(Source):
    """A video file read over and over (for the 1,000-frame memory run); never live."""

    def __init__(self, path: Path, frames: int) -> None:
        super().__init__(str(path), live=False, total=frames)
        self.path, self.frames, self.count = path, frames, 0
        self.src = VideoFileSource(path)

    def read(self) -> Frame | None:
        if self.count >= self.frames:
            return None
        f = self.src.read()
        if f is None:
            self.src.close()
            self.src = VideoFileSource(self.path)
            f = self.src.read()
        self.count += 1
        return Frame(self.count - 1, f.image, f.t_capture)

    def close(self) -> None:
        self.src.close()


def write_long_video(clip: Path, out: Path, frames: int) -> None:
    """``frames`` frames of ``clip`` looped, as one mp4 (the memory run's input)."""
    src = LoopingVideo(clip, frames)
    sink = VideoSink(out, 25.0)
    while (f := src.read()) is not None:
        sink.write(f.image)
    sink.close()
    src.close()


def read_frames(path: Path, n: int) -> list[np.ndarray]:
    src = VideoFileSource(path)
    frames = []
    while len(frames) < n:
        f = src.read()
        if f is None:
            break
        frames.append(f.image)
    src.close()
    return frames


def bench_cpu_stages(
    plan: Plan, backend: EmuBackend, frames: list[np.ndarray], names: list[str]
) -> dict[str, Any]:
    """Pre-process, decode + NMS and drawing, one thread, median ms per frame."""
    cv2.setNumThreads(1)
    _, h, w = plan.input_shape
    dec = YoloDecoder.for_plan(plan)
    heads, pre, post, draw, ndet = [], [], [], [], []
    for f in frames:  # the heads of real frames, computed once (not timed here)
        rgb, lb = letterbox(f, w, h)
        heads.append((backend.run(rgb, hwc=True), lb))
    buf = np.empty((h, w, 3), np.uint8)
    for rep in range(3):
        for f, (out, lb) in zip(frames, heads, strict=True):
            t0 = time.perf_counter()
            letterbox(f, w, h, out=buf)
            t1 = time.perf_counter()
            det = dec(out, lb)
            t2 = time.perf_counter()
            draw_detections(f.copy(), det, names)
            t3 = time.perf_counter()
            if rep:  # the first pass warms caches and allocators
                pre.append(t1 - t0)
                post.append(t2 - t1)
                draw.append(t3 - t2)
                ndet.append(len(det))
    cv2.setNumThreads(-1)
    ms = {
        "preprocess": 1e3 * float(np.median(pre)),
        "decode_nms": 1e3 * float(np.median(post)),
        "draw": 1e3 * float(np.median(draw)),
    }
    ms = {k: round(v, 3) for k, v in ms.items()}
    ms["total"] = round(sum(ms.values()), 3)
    return {"ms": ms, "detections_per_frame": float(np.mean(ndet)), "frames": len(frames),
            "input": f"640x480 -> {w}x{h}"}  # fmt: skip


def modelled_pl_seconds(plan: Plan) -> float:
    """The plan's PL time per frame from hw/cycle_model.py (0.0 without it)."""
    cycles = sum(li.cycles or 0 for li in plan.layers)
    return cycles / (plan.cfg.clock_mhz * 1e6)


class ModelledPL:
    """A stand-in backend for the pipeline comparison: waits as long as the PL would compute
    (the CPU is free meanwhile, as while the driver awaits the interrupt), returns fixed heads."""

    def __init__(self, heads: dict[str, np.ndarray], seconds: float) -> None:
        self.heads, self.seconds = heads, seconds
        self.stats = type("S", (), {"pl_s": seconds, "cpu_s": 0.0})()

    def run(self, image: np.ndarray, hwc: bool = False) -> dict[str, np.ndarray]:
        time.sleep(self.seconds)
        return {k: v.copy() for k, v in self.heads.items()}


def run_pipeline(
    plan: Plan,
    backend: EmuBackend | ModelledPL,
    names: list[str],
    source: Source,
    out_dir: Path,
    sequential: bool,
    on_frame: Callable[[Item], None] | None = None,
) -> PipelineResult:
    video = VideoSink(out_dir / "bench.mp4", 25.0)
    jsonl = JsonlSink(out_dir / "bench.jsonl")
    decoder = YoloDecoder.for_plan(plan, conf_thresh=0.25, nms_thresh=0.45)
    det = app.Detector(plan.input_shape, backend, names, decoder, [video], jsonl)
    pipe = Pipeline(source, det.stages(), queue_depth=4, on_output=on_frame)
    try:
        res = pipe.run_sequential() if sequential else pipe.run_threaded()
    finally:
        video.close()
        jsonl.close()
        source.close()
    if res.error:
        raise RuntimeError(res.error)
    return res


def bench_emu_vs_float(backend: EmuBackend, frames: list[np.ndarray], size: int,
                       n: int) -> tuple[float, float, float]:  # fmt: skip
    """Median ms per frame of the emu backend, of float torch and of OpenCV's DNN module (both
    on the darknet cfg + weights), one thread each, frame by frame in turn so that load changes
    hit all three alike."""
    import cv2
    import torch

    from models.darknet import Darknet

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    d = data_dir()
    model = Darknet.from_files(d / CFG, d / WEIGHTS).eval()
    net = cv2.dnn.readNetFromDarknet(str(d / CFG), str(d / WEIGHTS))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    heads = net.getUnconnectedOutLayersNames()
    rgbs = [letterbox(f, size, size)[0] for f in frames[:n]]

    def opencv(rgb: np.ndarray) -> None:
        net.setInput(cv2.dnn.blobFromImage(rgb, 1 / 255))  # already RGB, already letterboxed
        net.forward(heads)

    emu_t, torch_t, cv_t = [], [], []
    with torch.inference_mode():
        model(torch.zeros(1, 3, size, size))  # warm-up
        backend.run(rgbs[0], hwc=True)
        opencv(rgbs[0])
        for rgb in rgbs:
            t0 = time.perf_counter()
            backend.run(rgb, hwc=True)
            t1 = time.perf_counter()
            model(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)
            t2 = time.perf_counter()
            opencv(rgb)
            t3 = time.perf_counter()
            emu_t.append(t1 - t0)
            torch_t.append(t2 - t1)
            cv_t.append(t3 - t2)
    return tuple(1e3 * float(np.median(t)) for t in (emu_t, torch_t, cv_t))  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="artifact; default: best under models/artifacts/, else the "
                                     "structural stand-in")  # fmt: skip
    ap.add_argument("--pipeline-frames", type=int, default=40)
    ap.add_argument("--cpu-frames", type=int, default=30)
    ap.add_argument("--torch-frames", type=int, default=20)
    ap.add_argument("--rss-frames", type=int, default=6000)
    ap.add_argument("--rss-size", type=int, default=128, help="model input size of the memory run")
    ap.add_argument("--rounds", type=int, default=3, help="sequential/threaded pipeline rounds")
    ap.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    ap.add_argument("--out", default=str(REPO / "bench/results/runtime.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.pipeline_frames, args.cpu_frames, args.torch_frames, args.rss_frames = 12, 8, 3, 600
        args.rounds = 1
    d = data_dir()
    clip = d / CLIP
    t_start = time.perf_counter()

    from sw import artifact as artmod

    model_desc = ""
    if args.model:
        art = artmod.load(args.model)
        model_desc = args.model
    else:
        try:
            path = app.find_default_artifact()
            art, model_desc = artmod.load(path), str(path)
        except app.UsageError:
            art = structural_artifact(d / CFG)
            first = read_frames(clip, 1)[0]
            calibrate_heads(art, letterbox(first, *art.input_shape[1:])[0])
            model_desc = (
                "structural stand-in: yolo-fastest-voc.cfg layers at 512x512, random weights, "
                "head biases set for a detector-like number of boxes (NOT a detector)"
            )
    plan = compile_model(art, AccelConfig())
    backend = EmuBackend(plan)
    names = art.classes or [str(i) for i in range(20)]
    _, size, _ = plan.input_shape
    frames = read_frames(clip, max(args.cpu_frames, args.torch_frames))
    print(f"model: {model_desc}; {plan.summary()}", flush=True)

    cpu = bench_cpu_stages(plan, backend, frames[: args.cpu_frames], names)
    print(f"cpu stages (ms/frame, one thread): {cpu['ms']}", flush=True)

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        # Rounds of a sequential run then a threaded run on the same frames; the speedup is the
        # median of the rounds' ratios: the machine is shared, and load that drifts between two
        # runs far apart would otherwise decide the ratio.
        ratios = []
        for rnd in range(args.rounds):
            fps = {}
            for mode in ("sequential", "threaded"):
                src = LoopingVideo(clip, args.pipeline_frames)
                res = run_pipeline(plan, backend, names, src, Path(tmp), mode == "sequential")
                fps[mode] = round(throughput_fps(res), 3)
                entry = results.setdefault(mode, {"rounds_fps": []})
                entry["rounds_fps"].append(fps[mode])
                entry["stage_ms"], entry["frames"] = stage_stats(res), res.frames_out
            ratios.append(fps["threaded"] / fps["sequential"])
            print(f"round {rnd + 1}: sequential {fps['sequential']} fps, threaded "
                  f"{fps['threaded']} fps", flush=True)  # fmt: skip
        for entry in results.values():
            entry["fps"] = float(np.median(entry["rounds_fps"]))
        speedup = float(np.median(ratios))
        # The same pipeline with the accelerator stage as the board has it: the CPU idles while
        # the PL computes (here: sleeps for the cycle model's prediction) and the heads come back.
        pl_s = modelled_pl_seconds(plan)
        heads = backend.run(letterbox(frames[0], size, size)[0], hwc=True)
        board = {}
        for mode in ("sequential", "threaded"):
            src = LoopingVideo(clip, args.pipeline_frames)
            res = run_pipeline(plan, ModelledPL(heads, pl_s), names, src, Path(tmp),
                               mode == "sequential")  # fmt: skip
            board[mode] = {"fps": round(throughput_fps(res), 3), "stage_ms": stage_stats(res)}
        board_speedup = board["threaded"]["fps"] / board["sequential"]["fps"]
        print(f"modelled PL ({pl_s * 1e3:.1f} ms): sequential {board['sequential']['fps']} fps, "
              f"threaded {board['threaded']['fps']} fps", flush=True)  # fmt: skip

        # Memory: the real command in its own process (no torch in it), on a long video.
        long_clip = Path(tmp) / "long.mp4"
        write_long_video(clip, long_clip, args.rss_frames)
        small = artmod.with_input_size(art, args.rss_size, args.rss_size)
        art_path = artmod.save(small, Path(tmp) / "m.npz")
        runner = ("import sys, threading; from sw import app; rc = app.main(sys.argv[1:]); "
                  "alive = [t.name for t in threading.enumerate() "
                  "if t is not threading.main_thread()]; print('THREADS_AFTER_EXIT', len(alive), "
                  "alive); sys.exit(rc)")  # fmt: skip
        cmd = [sys.executable, "-c", runner, "detect", str(long_clip), "--model", str(art_path),
               "--out-dir", str(Path(tmp) / "rss"), "--no-progress"]  # fmt: skip
        run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=7200)
        if run.returncode:
            raise RuntimeError(f"memory run failed: {run.stderr.strip()}")
        threads_after = int(run.stdout.split("THREADS_AFTER_EXIT")[1].split()[0])
        rep = json.loads((Path(tmp) / "rss" / "long.report.json").read_text())
        mem = rep["rss_mb"]
        rss500, rss_end, peak = mem["after_500_frames"], mem["end"], mem["peak"]
        print(f"RSS after 500 frames {rss500} MB, after {rep['frames_out']} {rss_end} MB; "
              f"peak {peak} MB ({rep['fps']} fps); threads after exit {threads_after}",
              flush=True)  # fmt: skip

    emu_ms, torch_ms, cv_ms = bench_emu_vs_float(backend, frames, size, args.torch_frames)
    print(f"emu {emu_ms:.1f} ms/frame vs torch float {torch_ms:.1f}, OpenCV DNN float "
          f"{cv_ms:.1f} ms/frame", flush=True)  # fmt: skip

    out = {
        "cpu_stages_ms": cpu["ms"],
        "cpu_stages_target_ms": 5.0,
        "cpu_stages_detail": cpu,
        "pipeline_speedup": round(speedup, 3),
        "pipeline": results,
        "pipeline_speedup_modelled_pl": round(board_speedup, 3),
        "pipeline_modelled_pl": {**board, "pl_ms": round(pl_s * 1e3, 3),
                                 "note": "accelerator stage = sleep for the cycle model's "
                                         "prediction (CPU idle, as on the board)"},
        "emu_vs_torch_float_ratio": round(emu_ms / torch_ms, 3),
        "emu_ms_per_frame": round(emu_ms, 3),
        "torch_float_ms_per_frame": round(torch_ms, 3),
        "emu_vs_opencv_float_ratio": round(emu_ms / cv_ms, 3),
        "emu_vs_opencv_float_target": 2.0,
        "opencv_float_ms_per_frame": round(cv_ms, 3),
        "peak_rss_mb": peak,
        "rss_mb_after_500": rss500,
        "rss_mb_end": rss_end,
        "rss_growth_fraction": round((rss_end - rss500) / rss500, 5),
        "rss_growth_target": 0.005,
        "threads_after_exit": threads_after,
        "memory_run": {"command": "sw.app.main(['detect', <TUD-Stadtmitte looped>, '--model', "
                                  f"M at {args.rss_size}x{args.rss_size}])",
                       "frames": rep["frames_out"], "fps": rep["fps"],
                       "input_size": [args.rss_size, args.rss_size],
                       "rss_from_frame": 500},
        "model": model_desc,
        "input_size": [size, size],
        "backend": "emu",
        "plan": plan.summary(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
                    "load_average": [round(x, 2) for x in os.getloadavg()],
                    "note": "shared development machine; absolute times vary with load"},
        "command": "python bench/runtime.py" + (" --quick" if args.quick else ""),
        "seconds": round(time.perf_counter() - t_start, 1),
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
