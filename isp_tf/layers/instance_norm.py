"""Instance normalisation built only from ops NNAPI 1.2 delegates.

``tf.nn.moments`` (what PyNET used) exports ``SQUARED_DIFFERENCE``, which the
NNAPI 1.2 delegate does not reliably accept; old converters could not export
instance norm at all.  :class:`InstanceNorm` computes, per image and channel::

    mean = MEAN(x)                      # over height and width
    var  = RELU(MEAN(x * x) - mean * mean)
    y    = (x - mean) * RSQRT(var + eps) * scale + shift

which exports to ``MEAN``, ``MUL``, ``SUB``, ``RELU``, ``ADD``, ``RSQRT``,
``RESHAPE`` and ``SPLIT`` (plus ``CONCATENATION`` of the two pooled vectors).

Where we differ from PyNET: the variance is ``E[x^2] - E[x]^2`` (one pass, so
the statistics can be accumulated tile by tile, see
:mod:`isp_tf.layers.global_stats`) instead of the two-pass ``E[(x - E[x])^2]``.
The two are equal in exact arithmetic; in float32 the one-pass form loses
precision only when ``|mean| / std`` exceeds about 1e3, far from the
activations of a conv network with ``eps = 1e-3``.  The ``RELU`` clamps the
small negative values rounding can produce.
"""
from __future__ import annotations

from isp_tf._keras import keras, tf
from isp_tf.layers.global_stats import GlobalStatsLayer

__all__ = ["InstanceNorm"]


@keras.utils.register_keras_serializable(package="isp_tf")
class InstanceNorm(GlobalStatsLayer):
    """Per-image, per-channel normalisation with a learned ``scale`` and ``shift``.

    Args:
      epsilon: added to the variance (PyNET: 1e-3).
    """

    alignment = 1  # the statistics are plain per-pixel means

    def __init__(self, epsilon: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.scale = self.add_weight(name="scale", shape=[channels], initializer="ones")
        self.shift = self.add_weight(name="shift", shape=[channels], initializer="zeros")
        super().build(input_shape)

    # -- GlobalStatsLayer protocol -----------------------------------------
    def positionwise(self, x):
        return tf.concat([x, x * x], axis=-1)

    def apply(self, x, pooled):
        channels = x.shape[-1]
        mean, mean_sq = tf.split(tf.reshape(pooled, [-1, 1, 1, 2 * channels]), 2, axis=-1)
        var = tf.nn.relu(mean_sq - mean * mean)
        return (x - mean) * (tf.math.rsqrt(var + self.epsilon) * self.scale) + self.shift

    def call(self, x):
        if self.tiling:
            return super().call(x)
        # same value as the base class's mean of positionwise(x), without
        # materialising the (B, H, W, 2C) concatenation at full resolution
        pooled = tf.concat([tf.reduce_mean(x, axis=[1, 2]), tf.reduce_mean(x * x, axis=[1, 2])], axis=-1)
        return self.apply(x, pooled)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
