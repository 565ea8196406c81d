"""TensorRT backend: import hygiene and CLI behaviour without a GPU (always run); parity on a GPU (marked gpu)."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import threading

import numpy as np
import pytest
from click.testing import CliRunner

import tracker.backends.select as select_module
from cli import main
from tracker.backends.select import tensorrt_unavailable_reason
from tracker.errors import ModelError

pytest.importorskip("onnx")
from tests.onnx_models import CONTRACT_VIOLATIONS, save, tiny_unet  # noqa: E402

EDGE_TOL = {"fp32": 1e-4, "fp16": 1e-2}  # max abs difference from ONNX Runtime (CPU, float32)


# -- no GPU needed --------------------------------------------------------------------------------------


def test_importing_the_gpu_modules_does_not_import_tensorrt_or_pycuda():
    code = (
        "import sys\n"
        "import tracker.backends.tensorrt, tracker.backends.select, tracker.backends.engines, tools.gpu_check\n"
        "import tools.onnx_audit, cli, cli.gpu\n"
        "bad = [m for m in ('tensorrt', 'pycuda', 'pycuda.driver', 'pycuda.autoinit') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_check_gpu_without_a_gpu_exits_2_with_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    result = CliRunner().invoke(main, ["check-gpu"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines == ["check-gpu cannot run on this machine: tensorrt not installed (see docs/GPU.md)"]


def test_build_engine_without_tensorrt_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    model = save(tiny_unet(), tmp_path / "m.onnx")
    result = CliRunner().invoke(main, ["build-engine", str(model)])
    assert result.exit_code == 1
    assert (
        result.output.strip() == "error: cannot build a TensorRT engine here: tensorrt not installed (see docs/GPU.md)"
    )


def test_build_engine_warns_about_audit_problems(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    model = save(tiny_unet(upsample="nearest"), tmp_path / "m.onnx")
    result = CliRunner().invoke(main, ["build-engine", str(model)])
    assert "warning: Resize node" in result.output and "nearest" in result.output


def test_info_lists_backends_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IRISTRACK_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    result = CliRunner().invoke(main, ["info"])
    assert result.exit_code == 0, result.output
    assert "backend tensorrt:      tensorrt not installed" in result.output
    assert "backend onnxruntime:   available" in result.output
    assert f"engine cache:          {tmp_path / 'engines'} (0 engines)" in result.output
    assert re.search(r"^face-eye model: +\S+engines/face/model\.onnx$", result.output, re.M), result.output


def test_info_shows_opencv_gui_and_openvino_precision_and_telemetry(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("IRISTRACK_OPENVINO_PRECISION", "fp32")
    monkeypatch.setenv("ORT_DISABLE_TELEMETRY", "1")
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    result = CliRunner().invoke(main, ["info"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(":", 1) for line in result.output.splitlines() if ":" in line)
    assert lines["opencv gui"].strip().endswith(("(--show can open a window)", "--show cannot open a window)"))
    if select_module.module_missing_reason("openvino") is None:
        assert lines["openvino precision"].strip().startswith("fp32 (from $IRISTRACK_OPENVINO_PRECISION")
        assert lines["openvino telemetry"].strip() == "off (turn on with OpenVINO's: opt_in_out --opt_in)"
    assert lines["onnxruntime telemetry"].strip().startswith("off (ORT_DISABLE_TELEMETRY=1")


HEADLESS_BUILD = (  # opencv-python-headless 5.0
    "  GUI:                           NONE\n    VTK support:                 NO\n"
    "    Built-in Unicode font:       YES\n\n  Media I/O:\n"
)
QT_BUILD = "  GUI:                           QT5\n    QT:                          YES (ver 5.15.13 )\n\n"
OLD_GTK_BUILD = "  GUI: \n    GTK+:                        YES (ver 3.22.30)\n    VTK support:                 NO\n\n"


@pytest.mark.parametrize(
    ("text", "expected"), [(HEADLESS_BUILD, "none"), (QT_BUILD, "QT5"), (OLD_GTK_BUILD, "GTK+"), ("", "none")]
)
def test_opencv_gui_is_read_from_the_build_information(text, expected):
    from cli.gpu import opencv_gui

    assert opencv_gui(text) == expected


def test_tensorrt_backend_on_a_missing_file_is_a_model_error(tmp_path):
    from tracker.backends.tensorrt import TensorRTBackend

    with pytest.raises(ModelError, match="not found"):
        TensorRTBackend(tmp_path / "missing.onnx")


# -- on an NVIDIA GPU -----------------------------------------------------------------------------------

GPU_REASON = tensorrt_unavailable_reason()
gpu = pytest.mark.skipif(GPU_REASON is not None, reason=f"needs TensorRT, pycuda and a CUDA GPU: {GPU_REASON}")


@pytest.fixture
def gpu_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IRISTRACK_CACHE", str(tmp_path / "cache"))
    return tmp_path


def reference(model_path, x):
    from tracker.backends.onnxruntime import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(model_path)
    try:
        return np.array(backend.infer(x), copy=True)
    finally:
        backend.close()


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_matches_onnxruntime(gpu_cache, precision):
    from tracker.backends.tensorrt import TensorRTBackend

    model = save(tiny_unet(seed=1), gpu_cache / "tiny.onnx")
    x = np.random.default_rng(0).standard_normal((4, 16, 16, 1)).astype(np.float32)
    with TensorRTBackend(model, precision=precision, max_batch=4) as backend:
        assert backend.input_hw == (16, 16) and backend.max_batch == 4
        out = np.array(backend.infer(x), copy=True)
        one = np.array(backend.infer(x[:1]), copy=True)
    ref = reference(model, x)
    assert out.shape == (4, 16, 16, 2)
    assert np.max(np.abs(out - ref)) < EDGE_TOL[precision]
    assert np.max(np.abs(one - ref[:1])) < EDGE_TOL[precision]


@pytest.mark.gpu
@gpu
def test_batches_larger_than_max_batch_run_in_chunks(gpu_cache):
    from tracker.backends.tensorrt import TensorRTBackend

    model = save(tiny_unet(seed=2), gpu_cache / "tiny.onnx")
    x = np.random.default_rng(1).standard_normal((7, 16, 16, 1)).astype(np.float32)
    with TensorRTBackend(model, precision="fp32", max_batch=2) as backend:
        out = np.array(backend.infer(x), copy=True)
    assert np.max(np.abs(out - reference(model, x))) < EDGE_TOL["fp32"]


@pytest.mark.gpu
@gpu
def test_static_batch_engine_pads_and_chunks(gpu_cache):
    from tracker.backends.tensorrt import TensorRTBackend

    model = save(tiny_unet(seed=4, batch=2), gpu_cache / "static.onnx")
    x = np.random.default_rng(2).standard_normal((3, 16, 16, 1)).astype(np.float32)
    with TensorRTBackend(model, precision="fp32", max_batch=8) as backend:
        assert backend.max_batch == 2
        out = np.array(backend.infer(x), copy=True)
    ref = np.concatenate([reference(model, x[:2]), reference(model, np.concatenate([x[2:], x[2:]]))[:1]])
    assert np.max(np.abs(out - ref)) < EDGE_TOL["fp32"]


@pytest.mark.gpu
@gpu
def test_two_batches_in_flight_give_their_own_results(gpu_cache):
    from tracker.backends.tensorrt import TensorRTBackend

    model = save(tiny_unet(seed=5), gpu_cache / "tiny.onnx")
    rng = np.random.default_rng(3)
    a, b = (rng.standard_normal((1, 16, 16, 1)).astype(np.float32) for _ in range(2))
    with TensorRTBackend(model, precision="fp32") as backend:
        ta, tb = backend.submit(a), backend.submit(b)
        with pytest.raises(RuntimeError, match="in flight"):
            backend.submit(a)
        out_a = np.array(backend.collect(ta), copy=True)
        out_b = np.array(backend.collect(tb), copy=True)
        with pytest.raises(ValueError, match="not in flight"):
            backend.collect(ta)
    assert np.max(np.abs(out_a - reference(model, a))) < EDGE_TOL["fp32"]
    assert np.max(np.abs(out_b - reference(model, b))) < EDGE_TOL["fp32"]


@pytest.mark.gpu
@gpu
def test_backend_loaded_in_one_thread_runs_in_another(gpu_cache):
    from tracker.backends.tensorrt import TensorRTBackend

    model = save(tiny_unet(seed=6), gpu_cache / "tiny.onnx")
    x = np.random.default_rng(4).standard_normal((1, 16, 16, 1)).astype(np.float32)
    results, errors = [], []
    with TensorRTBackend(model, precision="fp32") as backend:

        def work():
            try:
                results.append(np.array(backend.infer(x), copy=True))
            except Exception as exc:  # surfaced by the assertion below
                errors.append(exc)

        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    assert errors == [] and len(results) == 1
    assert np.max(np.abs(results[0] - reference(model, x))) < EDGE_TOL["fp32"]


@pytest.mark.gpu
@gpu
def test_close_is_idempotent_and_blocks_use(gpu_cache):
    from tracker.backends.tensorrt import TensorRTBackend

    model = save(tiny_unet(), gpu_cache / "tiny.onnx")
    backend = TensorRTBackend(model, precision="fp32")
    backend.close()
    backend.close()
    with pytest.raises(ModelError, match="closed"):
        backend.infer(np.zeros((1, 16, 16, 1), np.float32))


@pytest.mark.gpu
@gpu
def test_stale_engine_card_without_rebuild_names_the_command(gpu_cache):
    from tracker.backends.engines import EngineCard, card_path, ensure_engine
    from tracker.backends.tensorrt import TensorRTBackend

    model = save(tiny_unet(), gpu_cache / "tiny.onnx")
    path = ensure_engine(model, "fp32", 1)
    card = EngineCard.load(card_path(path))
    dataclasses.replace(card, tensorrt_version="0.0.1").save(card_path(path))
    with pytest.raises(ModelError, match="iristrack build-engine"):
        TensorRTBackend(model, precision="fp32", rebuild=False)
    with TensorRTBackend(model, precision="fp32", rebuild=True) as backend:  # rebuilt automatically
        assert backend.engine_path == path
    assert EngineCard.load(card_path(path)).tensorrt_version == card.tensorrt_version


# -- the backend's bookkeeping, with stand-ins for tensorrt and pycuda (no GPU; no GPU result) -----------
# The stand-ins copy bytes on the host and run the ONNX model with ONNX Runtime where TensorRT would execute:
# they check slots, chunking, padding, context push/pop balance and freeing, not TensorRT or CUDA themselves.


class _FakeCuda:
    """Just enough of pycuda.driver for TensorRTBackend, recording context pushes and allocations."""

    class Error(Exception):
        pass

    def __init__(self):
        self.depth, self.live, self.detached = 0, {}, 0
        cuda = self

        class Ctx:
            def push(self):
                cuda.depth += 1

            def detach(self):
                cuda.detached += 1

        class Device:
            def __init__(self, index):
                self.index = index

            def retain_primary_context(self):
                return Ctx()

        class Context:
            @staticmethod
            def pop():
                assert cuda.depth > 0, "pop without push"
                cuda.depth -= 1

        class Alloc:
            def __init__(self, nbytes):
                self.buf = np.zeros(nbytes, np.uint8)
                cuda.live[id(self)] = self

            def __int__(self):
                return id(self)

            def free(self):
                cuda.live.pop(id(self))

        class Handle:
            handle = 0

            def synchronize(self):
                pass

            def wait_for_event(self, event):
                pass

            def record(self, stream=None):
                pass

        self.Device, self.Context, self.mem_alloc = Device, Context, Alloc
        self.Stream = self.Event = Handle

    def init(self):
        pass

    @staticmethod
    def pagelocked_empty(shape, dtype):
        return np.empty(shape, dtype)

    def memcpy_htod_async(self, dev, host, stream):
        assert self.depth > 0, "invalid device context"
        dev.buf[: host.nbytes] = np.frombuffer(np.ascontiguousarray(host).tobytes(), np.uint8)

    def memcpy_dtoh_async(self, host, dev, stream):
        assert self.depth > 0, "invalid device context"
        host[...] = dev.buf[: host.nbytes].view(host.dtype).reshape(host.shape)


def _fake_trt(cuda):
    """Just enough of tensorrt: an 'engine' whose bytes are an ONNX model run by ONNX Runtime."""
    import types

    import onnxruntime as ort

    trt = types.ModuleType("tensorrt")
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    ort_dtypes = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8}
    trt.nptype = lambda dtype: ort_dtypes[dtype]  # the stand-in's DataType is ONNX Runtime's type string

    class ILogger:
        Severity = types.SimpleNamespace(ERROR=1, INTERNAL_ERROR=0, WARNING=2)

        def __init__(self):
            pass

    class Context:
        def __init__(self, engine):
            self.engine, self.addresses, self.shape = engine, {}, None

        def set_input_shape(self, name, shape):
            self.shape = tuple(shape)

        def set_tensor_address(self, name, address):
            self.addresses[name] = cuda.live[address]

        def execute_async_v3(self, stream_handle):
            assert cuda.depth > 0, "invalid device context"
            n = self.shape[0]
            size = int(np.prod(self.shape))
            x = self.addresses["image"].buf[: size * 4].view(np.float32).reshape(self.shape)
            y = self.engine.session.run(None, {"image": x})[0]
            self.addresses["edges"].buf[: y.nbytes] = np.frombuffer(y.tobytes(), np.uint8)
            return n > 0

    class Engine:
        """The engine's I/O tensors are the ONNX model's, as TensorRT reports them (-1 for a dynamic dimension)."""

        def __init__(self, data):
            self.session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
            self.batch = self.session.get_inputs()[0].shape[0]
            self.tensors = {arg.name: ("in", arg) for arg in self.session.get_inputs()}
            self.tensors.update({arg.name: ("out", arg) for arg in self.session.get_outputs()})
            self.num_io_tensors = len(self.tensors)

        def get_tensor_name(self, i):
            return list(self.tensors)[i]

        def get_tensor_mode(self, name):
            return self.tensors[name][0]

        def get_tensor_dtype(self, name):
            return self.tensors[name][1].type

        def get_tensor_shape(self, name):
            return tuple(d if isinstance(d, int) else -1 for d in self.tensors[name][1].shape)

        def get_tensor_profile_shape(self, name, profile):
            return [(1, 16, 16, 1), (3, 16, 16, 1), (3, 16, 16, 1)]

        def create_execution_context(self):
            return Context(self)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return Engine(data)

    trt.ILogger, trt.Runtime = ILogger, Runtime
    return trt


@pytest.fixture
def fake_gpu(tmp_path, monkeypatch):
    import types

    import tracker.backends.engines as engines
    from tracker.backends.engines import EngineCard, EngineEnv, card_path, sha256_file

    cuda = _FakeCuda()
    pycuda = types.ModuleType("pycuda")
    pycuda.driver = cuda
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", cuda)
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_trt(cuda))
    env = EngineEnv("0.0-fake", "no GPU (stand-in)", "0.0")

    def fake_build(onnx_path, out_path, precision="fp16", max_batch=1, workspace_mb=1024, device=0):
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_bytes(onnx_path.read_bytes())
        card = EngineCard(
            env.tensorrt_version, env.gpu_name, env.compute_capability, precision, max_batch,
            sha256_file(onnx_path), (16, 16),
        )  # fmt: skip
        card.save(card_path(out_path))
        return card

    monkeypatch.setattr(engines, "probe_environment", lambda device=0: env)
    monkeypatch.setattr(engines, "build_engine", fake_build)
    monkeypatch.setenv("IRISTRACK_CACHE", str(tmp_path / "cache"))
    return cuda


def test_bookkeeping_chunks_pipelines_and_frees(tmp_path, fake_gpu):
    from tracker.backends.tensorrt import TensorRTBackend

    model = save(tiny_unet(seed=7), tmp_path / "tiny.onnx")
    x = np.random.default_rng(5).standard_normal((8, 16, 16, 1)).astype(np.float32)
    with TensorRTBackend(model, precision="fp32", max_batch=3) as backend:
        assert fake_gpu.depth == 0 and len(fake_gpu.live) == 4  # 2 slots x (in, out), context not left pushed
        assert backend.max_batch == 3
        out = np.array(backend.infer(x), copy=True)  # 3 + 3 + 2, two chunks in flight at a time
        ta, tb = backend.submit(x[:1]), backend.submit(x[1:3])
        with pytest.raises(RuntimeError, match="in flight"):
            backend.submit(x[:1])
        b = np.array(backend.collect(tb), copy=True)
        a = np.array(backend.collect(ta), copy=True)
        with pytest.raises(ValueError, match="1..3"):
            backend.submit(x[:4])
        assert fake_gpu.depth == 0
    assert fake_gpu.live == {} and fake_gpu.detached == 1 and fake_gpu.depth == 0
    ref = reference(model, x)
    np.testing.assert_allclose(out, ref, atol=1e-6)
    np.testing.assert_allclose(a, ref[:1], atol=1e-6)
    np.testing.assert_allclose(b, ref[1:3], atol=1e-6)


def test_bookkeeping_static_batch_pads_the_last_chunk(tmp_path, fake_gpu):
    from tracker.backends.tensorrt import TensorRTBackend

    model = save(tiny_unet(seed=8, batch=2), tmp_path / "static.onnx")
    x = np.random.default_rng(6).standard_normal((5, 16, 16, 1)).astype(np.float32)
    with TensorRTBackend(model, precision="fp32", max_batch=8) as backend:
        assert backend.max_batch == 2
        out = np.array(backend.infer(x), copy=True)
    ref = np.concatenate(
        [reference(model, x[i : i + 2]) for i in (0, 2)] + [reference(model, np.repeat(x[4:], 2, 0))[:1]]
    )
    np.testing.assert_allclose(out, ref, atol=1e-6)


@pytest.mark.parametrize("variant", ["nchw_input", "two_outputs", "uint8_input", "one_output_channel"])
def test_bare_engine_of_another_layout_is_refused_from_its_io_tensors(tmp_path, fake_gpu, variant):
    from tracker.backends.tensorrt import TensorRTBackend

    make, phrase = CONTRACT_VIOLATIONS[variant]
    engine = tmp_path / f"{variant}.engine"  # a bare engine: no ONNX to audit first, only its I/O tensors
    engine.write_bytes(make().SerializeToString())
    with pytest.raises(ModelError) as info:
        TensorRTBackend(engine, precision="fp32")
    message = str(info.value)
    assert message.startswith(f"{engine}: ") and phrase in message and "\n" not in message
    assert fake_gpu.depth == 0 and fake_gpu.live == {} and fake_gpu.detached == 1  # nothing left behind


def test_engine_beside_a_model_card_loads_and_leaves_the_card_alone(tmp_path, fake_gpu):
    from tests.paths import REPO
    from tracker.backends.tensorrt import TensorRTBackend

    model_card = (REPO / "engines" / "default" / "model.json").read_text()
    (tmp_path / "model.json").write_text(model_card)  # the layout docs/GPU.md shows: model.onnx, model.json, ...
    engine = tmp_path / "model.engine"  # ... and an engine built next to them
    engine.write_bytes(tiny_unet(seed=3).SerializeToString())
    with TensorRTBackend(engine, precision="fp32") as backend:  # the model card is not read as an engine card
        assert backend.input_hw == (16, 16)
    assert (tmp_path / "model.json").read_text() == model_card


def test_onnx_of_another_layout_is_refused_before_building(tmp_path, fake_gpu):
    from tracker.backends.tensorrt import TensorRTBackend

    model = save(CONTRACT_VIOLATIONS["extra_input"][0](), tmp_path / "two_inputs.onnx")
    with pytest.raises(ModelError, match="the model has 2 inputs, not 1"):
        TensorRTBackend(model, precision="fp32")
    assert not (tmp_path / "cache" / "engines").exists()  # no engine was built


def test_bookkeeping_other_thread_and_close(tmp_path, fake_gpu):
    from tracker.backends.tensorrt import TensorRTBackend

    model = save(tiny_unet(seed=9), tmp_path / "tiny.onnx")
    backend = TensorRTBackend(model, precision="fp32")
    errors = []
    thread = threading.Thread(target=lambda: errors.append(backend.infer(np.zeros((1, 16, 16, 1), np.float32)).shape))
    thread.start()
    thread.join()
    assert errors == [(1, 16, 16, 2)]
    backend.close()
    backend.close()
    assert fake_gpu.detached == 1 and fake_gpu.live == {}
    with pytest.raises(ModelError, match="closed"):
        backend.infer(np.zeros((1, 16, 16, 1), np.float32))
