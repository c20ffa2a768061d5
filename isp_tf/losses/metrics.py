"""Image-quality metrics and the per-example losses built from them.

Every function takes ``y_true, y_pred`` of shape (B, H, W, C) with values in
``[0, max_val]`` and returns one value per image, shape (B,), so that a
training loop can average over the *global* batch under ``tf.distribute``.

Images are clipped into ``[0, max_val]`` before SSIM, MS-SSIM and PSNR are
computed: a network output slightly outside the range (MicroISP's
``tanh * 0.58 + 0.5`` reaches -0.08 and 1.08) is what a user would see after
saving it as an 8-bit PNG.

MS-SSIM is computed here rather than with ``tf.image.ssim_multiscale``: TF
clamps negative contrast-structure terms to 0 with a ReLU before raising them
to fractional powers, so the forward value stays finite but the gradient of
``0 ** 0.04`` is infinite and the whole gradient becomes NaN as soon as any
scale is anti-correlated (PyNET users met this as "MS-SSIM NaN").  We clamp
the terms to ``[_MS_SSIM_FLOOR, 1]`` instead; on images whose terms are all
positive the value equals ``tf.image.ssim_multiscale`` (tested).
"""
from __future__ import annotations

from isp_tf._keras import tf
from isp_tf.errors import InputShapeError

#: The five scale weights of Wang et al. 2003, as ``tf.image.ssim_multiscale`` uses.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_MS_SSIM_FLOOR = 1e-6
_PSNR_MSE_FLOOR = 1e-10  # identical images give 100 dB instead of +inf


def _pair(y_true, y_pred, name):
    y_true = tf.convert_to_tensor(y_true, tf.float32)
    y_pred = tf.convert_to_tensor(y_pred, tf.float32)
    if y_true.shape.rank != 4 or y_pred.shape.rank != 4:
        raise InputShapeError(
            f"{name}: expected two image batches (B, H, W, C), got shapes "
            f"{y_true.shape.as_list() if y_true.shape.rank is not None else '?'} and "
            f"{y_pred.shape.as_list() if y_pred.shape.rank is not None else '?'}")
    if not y_true.shape.is_compatible_with(y_pred.shape):
        raise InputShapeError(
            f"{name}: target and prediction differ in shape: "
            f"{y_true.shape.as_list()} vs {y_pred.shape.as_list()}")
    return y_true, y_pred


def _min_side(image):
    sides = [d for d in image.shape[1:3] if d is not None]
    return min(sides) if len(sides) == 2 else None


def mse(y_true, y_pred):
    """Mean squared error per image, shape (B,)."""
    y_true, y_pred = _pair(y_true, y_pred, "mse")
    return tf.reduce_mean(tf.square(y_true - y_pred), axis=[1, 2, 3])


def l1(y_true, y_pred):
    """Mean absolute error per image, shape (B,)."""
    y_true, y_pred = _pair(y_true, y_pred, "l1")
    return tf.reduce_mean(tf.abs(y_true - y_pred), axis=[1, 2, 3])


def psnr(y_true, y_pred, max_val=1.0):
    """PSNR in dB per image of the clipped prediction, shape (B,).

    The MSE is floored at 1e-10 (``max_val=1``: 100 dB) so identical images give
    a finite number that still averages sensibly over a data set.
    """
    y_true, y_pred = _pair(y_true, y_pred, "psnr")
    y_pred = tf.clip_by_value(y_pred, 0.0, max_val)
    err = tf.maximum(tf.reduce_mean(tf.square(y_true - y_pred), axis=[1, 2, 3]),
                     _PSNR_MSE_FLOOR * max_val ** 2)
    return 10.0 * tf.math.log(max_val ** 2 / err) / tf.math.log(10.0)


def _check_side(image, need, what, hint):
    side = _min_side(image)
    if side is not None and side < need:
        raise InputShapeError(
            f"{what} needs images of at least {need}x{need} pixels; got "
            f"{image.shape[1]}x{image.shape[2]}. {hint}")


def ssim(y_true, y_pred, max_val=1.0, filter_size=11):
    """Structural similarity per image (``tf.image.ssim`` on clipped inputs), shape (B,).

    Values lie in [-1, 1]; the loss ``1 - ssim`` is finite and has finite
    gradients everywhere, including for anti-correlated images.
    Sides smaller than ``filter_size`` raise :class:`InputShapeError`.
    """
    y_true, y_pred = _pair(y_true, y_pred, "ssim")
    _check_side(y_true, filter_size, f"SSIM with an {filter_size}x{filter_size} window",
                "Use larger patches or a smaller filter_size.")
    y_true = tf.clip_by_value(y_true, 0.0, max_val)
    y_pred = tf.clip_by_value(y_pred, 0.0, max_val)
    return tf.image.ssim(y_true, y_pred, max_val, filter_size=filter_size)


def ms_ssim_min_side(num_scales=len(MS_SSIM_WEIGHTS), filter_size=11):
    """Smallest image side MS-SSIM accepts: the coarsest scale must still hold one window."""
    return (filter_size - 1) * 2 ** (num_scales - 1) + 1


def _gaussian_window(size, sigma):
    coords = tf.range(size, dtype=tf.float32) - (size - 1) / 2.0
    g = tf.exp(-0.5 * tf.square(coords) / sigma ** 2)
    g = g / tf.reduce_sum(g)
    return tf.tensordot(g, g, axes=0)[:, :, tf.newaxis, tf.newaxis]  # (size, size, 1, 1)


def _ssim_and_cs(x, y, window, max_val, k1, k2):
    """Per-channel mean SSIM and contrast-structure term, each (B, C)."""
    channels = tf.shape(x)[-1]
    kernel = tf.tile(window, [1, 1, channels, 1])

    def blur(z):
        return tf.nn.depthwise_conv2d(z, kernel, strides=[1, 1, 1, 1], padding="VALID")

    c1 = (k1 * max_val) ** 2
    c2 = (k2 * max_val) ** 2
    mu_x, mu_y = blur(x), blur(y)
    num0 = 2.0 * mu_x * mu_y
    den0 = tf.square(mu_x) + tf.square(mu_y)
    luminance = (num0 + c1) / (den0 + c1)
    cs = (2.0 * blur(x * y) - num0 + c2) / (blur(tf.square(x) + tf.square(y)) - den0 + c2)
    return (tf.reduce_mean(luminance * cs, axis=[1, 2]), tf.reduce_mean(cs, axis=[1, 2]))


def _halve(image):
    """2x2 average pooling; odd sides are first padded symmetrically (as TF does)."""
    shape = tf.shape(image)
    pad_h, pad_w = shape[1] % 2, shape[2] % 2
    image = tf.pad(image, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], mode="SYMMETRIC")
    return tf.nn.avg_pool2d(image, ksize=2, strides=2, padding="VALID")


def ms_ssim(y_true, y_pred, max_val=1.0, power_factors=MS_SSIM_WEIGHTS, filter_size=11,
            filter_sigma=1.5, k1=0.01, k2=0.03):
    """Multi-scale SSIM per image, shape (B,), in [0, 1]; never NaN, nor its gradient.

    Same algorithm and defaults as ``tf.image.ssim_multiscale`` except that each
    scale's term is clamped to ``[1e-6, 1]`` (see the module docstring).  With
    the 5 default scales both sides must be at least 161 px
    (:func:`ms_ssim_min_side`); smaller images raise :class:`InputShapeError`
    -- pass fewer ``power_factors`` (e.g. the first three weights need 41 px) or
    use :func:`ssim`.
    """
    y_true, y_pred = _pair(y_true, y_pred, "ms_ssim")
    need = ms_ssim_min_side(len(power_factors), filter_size)
    _check_side(y_true, need, f"MS-SSIM with {len(power_factors)} scales",
                "Use fewer power_factors (each one fewer halves the requirement) or ssim().")
    x = tf.clip_by_value(y_true, 0.0, max_val)
    y = tf.clip_by_value(y_pred, 0.0, max_val)
    window = _gaussian_window(filter_size, filter_sigma)
    terms = []
    for scale in range(len(power_factors)):
        if scale > 0:
            x, y = _halve(x), _halve(y)
        ssim_c, cs_c = _ssim_and_cs(x, y, window, max_val, k1, k2)
        terms.append(ssim_c if scale == len(power_factors) - 1 else cs_c)
    terms = tf.clip_by_value(tf.stack(terms, axis=-1), _MS_SSIM_FLOOR, 1.0)  # (B, C, S)
    value = tf.reduce_prod(tf.pow(terms, tf.constant(power_factors, tf.float32)), axis=-1)
    return tf.reduce_mean(value, axis=-1)
