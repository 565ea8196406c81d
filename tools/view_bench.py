"""`iristrack bench --view`: end-to-end frames/s without a --view server, with one a stalled page holds, and watched.

Three arms take turns in a rotating order (without, stalled, watched; stalled, watched, without; ...), so a
background load that comes and goes hits them alike; the figure is each arm's median (and best). The stalled page
connected and never reads again (its socket buffers fill, then the server skips its view frames); the watched
arm's server also has a page that reads everything, as a browser does, so it draws, encodes and sends every view
frame. The reading page runs in this process (a browser would be another one). One server per arm serves every
round, as in one long session; resident memory is read after every round.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from tools.bench import rss_mb
from tracker.io.sinks import JsonlSink, MultiSink
from tracker.io.sources import open_source
from tracker.io.view import RING_RECORDS, STREAM_PATH, ViewSink
from tracker.pipeline import Tracker
from tracker.run import run

STALLED_RCVBUF_BYTES = 4096  # the stalled page's receive buffer: small, so the server's buffers fill within frames
PAGE_WAIT_S = 5.0


def stream_request(url: str) -> bytes:
    """The HTTP request a browser sends to open the stream of the view at `url` (token included)."""
    parts = urlsplit(url)
    key = base64.b64encode(os.urandom(16)).decode()
    target = STREAM_PATH + (f"?{parts.query}" if parts.query else "")
    return (
        f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def stalled_page(url: str) -> socket.socket:
    """A socket that opens the stream of the view at `url` and never reads: the caller closes it."""
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RCVBUF_BYTES)  # before connect: sets the window
    sock.connect((parts.hostname, parts.port))
    sock.sendall(stream_request(url))
    return sock


class ReadingPage:
    """A page that reads everything the stream sends (on its own thread), as a browser would; counts the bytes."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._sock = socket.create_connection((parts.hostname, parts.port))
        self._sock.sendall(stream_request(url))
        self.received_bytes = 0
        self._thread = threading.Thread(target=self._read, name="iristrack reading page", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(OSError):
            while chunk := self._sock.recv(1 << 16):
                self.received_bytes += len(chunk)

    def close(self) -> None:
        """Hang up and join the reader."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(PAGE_WAIT_S)


def wait_for_pages(view: ViewSink, pages: int, timeout_s: float = PAGE_WAIT_S) -> None:
    """Block until `pages` pages are on the view's stream (RuntimeError after timeout_s)."""
    deadline = time.perf_counter() + timeout_s
    while len(view.server.clients) < pages:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{len(view.server.clients)} of {pages} pages reached the view's stream")
        time.sleep(0.01)


ARMS = ("without", "stalled", "watched")
ARM_TITLES = {
    "without": "without --view",
    "stalled": "--view, a stalled page on it",
    "watched": "--view, a stalled and a reading page",
}


def _run_once(tracker: Tracker, spec: str, out: Path, max_frames: int, view: ViewSink | None) -> tuple[int, float]:
    """One run as `iristrack run --out` makes it (pipelined, decoding on the calling thread): (frames, frames/s)."""
    tracker.reset()
    with open_source(spec, prefetch=False) as source, JsonlSink(out) as jsonl:
        summary = run(source, tracker, MultiSink([jsonl, view]) if view is not None else jsonl, max_frames=max_frames)
    return summary.frames, summary.fps


def _view_with_pages(stack: contextlib.ExitStack, ring: int, reading: bool) -> tuple[ViewSink, ReadingPage | None]:
    """A view server with a stalled page on it, and a reading page too where `reading`; all closed by `stack`."""
    view = stack.enter_context(ViewSink(port=0, ring=ring))
    stack.enter_context(contextlib.closing(stalled_page(view.url)))
    page = stack.enter_context(contextlib.closing(ReadingPage(view.url))) if reading else None
    wait_for_pages(view, 2 if reading else 1)
    return view, page


def bench_view(
    tracker: Tracker,
    spec: str,
    max_frames: int = 2000,
    rounds: int = 3,
    ring: int = RING_RECORDS,
    arms: tuple[str, ...] = ARMS,
) -> dict:
    """Frames/s of `rounds` runs of each arm (ARMS; "without" among them), taking turns; RSS after each round."""
    fps: dict[str, list[float]] = {arm: [] for arm in arms}
    rss_after: list[float] = []
    with contextlib.ExitStack() as stack:
        out = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="iristrack_view_bench_"))) / "bench.jsonl"
        views = {arm: _view_with_pages(stack, ring, arm == "watched") for arm in arms if arm != "without"}
        _run_once(tracker, spec, out, min(max_frames, 50), None)  # warm-up: first-call costs out of the figure
        for r in range(rounds):
            k = r % len(arms)
            for arm in arms[k:] + arms[:k]:  # a rotating order: no arm always first or last
                frames, rate = _run_once(tracker, spec, out, max_frames, views[arm][0] if arm in views else None)
                fps[arm].append(rate)
            rss_after.append(rss_mb())
        stalled_view = views.get("stalled", views.get("watched", (None,)))[0]
        stalled = min(stalled_view.server.clients, key=lambda c: c["sent"]) if stalled_view else {}
        reading = views["watched"][1].received_bytes if "watched" in views else None
    return {
        "source": spec,
        "frames": frames,
        "rounds": rounds,
        "fps": {arm: [round(x, 1) for x in v] for arm, v in fps.items()},
        "best_fps": {arm: round(max(v), 1) for arm, v in fps.items()},
        "median_fps": {arm: round(statistics.median(v), 1) for arm, v in fps.items()},
        "ratio_median": {
            arm: round(statistics.median(v) / statistics.median(fps["without"]), 3) for arm, v in fps.items()
        },
        "stalled_page": stalled,
        "reading_page_bytes": reading,
        "rss_mb_after_rounds": [round(x, 1) for x in rss_after],
    }


def format_view_bench(r: dict) -> str:
    """The bench_view result as a few lines of text."""
    lines = [f"{r['source']}: {r['frames']} frames a run, {r['rounds']} runs of each, taking turns"]
    for arm, runs in r["fps"].items():
        ratio = f" ({r['ratio_median'][arm]:.3f} of without)" if arm != "without" else ""
        lines.append(
            f"  {ARM_TITLES[arm]}: median {r['median_fps'][arm]} frames/s{ratio}, best {r['best_fps'][arm]}"
            f"  (runs: {', '.join(map(str, runs))})"
        )
    if page := r["stalled_page"]:
        lines.append(
            f"  the stalled page: {page['sent']} view frames sent, {page['skipped']} skipped, "
            f"{page['buffered_bytes']} bytes held"
        )
    if r["reading_page_bytes"] is not None:
        lines.append(f"  the reading page received {r['reading_page_bytes'] / 1e6:.1f} MB")
    lines.append(f"  resident memory after each round: {', '.join(f'{x:.1f}' for x in r['rss_mb_after_rounds'])} MB")
    return "\n".join(lines)
