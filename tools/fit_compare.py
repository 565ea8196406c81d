"""`python -m tools.fit_compare VIDEO MODEL [MODEL ...] [--refine R ...]`: fit stages on the same frames, interleaved.

`iristrack bench` times each stage inside a whole run, where this VM's noise (another process, the CPU's clock)
moves a 1 ms stage by a third from run to run. This isolates the fit: each model's edge maps are computed once,
then `Tracker.finish` (fit, smoothing, result) is timed on them, the models taking turns, so a difference that
remains is the model's (how its edge maps make the fit work), not the machine's. `--refine` (repeated) times
each model under each refinement setting too (`none`, `pupil`, `iris,pupil`), on the same edge maps.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import cv2
import numpy as np

from tracker.pipeline import Tracker
from tracker.structures import Frame


def read_frames(video: str, limit: int) -> list[np.ndarray]:
    """Up to `limit` decoded frames of `video`."""
    capture = cv2.VideoCapture(video)
    frames = []
    while len(frames) < limit:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    return frames


def fit_times_ms(tracker: Tracker, prepared_edges: list) -> np.ndarray:
    """Milliseconds of `finish` per frame, from a reset tracker, on precomputed (Prepared, edges) pairs."""
    tracker.reset()
    times = []
    for prepared, edges in prepared_edges:
        t0 = time.perf_counter()
        tracker.finish(prepared, edges)
        times.append((time.perf_counter() - t0) * 1e3)
    return np.array(times)


def main(argv: list[str] | None = None) -> int:
    """Print each model's fit-stage median and mean over `--rounds` interleaved rounds."""
    parser = argparse.ArgumentParser(prog="python -m tools.fit_compare", description=__doc__.splitlines()[0])
    parser.add_argument("video")
    parser.add_argument("models", nargs="+")
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--refine", action="append", help="refinement setting: none, pupil or iris,pupil; repeat")
    args = parser.parse_args(argv)
    refines = [() if r == "none" else tuple(r.split(",")) for r in args.refine or []]
    frames = read_frames(args.video, args.frames)
    loaded = {model: Tracker.from_model(model, threads=1) for model in args.models}
    trackers, inputs = {}, {}
    for model, tracker in loaded.items():
        buffer, pairs = tracker.input_buffers(1)[0], []
        for i, image in enumerate(frames):
            prepared = tracker.prepare(Frame(image, i, i / 60.0), buffer)
            pairs.append((prepared, tracker.infer(buffer).copy()))  # the backend reuses its output buffer
        inputs[model] = pairs
        trackers[model] = (model, tracker)
        for refine in refines:  # one backend, another fit setting: the same edge maps
            config = replace(tracker.config, fit=replace(tracker.config.fit, refine=refine))
            trackers[f"{model} --refine {','.join(refine) or 'none'}"] = (model, Tracker(tracker.backend, config))
    print(f"{len(frames)} frames of {args.video}; fit stage (Tracker.finish), ms")
    for round_ in range(args.rounds):
        for name, (model, tracker) in trackers.items():
            times = fit_times_ms(tracker, inputs[model])
            print(f"round {round_ + 1}  {name}: median {np.median(times):.3f}, mean {np.mean(times):.3f}")
    for tracker in loaded.values():
        tracker.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
