"""Build the registry's models and turn them into the ``.tflite`` files the workers time.

Runs in the parent process (it imports TensorFlow; the workers never do).
Conversion goes through :mod:`isp_tf.export` (the same code path as
``export/export_to_tflite.py``) when it provides ``convert_model``; until then
a plain ``TFLiteConverter`` is used with the same settings (FP32; INT8 with
int8 weights and activations, float input/output, calibrated on synthetic
frames).
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from isp_tf.errors import ExportError, IspTfError
from isp_tf.utils import atomic_write

PRECISIONS = ("fp32", "fp16", "int8")


@dataclasses.dataclass(frozen=True)
class ModelChoice:
    """One ``--models`` entry: registry name, small variant or not, weights file."""

    name: str
    small: bool = False
    weights: Optional[str] = None

    @property
    def label(self) -> str:
        return self.name + ("-small" if self.small else "")


def parse_models(text: str, small: bool = False, weights: Sequence[str] = ()) -> Tuple[ModelChoice, ...]:
    """``"microisp,pynet:small"`` -> ModelChoices; ``weights``: ``NAME=PATH`` or one bare path."""
    from isp_tf.models import available_models

    names = [t.strip() for t in str(text).split(",") if t.strip()]
    if not names:
        raise IspTfError("--models needs at least one model name")
    by_name: Dict[str, str] = {}
    for item in weights or ():
        if "=" in item:
            key, path = item.split("=", 1)
            by_name[key.strip().lower()] = path
        elif len(names) == 1:
            by_name[names[0].split(":")[0].lower()] = item
        else:
            raise IspTfError(f"--weights {item!r}: with several models write NAME=PATH")
    choices = []
    for entry in names:
        name, _, variant = entry.partition(":")
        name = name.lower()
        if name not in available_models():
            raise IspTfError(f"unknown model {name!r}; known models: {', '.join(available_models())}")
        if variant not in ("", "small"):
            raise IspTfError(f"{entry!r}: the only variant is ':small'")
        path = by_name.pop(name, None)
        if path is not None and not pathlib.Path(path).is_file():
            from isp_tf.errors import MissingFileError

            raise MissingFileError(f"{path}: weights file not found (--weights {name}=PATH)")
        choices.append(ModelChoice(name, small or variant == "small", path))
    if by_name:
        raise IspTfError(f"--weights names models not in --models: {', '.join(sorted(by_name))}")
    return tuple(choices)


def build(choice: ModelChoice, input_hw: Optional[Tuple[int, int]] = None, tiling: bool = False):
    """The Keras model (``tiling=True``: its tiling variant), with weights if given."""
    from isp_tf.layers.global_stats import tiling_mode
    from isp_tf.models import create_model

    config = {}
    if input_hw is not None:
        config["input_shape"] = (int(input_hw[0]), int(input_hw[1]), 4)
    with tiling_mode(tiling):
        model = create_model(choice.name, small=choice.small, **config)
    if choice.weights:
        from isp_tf.models.weights import load_weights_into

        load_weights_into(model, choice.weights, expected_name=choice.name)
    return model


def calibration_frames(count: int = 8, side: int = 176, seed: int = 1):
    """Synthetic packed frames for INT8 calibration (different seeds, one size)."""
    from benchmarks.scene import synthetic_packed

    return [synthetic_packed(side, side, seed + i)[np.newaxis] for i in range(count)]


def _convert_fallback(model, precision: str, calib_side: int) -> bytes:
    from isp_tf._keras import tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        frames = calibration_frames(side=calib_side)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([f] for f in frames)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def export(model, precision: str, path, calib_side: int = 176) -> pathlib.Path:
    """Convert ``model`` to ``path`` (atomically) at ``precision``; returns the path."""
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    path = pathlib.Path(path)
    try:
        from isp_tf import export as isp_export

        convert = getattr(isp_export, "convert_model", None)
    except ImportError:  # pragma: no cover
        convert = None
    if convert is not None:
        data = convert(model, precision=precision,
                       representative_data=calibration_frames(side=calib_side))
        data = data if isinstance(data, (bytes, bytearray)) else pathlib.Path(data).read_bytes()
    else:
        data = _convert_fallback(model, precision, calib_side)
    with atomic_write(path) as f:
        f.write(bytes(data))
    return path
