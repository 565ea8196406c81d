"""Real-time iris and pupil edge tracker: frames in, limbus and pupil ellipses out."""

from tracker.errors import ModelError, SourceError, TrackerError
from tracker.structures import Boundary, Ellipse, Frame, FrameResult, Status

__all__ = ["Boundary", "Ellipse", "Frame", "FrameResult", "ModelError", "SourceError", "Status", "TrackerError"]
__version__ = "0.1.0"
