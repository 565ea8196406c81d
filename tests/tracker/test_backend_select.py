"""Backend selection: TensorRT when it can run, else the CPU, with a one-line notice saying why."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

import tracker.backends.select as select
from tracker.backends.select import available_backends, load_backend, tensorrt_unavailable_reason
from tracker.errors import ModelError

pytest.importorskip("onnx")
from tests.onnx_models import save, tiny_unet  # noqa: E402

HAS_OPENVINO = select.module_missing_reason("openvino") is None
CPU_NAME = "openvino" if HAS_OPENVINO else "onnxruntime"


@pytest.fixture
def model(tmp_path):
    return save(tiny_unet(), tmp_path / "tiny.onnx")


@pytest.fixture
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` now raises ImportError


@pytest.fixture
def tensorrt_without_gpu(monkeypatch):
    """tensorrt and pycuda import, but the CUDA driver finds no device (a laptop without an NVIDIA GPU)."""

    def no_device():
        raise RuntimeError("cuInit failed: no CUDA-capable device is detected")

    driver = types.ModuleType("pycuda.driver")
    driver.init = no_device
    driver.Device = types.SimpleNamespace(count=lambda: 0)
    pycuda = types.ModuleType("pycuda")
    pycuda.driver = driver
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)


def check_contract(backend):
    x = np.random.default_rng(0).standard_normal((2, 16, 16, 1)).astype(np.float32)
    out = backend.infer(x)
    assert out.shape == (2, 16, 16, 2) and out.dtype == np.float32
    assert np.all((out >= 0) & (out <= 1))
    assert backend.input_hw == (16, 16)


def test_auto_without_tensorrt_falls_back_to_the_cpu(model, no_tensorrt):
    backend, notice = load_backend(model, "auto")
    try:
        assert backend.name == CPU_NAME
        assert notice == f"using {CPU_NAME} on the CPU (tensorrt not installed)"
        check_contract(backend)
    finally:
        backend.close()


def test_auto_with_tensorrt_but_no_gpu_falls_back_to_the_cpu(model, tensorrt_without_gpu):
    assert tensorrt_unavailable_reason().startswith("no CUDA GPU found")
    backend, notice = load_backend(model, "auto")
    try:
        assert backend.name == CPU_NAME
        assert notice.startswith(f"using {CPU_NAME} on the CPU (no CUDA GPU found")
        assert "no CUDA-capable device" in notice
    finally:
        backend.close()


def test_zero_devices_is_no_gpu(model, tensorrt_without_gpu, monkeypatch):
    monkeypatch.setattr(sys.modules["pycuda.driver"], "init", lambda: None)
    assert tensorrt_unavailable_reason() == "no CUDA GPU found"


def test_pycuda_missing_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    assert tensorrt_unavailable_reason() == "pycuda not installed"


def test_auto_falls_back_when_tensorrt_fails_to_load(model, monkeypatch):
    monkeypatch.setattr(select, "tensorrt_unavailable_reason", lambda: None)

    def broken(*args, **kwargs):
        raise ModelError("engine was built with TensorRT 10.3.0 for NVIDIA A100 (8.0); rebuild ...")

    monkeypatch.setattr(select, "_tensorrt", broken)
    backend, notice = load_backend(model, "auto")
    try:
        assert backend.name == CPU_NAME
        assert notice.startswith(f"using {CPU_NAME} on the CPU (tensorrt failed: engine was built with")
    finally:
        backend.close()


@pytest.mark.parametrize("fixture", ["no_tensorrt", "tensorrt_without_gpu"])
def test_explicit_tensorrt_without_it_is_a_one_line_model_error(model, fixture, request):
    request.getfixturevalue(fixture)
    with pytest.raises(ModelError) as info:
        load_backend(model, "tensorrt")
    message = str(info.value)
    assert message.startswith("--backend tensorrt cannot run here: ")
    assert "\n" not in message and "--backend cpu" in message


def test_explicit_tensorrt_load_error_is_not_swallowed(model, monkeypatch):
    monkeypatch.setattr(select, "tensorrt_unavailable_reason", lambda: None)

    def broken(*args, **kwargs):
        raise ModelError("stale engine; rebuild the engine with: iristrack build-engine m.onnx --precision fp16")

    monkeypatch.setattr(select, "_tensorrt", broken)
    with pytest.raises(ModelError, match="iristrack build-engine"):
        load_backend(model, "tensorrt")


def test_cpu_prefers_openvino_and_falls_back_to_onnxruntime(model, monkeypatch):
    backend, notice = load_backend(model, "cpu")
    backend.close()
    assert backend.name == CPU_NAME and notice.startswith(f"using {CPU_NAME} on the CPU")
    monkeypatch.setitem(sys.modules, "openvino", None)
    backend, notice = load_backend(model, "cpu")
    try:
        assert backend.name == "onnxruntime"
        assert notice == "using onnxruntime on the CPU (openvino not installed)"
        check_contract(backend)
    finally:
        backend.close()


@pytest.mark.parametrize("kind", ["onnxruntime", "openvino"])
def test_explicit_cpu_backends(model, kind):
    if kind == "openvino" and not HAS_OPENVINO:
        pytest.skip("openvino not installed")
    backend, notice = load_backend(model, kind, threads=1)
    try:
        assert backend.name == kind and notice == f"using {kind} on the CPU (requested)"
        check_contract(backend)
    finally:
        backend.close()


def test_explicit_openvino_when_missing(model, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ModelError, match="openvino not installed"):
        load_backend(model, "openvino")


@pytest.mark.parametrize("kind", ["auto", "cpu", "onnxruntime"])
def test_missing_and_corrupt_models_are_one_line_model_errors(tmp_path, kind, no_tensorrt):
    with pytest.raises(ModelError, match="model file not found"):
        load_backend(tmp_path / "missing.onnx", kind)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x01garbage" * 50)
    with pytest.raises(ModelError) as info:
        load_backend(bad, kind)
    assert "cannot load ONNX model" in str(info.value) and "\n" not in str(info.value)


def test_default_model_path_is_used(tmp_path, monkeypatch, no_tensorrt):
    monkeypatch.setenv("IRISTRACK_MODEL_DIR", str(tmp_path))
    with pytest.raises(ModelError, match=str(tmp_path / "model.onnx")):
        load_backend(None)
    save(tiny_unet(), tmp_path / "model.onnx")
    backend, _ = load_backend(None, "cpu")
    backend.close()


def test_unknown_kind_and_engine_on_cpu(model, tmp_path):
    with pytest.raises(ModelError, match="unknown backend 'cuda'"):
        load_backend(model, "cuda")
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    with pytest.raises(ModelError, match="runs only with --backend tensorrt"):
        load_backend(engine, "cpu")


def test_available_backends_reports_reasons(no_tensorrt):
    status = available_backends()
    assert set(status) == {"tensorrt", "openvino", "onnxruntime"}
    assert status["tensorrt"] == "tensorrt not installed"
    assert status["onnxruntime"] == "available"
