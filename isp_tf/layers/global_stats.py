"""Layers whose output depends on statistics of the *whole* image.

MicroISP's attention (global average pool) and PyNET's instance norm look at
every pixel of the frame.  Run naively on tiles they would see only the tile
and change the picture.  Every such layer derives from
:class:`GlobalStatsLayer`, which splits the layer in two:

* ``positionwise(x) -> (B, h, w, K)``: per-position values whose spatial *mean*
  over the whole frame is the only whole-image quantity the layer needs
  (instance norm: ``[x, x*x]``; pooled attention: the strided conv chain).
  It must commute with cropping at multiples of ``alignment`` input pixels.
* ``apply(x, pooled)``: the layer's output given ``pooled`` (B, K).

Normal models (``tiling`` off, the default) compute ``pooled`` as the spatial
mean and export to plain TFLite ops.  Built inside :func:`tiling_mode`, each
layer gets a few non-trainable variables so a tiler
(:mod:`isp_tf.infer.tiling`) can

1. set ``core_box`` / ``input_hw`` (tile's own region and size, in model-input
   pixels) and read back ``terms`` (sum of ``positionwise`` over the core) and
   ``count`` after each tile: summing over tiles gives the whole-frame mean;
2. set ``given`` and ``use_given = 1`` so every tile uses the whole-frame value.

Layers are fixed in dependency order, one statistics pass per depth, then a
final pass writes the output; the result equals whole-frame inference.
"""
from __future__ import annotations

import contextlib

from isp_tf._keras import keras, tf

_state = {"tiling": False}


@contextlib.contextmanager
def tiling_mode(enabled: bool = True):
    """Build models inside this context to get their tileable variant."""
    previous = _state["tiling"]
    _state["tiling"] = enabled
    try:
        yield
    finally:
        _state["tiling"] = previous


class GlobalStatsLayer(keras.layers.Layer):
    """Base class; see the module docstring.  Subclasses set ``alignment``."""

    alignment = 1  # core boxes must start and end on multiples of this (layer-input pixels)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.tiling = _state["tiling"]

    # -- to implement ----------------------------------------------------
    def positionwise(self, x):
        raise NotImplementedError

    def apply(self, x, pooled):
        raise NotImplementedError

    # -- machinery ---------------------------------------------------------
    def build(self, input_shape):
        super().build(input_shape)
        if not self.tiling:
            return
        k = int(self.positionwise(tf.zeros([1] + [self.alignment * 2] * 2 + [int(input_shape[-1])])).shape[-1])
        make = lambda name, shape, dtype="float32": self.add_weight(  # noqa: E731
            name=name, shape=shape, dtype=dtype, initializer="zeros", trainable=False)
        self.core_box = make("core_box", [4], "int32")  # y0, x0, y1, x1 in model-input pixels
        self.input_hw = make("input_hw", [2], "int32")  # tile size in model-input pixels
        self.given = make("given", [k])
        self.use_given = make("use_given", [])
        self.terms = make("terms", [k])
        self.count = make("count", [])

    def call(self, x):
        if not self.tiling:
            return self.apply(x, tf.reduce_mean(self.positionwise(x), axis=[1, 2]))
        shape = tf.shape(x)
        # the layer may run at a lower resolution than the model input
        h_ratio = tf.cast(shape[1], tf.float32) / tf.cast(self.input_hw[0], tf.float32)
        w_ratio = tf.cast(shape[2], tf.float32) / tf.cast(self.input_hw[1], tf.float32)
        box = tf.cast(self.core_box, tf.float32)
        y0 = tf.cast(tf.round(box[0] * h_ratio), tf.int32)
        x0 = tf.cast(tf.round(box[1] * w_ratio), tf.int32)
        y1 = tf.cast(tf.round(box[2] * h_ratio), tf.int32)
        x1 = tf.cast(tf.round(box[3] * w_ratio), tf.int32)
        core = self.positionwise(x[:, y0:y1, x0:x1, :])
        core_shape = tf.shape(core)
        self.terms.assign(tf.reduce_sum(core[0], axis=[0, 1]))
        self.count.assign(tf.cast(core_shape[1] * core_shape[2], tf.float32))
        local = tf.reduce_mean(self.positionwise(x), axis=[1, 2])
        pooled = self.use_given * self.given[tf.newaxis] + (1.0 - self.use_given) * local
        return self.apply(x, pooled)
