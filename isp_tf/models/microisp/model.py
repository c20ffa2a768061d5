"""MicroISP (Ignatov et al., "MicroISP: Processing 32MP Photos on Mobile
Devices with Deep Learning", ECCV 2022 workshops), in Keras 2.

Packed Bayer (h, w, 4) in, sRGB (2h, 2w, 3) out.  Two cascaded stages of three
independent branches, one branch per output colour; branch ``c`` of stage 2
refines the 4-channel output of branch ``c`` of stage 1::

    packed (h, w, 4) ──┬─ stage-1 branch R ── stage-2 branch R ── DtS ─┐
                       ├─ stage-1 branch G ── stage-2 branch G ── DtS ─┼─ concat -> (2h, 2w, 3)
                       └─ stage-1 branch B ── stage-2 branch B ── DtS ─┘

    branch:  7 x [Conv3x3 -> width, PReLU]      block 0, 3: keep as skip
                                                block 2, 5: x = attention(x) * x + skip
             Conv3x3 -> 4, tanh                 stage 1: to stage 2 (no depth-to-space)
                           tanh*0.58+0.5, DtS   stage 2: one colour at full resolution

With the published config (width 4, depth 7) a branch has 2,260 parameters and
the model 13,560.  Only NNAPI 1.2 ops: CONV_2D, PRELU, MUL, ADD, MEAN, RESHAPE,
LOGISTIC, TANH, DEPTH_TO_SPACE, CONCATENATION.

The attention's pooling chain needs at least 79 x 79 input pixels (see
:mod:`isp_tf.layers.attention`); smaller inputs raise
:class:`~isp_tf.errors.InputShapeError` when their size is known.

Where we differ from the authors' code (aiff22/MicroISP):

* The input is our canonical packing ``[R, G1, G2, B]`` (positions (0,0),
  (0,1), (1,0), (1,1) of an RGGB quad), black-subtracted and divided by
  ``white - black`` of the file.  The authors feed
  ``[B, Gb, R, Gr] = [(1,1), (0,1), (0,0), (1,0)]`` divided by ``4 * 255``
  without black subtraction (a shortcut for their 10-bit IMX586 sensor).
  :func:`isp_tf.models.microisp.official.load_official_checkpoint` permutes
  the input channels of the first convolutions so the official weights work on
  our channel order; ``official_scaling`` there gives the matching intensity scale.
* The authors' stage 1 also computes an unused depth-to-space output; we omit it.

The output range is ``0.5 +- 0.58``, as in the original; clip to [0, 1] for display.
"""
from __future__ import annotations

from isp_tf._keras import keras
from isp_tf.layers import ChannelAttention, DepthToSpace, ScaledTanh, channel_prelu

__all__ = ["BRANCHES", "SKIP_EVERY", "build_microisp"]

BRANCHES = ("r", "g", "b")  # one branch per output colour, in output order
SKIP_EVERY = 3  # block j keeps a skip when j % 3 == 0 and attends when j % 3 == 2



def _conv(filters, name):
    """3x3 SAME conv initialised as the original: N(0, 1e-3) kernel, zero bias."""
    return keras.layers.Conv2D(
        filters, 3, padding="same", name=name,
        kernel_initializer=keras.initializers.RandomNormal(stddev=1e-3), bias_initializer="zeros")


def _branch(x, prefix, width, depth):
    """``depth`` conv+PReLU blocks with attention-weighted residuals, then Conv3x3 -> 4."""
    skip = None
    for j in range(depth):
        x = _conv(width, f"{prefix}_conv{j}")(x)
        x = channel_prelu(f"{prefix}_prelu{j}")(x)
        if j % SKIP_EVERY == 0:
            skip = x
        elif j % SKIP_EVERY == SKIP_EVERY - 1:
            x = ChannelAttention(name=f"{prefix}_att{j}")(x)
            x = keras.layers.Add(name=f"{prefix}_res{j}")([x, skip])
    return _conv(4, f"{prefix}_conv_out")(x)


def build_microisp(width: int = 4, depth: int = 7, input_shape=None, name: str = "microisp"):
    """Build MicroISP.

    Args:
      width: channels per branch (published: 4).
      depth: conv blocks per branch (published: 7); must be at least 3 (one attention).
      input_shape: ``(h, w, 4)``; ``None`` leaves height and width free.
    """
    width, depth = int(width), int(depth)
    if width < 1 or depth < SKIP_EVERY:
        raise ValueError(f"MicroISP needs width >= 1 and depth >= {SKIP_EVERY}, got {width}, {depth}")
    h, w, c = tuple(input_shape) if input_shape is not None else (None, None, 4)
    if c != 4:
        raise ValueError(f"MicroISP takes packed Bayer with 4 channels, got input_shape {input_shape}")
    packed = keras.Input(shape=(h, w, 4), name="packed_bayer")

    # stage 1 ("generator-1"): three branches on the packed Bayer, tanh outputs
    stage1 = []
    for colour in BRANCHES:
        x = _branch(packed, f"s1_{colour}", width, depth)
        stage1.append(keras.layers.Activation("tanh", name=f"s1_{colour}_tanh")(x))

    # stage 2 ("generator-2"): branch c refines stage-1 branch c, then one colour at 2x
    colours = []
    for colour, x in zip(BRANCHES, stage1):
        x = _branch(x, f"s2_{colour}", width, depth)
        x = ScaledTanh(0.58, 0.5, name=f"s2_{colour}_tanh")(x)
        colours.append(DepthToSpace(2, name=f"s2_{colour}_to_space")(x))

    rgb = keras.layers.Concatenate(axis=-1, name="rgb")(colours)
    return keras.Model(packed, rgb, name=name)
