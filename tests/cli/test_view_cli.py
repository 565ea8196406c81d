"""`iristrack run --view` in a real browser, and the CLI's refusals.

The browser test drives Debian's chromium (/usr/bin/chromium) through playwright: a real `iristrack run --realtime
--view --out` on a rendered clip, the page watched while it runs, its numbers checked against the JSONL rows the
same run wrote. Without chromium or playwright it skips (CI installs both and sets IRISTRACK_REQUIRE_BROWSER=1, so
there it fails instead). IRISTRACK_UPDATE_DOCS=1 also writes the screenshot to docs/view.png.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli.test_cli import assert_one_error_line, iristrack
from tests.cli.test_run_faults import run_args
from tests.paths import IRISTRACK, REPO
from tools.synthetic import write_clip

pytest.importorskip("aiohttp", reason="--view needs the [view] extra (aiohttp)")

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags chromium keeps calling home, which floods a closed network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CONF_TOL = 0.0005 + 1e-9  # the page shows confidences to 3 decimals
PX_TOL = 0.05 + 1e-9  # and the pupil diameter to 0.1 px
URL_WAIT_S = 60.0


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("view_clip")
    write_clip(folder / "eye.mp4", folder / "eye_truth.csv", 600, (320, 240), 60.0, 0)  # 10 s at --realtime
    return folder / "eye.mp4"


def browser_or_skip():
    """playwright's sync API, or a skip saying what is missing (a failure where CI requires the browser)."""
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install -e '.[dev]')"
    if missing is None and not os.access(CHROMIUM, os.X_OK):
        missing = f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does)"
    if missing:
        if os.environ.get("IRISTRACK_REQUIRE_BROWSER"):
            pytest.fail(f"IRISTRACK_REQUIRE_BROWSER is set but {missing}")
        pytest.skip(missing)
    return sync_playwright


def start_view_run(*args: str, cwd: Path) -> tuple[subprocess.Popen, str]:
    """Start `iristrack run ... --view --port 0` and return it with the URL it printed on stderr."""
    proc = subprocess.Popen(
        [*IRISTRACK, *run_args(*args, "--view", "--port", "0")], cwd=cwd, stderr=subprocess.PIPE, text=True
    )
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if match := re.match(r"view: (http://\S+)", line):
            return proc, match.group(1)
    proc.wait(URL_WAIT_S)
    pytest.fail(f"no view URL on stderr:\n{''.join(lines)}")


SHOWN = """() => {
  const row = document.querySelector('#eyes tbody tr');
  const cell = (name) => row ? row.querySelector('td.' + name).textContent : null;
  const text = (id) => document.getElementById(id).textContent;
  return {frame: text('frame-index'), status: cell('status'), iris: cell('iris'), pupil: cell('pupil'),
          px: cell('px'), image: document.getElementById('overlay').dataset.frame,
          points: Number(document.body.dataset.plotPoints || 0), state: text('state')};
}"""


def check_numbers(shown: dict, row: dict) -> None:
    """The page's numbers for a frame are its JSONL row's."""

    def near(text: str, value, tol: float) -> bool:
        return (text == "-" and value is None) or (value is not None and abs(float(text) - value) <= tol)

    assert shown["status"] == row["status"], (shown, row)
    assert near(shown["iris"], row["iris"] and row["iris"]["confidence"], CONF_TOL), (shown, row)
    assert near(shown["pupil"], row["pupil"] and row["pupil"]["confidence"], CONF_TOL), (shown, row)
    assert near(shown["px"], row["pupil"] and 2 * row["pupil"]["semi_major"], PX_TOL), (shown, row)


@pytest.mark.slow
def test_the_page_of_a_real_run_shows_its_frames_numbers_and_plots(clip, tmp_path):
    sync_playwright = browser_or_skip()
    out = tmp_path / "rows.jsonl"
    samples, shots, proc = [], [], None
    try:
        with sync_playwright() as p:
            # The browser starts before the run: on a loaded machine its start-up took most of the clip's 10 s,
            # and a run that had ended refused the page's connection.
            context = p.chromium.launch_persistent_context(
                str(tmp_path / "profile"),  # a fresh profile
                executable_path=CHROMIUM,
                args=CHROMIUM_ARGS,
                headless=True,
                viewport={"width": 1280, "height": 900},
                accept_downloads=True,
            )
            page = context.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            proc, url = start_view_run(clip.name, "--realtime", "--out", str(out), "--quiet", cwd=clip.parent)
            page.goto(url)
            # Predicates as functions: the page's CSP forbids eval, which a string predicate needs.
            page.wait_for_function(
                "() => document.getElementById('overlay').dataset.frame !== undefined", timeout=30_000
            )
            for _ in range(3):  # three moments: the image changes, the plot grows, the numbers are each frame's own
                before = page.evaluate(SHOWN)
                page.wait_for_function(
                    "(shown) => document.getElementById('overlay').dataset.frame !== shown",
                    arg=before["image"],
                    timeout=10_000,
                )
                page.wait_for_timeout(400)
                samples.append(page.evaluate(SHOWN))
                shots.append(page.locator("#overlay").screenshot())
            # Pause freezes the view (tracking goes on); resume follows the run again.
            page.click("#pause")
            frozen = page.evaluate(SHOWN)
            page.wait_for_timeout(700)
            assert page.evaluate(SHOWN)["frame"] == frozen["frame"] and frozen["state"] == "paused"
            with page.expect_download() as download:
                page.click("#snapshot")
            saved = Path(download.value.path()).read_bytes()
            assert download.value.suggested_filename == f"iristrack_frame_{frozen['frame']}.jpg"
            assert saved[:2] == b"\xff\xd8"
            page.click("#pause")
            page.wait_for_function(
                "(shown) => document.getElementById('frame-index').textContent !== shown", arg=frozen["frame"]
            )
            # The screenshot after the clip's third blink (frames 447-460), so the plots show one.
            page.wait_for_function("() => Number(document.getElementById('frame-index').textContent) >= 490")
            page.screenshot(path=str(tmp_path / "view.png"), full_page=True)
            proc.wait(60)
            page.wait_for_function("() => document.getElementById('state').textContent === 'run ended'")
            context.close()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read()
    assert not errors, errors
    if os.environ.get("IRISTRACK_UPDATE_DOCS"):
        shutil.copy(tmp_path / "view.png", REPO / "docs" / "view.png")
    rows = {row["frame"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert len({s["image"] for s in samples}) == 3 and len(set(shots)) == 3  # the overlay image updates
    assert samples[0]["points"] < samples[1]["points"] < samples[2]["points"]  # the plot gains points
    for shown in samples:
        assert shown["image"] == shown["frame"]  # the numbers beside the image are its frame's
        check_numbers(shown, rows[int(shown["frame"])])


class FailedGates:
    """A quality report that fails the sharpness gate (what `to_dict` gives a JSONL record)."""

    def to_dict(self) -> dict:
        return {"quality_pass": False, "quality_failed": ["sharpness", "margin_adequacy_pct"], "quality_score": 3.2}


def face_result(i: int):
    """A face frame with a right and a left eye; the left one blinks on frames 20-29."""
    from tracker.structures import Boundary, Ellipse, EyeBox, EyeResult, FrameResult, SizeMm, Status

    def eye(side: str, cx: float, blink: bool) -> EyeResult:
        box = EyeBox(side, cx, 120.0, 90.0, 68.0, 0.0)
        if blink:
            return EyeResult(side, box, None, None, Status.NO_IRIS)
        iris = Boundary(Ellipse(cx, 120.0, 22.0, 21.0, 0.0), 0.93)
        pupil = Boundary(Ellipse(cx, 120.0, 8.0 + (i % 10) / 10 + (side == "left"), 7.5, 0.0), 0.88)
        return EyeResult(side, box, iris, pupil, Status.OK, SizeMm(4.2 + (side == "left"), 0.3))

    eyes = (eye("right", 100.0, False), eye("left", 220.0, 20 <= i % 60 < 30))
    return FrameResult("face.mp4", i, i / 30.0, None, None, Status.OK, 9.0, eyes=eyes)


@pytest.mark.slow
def test_the_page_shows_each_eye_and_the_gate_verdict(tmp_path):
    import threading

    import numpy as np

    from tracker.io.view import ViewSink
    from tracker.structures import Frame

    sync_playwright = browser_or_skip()
    stop = threading.Event()
    with ViewSink(port=0, quality=lambda frame, result: FailedGates()) as view:

        def feed() -> None:  # a face run at 30 frames/s
            i = 0
            while not stop.wait(1 / 30):
                view.write(Frame(np.full((240, 320, 3), 90, np.uint8), i, i / 30.0), face_result(i))
                i += 1

        writer = threading.Thread(target=feed)
        writer.start()
        try:
            with sync_playwright() as p:
                context = p.chromium.launch_persistent_context(
                    str(tmp_path / "profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
                )
                page = context.new_page()
                page.goto(view.url)
                page.wait_for_function("() => document.querySelectorAll('#eyes tbody tr').length === 2")
                page.wait_for_timeout(1500)  # through a blink of the left eye
                rows = page.evaluate(
                    """() => [...document.querySelectorAll('#eyes tbody tr')].map((row) =>
                        Object.fromEntries([...row.cells].map((cell) => [cell.className, cell.textContent])))"""
                )
                quality = page.text_content("#quality")
                mm_shown = page.is_visible("#figure-mm")
                points = int(page.get_attribute("body", "data-plot-points"))
                context.close()
        finally:
            stop.set()
            writer.join()
    assert [r["side"] for r in rows] == ["right", "left"]
    right = rows[0]
    assert right["status"] == "ok" and right["iris"] == "0.930" and right["pupil"] == "0.880"
    assert right["mm"] == "4.20 ± 0.30" and 16.0 <= float(right["px"]) <= 18.0
    assert quality == "FAIL: sharpness, margin_adequacy_pct" and mm_shown
    assert points > 40  # two lines, one per eye (the left one broken by its blink)


def test_a_port_in_use_is_one_error_line_before_any_output(clip, tmp_path):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        out = tmp_path / "results" / "rows.jsonl"
        proc = iristrack(*run_args(str(clip), "--out", str(out), "--view", "--port", str(port)), cwd=tmp_path)
    assert_one_error_line(proc, f"--port {port} is in use")
    assert not out.exists() and not out.parent.exists()


def test_port_and_host_need_view(tmp_path):
    proc = iristrack("run", "nothing.mp4", "--port", "9000", "--host", "0.0.0.0", cwd=tmp_path)
    assert proc.returncode == 2 and "--port and --host set the --view server: add --view" in proc.stderr


def test_capture_shows_its_verdicts_in_the_view(tmp_path):
    # The capture's own sink is written first; the view takes its verdict and kept/wanted counts per frame.
    from tests.paths import SHIPPED_MODEL
    from tracker.capture import capture
    from tracker.io.sources import open_source
    from tracker.io.view import ViewSink, view_record
    from tracker.pipeline import Tracker

    write_clip(tmp_path / "c.mp4", tmp_path / "c.csv", 30, (320, 240), 60.0, 0)
    with (
        Tracker.from_model(SHIPPED_MODEL, backend="onnxruntime") as tracker,
        open_source(str(tmp_path / "c.mp4"), prefetch=False) as src,
        ViewSink(port=0) as view,
    ):
        done = capture(src, tracker, tmp_path / "cap", best=2, view=view)
    records = [view_record(w) for w in view.feed.since(0)]
    assert len(records) == done.run.frames == 30
    assert all(set(r["quality"]) >= {"quality_pass", "quality_failed", "quality_score"} for r in records)
    assert records[-1]["capture"] == {"kept": done.kept, "wanted": 2}
    assert sum(r["quality"]["quality_pass"] for r in records) == done.frames_passed
