"""MicroISP ChannelAttention: numerics vs a numpy reference, size limit, NNAPI-1.2 export."""
import numpy as np
import pytest

from isp_tf._keras import keras
from isp_tf.errors import InputShapeError
from isp_tf.layers import ChannelAttention


def conv_valid(x, kernel, bias, stride):
    """(B, H, W, Ci) x (k, k, Ci, Co) VALID convolution with stride, in numpy."""
    k = kernel.shape[0]
    h = (x.shape[1] - k) // stride + 1
    w = (x.shape[2] - k) // stride + 1
    out = np.zeros(x.shape[:1] + (h, w, kernel.shape[3]))
    for dy in range(k):
        for dx in range(k):
            patch = x[:, dy:dy + stride * (h - 1) + 1:stride, dx:dx + stride * (w - 1) + 1:stride]
            out += patch @ kernel[dy, dx]
    return out + bias


def prelu(x, alpha):
    return np.where(x > 0, x, alpha.reshape(-1) * x)


def numpy_attention(x, layer):
    a = x.astype(np.float64)
    for conv, act in zip(layer.pool_convs, layer.pool_prelus):
        a = prelu(conv_valid(a, conv.kernel.numpy(), conv.bias.numpy(), 3), act.alpha.numpy())
    pooled = a.mean(axis=(1, 2))  # (B, C)
    hidden = prelu(pooled @ layer.mlp_conv0.kernel.numpy()[0, 0] + layer.mlp_conv0.bias.numpy(),
                   layer.mlp_prelu.alpha.numpy())
    logits = hidden @ layer.mlp_conv1.kernel.numpy()[0, 0] + layer.mlp_conv1.bias.numpy()
    weights = 1 / (1 + np.exp(-logits))
    return x * weights[:, None, None, :]


def randomised(layer, x, seed=0):
    """Build ``layer`` on ``x`` and give it weights large enough to matter."""
    layer(x)
    rng = np.random.default_rng(seed)
    for v in layer.weights:
        if v.trainable:
            v.assign(rng.normal(0, 0.5, v.shape).astype(np.float32))
    return layer


def test_matches_numpy_reference():
    # 170 rows: two 81-blocks plus a partial one that VALID pooling drops; 100 cols: one block
    x = np.random.default_rng(1).random((2, 170, 100, 4), dtype=np.float32)
    layer = randomised(ChannelAttention(), x)
    np.testing.assert_allclose(layer(x).numpy(), numpy_attention(x, layer), atol=1e-5)


def test_weights_and_parameter_count():
    layer = ChannelAttention()
    layer(np.zeros((1, 81, 81, 4), np.float32))
    # 1x1 conv 20 + 3 x 3x3 conv 148 + 1x1 MLP 20 + 20, 5 PReLUs of 4 slopes (MicroISP: 524)
    assert layer.count_params() == 524
    assert {v.name.split("/", 1)[1] for v in layer.weights} >= {"pool_conv0/kernel:0", "mlp_prelu/alpha:0"}
    hidden = ChannelAttention(hidden_units=7)
    hidden(np.zeros((1, 81, 81, 4), np.float32))
    assert hidden.mlp_conv0.kernel.shape == (1, 1, 4, 7)


def test_pixels_outside_the_pooling_blocks_do_not_matter():
    # only rows/cols 81m + 3i (i < 27) are read by the strided chain; the partial block is dropped
    rng = np.random.default_rng(2)
    x = rng.random((1, 100, 90, 4), dtype=np.float32)
    layer = randomised(ChannelAttention(), x)
    changed = x.copy()
    changed[:, 1::3] += 5.0  # never sampled by the 1x1 stride-3 conv
    changed[:, 81:] -= 3.0  # beyond the only complete block
    weights = lambda t: layer(t).numpy() / t  # noqa: E731
    np.testing.assert_allclose(weights(changed)[0, 0, 0], weights(x)[0, 0, 0], rtol=1e-5)


@pytest.mark.parametrize("size", [(78, 200), (200, 60)])
def test_too_small_input_is_refused(size):
    inputs = keras.Input(size + (4,))
    with pytest.raises(InputShapeError, match="79"):
        ChannelAttention(name="att")(inputs)


def test_exports_like_the_official_model(tflite_ops):
    inputs = keras.Input((None, None, 4))
    layer = ChannelAttention()
    model = keras.Model(inputs, layer(inputs))
    x = np.random.default_rng(3).random((1, 81, 90, 4), dtype=np.float32)
    randomised(layer, x)
    tflite = tflite_ops.convert(model, x.shape)
    ops = tflite_ops.op_versions(tflite)
    assert set(ops) <= {"CONV_2D", "PRELU", "MEAN", "RESHAPE", "LOGISTIC", "MUL"}
    assert tflite_ops.nnapi12_rejects(tflite) == {}
    np.testing.assert_allclose(tflite_ops.run_tflite(tflite, x), model(x).numpy(), atol=1e-5)
