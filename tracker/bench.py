"""`iristrack bench`: measured per-stage latency, end-to-end frames per second, live latency, and the classical baseline."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tracker.pipeline import Tracker
from tracker.sinks import JsonlSink
from tracker.sources import open_source


@dataclass
class Stats:
    """Latency samples of one stage in milliseconds."""

    samples_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """{"median_ms", "p99_ms", "mean_ms"} over the samples."""
        if not self.samples_ms:
            return {"median_ms": float("nan"), "p99_ms": float("nan"), "mean_ms": float("nan")}
        a = np.asarray(self.samples_ms)
        return {"median_ms": round(float(np.median(a)), 4), "p99_ms": round(float(np.percentile(a, 99)), 4),
                "mean_ms": round(float(a.mean()), 4)}


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


def bench_stages(tracker: Tracker, frames: list, out_dir: Path, repeat: int = 1) -> dict[str, Stats]:
    """Per-stage latency of the tracker on in-memory frames, output written to a JSONL file."""
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


def bench_end_to_end(tracker: Tracker, spec: str, out_dir: Path, max_frames: int) -> tuple[int, float]:
    """Frames and seconds for source -> tracker -> JSONL, as `iristrack run` does it."""
    from tracker.runner import run

    tracker.reset()
    with open_source(spec) as source, JsonlSink(out_dir / "e2e.jsonl") as sink:
        summary = run(source, tracker, sink, max_frames=max_frames)
    return summary.frames, summary.elapsed_s


def bench_realtime(tracker: Tracker, spec: str, max_frames: int) -> dict:
    """Replay `spec` at its own frame rate; frame-available-to-result latency and dropped frames."""
    latency = Stats()
    tracker.reset()
    with open_source(spec, realtime=True) as source:
        n = 0
        for frame in source:
            tracker(frame)
            latency.samples_ms.append((time.perf_counter() - frame.timestamp_s) * 1e3)
            n += 1
            if n >= max_frames:
                break
        dropped, fps = source.dropped_frames, source.fps
    return {"input_fps": fps, "frames_processed": n, "dropped_frames": dropped,
            "frame_to_result_latency": latency.summary()}


def bench_baseline(frames: list) -> Stats:
    """Per-frame latency of the classical OpenCV baseline on the same frames."""
    from tracker.baseline import ClassicalDetector

    detector = ClassicalDetector()
    stats = Stats()
    for frame in frames:
        t0 = time.perf_counter()
        detector(frame.image)
        stats.samples_ms.append((time.perf_counter() - t0) * 1e3)
    return stats


def run_bench(tracker: Tracker, spec: str, *, max_frames: int = 2000, realtime: bool = False) -> dict:
    """All measurements for one source and backend, as one JSON-ready dict."""
    frames, decode, fps = _frames(spec, max_frames)
    if not frames:
        raise ValueError(f"{spec}: no frames")
    # Warm-up: first inferences pay for lazy allocation and kernel selection.
    for frame in frames[:20]:
        tracker(frame)
    with tempfile.TemporaryDirectory() as tmp:
        stages = bench_stages(tracker, frames, Path(tmp))
        n, seconds = bench_end_to_end(tracker, spec, Path(tmp), max_frames)
    baseline = bench_baseline(frames)
    h, w = frames[0].image.shape[:2]
    e2e_fps = n / seconds
    result = {
        "source": spec, "frames": n, "frame_wh": [w, h], "backend": tracker.backend.name,
        "model_input_hw": list(tracker.backend.input_hw),
        "stages": {"decode": decode.summary(), **{k: v.summary() for k, v in stages.items()}},
        "end_to_end_fps": round(e2e_fps, 1),
        "baseline": {"per_frame": baseline.summary(),
                     "fps": round(1e3 / max(np.mean(baseline.samples_ms), 1e-9), 1)},
    }
    result["speed_ratio_vs_baseline"] = round(e2e_fps / result["baseline"]["fps"], 2)
    if realtime:
        result["realtime"] = bench_realtime(tracker, spec, max_frames)
    return result


def format_bench(r: dict) -> str:
    """Human-readable table of run_bench's result."""
    lines = [f"{r['source']}: {r['frames']} frames {r['frame_wh'][0]}x{r['frame_wh'][1]}, backend {r['backend']}, "
             f"model input {r['model_input_hw'][1]}x{r['model_input_hw'][0]}",
             f"{'stage':<12}{'median ms':>11}{'p99 ms':>9}"]
    for name, s in r["stages"].items():
        lines.append(f"{name:<12}{s['median_ms']:>11.3f}{s['p99_ms']:>9.3f}")
    lines.append(f"end to end: {r['end_to_end_fps']:.0f} frames/s (decode, inference, fit, JSONL output)")
    b = r["baseline"]
    lines.append(f"classical baseline: {b['per_frame']['median_ms']:.3f} ms median per frame ({b['fps']:.0f} frames/s); "
                 f"tracker / baseline speed: {r['speed_ratio_vs_baseline']:.2f}x")
    if "realtime" in r:
        rt = r["realtime"]
        lat = rt["frame_to_result_latency"]
        lines.append(f"realtime replay at {rt['input_fps']:.0f} fps: frame-to-result latency median "
                     f"{lat['median_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms; {rt['dropped_frames']} frames dropped "
                     f"of {rt['frames_processed'] + rt['dropped_frames']}")
    return "\n".join(lines)
