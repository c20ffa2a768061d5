"""Invertible layers (InvISP): parameter count, exact inverse, log-dets, TFLite / NNAPI export."""
import numpy as np
import pytest

from isp_tf._keras import keras, tf
from isp_tf.data.photos import load_photo
from isp_tf.errors import InputShapeError
from isp_tf.export.nnapi import check_nnapi
from isp_tf.layers.invertible import (CouplingBlock, DenseSubnet, InvertibleConv1x1,
                                      InvertibleSequence, invisp_blocks)


def _randomise(layers, seed=0):
    """Trained-like weights: small random last convs (zero at init) and perturbed LU factors."""
    rng = np.random.default_rng(seed)
    blocks = layers.blocks if isinstance(layers, InvertibleSequence) else layers
    for block in blocks:
        for sub in (block.f, block.g, block.h):
            kernel, bias = sub.convs[-1].get_weights()
            sub.convs[-1].set_weights([rng.normal(0, 0.02, kernel.shape).astype(kernel.dtype),
                                       rng.normal(0, 0.01, bias.shape).astype(bias.dtype)])
        _perturb_conv(block.invconv, rng)


def _perturb_conv(conv, rng, scale=0.1):
    c = conv.channels
    for var, shape in ((conv.lower, (c, c)), (conv.upper, (c, c)), (conv.log_s, (c,))):
        var.assign(var + rng.normal(0, scale, shape).astype(var.dtype.as_numpy_dtype))


def _max_abs(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


@pytest.fixture(scope="module")
def trained_blocks():
    seq = invisp_blocks(seed=3)
    seq(tf.zeros((1, 16, 16, 3)))
    _randomise(seq, seed=1)
    return seq


def test_parameter_count_is_invisps():
    seq = invisp_blocks()
    seq(tf.zeros((1, 8, 8, 3)))
    count = lambda ws: sum(int(np.prod(w.shape)) for w in ws)  # noqa: E731
    assert count(seq.trainable_weights) == 1_413_760  # InvISP's published count
    block = seq.blocks[0]
    # F: 2 -> 1 and G, H: 1 -> 2 dense blocks; the 1x1 conv stores full 3x3 L and U + log_s
    assert count(block.f.trainable_weights) == 58_899
    assert count(block.g.trainable_weights) == count(block.h.trainable_weights) == 58_900
    assert count(block.invconv.trainable_weights) == 3 * 3 + 3 * 3 + 3
    assert count(block.invconv.non_trainable_weights) == 3 * 3 + 3  # P and sign_s, fixed


def test_initial_block_is_a_rotation():
    """conv5 zero-initialised: the coupling starts as the identity, W orthogonal (QR init)."""
    block = CouplingBlock(seed=5)
    x = tf.random.stateless_uniform((2, 16, 16, 3), seed=(0, 1))
    y = block(x)
    w = block.invconv.weight_matrix().numpy()
    np.testing.assert_allclose(w @ w.T, np.eye(3), atol=1e-6)
    np.testing.assert_allclose(y.numpy(), np.einsum("ij,bhwj->bhwi", w, x.numpy()), atol=1e-5)
    for sub in (block.f, block.g, block.h):
        kernel5, bias5 = sub.convs[-1].get_weights()
        assert not np.any(kernel5) and not np.any(bias5)
        k = sub.convs[0].get_weights()[0]
        fan_avg = 9 * (k.shape[2] + k.shape[3]) / 2
        assert 0.5 < k.std() / (0.1 / np.sqrt(fan_avg)) < 1.5  # Xavier normal x 0.1
    # same seed, same initial matrix; the seed is kept in the config
    again = CouplingBlock.from_config(block.get_config())
    again(x)
    np.testing.assert_array_equal(again.invconv.weight_matrix().numpy(), w)


def test_inverse_on_random_input(trained_blocks):
    x = tf.random.stateless_uniform((1, 256, 256, 3), seed=(4, 2))
    y = trained_blocks(x)
    assert _max_abs(y, x) > 0.5  # far from the identity: the test is not trivial
    assert _max_abs(trained_blocks.inverse(y), x) < 1e-5


def test_inverse_on_a_photo(trained_blocks):
    photo = load_photo("coffee")[:256, 200:456][None]
    y = trained_blocks(photo)
    assert _max_abs(y, photo) > 0.5
    assert _max_abs(trained_blocks(y, inverse=True), photo) < 1e-5


def test_conv1x1_log_det():
    conv = InvertibleConv1x1(seed=7)
    x = tf.random.stateless_normal((2, 5, 7, 3), seed=(1, 1))
    conv(x)
    _perturb_conv(conv, np.random.default_rng(2), scale=0.5)
    y, ld = conv.forward_and_log_det(x)
    expected = 5 * 7 * np.sum(conv.log_s.numpy())
    assert abs(expected) > 1.0
    np.testing.assert_allclose(ld.numpy(), [expected] * 2, rtol=1e-6)
    _, logabs = tf.linalg.slogdet(conv.weight_matrix())
    np.testing.assert_allclose(ld.numpy()[0], 5 * 7 * logabs.numpy(), rtol=1e-6)
    # y = W x per pixel, and W^-1 from the factors inverts it
    w = conv.weight_matrix().numpy()
    np.testing.assert_allclose(y.numpy(), np.einsum("ij,bhwj->bhwi", w, x.numpy()), atol=1e-5)
    np.testing.assert_allclose(conv.inverse_matrix().numpy() @ w, np.eye(3), atol=1e-12)
    xr, ld_inv = conv.inverse_and_log_det(y)
    assert _max_abs(xr, x) < 1e-5
    np.testing.assert_allclose(ld_inv.numpy(), -ld.numpy(), rtol=1e-6)


def test_coupling_log_det_matches_numerical_jacobian():
    block = CouplingBlock(seed=11, dtype="float64")
    shape = (1, 3, 4, 3)
    x = tf.random.stateless_uniform(shape, seed=(3, 3), dtype=tf.float64)
    block(x)
    _randomise([block], seed=4)
    for sub in (block.h, block.g, block.f):  # stronger couplings: a non-trivial Jacobian
        k, b = sub.convs[-1].get_weights()
        sub.convs[-1].set_weights([k * 10, b])
    y, ld = block.forward_and_log_det(x)
    n, eps = int(np.prod(shape)), 1e-6
    steps = np.eye(n).reshape((n,) + shape[1:]) * eps
    xs = x.numpy()
    jac = (block(xs + steps).numpy() - block(xs - steps).numpy()).reshape(n, n) / (2 * eps)
    sign, logabs = np.linalg.slogdet(jac)
    assert sign != 0 and abs(logabs) > 0.1
    np.testing.assert_allclose(ld.numpy()[0], logabs, atol=1e-6)
    # the inverse's log-det is the negative one, and inverse undoes the block in float64
    xr, ld_inv = block.inverse_and_log_det(y)
    assert _max_abs(xr, x) < 1e-12
    np.testing.assert_allclose(ld_inv.numpy(), -ld.numpy(), atol=1e-9)


def test_sequence_log_det_is_the_sum(trained_blocks):
    x = tf.random.stateless_uniform((2, 8, 8, 3), seed=(9, 9))
    y, ld = trained_blocks.forward_and_log_det(x)
    total, h = np.zeros(2), x
    for block in trained_blocks.blocks:
        h, part = block.forward_and_log_det(h)
        total += part.numpy()
    np.testing.assert_allclose(ld.numpy(), total, rtol=1e-5)
    np.testing.assert_allclose(y.numpy(), h.numpy(), atol=1e-6)
    np.testing.assert_allclose(trained_blocks.log_det(x).numpy(), ld.numpy(), rtol=1e-6)


def test_tflite_forward_and_inverse_pass_nnapi(trained_blocks, tflite_ops):
    """Two of the trained blocks (every block has the same ops; 8 take ~25 s to convert)."""
    shape = (1, 32, 32, 3)
    blocks = InvertibleSequence(trained_blocks.blocks[:2])
    fwd_in = keras.Input(shape[1:], batch_size=1)
    inv_in = keras.Input(shape[1:], batch_size=1)
    forward = keras.Model(fwd_in, blocks(fwd_in))
    inverse = keras.Model(inv_in, blocks(inv_in, inverse=True))
    x = tf.random.stateless_uniform(shape, seed=(5, 5))
    y = forward(x)
    for model, inp, expected in ((forward, x, y), (inverse, y, x)):
        tflite = tflite_ops.convert(model, shape)
        report = check_nnapi(tflite)
        assert report.ok, report.format_table()
        ops = report.ops_used()
        assert "CONV_2D" in ops and "LEAKY_RELU" in ops and "NEG" not in ops and "DIV" not in ops
        assert tflite_ops.nnapi12_rejects(tflite) == {}
        assert _max_abs(tflite_ops.run_tflite(tflite, inp), expected) < 1e-4


def test_serialisation_round_trip(trained_blocks):
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, trained_blocks(inputs, inverse=True))
    clone = keras.models.model_from_json(model.to_json())
    clone.set_weights(model.get_weights())
    x = tf.random.stateless_uniform((1, 12, 20, 3), seed=(7, 7))
    np.testing.assert_array_equal(clone(x).numpy(), model(x).numpy())
    assert keras.utils.get_registered_name(CouplingBlock) == "isp_tf>CouplingBlock"


def test_other_channel_counts_and_bad_inputs():
    block = CouplingBlock(channels=4, split=2, seed=1)
    x = tf.random.stateless_uniform((1, 8, 8, 4), seed=(1, 2))
    _ = block(x)
    _randomise([block])
    assert _max_abs(block.inverse(block(x)), x) < 1e-5
    with pytest.raises(InputShapeError):
        CouplingBlock()(tf.zeros((1, 8, 8, 4)))
    with pytest.raises(ValueError, match="split"):
        CouplingBlock(channels=3, split=3)
    with pytest.raises(ValueError, match="out_channels"):
        DenseSubnet(0)
    with pytest.raises(ValueError, match="invertible"):
        InvertibleSequence([keras.layers.Dense(3)])
