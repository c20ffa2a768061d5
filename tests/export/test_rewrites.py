"""Export-time rewrites keep the math and turn refused ops into delegated ones."""
import numpy as np
import pytest

from isp_tf._keras import keras, tf
from isp_tf.errors import ExportError
from isp_tf.export.flatbuffer import read_tflite
from isp_tf.export.nnapi import check_nnapi
from isp_tf.runtime.session import run_tflite
from isp_tf.export.keras_rewrites import (ResizeBilinear, UpsampleNearest, elu, instance_norm,
                                          pixel_shuffle_crd, rewrite_for_nnapi)
from isp_tf.export.tflite_passes import align_mean_quantization, fold_requantize, shorten_tensor_names

pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs:UserWarning")
RNG = np.random.default_rng(0)


def to_tflite(model_or_fn, shape, int8=False):
    fn = tf.function(lambda x: model_or_fn(x), input_signature=[tf.TensorSpec(shape, tf.float32)])
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()])
    conv.experimental_lower_to_saved_model = False
    if int8:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([RNG.random(shape, dtype=np.float32)] for _ in range(4))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int8
    return conv.convert()


def test_elu_equals_tf_and_is_delegated():
    x = np.linspace(-6, 6, 241, dtype=np.float32).reshape(1, 1, 241, 1)
    np.testing.assert_allclose(elu(x).numpy(), tf.nn.elu(x).numpy(), atol=1e-6)
    np.testing.assert_allclose(elu(x, 0.5).numpy(), keras.layers.ELU(0.5)(x).numpy(), atol=1e-6)
    report = check_nnapi(to_tflite(elu, (1, 4, 4, 3)))
    assert report.ok and "ELU" not in report.ops_used() and "EXP" in report.ops_used()


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_resize_up_equals_half_pixel_bilinear(factor):
    x = RNG.random((1, 5, 7, 3), dtype=np.float32)
    expected = tf.image.resize(x, (5 * factor, 7 * factor), "bilinear").numpy()
    np.testing.assert_allclose(ResizeBilinear(factor)(x).numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_resize_down_equals_half_pixel_bilinear(factor):
    x = RNG.random((1, 12, 24, 3), dtype=np.float32)
    expected = tf.image.resize(x, (12 // factor, 24 // factor), "bilinear").numpy()
    np.testing.assert_allclose(ResizeBilinear(-factor)(x).numpy(), expected, atol=1e-6)


def test_resize_rewrite_is_delegated_where_tf_resize_is_not():
    assert not check_nnapi(to_tflite(lambda x: tf.image.resize(x, (16, 16)), (1, 8, 8, 3))).ok
    report = check_nnapi(to_tflite(ResizeBilinear(2), (1, 8, 8, 3)))
    assert report.ok, report.format_table()
    assert "DEPTH_TO_SPACE" in report.ops_used() and "RESIZE_BILINEAR" not in report.ops_used()
    assert check_nnapi(to_tflite(ResizeBilinear(-2), (1, 8, 8, 3))).ok


def test_upsample_nearest_and_pixel_shuffle():
    x = RNG.random((1, 3, 4, 8), dtype=np.float32)
    np.testing.assert_array_equal(UpsampleNearest(2)(x).numpy(), keras.layers.UpSampling2D(2)(x).numpy())
    # PyTorch pixel_shuffle: out[c, 2h+dy, 2w+dx] = in[c*4 + dy*2 + dx]
    y = pixel_shuffle_crd(x, 2).numpy()
    assert y.shape == (1, 6, 8, 2)
    for c in range(2):
        for dy in range(2):
            for dx in range(2):
                np.testing.assert_array_equal(y[0, dy::2, dx::2, c], x[0, :, :, c * 4 + dy * 2 + dx])
    assert check_nnapi(to_tflite(lambda t: pixel_shuffle_crd(t, 2), (1, 3, 4, 8))).ok


def test_instance_norm_matches_moments_without_squared_difference():
    x = RNG.normal(size=(1, 6, 6, 4)).astype(np.float32) * 3 + 1
    mean, var = tf.nn.moments(x, axes=[1, 2], keepdims=True)
    np.testing.assert_allclose(instance_norm(x).numpy(), ((x - mean) / tf.sqrt(var + 1e-3)).numpy(),
                               atol=1e-5)
    report = check_nnapi(to_tflite(instance_norm, (1, 6, 6, 4)))
    assert report.ok and "SQUARED_DIFFERENCE" not in report.ops_used()


def test_rewrite_for_nnapi_swaps_stock_layers():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3), batch_size=1)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="elu")(inp)
    x = keras.layers.ELU()(x)
    x = keras.layers.UpSampling2D(2, interpolation="bilinear")(x)
    x = keras.layers.UpSampling2D(2)(x)
    model = keras.Model(inp, x)
    before = check_nnapi(to_tflite(model, (1, 8, 8, 3)))
    assert {"unsupported-op", "resize-flags"} <= set(before.rules_broken())

    new, swapped = rewrite_for_nnapi(model)
    assert len(swapped) == 4
    x = RNG.random((1, 8, 8, 3), dtype=np.float32)
    np.testing.assert_allclose(new(x).numpy(), model(x).numpy(), atol=1e-5)
    report = check_nnapi(to_tflite(new, (1, 8, 8, 3)))
    assert report.ok, report.format_table()
    same, none = rewrite_for_nnapi(new)
    assert same is new and none == []


def test_align_mean_quantization_fixes_mean_and_keeps_values():
    k = RNG.normal(size=(1, 1, 8, 8)).astype(np.float32) * 0.3

    def fn(x):
        y = tf.nn.relu(x * 3.0 - 1.0)
        m = tf.reshape(tf.reduce_mean(y, axis=[1, 2], keepdims=True), [1, 1, 1, 8])
        return y * tf.sigmoid(tf.nn.conv2d(m, k, 1, "VALID") + 0.2)

    tfl = to_tflite(fn, (1, 16, 16, 8), int8=True)
    before = check_nnapi(tfl)
    assert before.rules_broken() == ["mean-quant-params"]
    fixed, changed = align_mean_quantization(tfl)
    assert len(changed) == 1 and check_nnapi(fixed).ok
    graph = read_tflite(fixed)
    (mean,) = [op for op in graph.operators if op.name == "MEAN"]
    assert mean.outputs[0].scale == mean.inputs[0].scale
    x = RNG.random((1, 16, 16, 8), dtype=np.float32)
    ref = fn(tf.constant(x)).numpy()
    err_before = np.abs(run_tflite(tfl, x) - ref).mean()
    err_after = np.abs(run_tflite(fixed, x) - ref).mean()
    assert err_after < 1.5 * err_before + 1e-3  # the int32 bias was re-scaled, values kept
    assert align_mean_quantization(fixed) == (fixed, [])


def test_shorten_tensor_names_keeps_io_names():
    tfl = to_tflite(lambda x: tf.nn.relu(x * 2.0 + 1.0), (1, 4, 4, 3))
    short = shorten_tensor_names(tfl)
    before, after = read_tflite(tfl), read_tflite(short)
    assert [t.name for t in after.inputs] == [t.name for t in before.inputs]
    assert not any(";" in t.name for t in after.tensors)
    x = RNG.random((1, 4, 4, 3), dtype=np.float32)
    np.testing.assert_array_equal(run_tflite(short, x), run_tflite(tfl, x))


def test_fold_requantize_removes_int8_quantize_ops():
    """One tensor concatenated with partners of different ranges: the converter re-quantises it
    (QUANTIZE int8 -> int8, refused at API 29); the pass gives the group one range instead."""
    k1 = RNG.normal(size=(3, 3, 4, 4)).astype(np.float32) * 0.3
    k2 = RNG.normal(size=(1, 1, 8, 4)).astype(np.float32) * 0.3

    def fn(x):
        a = tf.nn.relu(tf.nn.conv2d(x, k1, 1, "SAME") + 0.1)
        b = tf.concat([a, x * 4.0], axis=-1)   # range ~[0, 4]
        c = tf.concat([a, x * 0.25], axis=-1)  # range ~[0, 0.25]
        return tf.nn.conv2d(b, k2, 1, "SAME") + tf.nn.conv2d(c, k2, 1, "SAME")

    tfl = to_tflite(fn, (1, 8, 8, 4), int8=True)
    before = check_nnapi(tfl)
    assert "quantize-output" in before.rules_broken()
    folded, removed = fold_requantize(tfl)
    assert removed == before.ops_used().get("QUANTIZE", 0) > 0
    after = check_nnapi(folded)
    assert after.ok and "QUANTIZE" not in after.ops_used(), after.format_table()
    x = RNG.random((1, 8, 8, 4), dtype=np.float32)
    ref = fn(tf.constant(x)).numpy()
    scale = np.abs(ref).max()
    assert np.abs(run_tflite(folded, x) - ref).max() < 0.05 * scale
    assert fold_requantize(folded) == (folded, 0)


def _xnnpack_partitions(tflite: bytes) -> int:
    """How many XNNPACK partitions LiteRT cuts the graph into (1: every op delegated in one)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=tflite, num_threads=1)
    it.allocate_tensors()
    return sum(op["op_name"] == "DELEGATE" for op in it._get_ops_details())


def test_xnnpack_prelu_is_the_same_function_and_one_xnnpack_partition_in_int8(tmp_path):
    """INT8 MicroISP: XNNPACK refuses int8 PRELU (one partition per PReLU and the builtin kernel
    between them); the rewrite (top-level and inside the attention) is the same Keras function,
    exports with no PRELU in (almost) one partition, and still passes the NNAPI 1.2 check."""
    from isp_tf.export.convert import export_tflite
    from isp_tf.export.keras_rewrites import XnnpackPReLU, rewrite_prelu_for_xnnpack
    from isp_tf.models import create_model

    model = create_model("microisp", small=True)
    for layer in model.layers:  # non-zero slopes, one per channel
        if isinstance(layer, keras.layers.PReLU):
            layer.set_weights([RNG.uniform(-0.5, 0.5, w.shape).astype(np.float32) for w in layer.get_weights()])
    rewritten, names = rewrite_prelu_for_xnnpack(model)
    assert any("/" in n for n in names) and len(names) > sum(isinstance(l, keras.layers.PReLU) for l in model.layers)
    assert any(isinstance(l, XnnpackPReLU) for l in rewritten.layers)
    x = RNG.random((1, 81, 81, 4), dtype=np.float32)
    assert np.abs(model(x).numpy() - rewritten(x).numpy()).max() < 1e-5
    assert rewrite_prelu_for_xnnpack(keras.Sequential([keras.layers.Dense(2)]))[1] == []

    plain = export_tflite("microisp", None, precision="int8", small=True, keras_model=model, input_size="162x162",
                          parity=False, progress=False, log=lambda *a, **k: None)
    fast = export_tflite("microisp", str(tmp_path / "m.tflite"), precision="int8", small=True, keras_model=model,
                         input_size="162x162", parity=False, progress=False, log=lambda *a, **k: None,
                         xnnpack_prelu=True)
    assert "PRELU" in read_tflite(plain.tflite).ops_used() and "PRELU" not in read_tflite(fast.tflite).ops_used()
    # (the plain 3-branch graph keeps one more cut: the int8 CONCATENATION of its branches; merged: 1 partition)
    assert _xnnpack_partitions(plain.tflite) > 10 and _xnnpack_partitions(fast.tflite) <= 2
    assert check_nnapi(fast.tflite, api_level=29).ok
    assert fast.metadata["cpu_rewrites"]["xnnpack_prelu"] == names
    with pytest.raises(ExportError, match="post-training INT8"):
        export_tflite("microisp", None, precision="fp32", small=True, keras_model=model, input_size="162x162",
                      parity=False, progress=False, log=lambda *a, **k: None, xnnpack_prelu=True)
