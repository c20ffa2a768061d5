"""MicroISP's channel attention, split for exact tiled inference.

MicroISP (Ignatov et al., ECCV 2022) rescales the features of a branch by a
per-channel weight computed from the whole image::

    a = PReLU(Conv1x1/3(x))                 # stride 3, VALID
    a = 3 x PReLU(Conv3x3/3(a))             # stride 3, VALID
    p = GlobalAveragePool(a)                # (B, C)
    w = sigmoid(Conv1x1(PReLU(Conv1x1(p)))) # the MLP, on a 1x1 "image"
    y = x * w

The strided chain reduces every 81 x 81 block of the input (rows/columns
``81 m .. 81 m + 78``, every third one) to one vector, so it is the
:class:`~isp_tf.layers.global_stats.GlobalStatsLayer` ``positionwise`` part with
``alignment = 81``; the MLP and the multiplication are ``apply``.  Block ``m``
counts when the side is at least ``81 m + 79``; the rows and columns after the
last complete block are ignored (VALID padding), exactly like the original.

Exported ops: ``CONV_2D``, ``PRELU``, ``MEAN``, ``RESHAPE``, ``LOGISTIC``, ``MUL``.
Init as the original: N(0, 1e-3) kernels, zero biases, zero PReLU slopes.
"""
from __future__ import annotations

from isp_tf._keras import keras, tf
from isp_tf.errors import InputShapeError
from isp_tf.layers.activations import channel_prelu
from isp_tf.layers.global_stats import GlobalStatsLayer

__all__ = ["ChannelAttention"]

#: the smallest side (in layer-input pixels) that gives one pooled position
MIN_SIDE = 79


@keras.utils.register_keras_serializable(package="isp_tf")
class ChannelAttention(GlobalStatsLayer):
    """``x * sigmoid(MLP(mean(strided conv chain(x))))``, one weight per channel.

    Args:
      hidden_units: width of the MLP's hidden layer (MicroISP: the number of
        channels, 4).  ``None`` means the number of input channels.
      init_stddev: standard deviation of the normal kernel initialiser.
    """

    alignment = 81  # 1x1/3 then three 3x3/3 VALID convs: 3 * 3 * 3 * 3

    def __init__(self, hidden_units=None, init_stddev: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = None if hidden_units is None else int(hidden_units)
        self.init_stddev = float(init_stddev)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        hidden = self.hidden_units or channels
        conv = lambda filters, size, stride, name, activation=None: keras.layers.Conv2D(  # noqa: E731
            filters, size, strides=stride, padding="valid", activation=activation, name=name,
            kernel_initializer=keras.initializers.RandomNormal(stddev=self.init_stddev),
            bias_initializer="zeros")
        # the strided pooling chain (positionwise)
        self.pool_convs = [conv(channels, 1 if i == 0 else 3, 3, f"pool_conv{i}") for i in range(4)]
        self.pool_prelus = [channel_prelu(f"pool_prelu{i}") for i in range(4)]
        # the MLP on the pooled vector (apply)
        self.mlp_conv0 = conv(hidden, 1, 1, "mlp_conv0")
        self.mlp_prelu = channel_prelu("mlp_prelu")
        self.mlp_conv1 = conv(channels, 1, 1, "mlp_conv1", activation="sigmoid")
        # sublayers build on their first call, inside this layer's name scope
        # (weights named e.g. "s1_r_att2/pool_conv0/kernel:0")
        super().build(input_shape)

    @property
    def ordered_sublayers(self):
        """Sublayers in the original's creation order (for checkpoint import)."""
        chain = [layer for pair in zip(self.pool_convs, self.pool_prelus) for layer in pair]
        return chain + [self.mlp_conv0, self.mlp_prelu, self.mlp_conv1]

    # -- GlobalStatsLayer protocol -----------------------------------------
    def positionwise(self, x):
        for conv_layer, prelu in zip(self.pool_convs, self.pool_prelus):
            x = prelu(conv_layer(x))
        return x

    def apply(self, x, pooled):
        weights = tf.reshape(pooled, [-1, 1, 1, x.shape[-1]])
        weights = self.mlp_conv1(self.mlp_prelu(self.mlp_conv0(weights)))
        return x * weights

    def __call__(self, x, *args, **kwargs):
        # checked here, outside autograph, so the error reaches the caller as itself
        shape = getattr(x, "shape", None)
        if not self.tiling and shape is not None and len(shape) == 4:
            small = [d for d in shape[1:3] if d is not None and d < MIN_SIDE]
            if small:
                raise InputShapeError(
                    f"{self.name}: MicroISP attention needs at least {MIN_SIDE} x {MIN_SIDE} "
                    f"pixels (one 81-pixel pooling block), got {tuple(shape[1:3])}")
        return super().__call__(x, *args, **kwargs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "hidden_units": self.hidden_units,
                "init_stddev": self.init_stddev}
