"""The authors' MicroISP checkpoint in our model reproduces their MicroISP.tflite.

The .tflite takes the authors' packing ``[B, Gb, R, Gr]``; our model (after
``load_official_checkpoint``) takes ours, ``[R, G1, G2, B]``: the same random
input goes to the .tflite with its channels reordered by OFFICIAL_CHANNEL_ORDER.
"""
import numpy as np
import pytest

from isp_tf._keras import keras
from isp_tf.errors import MissingFileError, WeightsMismatchError
from isp_tf.models import create_model
from isp_tf.models.microisp import OFFICIAL_CHANNEL_ORDER, load_official_checkpoint, official_scaling


@pytest.fixture(scope="module")
def official_model(microisp_official):
    return load_official_checkpoint(create_model("microisp"), microisp_official / "MicroISP.ckpt")


def run_official_tflite(path, x):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(path), num_threads=2)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, list(x.shape))  # native 1x1500x2000x4; resizing works
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, np.ascontiguousarray(x, np.float32))
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


@pytest.mark.parametrize("hw", [(81, 81), (100, 170)])  # 170: a partial attention block is dropped
def test_reproduces_official_tflite(official_model, microisp_official, hw):
    x = np.random.default_rng(0).random((1,) + hw + (4,), dtype=np.float32)
    ours = official_model(x).numpy()
    theirs = run_official_tflite(microisp_official / "MicroISP.tflite", x[..., list(OFFICIAL_CHANNEL_ORDER)])
    assert ours.shape == theirs.shape == (1, 2 * hw[0], 2 * hw[1], 3)
    assert theirs.std() > 0.05  # a real picture, not a constant
    assert np.abs(ours - theirs).max() <= 1e-4


def test_channel_order_matters(official_model, microisp_official):
    # control: without the reordering the outputs differ clearly
    x = np.random.default_rng(1).random((1, 81, 81, 4), dtype=np.float32)
    theirs = run_official_tflite(microisp_official / "MicroISP.tflite", x)
    assert np.abs(official_model(x).numpy() - theirs).max() > 1e-2


def test_folder_or_prefix(microisp_official, official_model):
    model = load_official_checkpoint(create_model("microisp"), microisp_official)
    for a, b in zip(model.weights, official_model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_wrong_model_or_missing_files(microisp_official, tmp_path):
    with pytest.raises(WeightsMismatchError, match="no checkpoint variable|width 4, depth 7"):
        load_official_checkpoint(create_model("microisp", small=True), microisp_official)
    with pytest.raises(WeightsMismatchError, match="width 4, depth 7"):
        load_official_checkpoint(create_model("microisp", width=8), microisp_official)
    with pytest.raises(WeightsMismatchError, match="not a MicroISP model"):
        load_official_checkpoint(keras.Sequential([keras.Input((8, 8, 4)), keras.layers.Conv2D(4, 3)]),
                                 microisp_official)
    with pytest.raises(MissingFileError, match="aiff22/MicroISP"):
        load_official_checkpoint(create_model("microisp"), tmp_path)


def test_official_scaling():
    packed = np.array([0.0, 1.0, 0.5], np.float32)
    np.testing.assert_allclose(official_scaling(packed), [64 / 1020, 1023 / 1020, (64 + 959 / 2) / 1020])
