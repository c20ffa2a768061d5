"""DepthToSpace / SpaceToDepth: TensorFlow's channel layout, inverse pair,
serialisable, one TFLite op each."""
import numpy as np
import pytest

from isp_tf._keras import keras
from isp_tf.layers import DepthToSpace, SpaceToDepth


def test_depth_to_space_layout():
    x = np.arange(2 * 3 * 4 * 8, dtype=np.float32).reshape(2, 3, 4, 8)
    y = DepthToSpace(2)(x).numpy()
    assert y.shape == (2, 6, 8, 2)
    for dy in range(2):
        for dx in range(2):
            first = (dy * 2 + dx) * 2  # output pixel (dy, dx) takes channel block dy*2+dx
            np.testing.assert_array_equal(y[:, dy::2, dx::2, :], x[..., first:first + 2])


def test_space_to_depth_inverts_depth_to_space():
    x = np.random.default_rng(0).random((1, 6, 9, 18), dtype=np.float32)
    packed = SpaceToDepth(3)(DepthToSpace(3)(x)).numpy()
    np.testing.assert_array_equal(packed, x)
    assert DepthToSpace(3).compute_output_shape((1, None, 9, 18)).as_list() == [1, None, 27, 2]
    assert SpaceToDepth(3).compute_output_shape((1, 6, None, 2)).as_list() == [1, 2, None, 18]


@pytest.mark.parametrize("bad", [1, 0, 2.5, -2])
def test_bad_block_size(bad):
    with pytest.raises(ValueError, match="block_size"):
        DepthToSpace(bad)
    with pytest.raises(ValueError, match="block_size"):
        SpaceToDepth(bad)


def test_model_json_round_trip():
    inputs = keras.Input((4, 6, 8))
    model = keras.Model(inputs, SpaceToDepth(2, name="s2d")(DepthToSpace(2, name="d2s")(inputs)))
    assert keras.utils.get_registered_name(DepthToSpace) == "isp_tf>DepthToSpace"
    clone = keras.models.model_from_json(model.to_json())
    assert clone.get_layer("d2s").block_size == 2
    assert isinstance(clone.get_layer("s2d"), SpaceToDepth)
    x = np.random.default_rng(1).random((1, 4, 6, 8), dtype=np.float32)
    np.testing.assert_array_equal(clone(x).numpy(), x)


def test_export_to_single_ops(tflite_ops):
    inputs = keras.Input((4, 6, 8))
    model = keras.Model(inputs, SpaceToDepth(2)(keras.layers.ReLU()(DepthToSpace(2)(inputs))))
    tflite = tflite_ops.convert(model, (1, 4, 6, 8))
    ops = tflite_ops.op_versions(tflite)
    assert set(ops) == {"DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "RELU"}
    assert tflite_ops.nnapi12_rejects(tflite) == {}
    x = np.random.default_rng(2).normal(size=(1, 4, 6, 8)).astype(np.float32)
    np.testing.assert_array_equal(tflite_ops.run_tflite(tflite, x), np.maximum(x, 0))
