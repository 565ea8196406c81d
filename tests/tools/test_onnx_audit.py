"""ONNX audit: tiny graphs built with onnx.helper, the shipped models, and Keras exports through tf2onnx."""

from __future__ import annotations

import os

import pytest

from tests.paths import REPO

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from tests.onnx_models import save, tiny_unet  # noqa: E402
from tools.onnx_audit import audit_onnx  # noqa: E402
from tracker.errors import ModelError  # noqa: E402

SHIPPED_MODELS = sorted(REPO.glob("engines/**/*.onnx"))


def test_clean_unet_passes(tmp_path):
    assert audit_onnx(save(tiny_unet(), tmp_path / "m.onnx")) == []


def test_linear_resize_passes():
    assert audit_onnx(tiny_unet(upsample="linear")) == []


def test_nearest_resize_is_flagged():
    problems = audit_onnx(tiny_unet(upsample="nearest"))
    assert len(problems) == 1 and "nearest" in problems[0] and "Resize" in problems[0]


def test_resize_without_mode_defaults_to_nearest_and_is_flagged():
    model = tiny_unet(upsample="linear")
    resize = next(n for n in model.graph.node if n.op_type == "Resize")
    del resize.attribute[:]
    assert any("nearest" in p for p in audit_onnx(model))


def test_unsupported_coordinate_mode_is_flagged():
    model = tiny_unet(upsample="linear")
    resize = next(n for n in model.graph.node if n.op_type == "Resize")
    resize.attribute.append(helper.make_attribute("coordinate_transformation_mode", "tf_crop_and_resize"))
    assert any("coordinate_transformation_mode='tf_crop_and_resize'" in p for p in audit_onnx(model))


def test_dynamic_height_is_flagged():
    problems = audit_onnx(tiny_unet(dynamic_h=True))
    assert any("dynamic H" in p for p in problems)
    assert not any("dynamic W" in p for p in problems)


def test_dynamic_batch_is_fine_and_static_batch_too():
    assert audit_onnx(tiny_unet(batch="N")) == []
    assert audit_onnx(tiny_unet(batch=1)) == []


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"input_name": "input_1"}, "input is named 'input_1'"),
        ({"output_name": "conv2d_5"}, "output is named 'conv2d_5'"),
    ],
)
def test_io_names_are_checked(kwargs, expected):
    problems = audit_onnx(tiny_unet(**kwargs))
    assert any(expected in p for p in problems)


def test_unknown_and_custom_ops_are_flagged():
    model = tiny_unet()
    model.graph.node[2].op_type = "NonZero"  # the Relu: not in the allow-list
    model.graph.node.append(helper.make_node("MyPlugin", ["edges"], ["extra"], domain="com.example"))
    problems = audit_onnx(model)
    assert any("NonZero" in p and "allow-list" in p for p in problems)
    assert any("custom domain 'com.example'" in p for p in problems)


def test_wrong_channel_count_and_dtype_are_flagged():
    model = tiny_unet()
    model.graph.input[0].type.tensor_type.shape.dim[3].dim_value = 3
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    problems = audit_onnx(model)
    assert any("3 channels" in p for p in problems)
    assert any("FLOAT16" in p for p in problems)


def test_missing_and_corrupt_files_raise_model_error(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        audit_onnx(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not an onnx file" * 10)
    with pytest.raises(ModelError, match="cannot read ONNX"):
        audit_onnx(bad)


@pytest.mark.parametrize("path", SHIPPED_MODELS, ids=[str(p.relative_to(REPO)) for p in SHIPPED_MODELS])
def test_shipped_models_pass_the_audit(path):
    assert audit_onnx(path) == []


def _keras_unet_onnx(upsampling: str):
    """A tiny Keras U-Net (UpSampling2D nearest or Conv2DTranspose) exported with tf2onnx -> ModelProto."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf = pytest.importorskip("tensorflow")
    tf2onnx = pytest.importorskip("tf2onnx")
    keras = tf.keras
    inp = keras.Input((32, 32, 1), name="image")
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    b = keras.layers.MaxPooling2D()(a)
    b = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(b)
    if upsampling == "nearest":
        u = keras.layers.UpSampling2D(interpolation="nearest")(b)
    else:
        u = keras.layers.Conv2DTranspose(4, 2, strides=2)(b)
    c = keras.layers.Concatenate()([a, u])
    out = keras.layers.Conv2D(2, 1, activation="sigmoid", name="edges")(c)
    model = keras.Model(inp, out)
    spec = [tf.TensorSpec((None, 32, 32, 1), tf.float32, name="image")]

    @tf.function(input_signature=spec)
    def forward(image):
        return {"edges": model(image)}

    proto, _ = tf2onnx.convert.from_function(forward, input_signature=spec, opset=17)
    return proto


@pytest.mark.train
def test_keras_upsampling2d_nearest_export_is_flagged():
    problems = audit_onnx(_keras_unet_onnx("nearest"))
    assert any("nearest" in p for p in problems), problems


@pytest.mark.train
def test_keras_conv2dtranspose_export_passes():
    assert audit_onnx(_keras_unet_onnx("transpose")) == []
