"""TensorRT engines: build one from the ONNX model, cache it per GPU and TensorRT version, and tell when it is stale.

An engine is only valid for the TensorRT version and the GPU (compute capability) that built it, so every
engine has a card beside it (`model.engine` -> `model.engine.json`; never `model.json`, the model's own card)
saying what it was built with and from which ONNX file. The cache key hashes exactly those fields, so a new
driver stack or another GPU gets its own engine instead of a crash.

Everything except `probe_environment` and `build_engine` is pure Python and runs without TensorRT.
tensorrt and pycuda are imported only inside those two functions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from tracker.backends.contract import check_model_io
from tracker.errors import ModelError
from tracker.paths import engine_cache_dir

_log = logging.getLogger(__name__)
PRECISIONS: tuple[str, str] = ("fp32", "fp16")
CARD_SUFFIX = ".json"  # appended to the engine's file name: model.engine -> model.engine.json
ENGINE_SUFFIX = ".engine"
ENGINE_SUFFIXES: tuple[str, ...] = (".engine", ".plan", ".trt")  # what load_backend treats as a TensorRT engine
ENGINE_CARD_FIELDS = ("tensorrt_version", "gpu_name", "compute_capability", "onnx_sha256")
# Substrings TensorRT logs when a plan file comes from another TensorRT version (see NVIDIA/TensorRT#2041, #2195).
VERSION_MISMATCH_MARKERS: tuple[str, ...] = (
    "version tag does not match",
    "magic tag does not match",
    "not compatible with this version of tensorrt",
    "serialization assertion",
)


@dataclass(frozen=True, slots=True)
class EngineEnv:
    """What an engine is bound to: the TensorRT version and the GPU (name, compute capability "8.9")."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str

    def describe(self) -> str:
        """'TensorRT 10.8.0 and NVIDIA L4 (8.9)'."""
        return f"TensorRT {self.tensorrt_version} and {self.gpu_name} ({self.compute_capability})"


@dataclass(frozen=True, slots=True)
class EngineCard:
    """What an engine was built with and from; stored as JSON beside the engine file."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    max_batch: int
    onnx_sha256: str
    input_hw: tuple[int, int]
    built_at: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_hw", (int(self.input_hw[0]), int(self.input_hw[1])))
        object.__setattr__(self, "max_batch", int(self.max_batch))

    @property
    def env(self) -> EngineEnv:
        """The TensorRT version and GPU this card records."""
        return EngineEnv(self.tensorrt_version, self.gpu_name, self.compute_capability)

    @property
    def key(self) -> str:
        """The cache key of this card (see engine_key)."""
        return engine_key(
            self.tensorrt_version,
            self.gpu_name,
            self.compute_capability,
            self.precision,
            self.max_batch,
            self.onnx_sha256,
        )

    def to_json(self) -> str:
        """Card -> JSON text (sorted keys, one field a line)."""
        data = asdict(self)
        data["input_hw"] = list(self.input_hw)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "engine card") -> EngineCard:
        """JSON text -> card; a malformed card raises ModelError naming `source`."""
        try:
            data = json.loads(text)
            return cls(
                tensorrt_version=str(data["tensorrt_version"]),
                gpu_name=str(data["gpu_name"]),
                compute_capability=str(data["compute_capability"]),
                precision=str(data["precision"]),
                max_batch=int(data["max_batch"]),
                onnx_sha256=str(data["onnx_sha256"]),
                input_hw=tuple(data["input_hw"]),
                built_at=str(data.get("built_at", "")),
            )
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ModelError(f"{source} is not a valid engine card ({type(exc).__name__}: {exc})") from None

    def save(self, path: Path) -> None:
        """Write the card to `path` atomically."""
        _write_atomic(Path(path), self.to_json().encode())

    @classmethod
    def load(cls, path: Path) -> EngineCard:
        """Read a card file; missing or malformed raises ModelError."""
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ModelError(f"cannot read engine card {path}: {exc.strerror or exc}") from None
        return cls.from_json(text, source=str(path))


def engine_key(
    tensorrt_version: str, gpu_name: str, compute_capability: str, precision: str, max_batch: int, onnx_sha256: str
) -> str:
    """16 hex digits identifying an engine: a hash of everything that makes an engine unusable elsewhere."""
    fields = {
        "tensorrt_version": str(tensorrt_version),
        "gpu_name": str(gpu_name),
        "compute_capability": str(compute_capability),
        "precision": str(precision),
        "max_batch": int(max_batch),
        "onnx_sha256": str(onnx_sha256),
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from None
    return digest.hexdigest()


def cached_engine_path(
    onnx_path: str | Path, precision: str, max_batch: int, env: EngineEnv, onnx_sha256: str | None = None
) -> Path:
    """Where the engine for this ONNX file, precision, batch and machine lives in engine_cache_dir()."""
    sha = onnx_sha256 or sha256_file(onnx_path)
    key = engine_key(env.tensorrt_version, env.gpu_name, env.compute_capability, precision, max_batch, sha)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(onnx_path).stem) or "model"
    return engine_cache_dir() / f"{stem}-{precision}-b{max_batch}-{key}{ENGINE_SUFFIX}"


def card_path(engine_path: str | Path) -> Path:
    """The card file beside an engine: model.engine -> model.engine.json (distinct from a model card, model.json)."""
    path = Path(engine_path)
    return path.with_name(path.name + CARD_SUFFIX)


def legacy_card_path(engine_path: str | Path) -> Path:
    """Where cards were written before they got their own suffix: model.engine -> model.json."""
    return Path(engine_path).with_suffix(CARD_SUFFIX)


def find_card(engine_path: str | Path) -> Path | None:
    """The engine's card: card_path(), else a legacy model.json that is an engine card (never a model card), else None.

    Reading the legacy name is harmless: a model card or anything else that is not an engine card is ignored, and
    cards are only ever written to card_path().
    """
    path = card_path(engine_path)
    if path.is_file():
        return path
    legacy = legacy_card_path(engine_path)
    if legacy == Path(engine_path) or not legacy.is_file():
        return None
    try:
        data = json.loads(legacy.read_text())
    except (OSError, ValueError):
        return None
    return legacy if isinstance(data, dict) and all(key in data for key in ENGINE_CARD_FIELDS) else None


def stale_reason(card: EngineCard, expected: EngineCard) -> str | None:
    """None when an engine with `card` can serve `expected`, else one line saying why not."""
    if card.onnx_sha256 != expected.onnx_sha256:
        return (
            f"engine was built from another ONNX file (sha256 {card.onnx_sha256[:12]}, "
            f"this model is {expected.onnx_sha256[:12]})"
        )
    if card.precision != expected.precision:
        return f"engine is {card.precision}, {expected.precision} was requested"
    if card.max_batch < expected.max_batch:
        return f"engine takes batches of up to {card.max_batch}, {expected.max_batch} was requested"
    if card.env != expected.env:
        return f"engine was built with {_built_for(card.env)}; this machine has {expected.env.describe()}"
    return None


def rebuild_hint(onnx_path: str | Path | None, precision: str, max_batch: int = 1) -> str:
    """'rebuild the engine with: iristrack build-engine MODEL.onnx --precision fp16 [--max-batch N]'."""
    model = str(onnx_path) if onnx_path else "MODEL.onnx"
    batch = f" --max-batch {max_batch}" if max_batch != 1 else ""
    return f"rebuild the engine with: iristrack build-engine {model} --precision {precision}{batch}"


def is_version_mismatch(messages: list[str]) -> bool:
    """True when TensorRT's deserialisation errors say the plan comes from another TensorRT version."""
    text = " ".join(messages).lower()
    return any(marker in text for marker in VERSION_MISMATCH_MARKERS)


def onnx_input_info(onnx_path: str | Path) -> tuple[int | None, tuple[int, int]]:
    """(static batch or None when dynamic, (H, W)) of a model that fits the contract, read with ONNX Runtime."""
    from tracker.backends.onnxruntime import tensor_spec
    from tracker.backends.telemetry import import_onnxruntime

    ort = import_onnxruntime()

    path = Path(onnx_path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises several unrelated types for unreadable or invalid files
        raise ModelError(f"cannot load ONNX model {path}: {str(exc).splitlines()[0]}") from None
    io = check_model_io(
        [tensor_spec(i) for i in session.get_inputs()], [tensor_spec(o) for o in session.get_outputs()], str(path)
    )
    return io.batch, io.input_hw


def find_foreign_cards(onnx_sha256: str, precision: str, cache_dir: Path | None = None) -> list[EngineCard]:
    """Cards in the cache for this ONNX file and precision built on other machines or TensorRT versions."""
    folder = cache_dir or engine_cache_dir()
    cards = []
    for path in sorted(folder.glob(f"*{ENGINE_SUFFIX}{CARD_SUFFIX}")) if folder.is_dir() else []:
        try:
            card = EngineCard.load(path)
        except ModelError:
            continue
        if card.onnx_sha256 == onnx_sha256 and card.precision == precision:
            cards.append(card)
    return cards


def ensure_engine(
    onnx_path: str | Path,
    precision: str = "fp16",
    max_batch: int = 1,
    rebuild: bool = True,
    *,
    device: int = 0,
    workspace_mb: int = 1024,
    force: bool = False,
    env: EngineEnv | None = None,
) -> Path:
    """Path of a usable engine for `onnx_path` on this machine, building it when missing, stale or `force`.

    With rebuild=False a missing or stale engine raises ModelError saying why and how to rebuild it.
    """
    if precision not in PRECISIONS:
        raise ModelError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    onnx_path = Path(onnx_path)
    static_batch, input_hw = onnx_input_info(onnx_path)
    if static_batch is not None:
        max_batch = static_batch  # a static-batch ONNX builds a static engine; larger batches run in chunks
    env = env or probe_environment(device)
    sha = sha256_file(onnx_path)
    expected = EngineCard(
        env.tensorrt_version, env.gpu_name, env.compute_capability, precision, max_batch, sha, input_hw
    )
    path = cached_engine_path(onnx_path, precision, max_batch, env, onnx_sha256=sha)
    reason = None if force else _cached_engine_problem(path, expected)
    if reason is None and not force:
        return path
    if not rebuild:
        raise ModelError(f"{reason}; {rebuild_hint(onnx_path, precision, max_batch)}")
    build_engine(onnx_path, path, precision=precision, max_batch=max_batch, workspace_mb=workspace_mb, device=device)
    return path


def _cached_engine_problem(path: Path, expected: EngineCard) -> str | None:
    """None when `path` holds an engine matching `expected`, else why it cannot be used."""
    card = find_card(path) if path.is_file() else None
    if card is not None:
        try:
            return stale_reason(EngineCard.load(card), expected)
        except ModelError as exc:
            return str(exc)
    if path.is_file():
        return f"engine {path.name} has no card beside it"
    for card in reversed(find_foreign_cards(expected.onnx_sha256, expected.precision, path.parent)):
        reason = stale_reason(card, replace(expected, max_batch=card.max_batch))
        if reason is not None:  # an engine for this model exists, but was built elsewhere
            return reason
    return f"no TensorRT engine for this model on this machine ({expected.env.describe()}) in {path.parent}"


def probe_environment(device: int = 0) -> EngineEnv:
    """This machine's TensorRT version and GPU `device` (name, compute capability), via tensorrt and pycuda."""
    try:
        import tensorrt as trt
    except ImportError:
        raise ModelError("tensorrt is not installed; install the [gpu] extra (see docs/GPU.md)") from None
    try:
        import pycuda.driver as cuda
    except ImportError:
        raise ModelError("pycuda is not installed; install the [gpu] extra (see docs/GPU.md)") from None
    try:
        cuda.init()
        dev = cuda.Device(device)
        major, minor = dev.compute_capability()
        return EngineEnv(str(trt.__version__), str(dev.name()), f"{major}.{minor}")
    except cuda.Error as exc:
        raise ModelError(f"cannot open CUDA device {device}: {exc}") from None


def build_engine(
    onnx_path: str | Path,
    out_path: str | Path,
    precision: str = "fp16",
    max_batch: int = 1,
    workspace_mb: int = 1024,
    device: int = 0,
) -> EngineCard:
    """Build a TensorRT engine from `onnx_path` into `out_path` (+ its card beside it) and return the card.

    Dynamic batch -> one optimisation profile (1, max_batch, max_batch); H, W, C must be static. fp16 uses
    BuilderFlag.FP16 where TensorRT has it (10.x) and otherwise (11.x, strongly typed only) builds from an
    fp16-weight copy of the ONNX with float32 I/O. A timing cache per GPU and TensorRT version is kept beside
    the engine so rebuilds are fast.
    """
    if precision not in PRECISIONS:
        raise ModelError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if not onnx_path.is_file():
        raise ModelError(f"model file not found: {onnx_path}")
    if out_path.suffix.lower() not in ENGINE_SUFFIXES:
        raise ModelError(
            f"engine file {out_path} must end in {', '.join(ENGINE_SUFFIXES)} (e.g. {onnx_path.stem}.engine)"
        )
    env = probe_environment(device)
    import pycuda.driver as cuda
    import tensorrt as trt

    onnx_bytes = onnx_path.read_bytes()
    sha = hashlib.sha256(onnx_bytes).hexdigest()
    weak_fp16 = hasattr(trt.BuilderFlag, "FP16")  # TensorRT 10.x; gone in 11.x (strongly typed networks only)
    if precision == "fp16" and not weak_fp16:
        onnx_bytes = convert_onnx_to_fp16(onnx_bytes)

    logger = _capturing_logger(trt)
    ctx = cuda.Device(device).retain_primary_context()
    ctx.push()  # the builder runs on whatever context is current: make it the chosen device's primary context
    try:
        builder = trt.Builder(logger)
        network = builder.create_network(_network_flags(trt, strongly_typed=not weak_fp16))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(onnx_bytes):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise ModelError(f"TensorRT cannot parse {onnx_path}: {(errors or logger.errors or ['unknown error'])[0]}")
        check_model_io(
            [_trt_spec(trt, network.get_input(i)) for i in range(network.num_inputs)],
            [_trt_spec(trt, network.get_output(i)) for i in range(network.num_outputs)],
            str(onnx_path),
        )
        inp = network.get_input(0)
        shape = tuple(inp.shape)
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
        if precision == "fp16" and weak_fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        if shape[0] < 0:
            profile = builder.create_optimization_profile()
            profile.set_shape(inp.name, (1, *shape[1:]), (max_batch, *shape[1:]), (max_batch, *shape[1:]))
            config.add_optimization_profile(profile)
        else:
            max_batch = shape[0]
        timing_name = f"timing-{_slug(env.gpu_name)}-sm{env.compute_capability}-trt{env.tensorrt_version}.cache"
        timing_path = out_path.parent / timing_name
        timing_cache = _load_timing_cache(config, timing_path)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            detail = logger.errors[-1] if logger.errors else "see the TensorRT log above"
            raise ModelError(f"TensorRT could not build an engine from {onnx_path}: {detail}")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(out_path, bytes(serialized))
        if timing_cache is not None:
            _write_atomic(timing_path, bytes(config.get_timing_cache().serialize()))
    finally:
        cuda.Context.pop()
        ctx.detach()
    card = EngineCard(
        env.tensorrt_version,
        env.gpu_name,
        env.compute_capability,
        precision,
        max_batch,
        sha,
        (int(shape[1]), int(shape[2])),
        datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    card.save(card_path(out_path))
    return card


def convert_onnx_to_fp16(model: bytes | object, keep_fp32_io: bool = True) -> bytes:
    """Serialized fp32 ONNX (bytes or ModelProto) -> serialized ONNX with fp16 weights and compute.

    Float initializers and constants become float16; with `keep_fp32_io` the graph keeps float32 inputs and
    outputs through Cast nodes at the edges, so callers feed and read float32 exactly as before. Inputs that
    ONNX requires to be float32 (Resize/Upsample scales and roi) stay float32. Needs the `onnx` package.
    """
    try:
        import numpy as np
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ModelError(
            "converting the model to fp16 needs the onnx package (pip install onnx), or build with --precision fp32"
        ) from None
    proto = onnx.ModelProto()
    if isinstance(model, bytes | bytearray):
        proto.ParseFromString(bytes(model))
    else:
        proto.CopyFrom(model)
    graph = proto.graph
    fp32, fp16 = TensorProto.FLOAT, TensorProto.FLOAT16
    keep_fp32 = {
        name
        for node in graph.node
        if node.op_type in ("Resize", "Upsample")
        for i, name in enumerate(node.input)
        if i >= 1 and name
    }
    fp16_max = float(np.finfo(np.float16).max)

    def to_fp16(tensor):
        array = numpy_helper.to_array(tensor).astype(np.float32)
        return numpy_helper.from_array(np.clip(array, -fp16_max, fp16_max).astype(np.float16), tensor.name)

    for i, init in enumerate(graph.initializer):
        if init.data_type == fp32 and init.name not in keep_fp32:
            graph.initializer[i].CopyFrom(to_fp16(init))
    for node in graph.node:
        for attr in node.attribute:
            if (
                attr.type == onnx.AttributeProto.TENSOR
                and attr.t.data_type == fp32
                and not (node.op_type == "Constant" and set(node.output) & keep_fp32)
            ):
                attr.t.CopyFrom(to_fp16(attr.t))
        if node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == fp32:
                    attr.i = fp16
    new_nodes = []
    if keep_fp32_io:
        init_names = {init.name for init in graph.initializer}
        for value in graph.input:
            if value.name in init_names or value.type.tensor_type.elem_type != fp32:
                continue
            cast_name = f"{value.name}__fp16"
            for node in graph.node:
                for j, name in enumerate(node.input):
                    if name == value.name:
                        node.input[j] = cast_name
            new_nodes.append(helper.make_node("Cast", [value.name], [cast_name], to=fp16, name=f"{cast_name}_cast"))
        tail = []
        for value in graph.output:
            if value.type.tensor_type.elem_type != fp32:
                continue
            inner = f"{value.name}__fp16"
            for node in graph.node:
                for j, name in enumerate(node.output):
                    if name == value.name:
                        node.output[j] = inner
                for j, name in enumerate(node.input):  # other consumers of the output read the fp16 tensor
                    if name == value.name:
                        node.input[j] = inner
            tail.append(helper.make_node("Cast", [inner], [value.name], to=fp32, name=f"{inner}_cast"))
    else:
        tail = []
        for value in list(graph.input) + list(graph.output):
            if value.type.tensor_type.elem_type == fp32:
                value.type.tensor_type.elem_type = fp16
    nodes = new_nodes + list(graph.node) + tail
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # intermediate types changed; let consumers re-infer them
    return proto.SerializeToString()


def trt_dtype_name(trt, dtype) -> str:
    """A trt.DataType -> numpy dtype name ('float32'), or TensorRT's own name for types numpy lacks (bf16, fp8)."""
    import numpy as np

    try:
        return np.dtype(trt.nptype(dtype)).name
    except Exception:  # trt.nptype raises TypeError for such types (other types in other versions)
        return str(dtype).removeprefix("DataType.").lower()


def _trt_spec(trt, tensor) -> tuple[str, tuple[int, ...], str]:
    """A TensorRT network ITensor -> (name, shape with -1 for dynamic, numpy dtype name) for check_model_io."""
    return tensor.name, tuple(tensor.shape), trt_dtype_name(trt, tensor.dtype)


def _built_for(env: EngineEnv) -> str:
    """'TensorRT 10.3.0 for NVIDIA A100 (8.0)'."""
    return f"TensorRT {env.tensorrt_version} for {env.gpu_name} ({env.compute_capability})"


def _slug(text: str) -> str:
    """A file-name-safe form of `text`."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "gpu"


def _write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _network_flags(trt, strongly_typed: bool) -> int:
    """Network creation flags from what this TensorRT offers (explicit batch is the only mode since 10.0)."""
    flags = 0
    names = ["EXPLICIT_BATCH"] if not hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED") else []
    if strongly_typed:
        names.append("STRONGLY_TYPED")
    for name in names:
        flag = getattr(trt.NetworkDefinitionCreationFlag, name, None)
        if flag is not None:
            flags |= 1 << int(flag)
    return flags


def _load_timing_cache(config, path: Path):
    """Attach the timing cache stored at `path` (or a fresh one) to `config`; None if unsupported."""
    if not hasattr(config, "create_timing_cache"):
        return None
    data = b""
    if path.is_file():
        data = path.read_bytes()
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, ignore_mismatch=False):  # another GPU's cache: start afresh
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def _capturing_logger(trt):
    """A trt.ILogger that passes warnings and errors to logging and keeps the error texts in `.errors`."""
    severity = trt.ILogger.Severity
    errors = (severity.ERROR, severity.INTERNAL_ERROR)

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)  # pybind11 trampolines need the base __init__ called explicitly
            self.errors: list[str] = []

        def log(self, level, msg) -> None:
            if level in errors:
                self.errors.append(str(msg))
                _log.error("TensorRT: %s", msg)
            elif level == severity.WARNING:
                _log.warning("TensorRT: %s", msg)

    return _Logger()
