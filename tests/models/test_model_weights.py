"""Weights files tagged with their model: round trip, atomic writes, clear mismatch errors."""
import h5py
import numpy as np
import pytest

from isp_tf._keras import keras
from isp_tf.errors import MissingFileError, UnknownModelError, WeightsMismatchError
from isp_tf.layers import tiling_mode
from isp_tf.models import available_models, create_model
from isp_tf.models.weights import load_model, load_weights_into, read_header, save_weights

CONFIG = {"width": 4, "depth": 4}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = create_model("microisp", **CONFIG)
    rng = np.random.default_rng(0)
    for v in model.trainable_weights:
        v.assign(rng.normal(0, 0.3, v.shape).astype(np.float32))
    path = tmp_path_factory.mktemp("weights") / "microisp.weights.h5"
    save_weights(model, path, "microisp", CONFIG)
    return model, path


def test_round_trip(saved):
    model, path = saved
    assert read_header(path) == ("microisp", CONFIG)
    loaded, name, config = load_model(path)
    assert name == "microisp" and config == CONFIG
    x = np.random.default_rng(1).random((1, 81, 85, 4), dtype=np.float32)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    # still an ordinary (HDF5-layout) Keras weights file; tf_keras reads names ending in
    # ".weights.h5" as its newer layout, hence the copy under another name
    copy = path.with_name("copy.h5")
    copy.write_bytes(path.read_bytes())
    plain = create_model("microisp", **CONFIG)
    plain.load_weights(copy)
    np.testing.assert_array_equal(plain(x).numpy(), model(x).numpy())


def test_write_is_atomic(saved, tmp_path):
    model, _ = saved
    path = tmp_path / "sub" / "w.h5"
    save_weights(model, path, "microisp", {"width": 4, "depth": 4, "input_shape": (81, 81, 4)})
    assert [p.name for p in path.parent.iterdir()] == ["w.h5"]  # no temporary left behind
    assert read_header(path)[1]["input_shape"] == [81, 81, 4]
    with pytest.raises(ValueError, match=".h5"):
        save_weights(model, tmp_path / "w.keras", "microisp", CONFIG)


def test_loads_into_tiling_variant(saved):
    model, path = saved
    with tiling_mode():
        tiled = create_model("microisp", **CONFIG)
    load_weights_into(tiled, path, "microisp")
    for a, b in zip(model.trainable_weights, tiled.trainable_weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(ValueError, match="tiling_mode"):
        save_weights(tiled, path.with_name("tiled.h5"), "microisp", CONFIG)


def test_weights_of_another_model(saved):
    _, path = saved
    with pytest.raises(WeightsMismatchError, match=r"'microisp'.*not of model 'pynet'"):
        load_weights_into(create_model("pynet", small=True, level=5), path, "pynet")


def test_weights_of_another_config(saved):
    _, path = saved
    with pytest.raises(WeightsMismatchError, match="weighted layers"):  # depth 7 has more layers
        load_weights_into(create_model("microisp"), path, "microisp")
    with pytest.raises(WeightsMismatchError, match=r"s1_r_conv0.*shapes"):
        load_weights_into(create_model("microisp", width=8, depth=4), path, "microisp")


def _two_convs(second):
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(3, 3, name="first")(inputs)
    return keras.Model(inputs, keras.layers.Conv2D(second, 3, name="second")(x))


def test_nothing_loaded_on_mismatch(tmp_path):
    # every shape is checked before any value is written: a mismatch in the
    # second layer leaves the first one untouched
    save_weights(_two_convs(5), tmp_path / "five.h5", "custom", {})
    target = _two_convs(6)
    before = target.get_layer("first").kernel.numpy().copy()
    with pytest.raises(WeightsMismatchError, match=r"'second'.*\(3, 3, 3, 5\).*\(3, 3, 3, 6\)"):
        load_weights_into(target, tmp_path / "five.h5", "custom")
    np.testing.assert_array_equal(target.get_layer("first").kernel.numpy(), before)


def test_missing_and_foreign_files(tmp_path):
    model = create_model("microisp", **CONFIG)
    with pytest.raises(MissingFileError, match="absent.h5"):
        load_weights_into(model, tmp_path / "absent.h5", "microisp")
    with pytest.raises(MissingFileError):
        load_model(tmp_path / "absent.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(WeightsMismatchError, match="not an HDF5"):
        load_weights_into(model, tmp_path / "text.h5", "microisp")
    plain = tmp_path / "plain.h5"
    model.save_weights(plain)  # Keras file without isp_tf attributes
    assert read_header(plain) == (None, None)
    with pytest.raises(WeightsMismatchError, match="no isp_tf model name"):
        load_model(plain)
    load_weights_into(create_model("microisp", **CONFIG), plain, "microisp")  # shapes fit: accepted


def test_unknown_model_name(tmp_path, saved):
    with pytest.raises(UnknownModelError) as info:
        create_model("resnet")
    for name in available_models():
        assert name in str(info.value)
    assert "microisp" in str(info.value) and "pynet" in str(info.value)
    # a file naming a model this version does not know
    model, path = saved
    foreign = tmp_path / "foreign.h5"
    foreign.write_bytes(path.read_bytes())
    with h5py.File(foreign, "a") as f:
        f.attrs["isp_tf_model"] = "resnet"
    with pytest.raises(UnknownModelError, match="known models"):
        load_model(foreign)


def test_keras_model_without_isp_tf_layers_round_trips(tmp_path):
    inputs = keras.Input((8, 8, 4))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 3, name="c")(inputs))
    save_weights(model, tmp_path / "c.h5", "custom", {})
    other = keras.Model(inputs, keras.layers.Conv2D(3, 3, name="c2")(inputs))
    load_weights_into(other, tmp_path / "c.h5", "custom")  # by order, like Keras
    np.testing.assert_array_equal(other.get_layer("c2").kernel.numpy(), model.get_layer("c").kernel.numpy())
