"""VGG-19 perceptual (content) loss, as PyNET trains with it.

PyNET compares VGG-19 ``relu5_4`` features of the output and the target:
both images are scaled to [0, 255], the ImageNet RGB mean is subtracted, and
the loss is the mean squared feature difference.  The network is built here
as a frozen tf_keras model from one of two files (put either into
``vgg_pretrained/`` or pass its path):

* ``imagenet-vgg-verydeep-19.mat`` -- MatConvNet, the file PyNET ships with.
  ``loadmat(...)["layers"][0]`` is a cell array of layer structs; conv structs
  hold ``weights = {kernel, bias}`` with kernels stored (width, height, in,
  out), which we transpose to TF's (height, width, in, out).  Layers are found
  by their ``name`` field, so files whose struct fields come in another order
  load too.  It expects RGB input.
* ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`` -- Keras Applications'
  VGG19 without the classifier.  Those weights were ported from Caffe and
  expect **BGR** input; we reverse the input channels of ``block1_conv1`` so
  the same RGB, mean-subtracted input works for both files.

Differences from PyNET: max pooling uses ``SAME`` padding as PyNET does (Keras
uses ``VALID``; identical for even sides), and the network stops at the
requested layer instead of computing every layer up to ``relu5_4``.
Channel counts are read from the file, so (for tests) a channel-reduced file
of the same structure builds a narrower network.
"""
from __future__ import annotations

import os
import pathlib
from typing import Dict, Optional, Tuple

import numpy as np

from isp_tf._keras import keras, tf
from isp_tf.errors import MissingFileError, WeightsMismatchError

MAT_FILE = "imagenet-vgg-verydeep-19.mat"
H5_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
MAT_URL = "https://www.vlfeat.org/matconvnet/models/imagenet-vgg-verydeep-19.mat"
H5_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
          "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5")

#: ImageNet mean of the R, G, B channels on the [0, 255] scale (as PyNET's vgg.py).
IMAGENET_RGB_MEAN = (123.68, 116.779, 103.939)

#: Convolutions per block of VGG-19.
_BLOCKS = (2, 2, 4, 4, 4)
#: (MatConvNet name, Keras name) of the 16 convolutions, in order.
CONV_LAYERS: Tuple[Tuple[str, str], ...] = tuple(
    (f"conv{b}_{c}", f"block{b}_conv{c}")
    for b, n in enumerate(_BLOCKS, start=1) for c in range(1, n + 1))
#: Feature layers a loss may ask for: ``relu{b}_{c}`` (after the conv) or ``pool{b}``.
FEATURE_LAYERS = tuple(f"relu{m[4:]}" for m, _ in CONV_LAYERS) + tuple(
    f"pool{b}" for b in range(1, 5))

Weights = Dict[str, Tuple[np.ndarray, np.ndarray]]  # keras conv name -> (HWIO kernel, bias)


def default_vgg_dir() -> pathlib.Path:
    """``$ISP_TF_VGG_DIR`` if set, else ``vgg_pretrained/`` of the source checkout."""
    env = os.environ.get("ISP_TF_VGG_DIR")
    if env:
        return pathlib.Path(env)
    return pathlib.Path(__file__).resolve().parents[2] / "vgg_pretrained"


def missing_vgg_message(where) -> str:
    return (f"VGG-19 weights for the perceptual loss not found in {where}. Put "
            f"{MAT_FILE} (MatConvNet, as PyNET uses; {MAT_URL}) or {H5_FILE} "
            f"(Keras Applications; {H5_URL}) into {default_vgg_dir()}, set "
            f"ISP_TF_VGG_DIR to the folder holding one of them, or pass its path (--vgg PATH).")


def find_vgg_weights(path=None) -> pathlib.Path:
    """Resolve the VGG-19 weights file.

    ``path`` may be a file or a folder (then ``imagenet-vgg-verydeep-19.mat`` is
    preferred over the Keras ``.h5``); ``None`` means :func:`default_vgg_dir`.
    Raises :class:`MissingFileError` saying which file to put where.
    """
    path = pathlib.Path(path) if path is not None else default_vgg_dir()
    if path.is_file():
        return path
    if path.is_dir():
        for name in (MAT_FILE, H5_FILE):
            if (path / name).is_file():
                return path / name
    raise MissingFileError(missing_vgg_message(path))


# --- readers -------------------------------------------------------------------
def _mat_field(record, field, path, layer="a"):
    try:
        return record[field]
    except (ValueError, KeyError, IndexError):
        raise WeightsMismatchError(
            f"{path}: {layer} MatConvNet layer struct has no {field!r} field; "
            f"is this imagenet-vgg-verydeep-19.mat?") from None


def read_matconvnet_vgg19(path) -> Weights:
    """Conv weights of a MatConvNet VGG-19 ``.mat`` file, keyed by Keras layer name."""
    import scipy.io

    path = pathlib.Path(path)
    try:
        data = scipy.io.loadmat(str(path))
        layers = data["layers"][0]
    except Exception as exc:  # scipy raises several types for non-.mat input
        raise WeightsMismatchError(
            f"{path}: not a MatConvNet VGG-19 file (expected a 'layers' cell array): {exc}") from None
    by_name = {}
    for cell in layers:
        record = cell[0][0]
        name = str(np.asarray(_mat_field(record, "name", path)).reshape(-1)[0])
        by_name[name] = record
    weights: Weights = {}
    for mat_name, keras_name in CONV_LAYERS:
        if mat_name not in by_name:
            raise WeightsMismatchError(f"{path}: VGG-19 layer {mat_name!r} is missing from the file")
        pair = np.asarray(_mat_field(by_name[mat_name], "weights", path, repr(mat_name))).reshape(-1)
        if pair.size != 2:
            raise WeightsMismatchError(f"{path}: layer {mat_name!r} should hold (kernel, bias)")
        kernel = np.asarray(pair[0], np.float32)
        bias = np.asarray(pair[1], np.float32).reshape(-1)
        if kernel.ndim != 4:
            raise WeightsMismatchError(
                f"{path}: layer {mat_name!r} kernel has shape {kernel.shape}, expected 4-D")
        weights[keras_name] = (np.ascontiguousarray(kernel.transpose(1, 0, 2, 3)), bias)
    return weights


def _h5_attr_list(group, name):
    """Keras splits long attribute lists into ``name0``, ``name1``, ... chunks."""
    if name in group.attrs:
        values = list(group.attrs[name])
    else:
        values, i = [], 0
        while f"{name}{i}" in group.attrs:
            values.extend(group.attrs[f"{name}{i}"])
            i += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def read_keras_vgg19_h5(path) -> Weights:
    """Conv weights of Keras's VGG19 (notop) ``.h5``, converted to RGB input."""
    import h5py

    path = pathlib.Path(path)
    weights: Weights = {}
    try:
        f = h5py.File(str(path), "r")
    except OSError as exc:
        raise WeightsMismatchError(f"{path}: not an HDF5 weights file: {exc}") from None
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        names = set(_h5_attr_list(root, "layer_names"))
        for _, keras_name in CONV_LAYERS:
            if keras_name not in names or keras_name not in root:
                raise WeightsMismatchError(
                    f"{path}: VGG-19 layer {keras_name!r} is missing from the file")
            group = root[keras_name]
            arrays = [np.asarray(group[w], np.float32) for w in _h5_attr_list(group, "weight_names")]
            kernels = [a for a in arrays if a.ndim == 4]
            biases = [a for a in arrays if a.ndim == 1]
            if len(kernels) != 1 or len(biases) != 1:
                raise WeightsMismatchError(
                    f"{path}: layer {keras_name!r} should hold one kernel and one bias")
            weights[keras_name] = (kernels[0], biases[0])
    kernel, bias = weights["block1_conv1"]
    weights["block1_conv1"] = (np.ascontiguousarray(kernel[:, :, ::-1, :]), bias)  # BGR -> RGB
    return weights


def load_vgg19_weights(path=None) -> Weights:
    """Read either file format (chosen by suffix); see :func:`find_vgg_weights` for ``path``."""
    path = find_vgg_weights(path)
    if path.suffix.lower() == ".mat":
        return read_matconvnet_vgg19(path)
    if path.suffix.lower() in (".h5", ".hdf5"):
        return read_keras_vgg19_h5(path)
    raise WeightsMismatchError(f"{path}: VGG-19 weights must be a MatConvNet .mat or a Keras .h5 file")


# --- network -------------------------------------------------------------------
def build_vgg19(weights: Weights, output_layer: str = "relu5_4") -> keras.Model:
    """A frozen VGG-19 feature extractor up to ``output_layer`` with ``weights`` set.

    Input: (B, H, W, 3) RGB on the [0, 255] scale minus :data:`IMAGENET_RGB_MEAN`.
    Layers carry Keras Applications names (``block5_conv4`` computes ``relu5_4``).
    """
    if output_layer not in FEATURE_LAYERS:
        raise ValueError(f"unknown VGG-19 layer {output_layer!r}; choose from {', '.join(FEATURE_LAYERS)}")
    inputs = keras.Input((None, None, 3), name="vgg_input")
    x = inputs
    channels = 3
    for (mat_name, keras_name) in CONV_LAYERS:
        kernel, bias = weights[keras_name]
        if kernel.shape[:3] != (3, 3, channels) or bias.shape != kernel.shape[3:]:
            raise WeightsMismatchError(
                f"VGG-19 layer {keras_name}: kernel {kernel.shape} / bias {bias.shape} do not "
                f"follow a layer with {channels} channels")
        conv = keras.layers.Conv2D(kernel.shape[3], 3, padding="same", activation="relu",
                                   name=keras_name, trainable=False)
        x = conv(x)
        conv.set_weights([kernel, bias])
        channels = kernel.shape[3]
        block, index = mat_name[4:].split("_")
        if output_layer == f"relu{block}_{index}":
            break
        if int(index) == _BLOCKS[int(block) - 1]:
            x = keras.layers.MaxPooling2D(2, padding="same", name=f"block{block}_pool")(x)
            if output_layer == f"pool{block}":
                break
    model = keras.Model(inputs, x, name=f"vgg19_{output_layer}")
    model.trainable = False
    return model


class VGGPerceptualLoss:
    """Mean squared difference of VGG-19 features, one value per image (B,).

    ``loss(y_true, y_pred)`` takes images in [0, 1] (as PyNET: x255, minus the
    ImageNet mean).  ``weights`` is a path (file or folder, default
    ``vgg_pretrained/``) or an already-read :data:`Weights` dict.
    """

    def __init__(self, weights=None, layer: str = "relu5_4"):
        if not isinstance(weights, dict):
            weights = load_vgg19_weights(weights)
        self.layer = layer
        self.network = build_vgg19(weights, layer)
        self._mean = tf.constant(IMAGENET_RGB_MEAN, tf.float32)

    def features(self, images):
        return self.network(tf.convert_to_tensor(images, tf.float32) * 255.0 - self._mean,
                            training=False)

    def __call__(self, y_true, y_pred):
        diff = self.features(y_pred) - self.features(y_true)
        return tf.reduce_mean(tf.square(diff), axis=[1, 2, 3])
