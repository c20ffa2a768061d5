"""Instance normalisation built only from ops NNAPI 1.2 delegates.

``tf.nn.moments`` (what PyNET used) exports ``SQUARED_DIFFERENCE``, which the
NNAPI 1.2 delegate does not reliably accept; old converters could not export
instance norm at all.  :class:`InstanceNorm` computes, per image and channel::

    mean = MEAN(MEAN(x))                # over width, then height (see _spatial_mean)
    d    = x - mean
    var  = MEAN(MEAN(d * d))
    y    = d * RSQRT(var + eps) * scale + shift

which exports to ``MEAN``, ``SUB``, ``MUL``, ``ADD`` and ``RSQRT`` only.

Tiled inference (:mod:`isp_tf.layers.global_stats`) needs statistics that add
up tile by tile, so the tiling variant (built in ``tiling_mode()``, never
exported) uses the one-pass form: ``positionwise = [x, x*x]`` and
``var = RELU(E[x^2] - E[x]^2)``.  The two are equal in exact arithmetic, but
in float32 the one-pass form loses precision as ``(|mean| / std)^2`` (measured
over 128 x 128 pixels: 3e-5 max abs at ratio 3, 3e-4 at 10, 3e-3 at 30), so
the normal (exported) variant keeps the two-pass form, as PyNET does, and the
tiling variant computes its sums and the subtraction in float64; what is left
is the float32 rounding of the ``given``/``terms`` state (at ratio 19: 4e-5
max abs, against 1e-4 for float32 sums).  The ``RELU``
clamps the small negative variances rounding can produce.
"""
from __future__ import annotations

from isp_tf._keras import keras, tf
from isp_tf.layers.global_stats import GlobalStatsLayer

__all__ = ["InstanceNorm"]


def _spatial_mean(x):
    """Mean over height and width as two MEAN ops (rows, then columns).

    One float32 reduction over a whole frame drifts: measured on 750 x 1000
    values near 1.1, ``reduce_mean(x, [1, 2])`` was off by 2.8e-4, the two-step
    mean by 3e-7.
    """
    return tf.reduce_mean(tf.reduce_mean(x, axis=2, keepdims=True), axis=1, keepdims=True)


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

    # -- GlobalStatsLayer protocol (tiling variant) ------------------------
    def positionwise(self, x):
        x = tf.cast(x, tf.float64)  # float64 sums: the one-pass variance needs them
        return tf.concat([x, x * x], axis=-1)

    def apply(self, x, pooled):
        channels = x.shape[-1]
        pooled = tf.cast(tf.reshape(pooled, [-1, 1, 1, 2 * channels]), tf.float64)
        mean, mean_sq = tf.split(pooled, 2, axis=-1)
        var = tf.cast(tf.nn.relu(mean_sq - mean * mean), x.dtype)
        mean = tf.cast(mean, x.dtype)
        return (x - mean) * (tf.math.rsqrt(var + self.epsilon) * self.scale) + self.shift

    def call(self, x):
        if self.tiling:
            return super().call(x)  # one pass: E[x], E[x^2] (see the module docstring)
        mean = _spatial_mean(x)
        centred = x - mean
        var = _spatial_mean(centred * centred)
        return centred * (tf.math.rsqrt(var + self.epsilon) * self.scale) + self.shift

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
