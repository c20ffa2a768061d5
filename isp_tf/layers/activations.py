"""Activations shared by the models, each written so it exports to one NNAPI 1.2 op.

* :func:`channel_prelu`: ``keras.layers.PReLU`` with one learned slope per
  channel (``shared_axes=[1, 2]``), exported as the TFLite ``PRELU`` op.  PReLU
  written as arithmetic would add ``NEG``/``RELU``/``MUL`` ops instead.
* :class:`ScaledTanh`: ``tanh(x) * scale + offset``, the output head of MicroISP
  and PyNET (``tanh * 0.58 + 0.5``: the range [-0.08, 1.08], slightly wider
  than [0, 1] so saturated pixels stay reachable).  Exported as ``TANH``,
  ``MUL``, ``ADD``.  A named Layer (not a ``Lambda``) so it serialises and can
  be annotated for quantisation-aware training.
"""
from __future__ import annotations

from isp_tf._keras import keras, tf

__all__ = ["ScaledTanh", "channel_prelu"]


def channel_prelu(name=None, alpha_initializer="zeros"):
    """PReLU with a learned slope per channel, shared over height and width."""
    return keras.layers.PReLU(alpha_initializer=alpha_initializer, shared_axes=[1, 2], name=name)


@keras.utils.register_keras_serializable(package="isp_tf")
class ScaledTanh(keras.layers.Layer):
    """``tanh(x) * scale + offset`` (defaults: the ``* 0.58 + 0.5`` of Ignatov et al.)."""

    def __init__(self, scale: float = 0.58, offset: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)
        self.offset = float(offset)

    def call(self, x):
        return tf.tanh(x) * self.scale + self.offset

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}
