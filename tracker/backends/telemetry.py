"""The inference libraries' own telemetry, off unless the user turns it on: import them only through here.

- OpenVINO: `import openvino` initialises Intel's telemetry (openvino.tools.ovc -> openvino_telemetry): unless the
  user opted out it writes ~/intel/openvino_ga_cid and ~/intel/stats and forks a process per event that posts to
  Google Analytics. `import_openvino` imports it with `openvino_telemetry` blocked, so ovc falls back to its no-op
  stub, unless the user opted in with OpenVINO's own `opt_in_out --opt_in` (~/intel/openvino_telemetry holds 1).
- ONNX Runtime (1.32 in this venv, Linux too): `import onnxruntime` queues events for Microsoft's 1DS collector in
  ~/.cache/Microsoft/DeveloperTools/.onnxruntime/ (a device id and an SQLite queue). The native library reads
  $ORT_DISABLE_TELEMETRY when it starts; `import_onnxruntime` sets it to 1 unless the user has set it (0: on).

Both only work if this process has not imported the library already.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ORT_TELEMETRY_ENV = "ORT_DISABLE_TELEMETRY"
ORT_OFF_VALUES = ("1", "true", "yes")  # what onnxruntime 1.32 takes as "disabled" (measured; "0", "false", "2": on)


def import_onnxruntime():
    """`import onnxruntime` with its telemetry off unless $ORT_DISABLE_TELEMETRY is already set (0 turns it on)."""
    os.environ.setdefault(ORT_TELEMETRY_ENV, "1")  # inherited by child processes too, which is intended
    import onnxruntime

    return onnxruntime


def openvino_consent_file() -> Path:
    """Where OpenVINO's `opt_in_out` records the user's choice on Linux and macOS: ~/intel/openvino_telemetry."""
    return Path.home() / "intel" / "openvino_telemetry"


def openvino_opted_in() -> bool:
    """True only when the user ran OpenVINO's `opt_in_out --opt_in` (its consent file holds '1'); only reads."""
    try:
        return openvino_consent_file().read_text().strip() == "1"
    except OSError:
        return False


def import_openvino():
    """`import openvino` with Intel's telemetry package blocked unless the user opted in (see the module docstring).

    The block lasts only for this import: `openvino_telemetry` stays importable for code that wants it.
    """
    if "openvino" in sys.modules or openvino_opted_in():
        import openvino

        return openvino
    missing = object()
    saved = sys.modules.get("openvino_telemetry", missing)
    sys.modules["openvino_telemetry"] = None  # `import openvino_telemetry` now raises ImportError
    try:
        import openvino
    finally:
        if saved is missing:
            sys.modules.pop("openvino_telemetry", None)
        else:
            sys.modules["openvino_telemetry"] = saved
    return openvino


def telemetry_state() -> dict[str, str]:
    """Library -> one line for `iristrack info`: whether its telemetry is on in this process, and how to change it."""
    if openvino_opted_in():
        openvino = f"on (you opted in: {openvino_consent_file()} holds 1; turn off with: opt_in_out --opt_out)"
    elif "openvino_telemetry.main" in sys.modules:
        openvino = "on (openvino was imported before iristrack could block its telemetry)"
    else:
        openvino = "off (turn on with OpenVINO's: opt_in_out --opt_in)"
    value = os.environ.get(ORT_TELEMETRY_ENV)
    if value is None:
        onnxruntime = f"on (onnxruntime was imported before iristrack could set {ORT_TELEMETRY_ENV}=1)"
        if "onnxruntime" not in sys.modules:
            onnxruntime = f"off once imported here (turn on with: {ORT_TELEMETRY_ENV}=0)"
    elif value.strip().lower() in ORT_OFF_VALUES:
        onnxruntime = (
            f"off ({ORT_TELEMETRY_ENV}={value}, set by iristrack when unset; turn on with: {ORT_TELEMETRY_ENV}=0)"
        )
    else:
        onnxruntime = f"on ({ORT_TELEMETRY_ENV}={value})"
    return {"openvino": openvino, "onnxruntime": onnxruntime}
