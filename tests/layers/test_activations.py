"""ScaledTanh and the per-channel PReLU export to NNAPI-1.2 ops and compute what they say."""
import numpy as np

from isp_tf._keras import keras
from isp_tf.layers import ScaledTanh, channel_prelu


def test_scaled_tanh_values_and_config():
    x = np.linspace(-4, 4, 9, dtype=np.float32).reshape(1, 1, 9, 1)
    np.testing.assert_allclose(ScaledTanh()(x).numpy(), np.tanh(x) * 0.58 + 0.5, atol=1e-6)
    layer = ScaledTanh(2.0, -1.0)
    np.testing.assert_allclose(layer(x).numpy(), np.tanh(x) * 2 - 1, atol=1e-6)
    assert ScaledTanh.from_config(layer.get_config()).offset == -1.0


def test_channel_prelu_per_channel_slopes(tflite_ops):
    inputs = keras.Input((5, 7, 3))
    prelu = channel_prelu("p")
    model = keras.Model(inputs, prelu(inputs))
    assert prelu.alpha.shape == (1, 1, 3)  # one slope per channel, shared over H and W
    alpha = np.array([0.1, -0.5, 2.0], np.float32)
    prelu.alpha.assign(alpha.reshape(1, 1, 3))
    x = np.random.default_rng(0).normal(size=(1, 5, 7, 3)).astype(np.float32)
    expected = np.where(x > 0, x, alpha * x)
    np.testing.assert_allclose(model(x).numpy(), expected, atol=1e-6)
    tflite = tflite_ops.convert(model, (1, 5, 7, 3))
    assert set(tflite_ops.op_versions(tflite)) == {"PRELU"}
    np.testing.assert_allclose(tflite_ops.run_tflite(tflite, x), expected, atol=1e-6)
