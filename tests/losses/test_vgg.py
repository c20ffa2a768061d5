"""VGG-19 perceptual loss: both file formats map every layer; missing file is explained."""
import numpy as np
import pytest
import scipy.io

from isp_tf._keras import keras, tf
from isp_tf.errors import MissingFileError, WeightsMismatchError
from isp_tf.losses import vgg

WIDTHS = (4, 8, 16, 32, 32)  # VGG-19's (64, 128, 256, 512, 512) / 16: same structure, tiny file
PYNET_ORDER = [  # the 36 layers PyNET's vgg.py walks, in file order
    name for b, n in enumerate((2, 2, 4, 4, 4), start=1)
    for c in range(1, n + 1) for name in (f"conv{b}_{c}", f"relu{b}_{c}")
]
for b in range(4, 0, -1):  # a pool after each of the first four blocks
    PYNET_ORDER.insert(PYNET_ORDER.index(f"relu{b}_{(2, 2, 4, 4)[b - 1]}") + 1, f"pool{b}")


def _random_convs(seed=0):
    """HWIO kernels and biases keyed by MatConvNet name, every value distinct."""
    rng = np.random.default_rng(seed)
    convs, channels = {}, 3
    for mat_name, _ in vgg.CONV_LAYERS:
        out = WIDTHS[int(mat_name[4]) - 1]
        convs[mat_name] = (rng.normal(0, 0.2, (3, 3, channels, out)).astype(np.float32),
                           rng.normal(0, 0.1, (out,)).astype(np.float32))
        channels = out
    return convs


def _write_mat(path, convs, weights_first=True):
    """MatConvNet layout: layers = 1xN cell of structs; conv structs hold weights = {kernel, bias},
    kernels stored (width, height, in, out)."""
    cells = np.empty((1, len(PYNET_ORDER) + 2), dtype=object)
    for i, name in enumerate(PYNET_ORDER + ["fc6", "prob"]):
        layer = {"name": name, "type": name.rstrip("0123456789_") if name != "prob" else "softmax"}
        if name in convs:
            kernel, bias = convs[name]
            pair = np.empty((1, 2), dtype=object)
            pair[0, 0] = kernel.transpose(1, 0, 2, 3)
            pair[0, 1] = bias.reshape(1, -1)
            layer = ({"weights": pair, **layer} if weights_first else {**layer, "weights": pair})
        cells[0, i] = layer
    scipy.io.savemat(str(path), {"layers": cells, "meta": {"note": "test fixture"}})


def _write_keras_h5(path, convs):
    """Keras Applications naming, written by tf_keras itself; kernels stored for BGR input."""
    x = inputs = keras.Input((None, None, 3))
    for mat_name, keras_name in vgg.CONV_LAYERS:
        kernel, _ = convs[mat_name]
        x = keras.layers.Conv2D(kernel.shape[-1], 3, padding="same", activation="relu", name=keras_name)(x)
        if keras_name.endswith(f"conv{(2, 2, 4, 4, 4)[int(keras_name[5]) - 1]}"):
            x = keras.layers.MaxPooling2D(name=f"block{keras_name[5]}_pool")(x)
    model = keras.Model(inputs, x, name="vgg19")
    for mat_name, keras_name in vgg.CONV_LAYERS:
        kernel, bias = convs[mat_name]
        if keras_name == "block1_conv1":
            kernel = kernel[:, :, ::-1]  # what Caffe-ported weights look like for our RGB kernel
        model.get_layer(keras_name).set_weights([kernel, bias])
    model.save_weights(str(path))


def _assert_all_layers(model, convs):
    for mat_name, keras_name in vgg.CONV_LAYERS:
        kernel, bias = model.get_layer(keras_name).get_weights()
        np.testing.assert_array_equal(kernel, convs[mat_name][0], err_msg=keras_name)
        np.testing.assert_array_equal(bias, convs[mat_name][1], err_msg=keras_name)


@pytest.mark.parametrize("weights_first", [True, False])
def test_matconvnet_file_maps_every_layer(tmp_path, weights_first):
    convs = _random_convs()
    path = tmp_path / vgg.MAT_FILE
    _write_mat(path, convs, weights_first)
    if weights_first:  # the fixture has the structure PyNET's vgg.py indexes positionally
        layers = scipy.io.loadmat(str(path))["layers"][0]
        kernel, bias = layers[PYNET_ORDER.index("conv3_2")][0][0][0][0]
        np.testing.assert_array_equal(kernel.transpose(1, 0, 2, 3), convs["conv3_2"][0])
    model = vgg.build_vgg19(vgg.load_vgg19_weights(tmp_path), "relu5_4")
    _assert_all_layers(model, convs)
    assert model.output_shape == (None, None, None, WIDTHS[-1])


def test_keras_h5_file_maps_every_layer_and_becomes_rgb(tmp_path):
    convs = _random_convs(seed=1)
    path = tmp_path / vgg.H5_FILE
    _write_keras_h5(path, convs)
    _assert_all_layers(vgg.build_vgg19(vgg.load_vgg19_weights(path)), convs)


def _reference_features(images, convs):
    """PyNET's recipe written out with raw TF ops: x255 - mean, conv/relu, SAME max pools."""
    x = tf.constant(images) * 255.0 - np.array(vgg.IMAGENET_RGB_MEAN, np.float32)
    for mat_name, _ in vgg.CONV_LAYERS:
        kernel, bias = convs[mat_name]
        x = tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME") + bias)
        if mat_name in ("conv1_2", "conv2_2", "conv3_4", "conv4_4"):
            x = tf.nn.max_pool2d(x, 2, 2, "SAME")
    return x.numpy()


def test_perceptual_loss_value(tmp_path):
    convs = _random_convs(seed=2)
    _write_mat(tmp_path / vgg.MAT_FILE, convs)
    loss = vgg.VGGPerceptualLoss(tmp_path)
    rng = np.random.default_rng(0)
    a, b = rng.random((2, 2, 48, 48, 3)).astype(np.float32)
    expected = np.mean((_reference_features(b, convs) - _reference_features(a, convs)) ** 2, axis=(1, 2, 3))
    assert expected.min() > 0
    np.testing.assert_allclose(loss(a, b).numpy(), expected, rtol=1e-4)
    np.testing.assert_array_equal(loss(a, a).numpy(), [0.0, 0.0])
    assert not loss.network.trainable_weights


def test_missing_file_says_what_to_put_where(tmp_path):
    with pytest.raises(MissingFileError) as info:
        vgg.VGGPerceptualLoss(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and vgg.MAT_FILE in message and vgg.H5_FILE in message
    assert "vgg_pretrained" in message


def test_broken_files_are_named(tmp_path):
    convs = _random_convs()
    del convs["conv4_3"]
    _write_mat(tmp_path / vgg.MAT_FILE, convs)
    with pytest.raises(WeightsMismatchError, match="conv4_3"):
        vgg.load_vgg19_weights(tmp_path)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(WeightsMismatchError, match="junk.h5"):
        vgg.load_vgg19_weights(junk)
