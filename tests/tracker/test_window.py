"""The preview window's display check, testable without a display: a stale DISPLAY is one line, not an abort."""

from __future__ import annotations

import sys

import pytest

import tracker.io.window as window
from tracker.errors import TrackerError

ABORTS = (sys.executable, "-c", "import os; os.abort()")  # what Qt does on a display that is gone (exit 134)
OPENS = (sys.executable, "-c", "pass")


@pytest.fixture
def gui_build(monkeypatch):
    monkeypatch.setattr(window, "has_gui", lambda: True)
    monkeypatch.setenv("DISPLAY", ":99")


def test_a_display_that_aborts_the_window_is_one_line(gui_build, monkeypatch):
    problem = window.display_problem(ABORTS)
    assert problem is not None and "cannot open a window on display ':99'" in problem and "\n" not in problem
    monkeypatch.setattr(window, "DISPLAY_PROBE", ABORTS)
    with pytest.raises(TrackerError, match="cannot open a window"):
        window.open_window()


def test_a_working_display_passes_the_check(gui_build):
    assert window.display_problem(OPENS) is None


def test_a_headless_opencv_says_how_to_get_the_window(monkeypatch):
    monkeypatch.setattr(window, "has_gui", lambda: False)
    assert "make gui" in window.display_problem(OPENS)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="DISPLAY is a Linux/X11 notion")
def test_no_display_at_all_is_one_line(monkeypatch):
    monkeypatch.setattr(window, "has_gui", lambda: True)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert "neither DISPLAY nor WAYLAND_DISPLAY" in window.display_problem(OPENS)


@pytest.mark.skipif(window.has_gui(), reason="this OpenCV has a GUI; the window is not opened in tests")
def test_open_window_on_headless_opencv_says_what_to_install():
    with pytest.raises(TrackerError, match=r"pip install opencv-python"):
        window.open_window("test")
