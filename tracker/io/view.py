"""The live view in the browser: a sink that hands each (frame, result) to a small web server on its own thread.

The tracking thread only stores references (`ViewSink.write`: the newest frame in one slot, its result appended to
a bounded ring, under a lock held for microseconds). Drawing, JPEG encoding and JSON happen on the server thread, at
most `fps` times a second and only while a page is connected. Each page has a one-slot mailbox: a slow or stalled
browser skips view frames (counted per page), never tracking frames, and memory stays flat (the ring and one view
frame per page; the ring holds results, never images).

Frames are held by reference, without a copy: every source in tracker.io.sources hands out a new array per frame
(OpenCV's read() allocates one; tests/tracker/io/test_view.py checks it) and nothing in the tracker writes into a
frame, so the image the server thread draws is never changed under it.

The server (aiohttp on its own asyncio loop) is read-only and serves an allow-list: the page, its two assets and
the stream, looked up by the raw request path, never joined to a file path. Bound to a loopback address it answers
only to loopback Host names (no DNS rebinding); bound to any other address it needs the random token printed in
its URL on every request. The stream refuses cross-origin pages.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import ipaddress
import json
import logging
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from importlib import resources
from urllib.parse import urlsplit

import cv2

from tracker.errors import TrackerError
from tracker.io.overlay import draw_overlay
from tracker.io.sinks import ClosingSink, result_to_dict
from tracker.structures import Frame, FrameResult

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8742
VIEW_FPS = 15.0  # view frames per second at most: enough to watch an eye move; encoding stays a few % of a core
JPEG_QUALITY = 80
RING_RECORDS = 2048  # results kept for pages that connect late or fall behind: 34 s at 60 frames/s
MAX_CLIENTS = 8  # pages on the stream at once; each holds one view frame and a socket buffer
MAX_POINTS_PER_MESSAGE = 1024  # records in one message: a page that connects late gets the newest 1024 at first
CLIENT_SNDBUF_BYTES = 64 * 1024  # kernel send buffer per page (Linux doubles it): what a stalled page holds there
START_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 0.5  # a page gets this long to take the close frame; a stalled one is cut off after it
SHUTDOWN_TIMEOUT_S = 1.0
TOKEN_PARAM = "token"
STREAM_PATH = "/stream"
# The allow-list: raw request path -> (asset file, content type). Nothing else is ever read.
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/view.js": ("view.js", "text/javascript; charset=utf-8"),
    "/view.css": ("view.css", "text/css; charset=utf-8"),
}
TOKEN_SLOT = "__TOKEN_QUERY__"  # where index.html's asset links take "?token=..."
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the token is in the URL
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}
THREAD_NAME = "iristrack view"
# aiohttp logs a malformed request as a traceback on stderr; the project rule is one line or none, and a bad request
# is the client's business (it gets its 400), so the server's own logger goes nowhere.
_SERVER_LOG = logging.getLogger("tracker.io.view.server")
_SERVER_LOG.addHandler(logging.NullHandler())
_SERVER_LOG.propagate = False


# --- the tracking thread's side ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Written:
    """One written result as the tracking thread left it: sequence number, write time (perf_counter s), references."""

    seq: int
    t_s: float
    result: FrameResult
    report: object | None = None  # a QualityReport (turned into a dict on the server thread)
    counts: tuple[int, int] | None = None  # a capture's kept and wanted frames at this frame


class ViewFeed:
    """The newest written frame and the last `ring` results: written by the tracking thread, read by the server's."""

    def __init__(self, ring: int = RING_RECORDS) -> None:
        self._lock = threading.Lock()  # held for an append or a short copy, never across I/O
        self._ring: collections.deque[Written] = collections.deque(maxlen=ring)
        self._seq = 0
        self._frame: Frame | None = None  # the newest frame only: a ring of images would hold `ring` of them
        self.frames = 0
        self._first_index: int | None = None
        self._last_index = -1

    def put(self, frame: Frame, result: FrameResult, report=None, counts: tuple[int, int] | None = None) -> None:
        """Store references to one written frame (no copy, no drawing)."""
        now = time.perf_counter()
        with self._lock:
            self._seq += 1
            self._ring.append(Written(self._seq, now, result, report, counts))
            self._frame = frame
            self.frames += 1
            index = int(result.frame_index)
            self._first_index = index if self._first_index is None else min(self._first_index, index)
            self._last_index = max(self._last_index, index)

    @property
    def capacity(self) -> int:
        """How many written frames the ring keeps."""
        return self._ring.maxlen or 0

    @property
    def dropped(self) -> int:
        """Frames the source skipped between the first and the last written one (gaps in the frame index)."""
        with self._lock:
            if self._first_index is None:
                return 0
            return max(0, self._last_index - self._first_index + 1 - self.frames)

    def latest(self) -> tuple[Written, Frame] | None:
        """The newest result and its frame, or None before the first."""
        with self._lock:
            return (self._ring[-1], self._frame) if self._ring else None

    def since(self, seq: int) -> list[Written]:
        """The written results after `seq` still in the ring, oldest first."""
        with self._lock:
            newer = []
            for written in reversed(self._ring):
                if written.seq <= seq:
                    break
                newer.append(written)
        newer.reverse()
        return newer


class ViewSink(ClosingSink):
    """`--view`: write() stores references for the view server (started here, bound before return); close() stops it.

    `quality`: (frame, result) -> QualityReport, called on the tracking thread (run --quality passes its cached
    assessor); `attach(capture)` shows a capture's verdicts and kept/wanted counts instead.
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        fps: float = VIEW_FPS,
        ring: int = RING_RECORDS,
        quality=None,
    ) -> None:
        self.feed = ViewFeed(ring)
        self._quality = quality
        self._counts = None
        self.server = ViewServer(self.feed, host, port, fps=fps)

    @property
    def url(self) -> str:
        """The page's address (with the token where one is needed)."""
        return self.server.url

    def attach(self, capture) -> ViewSink:
        """Show a CaptureSink's verdict per frame and its kept/wanted counts (the capture sink is written first)."""
        self._quality = lambda frame, result: capture.last_report
        self._counts = lambda: (len(capture.kept), capture.best)
        return self

    def write(self, frame: Frame, result: FrameResult) -> None:
        """Hand the pair to the server thread: references only, so tracking never waits on the view."""
        report = self._quality(frame, result) if self._quality is not None else None
        self.feed.put(frame, result, report, self._counts() if self._counts is not None else None)

    def close(self) -> None:
        """Stop the server (pages see the stream end); safe to call twice."""
        self.server.close()


# --- what the server thread computes ----------------------------------------------------------------


def view_record(written: Written) -> dict:
    """The frame's JSONL record (`result_to_dict`), plus `quality` (as --quality writes it) and `capture` counts."""
    record = result_to_dict(written.result)
    if written.report is not None:
        record["quality"] = written.report.to_dict()
    if written.counts is not None:
        record["capture"] = {"kept": written.counts[0], "wanted": written.counts[1]}
    return record


def view_image(written: Written, frame: Frame) -> bytes:
    """The frame with its ellipses as JPEG bytes; no text on it: the page shows the numbers beside it, legibly."""
    ok, jpeg = cv2.imencode(
        ".jpg", draw_overlay(frame.image, written.result, text=False), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:
        raise TrackerError(f"cannot encode a view frame of {frame.source or 'the source'} as JPEG")
    return jpeg.tobytes()


def pack_message(header_json: str, jpeg: bytes) -> bytes:
    """One stream message: 4-byte big-endian header length, the UTF-8 JSON header, the JPEG (so both stay in step)."""
    header = header_json.encode()
    return len(header).to_bytes(4, "big") + header + jpeg


@dataclass(frozen=True, slots=True)
class ViewFrame:
    """The view frame every page is sent next: its sequence number, record JSON and JPEG."""

    seq: int
    record_json: str
    jpeg: bytes


class _RateMeter:
    """Events per second over the last `window_s` seconds from (time, count) samples."""

    def __init__(self, window_s: float = 1.0) -> None:
        self._window_s = window_s
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    def update(self, now_s: float, count: int) -> float | None:
        """Add a sample; the rate since the oldest sample within the window (None until two samples)."""
        self._samples.append((now_s, count))
        while len(self._samples) > 2 and now_s - self._samples[1][0] >= self._window_s:
            self._samples.popleft()
        t0, c0 = self._samples[0]
        return (count - c0) / (now_s - t0) if now_s > t0 else None


class _Client:
    """One page on the stream: a wake-up event, its place in the record stream, and what it was sent and skipped."""

    def __init__(self, transport) -> None:
        self.transport = transport  # the asyncio transport: its write buffer, and cut off at shutdown
        self.wake = asyncio.Event()
        self.cursor = 0  # the last record seq it was sent
        self.busy = False  # still sending the previous message
        self.sent = 0
        self.skipped = 0  # view frames made while it was busy
        self.rate = _RateMeter()


# --- addresses, tokens, requests ---------------------------------------------------------------------


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one); TrackerError in one line when it cannot listen."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise TrackerError(f"--host {host} is not an address this machine can listen on ({exc.strerror})") from None
    try:
        return socket.create_server(address[:2], family=family)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise TrackerError(
                f"--port {port} is in use on {host}: choose another port, or --port 0 for a free one"
            ) from None
        raise TrackerError(f"--view cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def is_loopback(address: str) -> bool:
    """True for an address only this machine reaches (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def view_url(address: str, port: int, token: str | None) -> str:
    """http://HOST:PORT/ (?token=...) for a bound address; a wildcard address is shown as this machine's name."""
    host = socket.gethostname() if address in ("0.0.0.0", "::") else address
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}/" + (f"?{TOKEN_PARAM}={token}" if token else "")


def loopback_hosts(port: int) -> frozenset[str]:
    """The Host header values a loopback-bound view answers to."""
    return frozenset(f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]"))


def refusal(
    method: str,
    raw_path: str,
    query_token: str | None,
    host: str | None,
    origin: str | None,
    *,
    token: str | None,
    hosts: frozenset[str],
) -> tuple[int, str] | None:
    """None for a request to serve, else (HTTP status, reason): pure, so every rule is testable without a server.

    `raw_path` is the request target as sent (before any decoding): only the allow-listed paths match, so
    `/../`, `%2e%2e`, `%2f`, backslashes and absolute targets all miss. `token`: the one every request must carry
    (None when bound to loopback, where the Host header must name loopback instead: no DNS rebinding).
    """
    if token is not None:
        if query_token is None or not secrets.compare_digest(query_token.encode(), token.encode()):
            return 403, "forbidden: this view needs the token printed in its URL"
    elif host not in hosts:
        return 403, f"forbidden: this view answers to {sorted(hosts)[0]} only"
    path = raw_path.split("?", 1)[0]
    if path not in ASSETS and path != STREAM_PATH:
        return 404, "not found"
    if method not in ("GET", "HEAD"):
        return 405, "read-only: GET only"
    if path == STREAM_PATH and origin is not None and urlsplit(origin).netloc != host:
        return 403, "forbidden: the stream is for this view's own page"
    return None


def load_assets(token: str | None) -> dict[str, tuple[bytes, str]]:
    """The allow-listed files, read once from the package: raw path -> (body, content type)."""
    folder = resources.files("tracker.io") / "view_static"
    query = f"?{TOKEN_PARAM}={token}" if token else ""
    assets = {}
    for path, (name, content_type) in ASSETS.items():
        body = (folder / name).read_text(encoding="utf-8").replace(TOKEN_SLOT, query)
        assets[path] = (body.encode(), content_type)
    return assets


# --- the server thread -------------------------------------------------------------------------------


class ViewServer:
    """An aiohttp server on its own thread and asyncio loop: the page, its assets and the stream of one ViewFeed.

    The socket is bound on the caller's thread (a port in use fails here, before anything else opens); `url`
    is the page's address. `close()` ends every stream and joins the thread.
    """

    def __init__(
        self,
        feed: ViewFeed,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        fps: float = VIEW_FPS,
    ) -> None:
        try:
            import aiohttp  # noqa: F401 (the optional extra: fail before binding)
        except ImportError:
            raise TrackerError("--view needs the [view] extra: pip install 'iristrack[view]' (aiohttp)") from None
        self._feed, self._period_s = feed, 1.0 / fps
        self._sock = bind(host, port)
        address, self.port = self._sock.getsockname()[:2]
        self.token = None if is_loopback(address) else secrets.token_urlsafe(18)  # 24 characters, 144 bits
        self.url = view_url(address, self.port, self.token)
        self._hosts = loopback_hosts(self.port)
        self._assets = load_assets(self.token)
        self._clients: dict[_Client, object] = {}
        self._records: collections.deque[tuple[int, str]] = collections.deque(maxlen=feed.capacity)
        self._shown: ViewFrame | None = None
        self._fps = _RateMeter()
        self._tracking_fps: float | None = None
        self._t0 = time.perf_counter()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=THREAD_NAME, daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S) or self._failure is not None:
            self.close()
            raise TrackerError(f"--view: the server did not start: {self._failure or 'timed out'}")

    @property
    def clients(self) -> list[dict]:
        """Per connected page: view frames sent and skipped, bytes waiting in its socket's buffer (for tests, bench)."""
        return [
            {"sent": c.sent, "skipped": c.skipped, "buffered_bytes": c.transport.get_write_buffer_size()}
            for c in list(self._clients)
        ]

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as exc:  # reported on the caller's thread
            self._failure = exc
            self._loop.close()
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self._stop())
            self._loop.close()

    async def _start(self) -> None:
        from aiohttp import web

        app = web.Application(client_max_size=1024)  # nothing is uploaded
        app.router.add_route("*", "/{tail:.*}", self._dispatch)  # one handler: the allow-list is in `refusal`
        app.on_response_prepare.append(_add_security_headers)
        app.on_shutdown.append(self._close_streams)
        self._runner = web.AppRunner(app, access_log=None, logger=_SERVER_LOG, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()
        self._ticker = asyncio.ensure_future(self._tick())

    async def _stop(self) -> None:
        self._ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._ticker
        await self._runner.cleanup()

    def close(self) -> None:
        """End every stream, stop the loop and join the thread; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(START_TIMEOUT_S)
        self._sock.close()

    # --- requests

    async def _dispatch(self, request):
        from aiohttp import web

        why = refusal(
            request.method,
            request.raw_path,
            request.query.get(TOKEN_PARAM),
            request.headers.get("Host"),
            request.headers.get("Origin"),
            token=self.token,
            hosts=self._hosts,
        )
        if why is not None:
            return web.Response(status=why[0], text=why[1] + "\n")
        path = request.raw_path.split("?", 1)[0]
        if path == STREAM_PATH:
            return await self._stream(request)
        body, content_type = self._assets[path]
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _stream(self, request):
        from aiohttp import web

        if len(self._clients) >= MAX_CLIENTS:
            return web.Response(status=503, text=f"at most {MAX_CLIENTS} pages at once\n")
        ws = web.WebSocketResponse(max_msg_size=1024, timeout=CLOSE_TIMEOUT_S)
        await ws.prepare(request)
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CLIENT_SNDBUF_BYTES)
        client = _Client(request.transport)
        self._clients[client] = ws
        sender = asyncio.ensure_future(self._send(ws, client))
        try:
            async for _ in ws:  # pages send nothing that changes anything (read-only); reading sees a close
                pass
        finally:
            sender.cancel()
            self._clients.pop(client, None)
        return ws

    async def _send(self, ws, client: _Client) -> None:
        """Send each view frame made for this page; one in flight at a time, newer ones replace waiting ones."""
        while not ws.closed:
            await client.wake.wait()
            client.wake.clear()
            client.busy = True
            try:
                await ws.send_bytes(self._message(client))
            except (ConnectionError, RuntimeError):  # the page went away mid-send
                return
            client.busy = False
            client.sent += 1

    async def _close_streams(self, app) -> None:
        """On shutdown: a close frame to every page; one that does not take it in CLOSE_TIMEOUT_S is cut off."""
        from aiohttp import WSCloseCode

        async def close(client: _Client, ws) -> None:
            try:
                await asyncio.wait_for(ws.close(code=WSCloseCode.GOING_AWAY, message=b"run ended"), CLOSE_TIMEOUT_S)
            except (asyncio.TimeoutError, ConnectionError, RuntimeError):
                client.transport.abort()

        await asyncio.gather(*(close(client, ws) for client, ws in list(self._clients.items())))

    # --- view frames

    async def _tick(self) -> None:
        """At most `fps` times a second, while pages are connected: draw and encode the newest frame, wake the pages."""
        shown_seq = 0
        while True:
            await asyncio.sleep(self._period_s)
            now = time.perf_counter()
            self._tracking_fps = self._fps.update(now, self._feed.frames)
            latest = self._feed.latest()
            if not self._clients or latest is None or latest[0].seq == shown_seq:
                continue
            written, frame = latest
            for client in self._clients:
                client.skipped += client.busy
            ready = [c for c in self._clients if not c.busy]
            if not ready:  # every page is still sending: a frame made now would be thrown away
                continue
            shown_seq = written.seq
            try:
                self._take_records()
                # cv2 drawing and encoding release the GIL: the tracking threads run on meanwhile.
                self._shown = ViewFrame(written.seq, json.dumps(view_record(written)), view_image(written, frame))
            except Exception:  # a frame the view cannot show is skipped: ending the run is never the view's to do
                continue
            for client in ready:
                client.wake.set()

    def _take_records(self) -> None:
        """Turn the ring's new entries into JSON once each (shared by every page): {"t": s since start, "r": record}."""
        last = self._records[-1][0] if self._records else 0
        for written in self._feed.since(last):
            point = {"t": round(written.t_s - self._t0, 4), "r": view_record(written)}
            self._records.append((written.seq, json.dumps(point)))

    def _message(self, client: _Client) -> bytes:
        """The shown frame for one page, with the records it has not had yet and the run's numbers."""
        shown = self._shown
        newer = []
        for seq, text in reversed(self._records):
            if seq <= client.cursor or len(newer) == MAX_POINTS_PER_MESSAGE:
                break
            newer.append(text)
        newer.reverse()
        client.cursor = self._records[-1][0] if self._records else client.cursor
        now = time.perf_counter()
        view_fps = client.rate.update(now, client.sent)
        stats = {
            "t": round(now - self._t0, 4),
            "frames": self._feed.frames,
            "fps": _rounded(self._tracking_fps),
            "dropped": self._feed.dropped,
            "view_fps": _rounded(view_fps),
            "view_skipped": client.skipped,
            "pages": len(self._clients),
            "seq": shown.seq,
        }
        header = f'{{"frame":{shown.record_json},"stats":{json.dumps(stats)},"points":[{",".join(newer)}]}}'
        return pack_message(header, shown.jpeg)


def _rounded(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


async def _add_security_headers(request, response) -> None:
    response.headers.update(SECURITY_HEADERS)
