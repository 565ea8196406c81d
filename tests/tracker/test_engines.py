"""Engine cache logic without TensorRT: keys, cards, staleness, ensure_engine, fp16 ONNX conversion."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import tracker.backends.engines as engines
from tracker.backends.engines import (
    EngineCard,
    EngineEnv,
    cached_engine_path,
    card_path,
    engine_key,
    ensure_engine,
    find_card,
    is_version_mismatch,
    sha256_file,
    stale_reason,
)
from tracker.errors import ModelError

A100_OLD = EngineEnv("10.3.0", "NVIDIA A100-SXM4-40GB", "8.0")
L4_NEW = EngineEnv("10.8.0", "NVIDIA L4", "8.9")
KEY_ARGS = {
    "tensorrt_version": "10.8.0",
    "gpu_name": "NVIDIA L4",
    "compute_capability": "8.9",
    "precision": "fp16",
    "max_batch": 8,
    "onnx_sha256": "ab" * 32,
}


def card_for(env: EngineEnv, **overrides) -> EngineCard:
    fields = {
        "tensorrt_version": env.tensorrt_version,
        "gpu_name": env.gpu_name,
        "compute_capability": env.compute_capability,
        "precision": "fp16",
        "max_batch": 1,
        "onnx_sha256": "ab" * 32,
        "input_hw": (16, 16),
        "built_at": "2025-01-01T00:00:00+00:00",
    }
    fields.update(overrides)
    return EngineCard(**fields)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IRISTRACK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "engines"


@pytest.fixture
def tiny_onnx(tmp_path):
    pytest.importorskip("onnx")
    from tests.onnx_models import save, tiny_unet

    return save(tiny_unet(), tmp_path / "tiny.onnx")


# -- keys and cards ------------------------------------------------------------------------------------


def test_engine_key_is_stable_and_short():
    key = engine_key(**KEY_ARGS)
    assert key == engine_key(**KEY_ARGS)
    assert len(key) == 16 and int(key, 16) >= 0
    # Pinned value: changing the hashing silently would orphan every cached engine.
    assert key == engine_key("10.8.0", "NVIDIA L4", "8.9", "fp16", 8, "ab" * 32)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tensorrt_version", "10.8.1"),
        ("gpu_name", "NVIDIA L40S"),
        ("compute_capability", "9.0"),
        ("precision", "fp32"),
        ("max_batch", 1),
        ("onnx_sha256", "cd" * 32),
    ],
)
def test_engine_key_changes_with_each_field(field, value):
    assert engine_key(**{**KEY_ARGS, field: value}) != engine_key(**KEY_ARGS)


def test_card_json_round_trip_and_key():
    card = card_for(L4_NEW, max_batch=8)
    again = EngineCard.from_json(card.to_json())
    assert again == card
    assert again.input_hw == (16, 16)
    assert card.key == engine_key(**KEY_ARGS)


def test_card_save_load(tmp_path):
    card = card_for(A100_OLD)
    card.save(tmp_path / "x.json")
    assert EngineCard.load(tmp_path / "x.json") == card


@pytest.mark.parametrize("text", ["", "{", "[]", '{"tensorrt_version": "10"}'])
def test_malformed_card_is_a_model_error(text):
    with pytest.raises(ModelError, match="not a valid engine card"):
        EngineCard.from_json(text)


def test_sha256_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    with pytest.raises(ModelError):
        sha256_file(tmp_path / "missing")


def test_cached_engine_path_is_in_the_cache_and_per_machine(cache, tmp_path):
    onnx_path = tmp_path / "my model.onnx"
    onnx_path.write_bytes(b"not really onnx")
    a = cached_engine_path(onnx_path, "fp16", 1, L4_NEW)
    b = cached_engine_path(onnx_path, "fp16", 1, A100_OLD)
    assert a.parent == cache and b.parent == cache
    assert a != b
    assert a.name.startswith("my_model-fp16-b1-") and a.suffix == ".engine"
    assert card_path(a) == a.with_name(a.name + ".json")


# -- engine cards never collide with model cards -------------------------------------------------------


def test_engine_card_is_not_the_model_card(tmp_path):
    # docs/GPU.md: `iristrack build-engine MODEL.onnx --out model.engine` beside model.onnx + model.json
    assert card_path(tmp_path / "model.engine") == tmp_path / "model.engine.json"
    for suffix in (".engine", ".plan", ".trt"):
        assert card_path(tmp_path / f"model{suffix}") != tmp_path / "model.json"


def test_find_card_reads_a_legacy_engine_card_but_never_a_model_card(tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"plan")
    shipped_card = Path(engines.__file__).resolve().parents[2] / "engines" / "default" / "model.json"
    (tmp_path / "model.json").write_text(shipped_card.read_text())  # a model card beside the engine
    assert find_card(engine) is None
    card_for(L4_NEW).save(tmp_path / "model.json")  # an engine card written by an older iristrack
    assert find_card(engine) == tmp_path / "model.json"
    card_for(L4_NEW).save(card_path(engine))
    assert find_card(engine) == card_path(engine)
    (tmp_path / "model.json").write_text("{not json")
    card_path(engine).unlink()
    assert find_card(engine) is None


def test_cached_engine_with_a_legacy_card_is_reused(cache, tiny_onnx, fake_trt):
    path = ensure_engine(tiny_onnx, "fp16", 1)
    card_path(path).rename(path.with_suffix(".json"))  # the cache as an older iristrack left it
    assert ensure_engine(tiny_onnx, "fp16", 1) == path
    assert len(fake_trt) == 1


@pytest.mark.parametrize("name", ["model.onnx", "model.json", "model"])
def test_build_engine_refuses_an_out_path_that_is_not_an_engine(tmp_path, tiny_onnx, name):
    with pytest.raises(ModelError, match=r"must end in \.engine, \.plan, \.trt"):
        engines.build_engine(tiny_onnx, tmp_path / name)
    assert not (tmp_path / name).exists()


# -- staleness -----------------------------------------------------------------------------------------


def test_same_card_is_not_stale():
    assert stale_reason(card_for(L4_NEW), card_for(L4_NEW)) is None


def test_larger_max_batch_serves_smaller_requests():
    assert stale_reason(card_for(L4_NEW, max_batch=8), card_for(L4_NEW, max_batch=1)) is None
    assert "up to 1, 8 was requested" in stale_reason(card_for(L4_NEW), card_for(L4_NEW, max_batch=8))


def test_other_tensorrt_version_and_gpu_is_stale_with_both_described():
    reason = stale_reason(card_for(A100_OLD), card_for(L4_NEW))
    assert reason == (
        "engine was built with TensorRT 10.3.0 for NVIDIA A100-SXM4-40GB (8.0); "
        "this machine has TensorRT 10.8.0 and NVIDIA L4 (8.9)"
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"tensorrt_version": "10.9.0"}, "TensorRT 10.9.0"),
        ({"gpu_name": "NVIDIA T4", "compute_capability": "7.5"}, "NVIDIA T4 (7.5)"),
        ({"precision": "fp32"}, "engine is fp16, fp32 was requested"),
        ({"onnx_sha256": "cd" * 32}, "another ONNX file"),
    ],
)
def test_each_mismatch_is_stale(change, expected):
    reason = stale_reason(card_for(L4_NEW), dataclasses.replace(card_for(L4_NEW), **change))
    assert reason is not None and expected in reason


@pytest.mark.parametrize(
    "messages",
    [
        ["1: [stdArchiveReader.cpp::StdArchiveReader::40] Error Code 1: Serialization (Serialization assertion "
         "stdVersionRead == serializationVersion failed.Version tag does not match. Note: Current Version: 213, "
         "Serialized Engine Version: 205)"],
        ["6: The engine plan file is not compatible with this version of TensorRT, expecting library version "
         "8.0.0 got 8.0.1, please rebuild."],
        ["coreReadArchive.cpp (31) - Serialization Error in verifyHeader: 0 (Magic tag does not match)"],
    ],
)  # fmt: skip
def test_version_mismatch_messages_are_recognised(messages):
    assert is_version_mismatch(messages)


def test_other_errors_are_not_version_mismatches():
    assert not is_version_mismatch(["out of memory", "[runtime.cpp] Error Code 2: OutOfMemory"])


# -- ensure_engine, with the TensorRT builder and environment probe replaced ---------------------------


@pytest.fixture
def fake_trt(monkeypatch):
    """Replace the environment probe and the builder; record builds. No TensorRT needed."""
    builds = []

    def fake_build(onnx_path, out_path, precision="fp16", max_batch=1, workspace_mb=1024, device=0):
        builds.append((onnx_path, out_path, precision, max_batch))
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_bytes(b"engine")
        card = card_for(L4_NEW, precision=precision, max_batch=max_batch, onnx_sha256=sha256_file(onnx_path))
        card.save(card_path(out_path))
        return card

    monkeypatch.setattr(engines, "probe_environment", lambda device=0: L4_NEW)
    monkeypatch.setattr(engines, "build_engine", fake_build)
    return builds


def test_ensure_engine_builds_once_then_uses_the_cache(cache, tiny_onnx, fake_trt):
    path = ensure_engine(tiny_onnx, "fp16", 4)
    assert path.is_file() and path.parent == cache
    assert len(fake_trt) == 1 and fake_trt[0][2:] == ("fp16", 4)
    assert ensure_engine(tiny_onnx, "fp16", 4) == path
    assert len(fake_trt) == 1
    ensure_engine(tiny_onnx, "fp16", 4, force=True)
    assert len(fake_trt) == 2


def test_ensure_engine_rebuilds_a_stale_engine(cache, tiny_onnx, fake_trt):
    path = ensure_engine(tiny_onnx, "fp16", 1)
    card_for(A100_OLD, onnx_sha256=sha256_file(tiny_onnx)).save(card_path(path))
    assert ensure_engine(tiny_onnx, "fp16", 1) == path
    assert len(fake_trt) == 2
    assert EngineCard.load(card_path(path)).env == L4_NEW


def test_stale_engine_without_rebuild_says_why_and_how(cache, tiny_onnx, fake_trt):
    path = ensure_engine(tiny_onnx, "fp16", 1)
    card_for(A100_OLD, onnx_sha256=sha256_file(tiny_onnx)).save(card_path(path))
    with pytest.raises(ModelError) as info:
        ensure_engine(tiny_onnx, "fp16", 1, rebuild=False)
    message = str(info.value)
    assert "\n" not in message
    assert "engine was built with TensorRT 10.3.0 for NVIDIA A100-SXM4-40GB (8.0)" in message
    assert "this machine has TensorRT 10.8.0 and NVIDIA L4 (8.9)" in message
    assert f"rebuild the engine with: iristrack build-engine {tiny_onnx} --precision fp16" in message
    assert len(fake_trt) == 1


def test_foreign_engine_in_the_cache_is_reported_without_rebuild(cache, tiny_onnx, fake_trt):
    # An engine for the same model built on another machine (say a shared cache folder).
    foreign = cached_engine_path(tiny_onnx, "fp16", 1, A100_OLD)
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"engine")
    card_for(A100_OLD, onnx_sha256=sha256_file(tiny_onnx)).save(card_path(foreign))
    with pytest.raises(ModelError, match=r"TensorRT 10\.3\.0 for NVIDIA A100.*iristrack build-engine"):
        ensure_engine(tiny_onnx, "fp16", 1, rebuild=False)
    assert fake_trt == []


def test_missing_engine_without_rebuild_is_a_model_error(cache, tiny_onnx, fake_trt):
    with pytest.raises(ModelError, match="no TensorRT engine for this model.*iristrack build-engine"):
        ensure_engine(tiny_onnx, "fp32", 2, rebuild=False)
    assert fake_trt == []


def test_engine_without_card_is_rebuilt(cache, tiny_onnx, fake_trt):
    path = ensure_engine(tiny_onnx, "fp16", 1)
    card_path(path).unlink()
    assert ensure_engine(tiny_onnx, "fp16", 1) == path
    assert len(fake_trt) == 2


def test_static_batch_onnx_pins_max_batch(cache, tmp_path, fake_trt):
    pytest.importorskip("onnx")
    from tests.onnx_models import save, tiny_unet

    model = save(tiny_unet(batch=1), tmp_path / "static.onnx")
    path = ensure_engine(model, "fp32", 8)
    assert fake_trt[0][3] == 1 and "-b1-" in path.name


def test_ensure_engine_rejects_missing_corrupt_and_bad_precision(cache, tmp_path, tiny_onnx, fake_trt):
    with pytest.raises(ModelError, match="not found"):
        ensure_engine(tmp_path / "none.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage" * 100)
    with pytest.raises(ModelError, match="cannot load ONNX model"):
        ensure_engine(bad)
    with pytest.raises(ModelError, match="precision"):
        ensure_engine(tiny_onnx, "int8")
    assert fake_trt == []


def test_probe_without_tensorrt_is_a_model_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(ModelError, match="tensorrt is not installed"):
        engines.probe_environment()


# -- fp16 ONNX conversion (what TensorRT 11 builds from) ----------------------------------------------


def _run(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("upsample", ["transpose", "linear"])
def test_fp16_conversion_keeps_float32_io_and_matches(upsample):
    onnx = pytest.importorskip("onnx")
    from tests.onnx_models import tiny_unet

    model = tiny_unet(upsample=upsample, seed=3)
    fp16_bytes = engines.convert_onnx_to_fp16(model.SerializeToString())
    converted = onnx.load_from_string(fp16_bytes)
    onnx.checker.check_model(converted)
    weights = {i.name: i.data_type for i in converted.graph.initializer}
    assert weights["w1"] == onnx.TensorProto.FLOAT16
    if upsample == "linear":
        assert weights["scales"] == onnx.TensorProto.FLOAT  # Resize scales must stay float32
    assert converted.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert converted.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT

    x = np.random.default_rng(0).standard_normal((3, 16, 16, 1)).astype(np.float32)
    ref = _run(model.SerializeToString(), x)
    out = _run(fp16_bytes, x)
    assert out.dtype == np.float32 and out.shape == ref.shape == (3, 16, 16, 2)
    assert np.max(np.abs(out - ref)) < 1e-2
    assert not np.array_equal(out, ref)  # it really computed in fp16


def test_fp16_conversion_accepts_a_model_proto_and_leaves_it_unchanged():
    pytest.importorskip("onnx")
    from tests.onnx_models import tiny_unet

    model = tiny_unet()
    before = model.SerializeToString()
    engines.convert_onnx_to_fp16(model)
    assert model.SerializeToString() == before
