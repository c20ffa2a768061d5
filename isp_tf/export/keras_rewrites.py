"""Keras-level export rewrites: the same math, written with ops NNAPI 1.2 delegates.

Building blocks that compute what the
usual Keras/TF op computes, exported as delegated ops, and
:func:`rewrite_for_nnapi`, which clones a functional model swapping the layers
it knows:

=============================  =======================================================
usual op (refused at API 29)   rewrite (delegated ops)
=============================  =======================================================
ELU (API 30)                   :func:`elu`, :class:`ExportELU`:
                               relu(x) + alpha * (exp(min(x, 0)) - 1)
bilinear resize, half-pixel    :class:`ResizeBilinear`: integer up-factors as
(TF2 / UpSampling2D default)   depthwise 3x3 phases + DEPTH_TO_SPACE, integer
                               down-factors as STRIDED_SLICE / AVERAGE_POOL_2D
nearest UpSampling2D           :class:`UpsampleNearest`: CONCATENATION + DEPTH_TO_SPACE
PyTorch pixel shuffle (6-D)    :func:`pixel_shuffle_crd`: GATHER + DEPTH_TO_SPACE
instance norm via moments      :func:`instance_norm`: MEAN, SUB, MUL, ADD, RSQRT
PReLU as arithmetic            :func:`prelu`: ``keras.layers.PReLU`` (the PRELU op)
=============================  =======================================================

and, for INT8 models run on the CPU, :func:`rewrite_prelu_for_xnnpack`: XNNPACK
does not take the int8 PRELU op (nor a lone int8 RELU, MINIMUM or MAXIMUM), so each
one splits the graph into another delegate partition run between builtin kernels
(MicroISP INT8: 35 partitions); :class:`XnnpackPReLU` writes a per-channel PReLU as
LEAKY_RELU, MUL and ADD, which it takes (still NNAPI 1.2 ops, but four instead of
one: for the CPU, not for a phone's NNAPI).

The models' own layers (:mod:`isp_tf.layers`) already emit good ops; these are
for layers that cannot (stock Keras layers in a model, code written outside
isp_tf).  Raw TF calls inside ``Lambda`` layers cannot be swapped: write them
with these functions.

The flatbuffer passes applied after conversion live in :mod:`isp_tf.export.tflite_passes`.
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np

from isp_tf._keras import keras, tf
from isp_tf.errors import ExportError

__all__ = ["ExportELU", "ResizeBilinear", "UpsampleNearest", "XnnpackPReLU", "elu", "export_elu",
           "instance_norm", "pixel_shuffle_crd", "prelu", "rewrite_for_nnapi", "rewrite_prelu_for_xnnpack"]


# ---------------------------------------------------------------------------
# Keras-level building blocks
# ---------------------------------------------------------------------------
def elu(x, alpha: float = 1.0):
    """ELU as ``relu(x) + alpha * (exp(min(x, 0)) - 1)``: RELU, MINIMUM, EXP, SUB, MUL, ADD.

    Equal to ``tf.nn.elu`` (up to float rounding: ``exp(x) - 1`` instead of
    ``expm1``, about 1e-7 absolute near 0).  The ELU op needs API 30.
    """
    neg = tf.exp(tf.minimum(x, 0.0)) - 1.0
    return tf.nn.relu(x) + (neg if alpha == 1.0 else alpha * neg)


@keras.utils.register_keras_serializable(package="isp_tf")
def export_elu(x):
    """``activation=export_elu``: :func:`elu` with alpha 1 as a Keras activation."""
    return elu(x)


@keras.utils.register_keras_serializable(package="isp_tf")
class ExportELU(keras.layers.Layer):
    """``keras.layers.ELU(alpha)`` computed as :func:`elu` (no ELU op)."""

    def __init__(self, alpha: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)

    def call(self, x):
        return elu(x, self.alpha)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


def prelu(name: Optional[str] = None, shared_axes=(1, 2)):
    """A PReLU layer exported as the single PRELU op (not NEG/RELU/MUL arithmetic)."""
    return keras.layers.PReLU(shared_axes=list(shared_axes), name=name)


@keras.utils.register_keras_serializable(package="isp_tf")
class XnnpackPReLU(keras.layers.Layer):
    """A per-channel PReLU as ``(1 + a) / 2 * x + (1 - a) / 2 * |x|``, ``|x| = LEAKY_RELU(x, -1)``.

    The same function as ``keras.layers.PReLU(shared_axes=[1, 2])`` with slopes ``a`` (float rounding
    only), exported as LEAKY_RELU, two MULs by per-channel constants and an ADD: ops XNNPACK runs in
    int8, where it refuses PRELU.  Weights: the PReLU's ``alpha`` (shape (1, 1, C))."""

    def build(self, input_shape):
        self.alpha = self.add_weight(name="alpha", shape=(1, 1, int(input_shape[-1])), trainable=False,
                                     initializer="zeros")
        super().build(input_shape)

    def call(self, x):
        return (1.0 + self.alpha) * 0.5 * x + (1.0 - self.alpha) * 0.5 * tf.nn.leaky_relu(x, alpha=-1.0)


def _channel_prelu(layer) -> bool:
    return (isinstance(layer, keras.layers.PReLU)
            and tuple(layer.get_config().get("shared_axes") or ()) == (1, 2))


def _xnnpack_prelu_like(prelu) -> "XnnpackPReLU":
    (alpha,) = prelu.get_weights()
    new = XnnpackPReLU(name=prelu.name)
    new.build((None, None, None, int(alpha.shape[-1])))
    new.set_weights([np.reshape(alpha, (1, 1, -1))])
    return new


def _swap_nested_prelus(layer, names: List[str]) -> None:
    """Replace the per-channel PReLUs a layer holds as attributes (or in lists), recursively."""
    for key, value in list(vars(layer).items()):
        if key.startswith("_"):
            continue
        if _channel_prelu(value):
            setattr(layer, key, _xnnpack_prelu_like(value))
            names.append(f"{layer.name}/{value.name}")
        elif isinstance(value, keras.layers.Layer):
            _swap_nested_prelus(value, names)
        elif isinstance(value, (list, tuple)) or type(value).__name__ == "ListWrapper":
            items = list(value)
            if any(_channel_prelu(v) for v in items):
                setattr(layer, key, [_xnnpack_prelu_like(v) if _channel_prelu(v) else v for v in items])
                names.extend(f"{layer.name}/{v.name}" for v in items if _channel_prelu(v))
            for v in items:
                if isinstance(v, keras.layers.Layer) and not _channel_prelu(v):
                    _swap_nested_prelus(v, names)


def rewrite_prelu_for_xnnpack(model):
    """A copy of ``model`` with every per-channel ``PReLU`` as :class:`XnnpackPReLU` (weights copied),
    top-level and nested in other layers (MicroISP's attention); returns ``(new_model, names)``,
    ``model`` itself when it has none."""
    names: List[str] = []

    def clone(layer):
        if _channel_prelu(layer):
            names.append(layer.name)
            return XnnpackPReLU(name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    new_model = keras.models.clone_model(model, clone_function=clone)
    for old, new in zip(model.layers, new_model.layers):
        if old.weights:
            new.set_weights([np.reshape(w, new.weights[0].shape) for w in old.get_weights()]
                            if isinstance(new, XnnpackPReLU) else old.get_weights())
    for layer in new_model.layers:
        if not isinstance(layer, XnnpackPReLU):
            _swap_nested_prelus(layer, names)
    return (new_model, names) if names else (model, [])


def instance_norm(x, scale=None, shift=None, epsilon: float = 1e-3):
    """Instance norm from MEAN, SUB, MUL, ADD, RSQRT (no SQUARED_DIFFERENCE).

    Two-pass variance ``mean((x - m) * (x - m))``, as ``tf.nn.moments`` computes
    it, written with MUL so no SQUARED_DIFFERENCE op appears.
    """
    mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    centred = x - mean
    var = tf.reduce_mean(centred * centred, axis=[1, 2], keepdims=True)
    y = centred * tf.math.rsqrt(var + epsilon)
    if scale is not None:
        y = y * scale
    if shift is not None:
        y = y + shift
    return y


def pixel_shuffle_crd(x, block: int):
    """PyTorch ``pixel_shuffle`` (channel order C, dy, dx) without a 6-D reshape.

    A constant channel permutation (GATHER) turns PyTorch's order into
    TensorFlow's depth-to-space order (dy, dx, C), then DEPTH_TO_SPACE.
    """
    c_in = int(x.shape[-1])
    c = c_in // (block * block)
    if c * block * block != c_in:
        raise ValueError(f"pixel_shuffle: {c_in} channels is not a multiple of {block}^2")
    perm = [ci * block * block + dy * block + dx
            for dy in range(block) for dx in range(block) for ci in range(c)]
    return tf.nn.depth_to_space(tf.gather(x, perm, axis=3), block)


def _edge_pad(x, axis: int, before: int, after: int):
    """Replicate the border (what a half-pixel resize clamps to) with slices + concat."""
    parts = []
    if before:
        parts += [_take(x, axis, 0, 1)] * before
    parts.append(x)
    if after:
        parts += [_take(x, axis, -1, None)] * after
    return tf.concat(parts, axis=axis)


def _take(x, axis, start, stop):
    index = [slice(None)] * 4
    index[axis] = slice(start, stop)
    return x[tuple(index)]


def _phase_weights(factor: int) -> List[np.ndarray]:
    """For output offset r in [0, factor): weights on input (i-1, i, i+1)."""
    out = []
    for r in range(factor):
        d = (r + 0.5) / factor - 0.5  # where output k*i + r samples, relative to i
        w = np.zeros(3, np.float64)
        if d < 0:
            w[0], w[1] = -d, 1.0 + d
        else:
            w[1], w[2] = 1.0 - d, d
        out.append(w)
    return out


@keras.utils.register_keras_serializable(package="isp_tf")
class ResizeBilinear(keras.layers.Layer):
    """``tf.image.resize(x, (h*f, w*f), 'bilinear')`` (half-pixel centres) by an integer factor.

    ``factor > 1`` (up): the k x k output phases are depthwise 3x3 convolutions
    of the edge-padded input, concatenated in depth-to-space order, then
    DEPTH_TO_SPACE -- exactly TF2's half-pixel bilinear upsampling (borders
    clamp, as TF does).  ``factor < 0`` means down by ``-factor``: odd factors
    sample one pixel (STRIDED_SLICE), even ones average the two middle pixels
    of each window (slice + AVERAGE_POOL_2D 2x2).  Non-integer ratios are
    refused: resize with both align flags false then, accepting the shifted
    sampling grid.
    """

    def __init__(self, factor: int = 2, **kwargs):
        super().__init__(**kwargs)
        factor = int(factor)
        if factor in (0, 1, -1):
            raise ValueError(f"ResizeBilinear factor must be >= 2 or <= -2, got {factor}")
        self.factor = factor

    def call(self, x):
        if self.factor < 0:
            return self._down(x, -self.factor)
        k = self.factor
        channels = int(x.shape[-1])
        xp = _edge_pad(_edge_pad(x, 1, 1, 1), 2, 1, 1)
        weights = _phase_weights(k)
        phases = []
        for ry in range(k):
            for rx in range(k):
                kernel = np.outer(weights[ry], weights[rx]).astype(np.float32)
                kernel = np.tile(kernel[:, :, None, None], (1, 1, channels, 1))
                phases.append(tf.nn.depthwise_conv2d(xp, kernel, [1, 1, 1, 1], "VALID"))
        return tf.nn.depth_to_space(tf.concat(phases, axis=-1), k)

    @staticmethod
    def _down(x, k):
        if k % 2:
            off = (k - 1) // 2
            return x[:, off::k, off::k, :]
        off = k // 2 - 1
        return tf.nn.avg_pool2d(x[:, off:, off:, :], 2, k, "VALID")

    def compute_output_shape(self, input_shape):
        b, h, w, c = tf.TensorShape(input_shape).as_list()
        def scale(d):
            if d is None:
                return None
            return d * self.factor if self.factor > 0 else d // -self.factor

        return tf.TensorShape([b, scale(h), scale(w), c])

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.utils.register_keras_serializable(package="isp_tf")
class UpsampleNearest(keras.layers.Layer):
    """Nearest-neighbour upsampling by an integer factor: CONCATENATION + DEPTH_TO_SPACE.

    Equal to ``UpSampling2D(k, interpolation='nearest')`` (whose
    RESIZE_NEAREST_NEIGHBOR has half_pixel_centers set, refused at API 29).
    """

    def __init__(self, factor: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)
        if self.factor < 2:
            raise ValueError(f"UpsampleNearest factor must be >= 2, got {factor}")

    def call(self, x):
        return tf.nn.depth_to_space(tf.concat([x] * (self.factor ** 2), axis=-1), self.factor)

    def compute_output_shape(self, input_shape):
        b, h, w, c = tf.TensorShape(input_shape).as_list()
        f = lambda d: None if d is None else d * self.factor  # noqa: E731
        return tf.TensorShape([b, f(h), f(w), c])

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def _swap_layer(layer):
    """The delegable replacement of ``layer`` (a fresh layer), or None to keep a copy."""
    if isinstance(layer, keras.layers.ELU):
        return ExportELU(float(layer.get_config().get("alpha", 1.0)), name=layer.name)
    if isinstance(layer, keras.layers.UpSampling2D):
        cfg = layer.get_config()
        size = tuple(cfg["size"])
        if size[0] != size[1]:
            raise ExportError(f"{layer.name}: UpSampling2D size {size} is not square; "
                              "no NNAPI-1.2 rewrite")
        if cfg.get("interpolation", "nearest") == "nearest":
            return UpsampleNearest(size[0], name=layer.name)
        if cfg["interpolation"] == "bilinear":
            return ResizeBilinear(size[0], name=layer.name)
        raise ExportError(f"{layer.name}: UpSampling2D interpolation {cfg['interpolation']!r} "
                          "has no NNAPI-1.2 rewrite")
    cfg = layer.get_config()
    if cfg.get("activation") == "elu":
        cfg = dict(cfg, activation=export_elu)
        return layer.__class__.from_config(cfg)
    return None


def rewrite_for_nnapi(model):
    """Clone a functional/sequential ``model`` with ELU and UpSampling2D layers (and
    ``activation='elu'``) replaced by their delegable equivalents; weights are copied.

    Returns ``(new_model, names)`` where ``names`` lists the layers swapped
    (``model`` itself when nothing needed swapping).
    """
    swapped: List[str] = []

    def clone(layer):
        new = _swap_layer(layer)
        if new is None:
            return layer.__class__.from_config(layer.get_config())
        swapped.append(layer.name)
        return new

    if not any(_swap_layer(layer) is not None for layer in model.layers):
        return model, []
    new_model = keras.models.clone_model(model, clone_function=clone)
    for old, new in zip(model.layers, new_model.layers):
        if old.weights:
            new.set_weights(old.get_weights())
    return new_model, swapped
