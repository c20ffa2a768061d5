"""Quantization-aware training wrappers: isp_tf layers annotated, weights round trip, INT8 export."""
import os

import numpy as np
import pytest

from isp_tf._keras import keras
from isp_tf.export.convert import export_tflite
from isp_tf.export.qat import (NoOpQuantizeConfig, OutputQuantizeConfig, SublayerQuantizeConfig,
                               calibrate_ranges, is_qat_weights, load_qat_model, quantize_model,
                               save_qat_weights)
from isp_tf.layers import ChannelAttention, DepthToSpace, InstanceNorm, ScaledTanh, channel_prelu
from isp_tf.models import create_model
from isp_tf.models.weights import save_weights

pytestmark = pytest.mark.filterwarnings("ignore:training a quantize_model:RuntimeWarning")
TINY_MICROISP = {"width": 2, "depth": 3}


def tiny_model():
    """Every isp_tf layer kind tfmot cannot handle by itself, in a few layers."""
    x = inp = keras.Input((None, None, 4))
    x = keras.layers.Conv2D(8, 3, padding="same")(x)
    x = channel_prelu()(x)
    x = InstanceNorm()(x)
    x = ChannelAttention()(x)
    x = keras.layers.Conv2D(12, 3, padding="same")(x)
    x = ScaledTanh()(x)
    return keras.Model(inp, DepthToSpace(2)(x))


def config_of(qat_model, layer_class):
    (wrapper,) = [layer for layer in qat_model.layers
                  if type(getattr(layer, "layer", None)).__name__ == layer_class]
    return wrapper.quantize_config


def test_quantize_model_annotates_isp_tf_layers():
    keras.utils.set_random_seed(0)
    model = tiny_model()
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0":
        qat = quantize_model(model)
    else:  # QAT training would crash in oneDNN: the user is told how to avoid it
        with pytest.warns(RuntimeWarning, match="TF_ENABLE_ONEDNN_OPTS=0"):
            qat = quantize_model(model)
    assert isinstance(config_of(qat, "DepthToSpace"), NoOpQuantizeConfig)
    assert type(config_of(qat, "ScaledTanh")) is OutputQuantizeConfig
    assert type(config_of(qat, "PReLU")) is OutputQuantizeConfig
    assert type(config_of(qat, "ChannelAttention")) is SublayerQuantizeConfig
    # the attention's 6 inner convolutions get fake-quantised kernels
    (att,) = [layer for layer in qat.layers
              if type(getattr(layer, "layer", None)).__name__ == "ChannelAttention"]
    assert len(att.quantize_config.get_weights_and_quantizers(att.layer)) == 6
    x = np.random.default_rng(0).random((1, 96, 96, 4), dtype=np.float32)
    qat(x, training=True)  # one training-mode pass sets the kernels' quantisation ranges
    y_float, y_qat = model(x).numpy(), qat(x, training=False).numpy()
    assert y_qat.shape == y_float.shape == (1, 192, 192, 3)
    assert np.isfinite(y_qat).all()
    assert np.abs(y_qat - y_float).max() > 0  # fake quantisation is active
    # ScaledTanh's output is fake-quantised: at most 256 distinct levels per image
    assert len(np.unique(y_qat)) <= 256 < len(np.unique(y_float))


def test_calibrate_ranges_starts_qat_from_observed_ranges():
    keras.utils.set_random_seed(2)
    inp = keras.Input((None, None, 4))
    x = keras.layers.Conv2D(8, 3, padding="same")(inp)
    x = channel_prelu()(x)
    model = keras.Model(inp, DepthToSpace(2)(keras.layers.Conv2D(12, 3, padding="same")(x)))
    qat = quantize_model(model)
    rng = np.random.default_rng(0)
    batches = [rng.random((2, 16, 16, 4), dtype=np.float32) for _ in range(3)]
    x = batches[0]
    before = np.abs(qat(x, training=False).numpy() - model(x).numpy()).max()
    assert calibrate_ranges(qat, model, batches) == 2 * 3 + 2  # 3 layers' min/max + the input's
    ranges = {v.name.split("/")[-1].split(":")[0]: float(v.numpy())
              for layer in qat.layers for v in layer.non_trainable_weights
              if layer.name == "quant_" + model.layers[2].name}
    prelu_out = model.layers[2].get_output_at(0)
    probe = keras.Model(model.inputs, prelu_out)
    observed = np.concatenate([probe(b).numpy().ravel() for b in batches])
    assert ranges["output_min"] == pytest.approx(min(0.0, observed.min()), rel=1e-5)
    assert ranges["output_max"] == pytest.approx(observed.max(), rel=1e-5)
    after = np.abs(qat(x, training=False).numpy() - model(x).numpy()).max()
    assert after < before / 5  # [-6, 6] ranges (and init kernel ranges) were far too coarse


def test_unknown_custom_layer_is_named():
    class Mystery(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    inp = keras.Input((8, 8, 4))
    model = keras.Model(inp, Mystery()(keras.layers.Conv2D(4, 1)(inp)))
    with pytest.raises(ValueError, match="Mystery"):
        quantize_model(model)


def test_qat_weights_round_trip_and_int8_export(tmp_path, raw_samples):
    keras.utils.set_random_seed(1)
    qat = quantize_model(create_model("microisp", **TINY_MICROISP))
    path = tmp_path / "qat.weights.h5"
    save_qat_weights(qat, path, "microisp", TINY_MICROISP)
    assert is_qat_weights(path)
    plain = tmp_path / "plain.weights.h5"
    save_weights(create_model("microisp", **TINY_MICROISP), plain, "microisp", TINY_MICROISP)
    assert not is_qat_weights(plain)

    loaded, config = load_qat_model(path, expected_name="microisp")
    assert config == TINY_MICROISP
    x = np.random.default_rng(0).random((1, 80, 80, 4), dtype=np.float32)
    np.testing.assert_array_equal(loaded(x, training=False).numpy(), qat(x, training=False).numpy())

    r = export_tflite("microisp", tmp_path / "q.tflite", precision="int8", input_size="160x160",
                      keras_model=loaded, config=config, weights=str(path),
                      parity_input=str(raw_samples["dng"]), calibration_frames_count=2, progress=False)
    assert r.metadata["qat"] is True
    assert r.report.ok, r.report.format_table()
    assert r.metadata["input"]["dtype"] == "int8"
