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
  :func:`load_official_checkpoint` permutes the input channels of the first
  convolutions so the official weights work on our channel order;
  :func:`official_scaling` gives the matching intensity scale.
* The authors' stage 1 also computes an unused depth-to-space output; we omit it.

The output range is ``0.5 +- 0.58``, as in the original; clip to [0, 1] for display.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np

from isp_tf._keras import keras, tf
from isp_tf.errors import MissingFileError, WeightsMismatchError
from isp_tf.layers import ChannelAttention, DepthToSpace, GlobalStatsLayer, ScaledTanh, channel_prelu
from isp_tf.models.registry import ModelSpec

__all__ = ["OFFICIAL_CHANNEL_ORDER", "SPEC", "build_microisp", "load_official_checkpoint",
           "official_scaling"]

BRANCHES = ("r", "g", "b")  # one branch per output colour, in output order
SKIP_EVERY = 3  # block j keeps a skip when j % 3 == 0 and attends when j % 3 == 2

#: official input channel ``c`` is our packed channel ``OFFICIAL_CHANNEL_ORDER[c]``:
#: ``packed[..., OFFICIAL_CHANNEL_ORDER]`` is what the authors' graph (and their
#: .tflite) expects, ``[B, Gb, R, Gr]``.
OFFICIAL_CHANNEL_ORDER = (3, 1, 0, 2)


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


# --- the authors' checkpoint -------------------------------------------------
def official_scaling(packed, black_level: float = 64.0, white_level: float = 1023.0):
    """Rescale our normalised packing to the authors' ``raw / (4 * 255)`` input.

    The official weights were trained on 10-bit IMX586 data divided by 1020
    with the black level left in.  ``packed`` is ours, ``(raw - black) /
    (white - black)``; the result is ``raw / 1020`` (channel order unchanged).
    The defaults assume a 10-bit sensor with black level 64 (not verified on
    the authors' DNGs, which this repository does not have): pass the file's
    levels.
    """
    packed = np.asarray(packed, dtype=np.float32)
    return (packed * (white_level - black_level) + black_level) / (4.0 * 255.0)


def _prelu_name(index):
    return "p_re_lu" if index == 0 else f"p_re_lu_{index}"


def _layer(model, name):
    try:
        return model.get_layer(name)
    except ValueError:
        raise WeightsMismatchError(
            f"model {model.name!r} has no layer {name!r}: not a MicroISP model") from None


def _official_names(model, depth):
    """Yield ``(checkpoint name, keras variable, transform)`` in the authors' creation order.

    Their graph names the branch convolutions (``{branch}_w{stage}_{block}``)
    but not the attention convolutions (``Variable_{n}``, numbered per stage in
    creation order) nor the PReLUs (Keras ``p_re_lu_{n}``, numbered over both
    stages); the order below recreates that numbering.
    """
    prelu_index = 0
    for stage in (1, 2):
        scope = f"generator-{stage}"
        for i, colour in enumerate(BRANCHES):
            prefix = f"s{stage}_{colour}"
            for j in list(range(depth)) + ["out"]:
                conv = _layer(model, f"{prefix}_conv{j}" if j != "out" else f"{prefix}_conv_out")
                permute = stage == 1 and j == 0
                yield f"{scope}/{i}_w{stage}_{j}", conv.kernel, "permute_in" if permute else None
                yield f"{scope}/{i}_b{stage}_{j}", conv.bias, None
        variable_index = 0
        for colour in BRANCHES:
            prefix = f"s{stage}_{colour}"
            for j in range(depth):
                prelu = _layer(model, f"{prefix}_prelu{j}")
                yield f"{scope}/{_prelu_name(prelu_index)}/alpha", prelu.alpha, None
                prelu_index += 1
                if j % SKIP_EVERY != SKIP_EVERY - 1:
                    continue
                for sub in _layer(model, f"{prefix}_att{j}").ordered_sublayers:
                    if isinstance(sub, keras.layers.PReLU):
                        yield f"{scope}/{_prelu_name(prelu_index)}/alpha", sub.alpha, None
                        prelu_index += 1
                    else:
                        name = lambda n: "Variable" if n == 0 else f"Variable_{n}"  # noqa: E731
                        yield f"{scope}/{name(variable_index)}", sub.kernel, None
                        yield f"{scope}/{name(variable_index + 1)}", sub.bias, None
                        variable_index += 2


def load_official_checkpoint(model, path):
    """Load the authors' TF1 checkpoint (``MicroISP.ckpt``) into a published-config model.

    ``path`` is the checkpoint prefix (``.../MicroISP.ckpt``) or the folder
    holding it.  Every checkpoint variable is mapped to exactly one Keras
    variable and vice versa; any leftover or shape mismatch raises
    :class:`WeightsMismatchError`.  The first convolution of each stage-1 branch
    gets its input channels permuted (see :data:`OFFICIAL_CHANNEL_ORDER`), so the
    loaded model takes our ``[R, G1, G2, B]`` packing; for the authors' exact
    intensities feed :func:`official_scaling` of it.
    """
    path = pathlib.Path(path)
    prefix = path / "MicroISP.ckpt" if path.is_dir() else path
    if not pathlib.Path(f"{prefix}.index").exists():
        raise MissingFileError(
            f"MicroISP checkpoint {prefix}.index not found: put MicroISP.ckpt.index and "
            f"MicroISP.ckpt.data-00000-of-00001 from github.com/aiff22/MicroISP "
            f"(pretrained_weights/) there")
    reader = tf.train.load_checkpoint(os.fspath(prefix))
    shapes = reader.get_variable_to_shape_map()
    depth = sum(1 for layer in model.layers if layer.name.startswith("s1_r_conv")) - 1

    inverse = np.argsort(OFFICIAL_CHANNEL_ORDER)  # our channel q <- official channel inverse[q]
    assignments, seen = [], set()
    for name, variable, transform in _official_names(model, depth):
        if name not in shapes:
            raise WeightsMismatchError(
                f"{prefix}: no checkpoint variable {name!r} for {variable.name} of model "
                f"{model.name!r} (is the model the published width 4, depth 7 MicroISP?)")
        if list(shapes[name]) != list(variable.shape):
            raise WeightsMismatchError(
                f"{prefix}: {name} has shape {shapes[name]} but {variable.name} of model "
                f"{model.name!r} has {variable.shape.as_list()} (the official weights need "
                f"width 4, depth 7)")
        value = reader.get_tensor(name)
        if transform == "permute_in":
            value = value[:, :, inverse, :]
        assignments.append((variable, value))
        seen.add(name)
    unmapped_ckpt = sorted(set(shapes) - seen)
    mapped_ids = {id(v) for v, _ in assignments}
    tiling_state = {id(v) for layer in model.submodules if isinstance(layer, GlobalStatsLayer)
                    for v in layer.tiling_variables()}  # tiling_mode() models: not weights
    unmapped_model = [v.name for v in model.weights if id(v) not in mapped_ids | tiling_state]
    if unmapped_ckpt or unmapped_model:
        raise WeightsMismatchError(
            f"{prefix} does not match model {model.name!r}: checkpoint variables without a "
            f"place {unmapped_ckpt[:5]}, model variables without a value {unmapped_model[:5]}")
    for variable, value in assignments:
        variable.assign(value)
    return model


SPEC = ModelSpec(
    name="microisp",
    build=build_microisp,
    description="MicroISP (Ignatov et al. 2022): 13.5K-parameter 3-branch NNAPI-1.2 ISP",
    size_multiple=1,
    default_config={"width": 4, "depth": 7},
    small_config={"width": 4, "depth": 4},
    recipe="microisp.json",
    default_weights="microisp_reference.weights.h5",
)
