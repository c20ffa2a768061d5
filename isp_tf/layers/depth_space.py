"""Pixel reshuffles: :class:`DepthToSpace` and :class:`SpaceToDepth`.

Both are thin ``keras.layers.Layer`` subclasses over ``tf.nn.depth_to_space`` /
``tf.nn.space_to_depth`` rather than raw ``tf.nn`` calls or ``Lambda`` layers:

* tensorflow-model-optimization clones functional models layer by layer and
  breaks on raw ``tf.nn`` ops; a named Layer class can be annotated with a
  no-op ``QuantizeConfig`` (see ``isp_tf.export``).
* They export to the TFLite ``DEPTH_TO_SPACE`` / ``SPACE_TO_DEPTH`` ops, which
  NNAPI 1.2 accepts (a PyTorch-style 6-D reshape + transpose pixel shuffle is
  rejected by the delegate).

Channel order is TensorFlow's (DCR): output pixel ``(dy, dx)`` of channel
``c`` comes from input channel ``(dy * block + dx) * C_out + c``.
"""
from __future__ import annotations

from isp_tf._keras import keras, tf

__all__ = ["DepthToSpace", "SpaceToDepth"]


def _check_block(block_size):
    if int(block_size) != block_size or block_size < 2:
        raise ValueError(f"block_size must be an integer >= 2, got {block_size!r}")
    return int(block_size)


@keras.utils.register_keras_serializable(package="isp_tf")
class DepthToSpace(keras.layers.Layer):
    """(B, h, w, C * b^2) -> (B, h*b, w*b, C), TensorFlow channel order."""

    def __init__(self, block_size: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.block_size = _check_block(block_size)

    def call(self, x):
        return tf.nn.depth_to_space(x, self.block_size)

    def compute_output_shape(self, input_shape):
        b, h, w, c = tf.TensorShape(input_shape).as_list()
        scale = lambda d: None if d is None else d * self.block_size  # noqa: E731
        return tf.TensorShape([b, scale(h), scale(w), c // (self.block_size ** 2)])

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}


@keras.utils.register_keras_serializable(package="isp_tf")
class SpaceToDepth(keras.layers.Layer):
    """(B, h*b, w*b, C) -> (B, h, w, C * b^2); the inverse of :class:`DepthToSpace`."""

    def __init__(self, block_size: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.block_size = _check_block(block_size)

    def call(self, x):
        return tf.nn.space_to_depth(x, self.block_size)

    def compute_output_shape(self, input_shape):
        b, h, w, c = tf.TensorShape(input_shape).as_list()
        scale = lambda d: None if d is None else d // self.block_size  # noqa: E731
        return tf.TensorShape([b, scale(h), scale(w), c * self.block_size ** 2])

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}
