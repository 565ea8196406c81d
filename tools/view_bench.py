"""`iristrack bench --view`: end-to-end frames/s with and without a --view server watched by a stalled page.

Runs alternate (without, with, without, with, ...) so a background load that comes and goes hits both alike; the
figure is each side's best and median. With the view, two pages hold the stream: one that reads everything (a
browser) and one that connected and never reads again (a stalled browser: its socket buffers fill, then the
server skips its view frames). One server serves every round, as in one long session; resident memory is read after
every run with the view.
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


def _run_once(tracker: Tracker, spec: str, out: Path, max_frames: int, view: ViewSink | None) -> float:
    """One end-to-end run as `iristrack run --out` makes it (pipelined, decoding on the calling thread): frames/s."""
    tracker.reset()
    with open_source(spec, prefetch=False) as source, JsonlSink(out) as jsonl:
        sink = MultiSink([jsonl, view]) if view is not None else jsonl
        return run(source, tracker, sink, max_frames=max_frames).fps


def bench_view(tracker: Tracker, spec: str, max_frames: int = 2000, rounds: int = 3, ring: int = RING_RECORDS) -> dict:
    """Frames/s of `rounds` runs without and with one view (a reading and a stalled page on it); RSS after each."""
    fps: dict[str, list[float]] = {"without": [], "with": []}
    rss_after: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="iristrack_view_bench_") as tmp,
        ViewSink(port=0, ring=ring) as view,
        contextlib.closing(ReadingPage(view.url)) as page,
        contextlib.closing(stalled_page(view.url)),
    ):
        wait_for_pages(view, 2)
        out = Path(tmp) / "bench.jsonl"
        _run_once(tracker, spec, out, min(max_frames, 50), None)  # warm-up: first-call costs out of the figure
        for _ in range(rounds):
            fps["without"].append(_run_once(tracker, spec, out, max_frames, None))
            fps["with"].append(_run_once(tracker, spec, out, max_frames, view))
            rss_after.append(rss_mb())
        stalled = min(view.server.clients, key=lambda c: c["sent"])
        received = page.received_bytes
    best = {k: max(v) for k, v in fps.items()}
    return {
        "source": spec,
        "frames": max_frames,
        "rounds": rounds,
        "fps": {k: [round(x, 1) for x in v] for k, v in fps.items()},
        "best_fps": {k: round(v, 1) for k, v in best.items()},
        "median_fps": {k: round(statistics.median(v), 1) for k, v in fps.items()},
        "ratio_best": round(best["with"] / best["without"], 3),
        "stalled_page": stalled,
        "reading_page_bytes": received,
        "rss_mb_after_view_runs": [round(x, 1) for x in rss_after],
    }


def format_view_bench(r: dict) -> str:
    """The bench_view result as a few lines of text."""
    rss = r["rss_mb_after_view_runs"]
    return "\n".join(
        [
            f"{r['source']}: {r['frames']} frames, {r['rounds']} rounds each, alternating",
            f"  without --view: best {r['best_fps']['without']} frames/s, median {r['median_fps']['without']}"
            f"  ({', '.join(map(str, r['fps']['without']))})",
            f"  with --view, a reading and a stalled page: best {r['best_fps']['with']} frames/s, median "
            f"{r['median_fps']['with']}  ({', '.join(map(str, r['fps']['with']))})",
            f"  best with / without: {r['ratio_best']:.3f}",
            f"  stalled page: {r['stalled_page'].get('sent', 0)} view frames sent, "
            f"{r['stalled_page'].get('skipped', 0)} skipped, {r['stalled_page'].get('buffered_bytes', 0)} bytes held",
            f"  resident memory after each view run: {', '.join(f'{x:.1f}' for x in rss)} MB",
        ]
    )
