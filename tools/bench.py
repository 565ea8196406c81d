"""`iristrack bench`: stage latency, end-to-end speed (sequential and pipelined), live latency, baseline, memory."""

from __future__ import annotations

import contextlib
import resource
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from tracker.errors import SourceError, TrackerError
from tracker.io.sinks import JsonlSink
from tracker.io.sources import Source, open_source
from tracker.pipeline import Tracker
from tracker.run import PIPELINED_BY_DEFAULT, run
from tracker.structures import Frame

MODES = ("sequential", "pipelined")
SOAK_WARMUP_FRAMES = 200  # RSS "after warm-up" is read here: allocators and caches have settled by then
RESIZED_FOURCC = "mp4v"


@dataclass
class Stats:
    """Latency samples of one stage in milliseconds."""

    samples_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """{"median_ms", "p99_ms", "mean_ms"} over the samples."""
        if not self.samples_ms:
            return {"median_ms": float("nan"), "p99_ms": float("nan"), "mean_ms": float("nan")}
        a = np.asarray(self.samples_ms)
        return {
            "median_ms": round(float(np.median(a)), 4),
            "p99_ms": round(float(np.percentile(a, 99)), 4),
            "mean_ms": round(float(a.mean()), 4),
        }


def rss_mb() -> float:
    """Resident memory of this process in MB (VmRSS; the peak from getrusage where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux; an upper bound


def _frames(spec: str, max_frames: int) -> tuple[list, Stats, float | None]:
    """Decode up to max_frames frames into memory, timing each read."""
    decode = Stats()
    frames = []
    with open_source(spec) as source:
        it = iter(source)
        while len(frames) < max_frames:
            t0 = time.perf_counter()
            frame = next(it, None)
            if frame is None:
                break
            decode.samples_ms.append((time.perf_counter() - t0) * 1e3)
            frames.append(frame)
        fps = source.fps
    return frames, decode, fps


def write_resized_copy(spec: str, size_wh: tuple[int, int], folder: Path, max_frames: int) -> Path:
    """Up to max_frames frames of `spec` resized to size_wh (area/cubic interpolation) as an mp4 in `folder`."""
    w, h = size_wh
    path = folder / f"resized_{w}x{h}.mp4"
    writer = None
    written = 0
    with open_source(spec) as source:
        for frame in source:
            if frame.image is None:  # an unreadable image of a folder: nothing to resize
                continue
            if writer is None:
                writer = cv2.VideoWriter(
                    str(path),
                    cv2.VideoWriter_fourcc(*RESIZED_FOURCC),
                    source.fps or 30.0,
                    (w, h),
                    frame.image.ndim == 3,
                )
                if not writer.isOpened():
                    raise TrackerError(f"cannot write a resized copy {path} ({w}x{h}, {RESIZED_FOURCC})")
            image = frame.image if frame.image.dtype == np.uint8 else cv2.convertScaleAbs(frame.image, alpha=1 / 257)
            smaller = w * h < image.shape[0] * image.shape[1]
            writer.write(cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if smaller else cv2.INTER_CUBIC))
            written += 1
            if written >= max_frames:
                break
    if writer is not None:
        writer.release()
    if not written:
        raise SourceError(f"{spec}: no frames to resize")
    return path


class LoopedSource:
    """A recorded source replayed from the start until `total` frames; indices and timestamps keep counting."""

    is_live = False
    dropped_frames = 0

    def __init__(self, spec: str, total: int, prefetch: bool = True) -> None:
        self.spec, self.frame_count, self.prefetch = spec, total, prefetch
        self._current: Source | None = None
        self._closed = False

    def __iter__(self) -> Iterator[Frame]:
        n, offset_s = 0, 0.0
        while n < self.frame_count and not self._closed:
            with open_source(self.spec, prefetch=self.prefetch) as source:
                self._current = source
                last_ts, in_pass = 0.0, 0
                for frame in source:
                    in_pass += 1
                    if frame.timestamp_s is None:  # images have no clock: nothing to continue
                        yield replace(frame, index=n)
                    else:
                        last_ts = frame.timestamp_s
                        yield replace(frame, index=n, timestamp_s=offset_s + frame.timestamp_s)
                    n += 1
                    if n >= self.frame_count:
                        return
                period_s = 1.0 / (source.fps or 30.0)
            if not in_pass:
                return
            offset_s += last_ts + period_s

    def close(self) -> None:
        """Stop after the current frame (callable from another thread)."""
        self._closed = True
        if self._current is not None:
            self._current.close()


def bench_stages(tracker: Tracker, frames: list, out_dir: Path, repeat: int = 1) -> dict[str, Stats]:
    """Per-stage latency of the tracker on in-memory frames, one at a time, output written to a JSONL file."""
    stages = {k: Stats() for k in ("preprocess", "inference", "fit", "output", "total")}
    with JsonlSink(out_dir / "bench.jsonl") as sink:
        for _ in range(repeat):
            tracker.reset()
            for frame in frames:
                t0 = time.perf_counter()
                result = tracker(frame)
                t1 = time.perf_counter()
                sink.write(frame, result)
                t2 = time.perf_counter()
                stages["preprocess"].samples_ms.append(tracker.times.preprocess_ms)
                stages["inference"].samples_ms.append(tracker.times.inference_ms)
                stages["fit"].samples_ms.append(tracker.times.fit_ms)
                stages["output"].samples_ms.append((t2 - t1) * 1e3)
                stages["total"].samples_ms.append((t2 - t0) * 1e3)
    return stages


def bench_end_to_end(tracker: Tracker, spec: str, out_dir: Path, max_frames: int, pipelined: bool) -> tuple[int, float]:
    """Frames and seconds for source -> tracker -> JSONL, as `iristrack run` does it."""
    tracker.reset()
    with open_source(spec, prefetch=not pipelined) as source, JsonlSink(out_dir / "e2e.jsonl") as sink:
        summary = run(source, tracker, sink, max_frames=max_frames, pipelined=pipelined)
    return summary.frames, summary.elapsed_s


def bench_realtime(tracker: Tracker, spec: str, out_dir: Path, max_frames: int, pipelined: bool) -> dict:
    """Replay `spec` at its own frame rate; frame-available-to-result-written latency and dropped frames."""
    latency = Stats()

    def on_result(result) -> None:
        # A live frame's timestamp is the perf_counter time it became available.
        latency.samples_ms.append((time.perf_counter() - result.timestamp_s) * 1e3)

    tracker.reset()
    with open_source(spec, realtime=True) as source, JsonlSink(out_dir / "realtime.jsonl") as sink:
        summary = run(source, tracker, sink, max_frames=max_frames, pipelined=pipelined, on_result=on_result)
        fps = source.fps
    return {
        "input_fps": fps,
        "frames_processed": summary.frames,
        "dropped_frames": summary.dropped_frames,
        "frame_to_result_latency": latency.summary(),
    }


def bench_soak(tracker: Tracker, spec: str, out_dir: Path, frames: int, pipelined: bool) -> dict:
    """`frames` frames of `spec` looped, as `iristrack run` processes them; resident memory along the way."""
    at_warmup: list[float] = []
    count = [0]
    warmup = min(SOAK_WARMUP_FRAMES, max(1, frames // 10))

    def on_result(result) -> None:
        count[0] += 1
        if count[0] == warmup:
            at_warmup.append(rss_mb())

    tracker.reset()
    start = rss_mb()
    with (
        contextlib.closing(LoopedSource(spec, frames, prefetch=not pipelined)) as source,
        JsonlSink(out_dir / "soak.jsonl") as sink,
    ):
        summary = run(source, tracker, sink, pipelined=pipelined, on_result=on_result)
    end = rss_mb()
    after = at_warmup[0] if at_warmup else start
    return {
        "frames": summary.frames,
        "warmup_frames": warmup,
        "fps": round(summary.fps, 1),
        "rss_mb": {"start": round(start, 1), "after_warmup": round(after, 1), "end": round(end, 1)},
        "growth_mb": round(end - after, 1),
        "mode": MODES[pipelined],
    }


def bench_baseline(frames: list) -> Stats:
    """Per-frame latency of the classical OpenCV baseline on the same frames."""
    from tools.baseline import ClassicalDetector

    detector = ClassicalDetector()
    stats = Stats()
    for frame in frames:
        t0 = time.perf_counter()
        detector(frame.image)
        stats.samples_ms.append((time.perf_counter() - t0) * 1e3)
    return stats


def run_bench(
    tracker: Tracker,
    spec: str,
    *,
    max_frames: int = 2000,
    realtime: bool = False,
    pipelined: bool | None = None,
    resize_wh: tuple[int, int] | None = None,
    soak_frames: int | None = None,
    live_tracker: Tracker | None = None,
) -> dict:
    """All measurements for one source and backend, as one JSON-ready dict.

    `live_tracker` (default: `tracker`) times the realtime replay: the tracker `iristrack run` loads for a
    live source, with every core given to the model.

    End-to-end speed (and realtime latency) is measured both sequential and pipelined; `pipelined` picks the
    mode reported as `end_to_end_fps`, compared with the baseline, and used for the soak.
    `resize_wh` benches a resized copy of the source (written to a temporary folder, removed afterwards).
    """
    pipelined = PIPELINED_BY_DEFAULT if pipelined is None else pipelined
    rss_start = rss_mb()
    with tempfile.TemporaryDirectory(prefix="iristrack_bench_") as tmp:
        out_dir = Path(tmp)
        source_spec = write_resized_copy(spec, resize_wh, out_dir, max_frames) if resize_wh else spec
        frames, decode, _fps = _frames(str(source_spec), max_frames)
        if not frames:
            raise ValueError(f"{spec}: no frames")
        # Warm-up: first inferences pay for lazy allocation and kernel selection.
        for frame in frames[:20]:
            tracker(frame)
        stages = bench_stages(tracker, frames, out_dir)
        e2e = {}
        for mode in MODES:
            n, seconds = bench_end_to_end(tracker, str(source_spec), out_dir, max_frames, mode == "pipelined")
            e2e[mode] = {"frames": n, "seconds": round(seconds, 3), "fps": round(n / seconds, 1)}
        rt = None
        if realtime:
            live = live_tracker or tracker
            for frame in frames[:20]:
                live(frame)
            rt = {m: bench_realtime(live, str(source_spec), out_dir, max_frames, m == "pipelined") for m in MODES}
        soak = bench_soak(tracker, str(source_spec), out_dir, soak_frames, pipelined) if soak_frames else None
    baseline = bench_baseline(frames)
    h, w = frames[0].image.shape[:2]
    chosen = MODES[pipelined]
    result = {
        "source": spec,
        "resized_to_wh": list(resize_wh) if resize_wh else None,
        "frames": e2e[chosen]["frames"],
        "frame_wh": [w, h],
        "backend": tracker.backend.name,
        # A face run's model is the eye model (the shipped one's input is smaller than the close-up model's).
        "model_input_hw": list(
            (tracker.eye_backend if getattr(tracker, "mode", None) == "face" else tracker.backend).input_hw
        ),
        "stages": {"decode": decode.summary(), **{k: v.summary() for k, v in stages.items()}},
        "end_to_end": e2e,
        "mode": chosen,
        "end_to_end_fps": e2e[chosen]["fps"],
        "pipelined_speedup": round(e2e["pipelined"]["fps"] / max(e2e["sequential"]["fps"], 1e-9), 2),
        "baseline": {"per_frame": baseline.summary(), "fps": round(1e3 / max(np.mean(baseline.samples_ms), 1e-9), 1)},
        "rss_mb_at_start": round(rss_start, 1),
    }
    result["speed_ratio_vs_baseline"] = round(result["end_to_end_fps"] / result["baseline"]["fps"], 2)
    result["eyes"] = getattr(tracker, "mode", None) or "one"  # "face": both eyes of a face per frame (--eyes)
    if rt is not None:
        result["realtime"] = rt
    if soak is not None:
        result["soak"] = soak
    return result


def format_bench(r: dict) -> str:
    """Human-readable table of run_bench's result."""
    resized = f" (resized copy {r['resized_to_wh'][0]}x{r['resized_to_wh'][1]})" if r.get("resized_to_wh") else ""
    lines = [
        f"{r['source']}{resized}: {r['frames']} frames {r['frame_wh'][0]}x{r['frame_wh'][1]}, "
        f"backend {r['backend']}, model input {r['model_input_hw'][1]}x{r['model_input_hw'][0]}",
        f"{'stage':<12}{'median ms':>11}{'p99 ms':>9}",
    ]
    for name, s in r["stages"].items():
        lines.append(f"{name:<12}{s['median_ms']:>11.3f}{s['p99_ms']:>9.3f}")
    e2e = r["end_to_end"]
    lines.append(
        f"end to end (decode, inference, fit, JSONL output): sequential {e2e['sequential']['fps']:.1f} "
        f"frames/s, pipelined {e2e['pipelined']['fps']:.1f} frames/s ({r['pipelined_speedup']:.2f}x)"
    )
    b = r["baseline"]
    if r.get("eyes") == "face":
        # The classical detector looks for one eye filling the frame: on a face frame it is no baseline.
        lines.append("face frames (--eyes face): both eyes per frame; preprocess includes finding the face")
    else:
        lines.append(
            f"classical baseline: {b['per_frame']['median_ms']:.3f} ms median per frame "
            f"({b['fps']:.0f} frames/s); tracker ({r['mode']}) / baseline speed: "
            f"{r['speed_ratio_vs_baseline']:.2f}x"
        )
    for mode, rt in (r.get("realtime") or {}).items():
        lat = rt["frame_to_result_latency"]
        lines.append(
            f"realtime replay at {rt['input_fps']:.0f} fps, {mode}: frame-to-result latency median "
            f"{lat['median_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms; {rt['dropped_frames']} frames dropped "
            f"of {rt['frames_processed'] + rt['dropped_frames']}"
        )
    if "soak" in r:
        s, m = r["soak"], r["soak"]["rss_mb"]
        lines.append(
            f"soak, {s['frames']} frames looped ({s['mode']}, {s['fps']:.0f} frames/s): resident memory "
            f"{m['start']:.1f} MB at start, {m['after_warmup']:.1f} MB after {s['warmup_frames']} frames, "
            f"{m['end']:.1f} MB at the end; growth {s['growth_mb']:+.1f} MB"
        )
    return "\n".join(lines)
