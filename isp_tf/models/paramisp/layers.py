"""ParamISP's own layers, each written with ops NNAPI 1.2 delegates (float32).

* :class:`ELU`: ``relu(x) + exp(min(x, 0)) - 1`` (the ELU op needs API 30);
  the same function as ``tf.nn.elu`` up to float rounding (``exp - 1``
  instead of ``expm1``, ~1e-7 near 0).  Used everywhere in the graph, so the
  export needs no rewrite of it.
* :class:`ParamSlices`, :class:`VectorSlice`: split the per-frame parameter vector.
* :class:`CanoNet`: the fixed canonical pipeline (Malvar-He-Cutler demosaic,
  white balance, clip, camera RGB -> linear sRGB); :class:`UnCanoNet` the
  inverse's tail (inverse colour matrix, inverse white balance, RGGB mosaic).
* :class:`PixelFeatures`, :class:`OverExposureMask`: the 96 per-pixel features.
* :class:`LocalBlock`: conv-ELU-conv, CBAM channel then spatial attention,
  residual; its channel attention (whole-frame average and max) can be given
  from outside (exact tiling, see ``model.split_paramisp``).
* :class:`SubPixelUp`: LocalNet's stride-2 transposed convolution as 1 x 1
  conv + DEPTH_TO_SPACE (same weights and sums; re-planned by LiteRT per tile);
* :class:`StageEmbedding`, :class:`ToneMapping`: GlobalNet's per-stage
  embedding and its quadratic colour transform plus extended gamma.
"""
from __future__ import annotations

import numpy as np

from isp_tf._keras import keras, tf
from isp_tf.layers.color import apply_color_matrix

PACKAGE = "isp_tf.paramisp"

#: layout of the per-frame parameter vector (see ``params.py``)
COLOR_SLICE = (0, 24)           # [wb (3), 1/wb (3), ccm (9), ccm^-1 (9)]
WB_SLICE, INV_WB_SLICE = (0, 3), (3, 6)
CCM_SLICE, INV_CCM_SLICE = (6, 15), (15, 24)
OPTICS_FIELDS = ("focal_length", "f_number", "exposure_time", "iso")
ENCODING_SIZE = 15
PARAMS_SIZE = 24 + ENCODING_SIZE * len(OPTICS_FIELDS)   # 84


def elu(x):
    """ELU (alpha 1) from RELU, MINIMUM, EXP, SUB, ADD (NNAPI 1.2 has no ELU op)."""
    return tf.nn.relu(x) + (tf.exp(tf.minimum(x, 0.0)) - 1.0)


def _per_frame(v, start, stop):
    return tf.reshape(v[:, start:stop], [-1, 1, 1, stop - start])


@keras.utils.register_keras_serializable(package=PACKAGE)
class ELU(keras.layers.Layer):
    """:func:`elu` as a layer."""

    def call(self, x):
        return elu(x)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.utils.register_keras_serializable(package=PACKAGE)
class VectorSlice(keras.layers.Layer):
    """``v[:, start:stop]`` of a (B, n) per-frame vector."""

    def __init__(self, start: int, stop: int, **kwargs):
        super().__init__(**kwargs)
        self.start, self.stop = int(start), int(stop)

    def call(self, v):
        return v[:, self.start:self.stop]

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], self.stop - self.start])

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}


@keras.utils.register_keras_serializable(package=PACKAGE)
class ParamSlices(keras.layers.Layer):
    """The parameter vector (B, 84) -> ``[colour (B, 24), focal, f-number, exposure, ISO (B, 15) each]``."""

    def call(self, v):
        out = [v[:, COLOR_SLICE[0]:COLOR_SLICE[1]]]
        for k in range(len(OPTICS_FIELDS)):
            start = 24 + k * ENCODING_SIZE
            out.append(v[:, start:start + ENCODING_SIZE])
        return out

    def compute_output_shape(self, input_shape):
        b = input_shape[0]
        return [tf.TensorShape([b, 24])] + [tf.TensorShape([b, ENCODING_SIZE])] * len(OPTICS_FIELDS)


# --------------------------------------------------------------------------- CanoNet
def malvar_kernel() -> np.ndarray:
    """The Malvar-He-Cutler demosaic (ICASSP 2004) as one 3x3 convolution of the packed
    ``[R, G1, G2, B]`` quads: (3, 3, 4, 12), output channel ``3 * site + colour`` with
    site ``2 a + b`` of mosaic offset (a, b) (TensorFlow's depth-to-space order)."""
    g_at_rb = np.array([[0, 0, -1, 0, 0], [0, 0, 2, 0, 0], [-1, 2, 4, 2, -1],
                        [0, 0, 2, 0, 0], [0, 0, -1, 0, 0]], np.float64) / 8
    row = np.array([[0, 0, .5, 0, 0], [0, -1, 0, -1, 0], [-1, 4, 5, 4, -1],
                    [0, -1, 0, -1, 0], [0, 0, .5, 0, 0]], np.float64) / 8  # colour left/right
    col = row.T                                                                # colour above/below
    diag = np.array([[0, 0, -1.5, 0, 0], [0, 2, 0, 2, 0], [-1.5, 0, 6, 0, -1.5],
                     [0, 2, 0, 2, 0], [0, 0, -1.5, 0, 0]], np.float64) / 8
    ident = np.zeros((5, 5))
    ident[2, 2] = 1.0
    # site -> (R, G, B) 5x5 kernels on the mosaic, RGGB
    kernels = {(0, 0): (ident, g_at_rb, diag),   # R site
               (0, 1): (row, ident, col),        # G in a red row
               (1, 0): (col, ident, row),        # G in a blue row
               (1, 1): (diag, g_at_rb, ident)}   # B site
    out = np.zeros((3, 3, 4, 12), np.float64)
    for (a, b), colours in kernels.items():
        site = 2 * a + b
        for c, k5 in enumerate(colours):
            for dy in range(-2, 3):
                for dx in range(-2, 3):
                    w = k5[dy + 2, dx + 2]
                    if w == 0:
                        continue
                    py, px = (a + dy) // 2, (b + dx) // 2
                    channel = 2 * ((a + dy) % 2) + (b + dx) % 2
                    out[py + 1, px + 1, channel, 3 * site + c] += w
    return out.astype(np.float32)


@keras.utils.register_keras_serializable(package=PACKAGE)
class CanoNet(keras.layers.Layer):
    """``[packed (B, h, w, 4), params (B, 84)] -> (B, 2h, 2w, 3)`` linear sRGB: Malvar-He-Cutler
    demosaic (zero padding at the frame edge), white balance, clip to [0, 1], colour matrix."""

    def call(self, inputs):
        packed, params = inputs
        quads = tf.nn.conv2d(packed, tf.constant(malvar_kernel()), 1, "SAME")
        rgb = tf.nn.depth_to_space(quads, 2)
        rgb = tf.clip_by_value(rgb * _per_frame(params, *WB_SLICE), 0.0, 1.0)
        return apply_color_matrix(rgb, params[:, CCM_SLICE[0]:CCM_SLICE[1]])

    def compute_output_shape(self, input_shape):
        b, h, w, _ = tf.TensorShape(input_shape[0]).as_list()
        return tf.TensorShape([b, None if h is None else 2 * h, None if w is None else 2 * w, 3])


@keras.utils.register_keras_serializable(package=PACKAGE)
class UnCanoNet(keras.layers.Layer):
    """``[rgb (B, H, W, 3), params] -> (B, H, W, 1)`` RGGB mosaic: inverse colour matrix,
    inverse white balance, then each pixel keeps its own CFA colour."""

    def call(self, inputs):
        rgb, params = inputs
        cam = apply_color_matrix(rgb, params[:, INV_CCM_SLICE[0]:INV_CCM_SLICE[1]])
        cam = cam * _per_frame(params, *INV_WB_SLICE)
        kernel = np.zeros((1, 1, 12, 4), np.float32)  # space-to-depth (site, colour) -> the site's colour
        for site, colour in enumerate((0, 1, 1, 2)):
            kernel[0, 0, 3 * site + colour, site] = 1.0
        quads = tf.nn.conv2d(tf.nn.space_to_depth(cam, 2), tf.constant(kernel), 1, "VALID")
        return tf.nn.depth_to_space(quads, 2)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape[0])[:-1].concatenate([1])


# --------------------------------------------------------------------------- features
def _sobel_kernel() -> np.ndarray:
    """(3, 3, 3, 2) depthwise: per channel [d/dx, d/dy], the normalised Sobel (kornia's default)."""
    gx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32) / 8
    k = np.stack([gx, gx.T], axis=-1)  # (3, 3, 2)
    return np.repeat(k[:, :, np.newaxis, :], 3, axis=2)


def _histogram_conv(bins):
    """1x1 conv (3 -> 3 * sum(bins)) giving ``x (n - 1) - i`` for channel-major bins."""
    total = sum(bins)
    kernel = np.zeros((1, 1, 3, 3 * total), np.float32)
    bias = np.zeros(3 * total, np.float32)
    offset = 0
    for n in bins:
        for c in range(3):
            for i in range(n):
                kernel[0, 0, c, offset + c * n + i] = n - 1.0
                bias[offset + c * n + i] = -float(i)
        offset += 3 * n
    return kernel, bias


@keras.utils.register_keras_serializable(package=PACKAGE)
class OverExposureMask(keras.layers.Layer):
    """``max(x - 0.95, 0) / 0.05`` per channel."""

    def __init__(self, threshold: float = 0.95, **kwargs):
        super().__init__(**kwargs)
        self.threshold = float(threshold)

    def call(self, x):
        return tf.nn.relu(x - self.threshold) * (1.0 / (1.0 - self.threshold))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


@keras.utils.register_keras_serializable(package=PACKAGE)
class PixelFeatures(keras.layers.Layer):
    """``[x (B, H, W, 3), mask (B, H, W, 3)] -> (B, H, W, 3 + 6 + 3 * sum(bins) + 3)``:
    the image, its Sobel gradients (zero padding), the soft histograms
    ``relu(1 - |x (n - 1) - i|)`` for each bin count ``n`` (per channel, bin-major
    within a channel), the over-exposure mask.  96 channels for bins (4, 8, 16)."""

    def __init__(self, bins=(4, 8, 16), **kwargs):
        super().__init__(**kwargs)
        self.bins = tuple(int(b) for b in bins)

    def call(self, inputs):
        x, mask = inputs
        grad = tf.nn.depthwise_conv2d(x, tf.constant(_sobel_kernel()), [1, 1, 1, 1], "SAME")
        kernel, bias = _histogram_conv(self.bins)
        dist = tf.nn.conv2d(x, tf.constant(kernel), 1, "VALID") + tf.constant(bias)
        hist = tf.nn.relu(1.0 - tf.abs(dist))
        return tf.concat([x, grad, hist, mask], axis=-1)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape[0])[:-1].concatenate([3 + 6 + 3 * sum(self.bins) + 3])

    def get_config(self):
        return {**super().get_config(), "bins": list(self.bins)}


def feature_channels(bins=(4, 8, 16)) -> int:
    return 3 + 6 + 3 * sum(bins) + 3


# --------------------------------------------------------------------------- LocalNet block
@keras.utils.register_keras_serializable(package=PACKAGE)
class LocalBlock(keras.layers.Layer):
    """``x + SA(CA(conv(elu(conv(x)))))``: Conv3x3 C -> C/r, ELU, Conv3x3 C/r -> C, CBAM
    channel attention (shared 1x1 MLP C -> C/r -> C with ELU on the whole-frame average and
    maximum, summed, sigmoid), spatial attention (channel mean and max, Conv7x7 2 -> 1, sigmoid).

    ``block(x, return_attention=True) -> (y, a)`` also returns the channel attention (B, C);
    ``block(x, attention=a)`` uses a given one (the tiles of a frame share the frame's).
    """

    def __init__(self, channels: int = 64, reduction: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.reduction = int(channels), int(reduction)
        hidden = self.channels // self.reduction
        self.conv1 = keras.layers.Conv2D(hidden, 3, padding="same", name="conv1")
        self.conv2 = keras.layers.Conv2D(self.channels, 3, padding="same", name="conv2")
        self.ca1 = keras.layers.Dense(hidden, name="channel_attention1")
        self.ca2 = keras.layers.Dense(self.channels, name="channel_attention2")
        self.sa = keras.layers.Conv2D(1, 7, padding="same", name="spatial_attention")

    def build(self, input_shape):
        shape = tf.TensorShape(input_shape)
        hidden = self.channels // self.reduction
        for layer, s in ((self.conv1, shape), (self.conv2, shape[:-1].concatenate([hidden])),
                         (self.ca1, tf.TensorShape([None, self.channels])), (self.ca2, tf.TensorShape([None, hidden])),
                         (self.sa, shape[:-1].concatenate([2]))):
            with tf.name_scope(layer.name):  # weight names "<block>/conv1/kernel:0", unique in an h5 group
                layer.build(s)
        super().build(input_shape)

    def channel_attention(self, r):
        mlp = lambda v: self.ca2(elu(self.ca1(v)))  # noqa: E731
        return tf.sigmoid(mlp(tf.reduce_mean(r, axis=[1, 2])) + mlp(tf.reduce_max(r, axis=[1, 2])))

    def call(self, x, attention=None, return_attention=False):
        r = self.conv2(elu(self.conv1(x)))
        a = self.channel_attention(r) if attention is None else attention
        r = r * tf.reshape(a, [-1, 1, 1, self.channels])
        s = tf.concat([tf.reduce_mean(r, axis=-1, keepdims=True), tf.reduce_max(r, axis=-1, keepdims=True)], -1)
        y = x + r * tf.sigmoid(self.sa(s))
        return (y, a) if return_attention else y

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "reduction": self.reduction}


def _keep_channels(padded, x):
    """``padded`` (a PAD of ``x`` by computed amounts) with ``x``'s channel count stated: TFLite's
    shape inference loses every dimension of such a PAD, and it converts no CONV_2D of unknown
    input channels (a free-size export fails).  A RESHAPE to the same shape keeps them."""
    shape = tf.shape(padded)
    return tf.reshape(padded, tf.stack([shape[0], shape[1], shape[2], int(x.shape[-1])]))


@keras.utils.register_keras_serializable(package=PACKAGE)
class ReflectPadToMultiple(keras.layers.Layer):
    """Reflect-pads the bottom/right of a frame to multiples of ``multiple``, as
    :func:`isp_tf.tiling.planner.pad_to_multiple` does before tiling (the per-frame part of
    :func:`~isp_tf.models.paramisp.model.split_paramisp` sees the frame the tiles cover)."""

    def __init__(self, multiple: int, **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)

    def call(self, x):
        shape = tf.shape(x)
        ph, pw = (-shape[1]) % self.multiple, (-shape[2]) % self.multiple
        y = tf.pad(x, [[0, 0], [0, ph], [0, pw], [0, 0]], mode="REFLECT")
        return _keep_channels(y, x)

    def compute_output_shape(self, input_shape):
        b, h, w, c = tf.TensorShape(input_shape).as_list()
        up = lambda d: None if d is None else -(-d // self.multiple) * self.multiple  # noqa: E731
        return tf.TensorShape([b, up(h), up(w), c])

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


@keras.utils.register_keras_serializable(package=PACKAGE)
class SubPixelUp(keras.layers.Conv2DTranspose):
    """LocalNet's 2x up-sampling: a 2 x 2, stride-2 transposed convolution (the same weights,
    ``kernel (2, 2, out, in)`` and ``bias``) computed as a 1 x 1 convolution to ``4 out``
    channels and DEPTH_TO_SPACE: the same sums (the 2 x 2 windows of a stride-2 transposed
    convolution do not overlap).  TFLite's TRANSPOSE_CONV takes its output shape as a constant
    of the traced size, so a graph with it cannot be re-planned for other tile sizes."""

    def __init__(self, filters, kernel_size=2, strides=2, **kwargs):
        super().__init__(filters, kernel_size, strides=strides, **kwargs)
        if tuple(self.kernel_size) != (2, 2) or tuple(self.strides) != (2, 2) or self.padding != "valid":
            raise ValueError("SubPixelUp is a 2 x 2, stride-2, 'valid' transposed convolution")

    def call(self, x):
        k = self.kernel  # (a, b, out, in): output pixel (2i + a, 2j + b) of input pixel (i, j)
        c_in, c_out = int(k.shape[3]), int(k.shape[2])
        w = tf.reshape(tf.transpose(k, [3, 0, 1, 2]), [1, 1, c_in, 4 * c_out])  # channel (2a + b) out + o
        y = tf.nn.depth_to_space(tf.nn.conv2d(x, w, 1, "VALID"), 2)
        return y + self.bias if self.use_bias else y


# --------------------------------------------------------------------------- GlobalNet
@keras.utils.register_keras_serializable(package=PACKAGE)
class MinSizePad(keras.layers.Layer):
    """Zero-pads the bottom/right of frames smaller than ``min_side`` up to it (PAD; a no-op
    otherwise), so GlobalNet's valid strided convolutions and poolings leave a pixel to average."""

    def __init__(self, min_side: int, **kwargs):
        super().__init__(**kwargs)
        self.min_side = int(min_side)

    def call(self, x):
        shape = tf.shape(x)
        ph, pw = tf.maximum(self.min_side - shape[1], 0), tf.maximum(self.min_side - shape[2], 0)
        y = tf.pad(x, [[0, 0], [0, ph], [0, pw], [0, 0]])
        return _keep_channels(y, x)

    def compute_output_shape(self, input_shape):
        b, h, w, c = tf.TensorShape(input_shape).as_list()
        grow = lambda d: None if d is None else max(d, self.min_side)  # noqa: E731
        return tf.TensorShape([b, grow(h), grow(w), c])

    def get_config(self):
        return {**super().get_config(), "min_side": self.min_side}


@keras.utils.register_keras_serializable(package=PACKAGE)
class StageEmbedding(keras.layers.Layer):
    """``z -> [z + elu(onehot(s) K + b) for s in stages]``: the authors' ``fc_index`` Linear on the
    stage's one-hot vector, i.e. a learned vector per stage (stages x C kernel, C bias)."""

    def __init__(self, stages: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.stages = int(stages)

    def build(self, input_shape):
        c = int(input_shape[-1])
        self.kernel = self.add_weight("kernel", (self.stages, c), initializer="glorot_uniform")
        self.bias = self.add_weight("bias", (c,), initializer="zeros")
        super().build(input_shape)

    def call(self, z):
        return [z + elu(self.kernel[s] + self.bias) for s in range(self.stages)]

    def compute_output_shape(self, input_shape):
        return [tf.TensorShape(input_shape)] * self.stages

    def get_config(self):
        return {**super().get_config(), "stages": self.stages}


#: monomials of [r, g, b, 1], upper triangle of the outer product in row order (the authors' triu)
MONOMIALS = tuple((i, j) for i in range(4) for j in range(i, 4))
TONE_PARAMS = 3 * len(MONOMIALS) + 9   # 39


def safe_pow(x, gamma, eps: float = 1e-12):
    """``x (|x| + eps)^(gamma - 1)``: the authors' ``sign(x) (|x| + eps)^gamma`` without SIGN (not in
    NNAPI 1.2); equal up to a relative ``eps / |x|``."""
    return x * tf.pow(tf.abs(x) + eps, gamma - 1.0)


@keras.utils.register_keras_serializable(package=PACKAGE)
class ToneMapping(keras.layers.Layer):
    """``[x (B, H, W, 3), w (B, 39)] -> y``, one GlobalNet stage.

    Quadratic colour transform ``x + Q(x)``: 30 weights, ``w[3 k + c]`` multiplies monomial
    ``k`` of :data:`MONOMIALS` for output channel ``c``.  Then the extended gamma per channel
    ``y = ((t1 x + t0)^g - t0^g) / ((t1 + t0)^g - t0^g)``, ``g = exp(w[30 + c])``,
    ``t0 = |w[33 + c]|``, ``t1 = exp(w[36 + c])`` (f(0) = 0, f(1) = 1).

    Not in the authors' code, for finite outputs whatever the weights (an
    untrained or diverging network): the quadratic's output is clipped to
    [-1, 2], ``log g`` to [-2.5, 2.5], ``log t1`` to [-5, 5] and ``t0`` to at
    most 10 (without them ``t^g`` overflows float32 for ``g`` ~ e^8); the
    bounds are far from the identity curve (g = 1, t0 = 0, t1 = 1) training starts at.
    """

    CLIP_COLOUR = (-1.0, 2.0)
    CLIP_LOG_GAMMA = (-2.5, 2.5)
    CLIP_LOG_T1 = (-5.0, 5.0)
    MAX_T0 = 10.0

    def call(self, inputs):
        x, w = inputs
        v = [x[..., 0:1], x[..., 1:2], x[..., 2:3]]
        terms = []
        for i, j in MONOMIALS[:-1]:  # each monomial three times: channel 3 k + c
            m = v[i] * v[j] if j < 3 else v[i]  # (i, 3): the degree-1 monomial x_i
            terms += [m, m, m]
        n = len(terms)  # 27; the last monomial, (3, 3), is the constant 1: its weights are a per-frame bias
        products = tf.concat(terms, axis=-1) * tf.reshape(w[:, :n], [-1, 1, 1, n])
        kernel = np.zeros((1, 1, n, 3), np.float32)
        for k in range(n // 3):
            for c in range(3):
                kernel[0, 0, 3 * k + c, c] = 1.0
        # added, not a constant-1 image in the concat: an export would hold that image at its traced size
        bias = tf.reshape(w[:, n:n + 3], [-1, 1, 1, 3])
        y = tf.clip_by_value(x + tf.nn.conv2d(products, tf.constant(kernel), 1, "VALID") + bias, *self.CLIP_COLOUR)
        gamma = tf.exp(tf.clip_by_value(_per_frame(w, 30, 33), *self.CLIP_LOG_GAMMA))
        t0 = tf.minimum(tf.abs(_per_frame(w, 33, 36)), self.MAX_T0)
        t1 = tf.exp(tf.clip_by_value(_per_frame(w, 36, 39), *self.CLIP_LOG_T1))
        s0 = safe_pow(t0, gamma)
        s1 = safe_pow(t1 + t0, gamma) - s0
        return (safe_pow(t1 * y + t0, gamma) - s0) / s1

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape[0])
