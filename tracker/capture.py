"""capture(): run a source through a Tracker into a CaptureSink until it holds the N best passing frames.

For rigs that drive their own camera, use `tracker.io.capture.CaptureSink` directly: `report = sink.write(frame,
tracker(frame))` per frame, stop when `sink.full`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tracker.io.capture import CaptureSink, CaptureWindow
from tracker.io.sinks import MultiSink
from tracker.pipeline import Tracker
from tracker.quality import Profile
from tracker.run import RunSummary, run


@dataclass(frozen=True)
class CaptureSummary:
    """What a capture did: the run's summary, frames kept / wanted, frames that passed, the record's path."""

    run: RunSummary
    kept: int
    wanted: int
    frames_passed: int
    failed_gates: dict[str, int]
    record: Path
    timed_out: bool


def capture(
    source,
    tracker: Tracker,
    out_dir: str | Path,
    *,
    best: int = 3,
    profile: Profile | None = None,
    time_limit_s: float | None = None,
    show: bool = False,
    stop_when_full: bool | None = None,
    view=None,
) -> CaptureSummary:
    """Track `source` (a tracker.io.sources Source) into a capture folder; stops when full, at its end or time limit.

    `stop_when_full` defaults to live sources only (a recorded file is read to its end for its best frames).
    `show` opens the capture window (pass/fail and the failing gates); `view`, a tracker.io.view.ViewSink, is shown
    the same verdicts and counts.
    """
    live = bool(getattr(source, "is_live", False))
    stop = live if stop_when_full is None else stop_when_full
    deadline = time.perf_counter() + time_limit_s if time_limit_s else None
    timed_out = False

    def should_stop() -> bool:
        nonlocal timed_out
        timed_out = deadline is not None and time.perf_counter() >= deadline
        return timed_out

    name = getattr(source, "name", "") or str(getattr(source, "source", ""))
    window = CaptureWindow() if show else None
    with MultiSink([*([window] if window else [])]) as shown, CaptureSink(out_dir, best, profile, name, stop) as sink:
        both = MultiSink([sink, *([window.attach(sink)] if window else []), *([view.attach(sink)] if view else [])])
        summary = run(source, tracker, both, should_stop=should_stop)
    del shown
    return CaptureSummary(
        summary, len(sink.kept), best, sink.frames_passed, dict(sink.failed_gates), sink.path, timed_out
    )
