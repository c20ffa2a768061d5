"""The MicroISP authors' TF1 checkpoint (github.com/aiff22/MicroISP, ``pretrained_weights/``).

:func:`load_official_checkpoint` maps every variable of ``MicroISP.ckpt`` onto a
published-config model built by :func:`isp_tf.models.microisp.build_microisp`
and permutes the first convolutions' input channels, so the loaded model takes
our ``[R, G1, G2, B]`` packing; :func:`official_scaling` rescales our
normalised packing to the authors' ``raw / 1020`` intensities.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np

from isp_tf._keras import keras, tf
from isp_tf.errors import MissingFileError, WeightsMismatchError
from isp_tf.layers import GlobalStatsLayer
from isp_tf.models.microisp.model import BRANCHES, SKIP_EVERY

__all__ = ["OFFICIAL_CHANNEL_ORDER", "load_official_checkpoint", "official_scaling"]

#: official input channel ``c`` is our packed channel ``OFFICIAL_CHANNEL_ORDER[c]``:
#: ``packed[..., OFFICIAL_CHANNEL_ORDER]`` is what the authors' graph (and their
#: .tflite) expects, ``[B, Gb, R, Gr]``.
OFFICIAL_CHANNEL_ORDER = (3, 1, 0, 2)


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
