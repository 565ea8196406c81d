"""Pick an inference backend: TensorRT on an NVIDIA GPU when it can run, else OpenVINO or ONNX Runtime on the CPU."""

from __future__ import annotations

import importlib
from pathlib import Path

from tracker.backends.base import Backend
from tracker.backends.engines import ENGINE_SUFFIXES
from tracker.errors import ModelError
from tracker.paths import default_model_path

KINDS: tuple[str, ...] = ("auto", "tensorrt", "openvino", "onnxruntime", "cpu")


def module_missing_reason(module: str, label: str | None = None) -> str | None:
    """None when `module` imports, else 'LABEL not installed' (or why the import failed)."""
    label = label or module.split(".")[0]
    try:
        _import(module)
    except ImportError:
        return f"{label} not installed"
    except Exception as exc:  # e.g. OSError when tensorrt's shared libraries are missing
        return f"{label} cannot be imported ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    return None


def _import(module: str) -> None:
    """Import `module`; openvino and onnxruntime through tracker.backends.telemetry, so probing sends nothing."""
    from tracker.backends.telemetry import import_onnxruntime, import_openvino

    if module == "openvino":
        import_openvino()
    elif module == "onnxruntime":
        import_onnxruntime()
    else:
        importlib.import_module(module)


def cuda_gpu_reason() -> str | None:
    """None when pycuda sees at least one CUDA GPU, else why not (no driver, no device)."""
    try:
        import pycuda.driver as cuda

        cuda.init()
        count = cuda.Device.count()
    except Exception as exc:  # pycuda raises its own Error types, or RuntimeError without a driver
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"no CUDA GPU found ({text})"
    return None if count > 0 else "no CUDA GPU found"


def tensorrt_unavailable_reason() -> str | None:
    """None when TensorRT can run here (tensorrt and pycuda import, a CUDA GPU is present), else why not."""
    return module_missing_reason("tensorrt") or module_missing_reason("pycuda.driver", "pycuda") or cuda_gpu_reason()


def available_backends() -> dict[str, str]:
    """Backend name -> 'available' or the reason it is not, for `iristrack info`."""
    reasons = {
        "tensorrt": tensorrt_unavailable_reason(),
        "openvino": module_missing_reason("openvino"),
        "onnxruntime": module_missing_reason("onnxruntime"),
    }
    return {name: reason or "available" for name, reason in reasons.items()}


def load_backend(
    model_path: Path | None,
    kind: str = "auto",
    *,
    threads: int = 0,
    precision: str = "fp16",
    max_batch: int = 1,
    rebuild: bool = True,
    openvino_precision: str | None = None,
    pin_threads: bool = True,
) -> tuple[Backend, str]:
    """(backend, one-line notice of what was chosen and why) for `model_path` (default: the shipped model).

    kind: auto (TensorRT when it can run here, else the CPU), tensorrt, openvino, onnxruntime, or cpu
    (OpenVINO when installed, else ONNX Runtime). An explicit kind that cannot run raises ModelError.
    precision is TensorRT's (fp16, fp32); openvino_precision is OpenVINO's (fp32, bf16; None:
    $IRISTRACK_OPENVINO_PRECISION, else tracker.backends.openvino.DEFAULT_PRECISION). pin_threads=False
    leaves OpenVINO's threads unpinned (face runs, where a second OpenVINO model shares the process).
    """
    kind = (kind or "auto").lower()
    if kind not in KINDS:
        raise ModelError(f"unknown backend {kind!r}; choose one of {', '.join(KINDS)}")
    path = Path(model_path) if model_path is not None else default_model_path()
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    is_engine = path.suffix.lower() in ENGINE_SUFFIXES
    if is_engine and kind not in ("auto", "tensorrt"):
        raise ModelError(f"{path.name} is a TensorRT engine; it runs only with --backend tensorrt (or give the .onnx)")

    if kind in ("auto", "tensorrt"):
        reason = tensorrt_unavailable_reason()
        if reason is None:
            try:
                backend = _tensorrt(path, precision, max_batch, rebuild)
            except ModelError as exc:
                if kind == "tensorrt" or is_engine:
                    raise
                reason = f"tensorrt failed: {exc}"
            else:
                return backend, f"using tensorrt on {_gpu_label()} ({precision}, engine {backend.engine_path.name})"
        if kind == "tensorrt" or is_engine:
            what = f"{path.name} is a TensorRT engine, but TensorRT" if is_engine else "--backend tensorrt"
            raise ModelError(
                f"{what} cannot run here: {reason}; use --backend cpu with the .onnx model, "
                'or install the GPU extra: pip install -e ".[gpu]" (see docs/GPU.md)'
            )
        backend, name = _cpu(path, threads, openvino_precision, pin_threads)
        return backend, f"using {name} on the CPU ({reason})"

    if kind == "cpu":
        backend, name = _cpu(path, threads, openvino_precision, pin_threads)
        why = "fastest CPU backend installed" if name == "openvino" else "openvino not installed"
        return backend, f"using {name} on the CPU ({why})"
    if kind == "openvino":
        reason = module_missing_reason("openvino")
        if reason:
            raise ModelError(f'--backend openvino cannot run here: {reason}; pip install -e ".[fast]" or use cpu')
        return _openvino(path, threads, openvino_precision, pin_threads), "using openvino on the CPU (requested)"
    return _onnxruntime(path, threads), "using onnxruntime on the CPU (requested)"


def _cpu(path: Path, threads: int, openvino_precision: str | None, pin_threads: bool = True) -> tuple[Backend, str]:
    """OpenVINO when importable, else ONNX Runtime; returns (backend, name)."""
    if module_missing_reason("openvino") is None:
        return _openvino(path, threads, openvino_precision, pin_threads), "openvino"
    return _onnxruntime(path, threads), "onnxruntime"


def _openvino(path: Path, threads: int, precision: str | None, pin_threads: bool = True) -> Backend:
    from tracker.backends.openvino import OpenVinoBackend

    return OpenVinoBackend(path, threads=threads, precision=precision, pin_threads=pin_threads)


def _onnxruntime(path: Path, threads: int) -> Backend:
    from tracker.backends.onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(path, threads=threads)


def _tensorrt(path: Path, precision: str, max_batch: int, rebuild: bool):
    from tracker.backends.tensorrt import TensorRTBackend

    return TensorRTBackend(path, precision=precision, max_batch=max_batch, rebuild=rebuild)


def _gpu_label(device: int = 0) -> str:
    """'NVIDIA L4' for the notice, or 'the GPU' if pycuda cannot say."""
    try:
        import pycuda.driver as cuda

        return str(cuda.Device(device).name())
    except Exception:  # the notice is cosmetic; never fail a load over it
        return "the GPU"
