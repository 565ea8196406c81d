"""Where tests find the repository and the shared development data (absent on outside machines: tests skip)."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SHIPPED_MODEL = REPO / "engines" / "default" / "model.onnx"
# The CLI as a subprocess of the interpreter under test: no dependence on where the venv put its scripts.
IRISTRACK = (sys.executable, "-m", "cli")
