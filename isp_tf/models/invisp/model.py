"""InvISP's graph (Xing, Qian, Chen, "Invertible Image Signal Processing", CVPR 2021).

Top to bottom, as the paper's figure::

    linear camera RGB (H, W, 3)   demosaiced, black-subtracted, white-balanced, in [0, 1]
      -> gamma  x ** (1 / 2.2)    (``GammaCurve``; the authors apply it to their RAW input)
      -> 8 x CouplingBlock        (``isp_tf.layers.invertible``: invertible 1x1 conv + affine coupling)
      -> sRGB (H, W, 3)

and the inverse, which shares every weight (:func:`build_inverse`)::

    sRGB -> the blocks backwards (each undone exactly) -> x ** 2.2 -> linear camera RGB

:func:`build_invisp` is the forward model (``ModelSpec.build``);
:func:`build_inverse` derives the inverse from a built forward model
(``Direction.derive``); :func:`flow_parts` finds the shared pieces in either,
:func:`log_det` gives the flow's log-determinant, and :func:`invisp_objective`
is the authors' two-term training loss (``ModelSpec.objective``).

Where we differ from the authors' code (yzxing87/Invertible-ISP), and why:

* The gamma curve is part of the model, not of the data: the model's input
  port is then truly linear RGB (``linear_rgb``) and the inverse returns
  linear RGB (x ** 2.2 after the flow), which is what a DNG needs.  The
  arithmetic is the authors' (their network sees ``raw ** (1/2.2)``).  The
  curve clips at 0 (``max(x, 0)``) so the inverse never raises a negative
  flow output to a fractional power.  ``gamma=None`` builds the flow alone.
* The RAW term of the loss is computed where the authors compute it, in the
  gamma domain (the flow's output before the inverse curve), see
  :func:`invisp_objective`.
* The JPEG simulated in training is :func:`isp_tf.layers.diffjpeg.diff_jpeg`
  (libjpeg's tables, scaling, padding and fancy upsampling) at quality 90,
  4:2:0, with cubic rounding; see :data:`JPEG_SETTINGS`.
* Everything the layers' docstring lists (float64 inverse 1x1 kernels,
  ``exp(-s)`` without NEG/DIV, untruncated Xavier init).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from isp_tf._keras import keras, tf
from isp_tf.errors import InputShapeError
from isp_tf.layers.diffjpeg import diff_jpeg
from isp_tf.layers.invertible import InvertibleSequence, invisp_blocks

__all__ = ["BLOCKS_NAME", "GAMMA_NAME", "GammaCurve", "JPEG_SETTINGS", "FlowParts", "build_inverse",
           "build_invisp", "flow_parts", "invisp_objective", "log_det"]

BLOCKS_NAME = "invisp_blocks"
GAMMA_NAME = "gamma"

#: The differentiable JPEG of the training loss.  Quality 90 as the authors.
#: 4:2:0 because that is what the codec we evaluate with (``tf.io.encode_jpeg``,
#: and most phone encoders) writes; the authors simulated 4:2:0 too (but saved
#: their test JPEGs at 4:2:2).  Cubic rounding: its forward value is the
#: closest of the differentiable roundings to the real codec and its gradient
#: is bounded and never of the wrong sign, where the authors' 9-term Fourier
#: series has gradients of the wrong sign on 47 % of the line (see
#: ``isp_tf.layers.diffjpeg``).  Fancy upsampling: libjpeg's decoder default.
JPEG_SETTINGS = {"quality": 90, "subsampling": "4:2:0", "rounding": "cubic", "upsampling": "fancy"}


@keras.utils.register_keras_serializable(package="isp_tf.invisp")
class GammaCurve(keras.layers.Layer):
    """``y = max(x, 0) ** (1 / gamma)``; ``call(y, inverse=True)``: ``max(y, 0) ** gamma``.

    Exported as MAXIMUM + POW (both NNAPI 1.2 at float32).  Exactly invertible
    on x >= 0 (linear RGB).  No weights.
    """

    def __init__(self, gamma: float = 2.2, **kwargs):
        super().__init__(**kwargs)
        if not gamma > 0:
            raise ValueError(f"gamma must be positive, got {gamma!r}")
        self.gamma = float(gamma)

    def call(self, x, inverse=False):
        exponent = self.gamma if inverse else 1.0 / self.gamma
        return tf.pow(tf.maximum(x, 0.0), exponent)

    def inverse(self, y):
        return self(y, inverse=True)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma}


def build_invisp(num_blocks: int = 8, growth: int = 32, clamp: float = 0.8,
                 gamma: Optional[float] = 2.2, seed: int = 0, input_shape=None,
                 name: str = "invisp"):
    """The forward model: linear camera RGB ``(B, H, W, 3)`` -> sRGB ``(B, H, W, 3)``.

    Args:
      num_blocks: invertible blocks (published: 8).
      growth: channels of each dense-subnet conv (published: 32).
      clamp: bound of the coupling's log-scale ``s`` (published: 0.8).
      gamma: the input curve ``x ** (1 / gamma)`` (the authors': 2.2), ``None`` for none.
      seed: seeds the 1x1 convs' QR initialisation and the subnets' kernels.
      input_shape: ``(H, W)`` or ``(H, W, 3)``; spatial dims open by default.
    """
    if int(num_blocks) != num_blocks or num_blocks < 1:
        raise ValueError(f"num_blocks must be a positive integer, got {num_blocks!r}")
    h, w = _spatial(input_shape)
    inputs = keras.Input(shape=(h, w, 3), name="linear_rgb")
    x = inputs
    if gamma:
        x = GammaCurve(gamma, name=GAMMA_NAME)(x)
    blocks = invisp_blocks(int(num_blocks), growth=int(growth), clamp=float(clamp), seed=int(seed),
                           name=BLOCKS_NAME)
    rgb = blocks(x)
    return keras.Model(inputs, rgb, name=name)


def _spatial(input_shape):
    if input_shape is None:
        return None, None
    shape = tuple(input_shape)
    if len(shape) == 3:
        if shape[-1] != 3:
            raise InputShapeError(f"InvISP takes 3-channel linear RGB, got input_shape {shape}")
        shape = shape[:2]
    if len(shape) != 2:
        raise InputShapeError(f"input_shape must be (H, W) or (H, W, 3), got {input_shape!r}")
    return shape


@dataclasses.dataclass
class FlowParts:
    """The shared pieces of an InvISP model: the blocks and the gamma curve (or ``None``)."""

    blocks: InvertibleSequence
    gamma: Optional[GammaCurve]

    def encode(self, linear):
        """Linear RGB -> the flow's input domain (the gamma curve)."""
        return linear if self.gamma is None else self.gamma(linear)

    def decode(self, flow_value):
        """The flow's input domain -> linear RGB (the inverse curve)."""
        return flow_value if self.gamma is None else self.gamma(flow_value, inverse=True)


def flow_parts(model) -> FlowParts:
    """:class:`FlowParts` of a forward (or inverse) InvISP model."""
    try:
        blocks = model.get_layer(BLOCKS_NAME)
    except ValueError:
        raise InputShapeError(f"model {model.name!r} is not an InvISP model (no layer "
                              f"{BLOCKS_NAME!r}; a QAT-wrapped model cannot be inverted)") from None
    try:
        gamma = model.get_layer(GAMMA_NAME)
    except ValueError:
        gamma = None
    return FlowParts(blocks, gamma)


def build_inverse(forward_model, name: Optional[str] = None):
    """The inverse model, sRGB -> linear camera RGB, sharing ``forward_model``'s layers.

    ``Direction.derive`` of the ``inverse`` direction: training or loading
    weights into the forward model changes the inverse too.
    """
    parts = flow_parts(forward_model)
    h, w = forward_model.input_shape[1:3]
    srgb = keras.Input(shape=(h, w, 3), name="srgb")
    linear = parts.decode(parts.blocks(srgb, inverse=True))
    return keras.Model(srgb, linear, name=name or f"{forward_model.name}_inverse")


def log_det(model, linear_rgb, inverse: bool = False):
    """Log |det J| per image ``(B,)`` of the flow (the blocks) at the given input.

    ``inverse=False``: ``linear_rgb`` is the forward model's input and the
    value is that of the forward flow at ``gamma(linear_rgb)``;
    ``inverse=True``: ``linear_rgb`` is taken as an sRGB image and the value
    is that of the inverse flow there.  The gamma curve's own term (infinite
    at black) is left out.
    """
    parts = flow_parts(model)
    x = tf.convert_to_tensor(linear_rgb, tf.float32)
    if inverse:
        return parts.blocks.inverse_and_log_det(x)[1]
    return parts.blocks.forward_and_log_det(parts.encode(x))[1]


def invisp_objective(model, x, y, image_loss):
    """The authors' loss: ``L1(rgb_pred, rgb) + L1(inverse(JPEG(rgb_pred)), raw)``.

    ``ModelSpec.objective``: returns per-example terms (the recipe weights
    them) and the forward prediction.  ``image_loss`` gives the sRGB terms the
    recipe names (``l1``); ``raw_l1`` is the mean absolute error between the
    inverse flow of the differentiably JPEG-compressed prediction
    (:data:`JPEG_SETTINGS`, prediction clipped to [0, 1] first, as an encoder
    sees it) and the flow's input ``gamma(x)`` -- the authors' RAW term, in
    their domain.  Gradients reach the weights through both passes.
    """
    parts = flow_parts(model)
    rgb = model(x, training=True)
    terms = dict(image_loss.terms(y, rgb)) if image_loss is not None else {}
    jpeg = diff_jpeg(tf.clip_by_value(rgb, 0.0, 1.0), **JPEG_SETTINGS)
    recovered = parts.blocks(jpeg, inverse=True)
    target = parts.encode(tf.convert_to_tensor(x))
    terms["raw_l1"] = tf.reduce_mean(tf.abs(recovered - target), axis=[1, 2, 3])
    return terms, rgb
