"""CLI commands for GPU engines and the environment: build-engine, check-gpu, info (registered on cli.main)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import click

from tracker.errors import ModelError


@click.command("build-engine")
@click.argument("model", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp16", show_default=True)
@click.option("--max-batch", type=click.IntRange(1, 256), default=1, show_default=True, help="Largest batch per call.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Engine file (default: the cache).")
@click.option("--workspace-mb", type=click.IntRange(16), default=1024, show_default=True, help="Builder scratch.")
@click.option("--device", type=click.IntRange(0), default=0, show_default=True, help="CUDA device index.")
def build_engine_cmd(
    model: Path | None, precision: str, max_batch: int, out: Path | None, workspace_mb: int, device: int
) -> None:
    """Build a TensorRT engine for MODEL.onnx (default: the shipped model) on this GPU."""
    from tracker.backends.engines import EngineCard, build_engine, card_path, ensure_engine
    from tracker.backends.select import tensorrt_unavailable_reason
    from tracker.paths import default_model_path

    model = model or default_model_path()
    if not model.is_file():
        raise ModelError(f"model file not found: {model}")
    for problem in _audit_or_empty(model):
        click.echo(f"warning: {problem}", err=True)
    reason = tensorrt_unavailable_reason()
    if reason:
        raise ModelError(f"cannot build a TensorRT engine here: {reason} (see docs/GPU.md)")
    if out is not None:
        card = build_engine(model, out, precision=precision, max_batch=max_batch, workspace_mb=workspace_mb,
                            device=device)  # fmt: skip
        path = out
    else:
        path = ensure_engine(model, precision, max_batch, device=device, workspace_mb=workspace_mb, force=True)
        card = EngineCard.load(card_path(path))
    click.echo(
        f"built {path}: TensorRT {card.tensorrt_version}, {card.gpu_name} ({card.compute_capability}), "
        f"{card.precision}, max batch {card.max_batch}, input {card.input_hw[0]}x{card.input_hw[1]}"
    )


@click.command("check-gpu")
@click.argument("model", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp16", show_default=True)
@click.option("--frames", "n_frames", type=click.IntRange(1), default=32, show_default=True)
@click.option("--iters", type=click.IntRange(10), default=200, show_default=True, help="Timed calls per row.")
def check_gpu_cmd(model: Path | None, precision: str, n_frames: int, iters: int) -> None:
    """Compare TensorRT with ONNX Runtime on a synthetic clip and time both (exit 2 when no GPU)."""
    from tools.gpu_check import format_report, gpu_unavailable_reason, run_gpu_check

    reason = gpu_unavailable_reason()
    if reason:
        click.echo(f"check-gpu cannot run on this machine: {reason} (see docs/GPU.md)", err=True)
        sys.exit(2)
    report = run_gpu_check(model, precision=precision, n_frames=n_frames, iters=iters,
                           progress=lambda msg: click.echo(msg, err=True))  # fmt: skip
    click.echo(format_report(report))
    if not report.ok:
        sys.exit(1)


@click.command("info")
def info_cmd() -> None:
    """Print versions, backends, GPU, default model and engine cache: what to paste into a bug report."""
    for key, value in _info_lines():
        click.echo(f"{key + ':':<22} {value}")


def _info_lines() -> list[tuple[str, str]]:
    """(label, value) pairs for `iristrack info`; never raises for a missing optional package."""
    from tracker.backends.select import available_backends
    from tracker.backends.telemetry import import_onnxruntime, telemetry_state
    from tracker.paths import default_model_path, engine_cache_dir, face_eye_model_path

    lines = [
        ("iristrack", _version("iristrack")),
        ("python", sys.version.split()[0]),
        ("platform", platform.platform()),
        ("cpu count", str(os.cpu_count())),
    ]
    try:
        ort = import_onnxruntime()
        lines.append(("onnxruntime", f"{ort.__version__} (providers: {', '.join(ort.get_available_providers())})"))
    except ImportError:
        lines.append(("onnxruntime", "not installed"))
    else:
        lines.append(("onnxruntime telemetry", telemetry_state()["onnxruntime"]))
    lines += _openvino_lines()
    for name, status in available_backends().items():
        lines.append((f"backend {name}", status))
    lines += _opencv_lines()
    lines.append(("tensorrt", _version("tensorrt")))
    lines.append(("pycuda", _version("pycuda")))
    lines.append(("gpu", _gpu_summary()))
    model = default_model_path()
    lines.append(("default model", f"{model}" + ("" if model.is_file() else " (missing)")))
    card = model.with_name("model.json")
    if card.is_file():
        lines.append(("model card", _model_card_summary(card)))
    eyes = face_eye_model_path()
    if eyes is not None:
        lines.append(("face-eye model", f"{eyes}" + ("" if eyes.is_file() else " (missing)")))
    cache = engine_cache_dir()
    entries = sorted(cache.glob("*.engine")) if cache.is_dir() else []
    lines.append(("engine cache", f"{cache} ({len(entries)} engine{'s' if len(entries) != 1 else ''})"))
    for entry in entries:
        lines.append(("  engine", _engine_summary(entry)))
    return lines


def _openvino_lines() -> list[tuple[str, str]]:
    """OpenVINO's version and devices, the precision the backend will run in, and the telemetry state."""
    from tracker.backends.openvino import DEFAULT_PRECISION, PRECISION_ENV, resolve_precision
    from tracker.backends.telemetry import import_openvino, telemetry_state

    try:
        ov = import_openvino()  # not `import openvino`: that alone would start Intel's telemetry
    except ImportError:
        return [("openvino", 'not installed (pip install -e ".[fast]")')]
    lines = []
    try:
        core = ov.Core()
        lines.append(("openvino", f"{ov.get_version()} (devices: {', '.join(core.available_devices)})"))
        has_bf16 = "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception as exc:  # OpenVINO can import but fail to enumerate devices
        lines.append(("openvino", f"installed, cannot list devices: {str(exc).splitlines()[0]}"))
        has_bf16 = False
    try:
        precision = resolve_precision(None)
    except ModelError as exc:
        lines.append(("openvino precision", f"error: {exc}"))
    else:
        source = f"from ${PRECISION_ENV}" if os.environ.get(PRECISION_ENV) else "default"
        if precision == "bf16" and not has_bf16:
            precision = "fp32 (bf16 requested, this CPU has no bf16)"
        other = "bf16" if DEFAULT_PRECISION == "fp32" else "fp32"
        lines.append(("openvino precision", f"{precision} ({source}; {PRECISION_ENV}={other} to change)"))
    lines.append(("openvino telemetry", telemetry_state()["openvino"]))
    return lines


def _opencv_lines() -> list[tuple[str, str]]:
    """OpenCV's version and distribution, its GUI support (what --show needs) and the display variables."""
    import cv2

    dists = [d for d in ("opencv-python", "opencv-contrib-python", "opencv-python-headless",
                         "opencv-contrib-python-headless") if _version(d) != "not installed"]  # fmt: skip
    gui = opencv_gui(cv2.getBuildInformation())
    show = (
        f"{gui} (--show can open a window)" if gui != "none" else "none (headless build: --show cannot open a window)"
    )
    display = [f"{k}={os.environ[k]}" for k in ("DISPLAY", "WAYLAND_DISPLAY") if os.environ.get(k)]
    return [
        ("opencv", f"{cv2.__version__} ({', '.join(f'{d} {_version(d)}' for d in dists) or 'built from source'})"),
        (
            "opencv gui",
            show + ("" if len(dists) < 2 else f"; {len(dists)} OpenCV packages share cv2: the last installed wins"),
        ),
        ("display", ", ".join(display) or "none (no DISPLAY or WAYLAND_DISPLAY)"),
    ]


def opencv_gui(build_information: str) -> str:
    """The GUI backend named in cv2.getBuildInformation() text ('QT5', 'GTK3', 'GTK+'), or 'none' (headless)."""
    lines = build_information.splitlines()
    for i, line in enumerate(lines):
        key, _, value = line.strip().partition(":")
        if key.strip() != "GUI":
            continue
        if value.strip():
            return "none" if value.strip().upper() in ("NONE", "NO") else value.strip()
        for sub in lines[i + 1 :]:  # older builds list the toolkits below an empty heading
            if not sub.strip():
                break
            name, _, flag = sub.strip().partition(":")
            if flag.strip().upper().startswith("YES") and "support" not in name.lower():
                return name.strip()
        return "none"
    return "none"


def _version(dist: str) -> str:
    """Installed version of a distribution, or 'not installed'."""
    from importlib.metadata import PackageNotFoundError, version

    for name in (dist, f"{dist}-cu12", f"{dist}-cu11"):
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return "not installed"


def _gpu_summary() -> str:
    """GPU name(s) and driver version from nvidia-smi, else from pycuda, else why none is known."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=name,driver_version,compute_cap", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=10, check=True,
            ).stdout.strip()  # fmt: skip
            if out:
                return "; ".join(
                    f"{name.strip()} (driver {drv.strip()}, compute {cc.strip()})"
                    for name, drv, cc in (row.split(",")[:3] for row in out.splitlines() if row.count(",") >= 2)
                )
        except (subprocess.SubprocessError, OSError):
            pass
    try:
        import pycuda.driver as cuda

        cuda.init()
        driver = cuda.get_driver_version()
        names = [cuda.Device(i).name() for i in range(cuda.Device.count())]
        return f"{', '.join(names) or 'none'} (CUDA driver API {driver // 1000}.{driver % 1000 // 10})"
    except ImportError:
        return "unknown (no nvidia-smi, pycuda not installed)"
    except Exception as exc:  # no driver, no device
        return f"none found ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"


def _model_card_summary(path: Path) -> str:
    """'input 1x128x128x1 image -> edges (limbus, pupil); test edge F 0.938 / 0.999; sha256 1a2b3c4d...'."""
    try:
        data = json.loads(path.read_text())
        shape = "x".join(str(d) for d in data["input"]["shape"])
        channels = ", ".join(data["output"]["channels"])
        test = (data.get("metrics", {}).get("edge_f_ods_2px") or {}).get("test") or {}
        scores = " / ".join(f"{test[c]['f']:.3f}" for c in data["output"]["channels"] if c in test)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable ({exc})"
    return (
        f"input {shape} {data['input']['name']} -> {data['output']['name']} ({channels}); "
        f"test edge F {scores or 'n/a'}; sha256 {data.get('onnx', {}).get('sha256', '')[:12]}..."
    )


def _engine_summary(path: Path) -> str:
    """'name: TensorRT 10.8.0, NVIDIA L4 (8.9), fp16, max batch 8, 12.3 MB' from the engine's card."""
    from tracker.backends.engines import EngineCard, find_card

    size = f"{path.stat().st_size / 1e6:.1f} MB"
    card = find_card(path)
    try:
        c = EngineCard.load(card) if card is not None else None
    except ModelError:
        c = None
    if c is None:
        return f"{path.name}: no readable card, {size}"
    return (
        f"{path.name}: TensorRT {c.tensorrt_version}, {c.gpu_name} ({c.compute_capability}), {c.precision}, "
        f"max batch {c.max_batch}, {size}, built {c.built_at or '?'}"
    )


def _audit_or_empty(model: Path) -> list[str]:
    """ONNX audit problems, or [] when the onnx package is not installed (the audit is advisory here)."""
    from tools.onnx_audit import audit_onnx

    try:
        return audit_onnx(model)
    except ModelError as exc:
        if "onnx package" in str(exc):
            return []
        raise
