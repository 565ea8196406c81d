"""Where model artifacts live: the shipped default model and the engine cache."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
ENGINES_DIR = REPO_ROOT / "engines"


def default_model_dir() -> Path:
    """engines/default beside the package, or $IRISTRACK_MODEL_DIR when set."""
    return Path(os.environ.get("IRISTRACK_MODEL_DIR", ENGINES_DIR / "default"))


def default_model_path() -> Path:
    """The shipped default ONNX model: engines/default/model.onnx."""
    return default_model_dir() / "model.onnx"


def engine_cache_dir() -> Path:
    """Where built TensorRT engines are cached: $IRISTRACK_CACHE or ~/.cache/iristrack/engines."""
    base = os.environ.get("IRISTRACK_CACHE") or Path.home() / ".cache" / "iristrack"
    return Path(base) / "engines"
