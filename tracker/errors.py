"""The few exceptions the library raises; the CLI turns each into one line and a non-zero exit."""


class TrackerError(Exception):
    """Base class: a problem the user can act on, described in one line."""


class SourceError(TrackerError):
    """A frame source cannot be opened or read (missing file, not a video, empty folder, camera gone)."""


class ModelError(TrackerError):
    """A model or engine cannot be loaded, does not match its card, or was built for another GPU/version."""
