"""InstanceNorm: numerics vs numpy, per-image statistics, NNAPI-1.2 export."""
import numpy as np
import pytest

from isp_tf._keras import keras
from isp_tf.layers import InstanceNorm


def numpy_instance_norm(x, scale, shift, eps=1e-3):
    """Two-pass reference (what PyNET's tf.nn.moments computes)."""
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(1, 2), keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + shift


def _layer(channels, seed=0, **kwargs):
    layer = InstanceNorm(**kwargs)
    layer.build((None, None, None, channels))
    rng = np.random.default_rng(seed)
    layer.scale.assign(rng.uniform(0.5, 2.0, channels).astype(np.float32))
    layer.shift.assign(rng.normal(size=channels).astype(np.float32))
    return layer


def test_matches_numpy_reference():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(2, 13, 17, 4)) * [0.05, 1.0, 3.0, 0.2] + [0.5, -2.0, 1.0, 8.0]).astype(np.float32)
    layer = _layer(4)
    expected = numpy_instance_norm(x.astype(np.float64), layer.scale.numpy(), layer.shift.numpy())
    np.testing.assert_allclose(layer(x).numpy(), expected, atol=2e-4)


def test_tiling_variant_one_pass_statistics_stay_accurate():
    # |mean| / std = 19 over 42,500 pixels: float32 one-pass sums would be off by ~1e-4;
    # float64 sums leave the float32 rounding of the E[x^2] state (~4e-5 here)
    from isp_tf.layers import tiling_mode

    rng = np.random.default_rng(7)
    x = (rng.random((1, 170, 250, 2)) * [0.2, 1.0] + [1.0, 0.0]).astype(np.float32)
    with tiling_mode():
        layer = InstanceNorm()
    layer(x)
    layer.core_box.assign([0, 0, 170, 250])
    layer.input_hw.assign([170, 250])
    expected = numpy_instance_norm(x.astype(np.float64), 1.0, 0.0)
    np.testing.assert_allclose(layer(x).numpy(), expected, atol=5e-5)
    np.testing.assert_allclose(InstanceNorm()(x).numpy(), expected, atol=2e-5)


def test_defaults_are_identity_normalisation():
    layer = InstanceNorm()
    x = np.random.default_rng(1).normal(3.0, 2.0, size=(1, 32, 32, 2)).astype(np.float32)
    y = layer(x).numpy()
    assert layer.epsilon == 1e-3
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std(axis=(1, 2)), 2.0 / np.sqrt(4.0 + 1e-3), rtol=1e-4)


def test_statistics_are_per_image_and_channel():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(1, 8, 8, 3)).astype(np.float32)
    b = (rng.normal(size=(1, 8, 8, 3)) * 10 + 5).astype(np.float32)
    layer = _layer(3)
    both = layer(np.concatenate([a, b])).numpy()
    np.testing.assert_allclose(both[:1], layer(a).numpy(), atol=1e-5)
    np.testing.assert_allclose(both[1:], layer(b).numpy(), atol=1e-5)


def test_constant_channel_gives_shift_not_nan():
    x = np.full((1, 9, 9, 2), 0.7, np.float32)  # variance 0 (rounding may make E[x^2]-E[x]^2 < 0)
    layer = _layer(2)
    y = layer(x).numpy()
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, np.broadcast_to(layer.shift.numpy(), y.shape), atol=1e-3)


def test_config_round_trip():
    layer = InstanceNorm(epsilon=1e-5, name="norm")
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(clone, InstanceNorm) and clone.epsilon == 1e-5 and clone.name == "norm"


@pytest.mark.parametrize("shape", [(1, 16, 24, 3)])
def test_exports_without_squared_difference(tflite_ops, shape):
    inputs = keras.Input(shape[1:])
    layer = InstanceNorm()
    model = keras.Model(inputs, layer(inputs))
    layer.scale.assign([1.5, 0.5, 2.0])
    layer.shift.assign([0.1, -0.2, 0.3])
    tflite = tflite_ops.convert(model, shape)
    ops = tflite_ops.op_versions(tflite)
    assert set(ops) == {"MEAN", "SUB", "MUL", "ADD", "RSQRT"}  # no SQUARED_DIFFERENCE
    assert tflite_ops.nnapi12_rejects(tflite) == {}
    x = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    np.testing.assert_allclose(tflite_ops.run_tflite(tflite, x), model(x).numpy(), atol=1e-5)
