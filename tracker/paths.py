"""Where model artifacts live: the shipped default model, and the caches (TensorRT engines, compiled kernels)."""

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


def cache_dir() -> Path:
    """The one place the runtime writes outside its output paths: $IRISTRACK_CACHE or ~/.cache/iristrack."""
    return Path(os.environ.get("IRISTRACK_CACHE") or Path.home() / ".cache" / "iristrack")


def engine_cache_dir() -> Path:
    """Where built TensorRT engines are cached: cache_dir()/engines."""
    return cache_dir() / "engines"


def face_eye_model_path() -> Path | None:
    """The shipped eye model of face frames, engines/face/model.onnx; None when $IRISTRACK_MODEL_DIR is set."""
    if os.environ.get("IRISTRACK_MODEL_DIR"):
        return None  # a model chosen for the run tracks face eyes too
    return ENGINES_DIR / "face" / "model.onnx"
