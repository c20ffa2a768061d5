"""Tiny models with whole-image statistics, built only for the tiler's tests.

They mirror what the real models do (MicroISP's strided-pool attention,
PyNET's instance norm, pooling, transposed convs, depth-to-space) at a size
that runs in milliseconds, and use large random weights so that the
whole-image statistics visibly change the output.
"""
from isp_tf._keras import keras, tf
from isp_tf.layers.global_stats import GlobalStatsLayer


class ToyAttention(GlobalStatsLayer):
    """x * sigmoid(W mean(chain(x))): chain = 1x1 s3 VALID, 3x3 s3 VALID (pools 9x9 blocks)."""

    alignment = 9

    def __init__(self, channels=4, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        init = keras.initializers.RandomNormal(stddev=1.0, seed=1)
        self.c1 = keras.layers.Conv2D(channels, 1, strides=3, padding="valid", kernel_initializer=init)
        self.c2 = keras.layers.Conv2D(channels, 3, strides=3, padding="valid", kernel_initializer=init)
        self.fc = keras.layers.Dense(channels, kernel_initializer=init)

    def positionwise(self, x):
        return self.c2(tf.nn.relu(self.c1(x)))

    def apply(self, x, pooled):
        return x * tf.sigmoid(self.fc(pooled))[:, tf.newaxis, tf.newaxis, :]

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


class ToyInstanceNorm(GlobalStatsLayer):
    """(x - mean) / sqrt(var + eps) over the whole image, per channel."""

    def positionwise(self, x):
        return tf.concat([x, x * x], axis=-1)

    def apply(self, x, pooled):
        mean, sq = tf.split(pooled, 2, axis=-1)
        var = tf.nn.relu(sq - mean * mean)
        return (x - mean[:, None, None]) * tf.math.rsqrt(var[:, None, None] + 1e-3)


class DepthToSpace(keras.layers.Layer):
    """(h, w, 4C) -> (2h, 2w, C)."""

    def call(self, x):
        return tf.nn.depth_to_space(x, 2)


def toy_model(seed=0):
    """Packed (h, w, 4) -> (2h, 2w, 3); needs sides that are multiples of 4."""
    keras.utils.set_random_seed(seed)
    init = keras.initializers.RandomNormal(stddev=0.3, seed=seed)
    conv = lambda ch, k=3, **kw: keras.layers.Conv2D(ch, k, padding="same", kernel_initializer=init, **kw)  # noqa: E731
    inp = keras.Input((None, None, 4))
    a = conv(8)(inp)
    a = ToyAttention(8)(a)  # depth 0
    b = conv(8)(a)
    b = ToyAttention(8)(b)  # depth 1 (after the first)
    side = ToyInstanceNorm()(conv(8)(inp))  # depth 0, parallel
    d = keras.layers.MaxPool2D(2)(keras.layers.Concatenate()([b, side]))
    d = conv(8, strides=2)(d)  # 1/4 resolution
    d = ToyInstanceNorm()(d)  # depth 2
    d = keras.layers.Conv2DTranspose(8, 3, strides=4, padding="same", kernel_initializer=init)(d)
    e = keras.layers.Concatenate()([d, b])
    e = keras.layers.PReLU(shared_axes=[1, 2])(conv(12)(e))
    rgb = DepthToSpace()(conv(16)(e))[..., :3]  # a channel slice keeps the grid
    return keras.Model(inp, keras.layers.Activation("sigmoid")(rgb))


def unknown_pool_model():
    """A plain global average pool (not a GlobalStatsLayer): cannot be tiled exactly."""
    inp = keras.Input((None, None, 4))
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
    return keras.Model(inp, x * pooled)


def cropping_model():
    """A crop shifts the grid: the analysis must refuse it rather than guess."""
    inp = keras.Input((None, None, 4))
    x = keras.layers.Conv2D(4, 3, padding="valid")(inp)
    return keras.Model(inp, keras.layers.ZeroPadding2D(1)(keras.layers.Cropping2D(1)(x)))


def camera_vector_model(seed=0):
    """Packed (h, w, 4) + a per-frame vector (3,) -> [rgb (2h, 2w, 3), map (h, w, 2)].

    The vector (think: white-balance gains, ISO) scales the features through a
    Dense layer and is broadcast over every position; an attention with a
    whole-image statistic sits after it, so tiles must get the same vector in
    every pass for the statistics to be right.
    """
    keras.utils.set_random_seed(seed)
    init = keras.initializers.RandomNormal(stddev=0.3, seed=seed)
    conv = lambda ch, k=3, **kw: keras.layers.Conv2D(ch, k, padding="same", kernel_initializer=init, **kw)  # noqa: E731
    image = keras.Input((None, None, 4), name="image")
    camera = keras.Input((3,), name="camera")
    gains = keras.layers.Dense(8, activation="sigmoid", kernel_initializer=init)(camera)
    gains = keras.layers.Reshape((1, 1, 8))(gains)
    a = keras.layers.Multiply()([conv(8)(image), gains])
    a = ToyAttention(8)(a)
    b = conv(8)(a)
    rgb = keras.layers.Activation("sigmoid")(DepthToSpace()(conv(12)(b)))
    side = keras.layers.Activation("tanh")(conv(2)(ToyInstanceNorm()(b)))
    return keras.Model([image, camera], [rgb, side])


def to_tflite(model) -> bytes:
    """FP32 ``.tflite`` of ``model`` with free height and width (batch 1), inputs in model order."""
    specs = [tf.TensorSpec([1] + list(t.shape[1:]), tf.float32, name=t.name.split(":")[0])
             for t in model.inputs]
    fn = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False),
                     input_signature=specs, autograph=False)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], model)
    return bytes(converter.convert())
