"""Build the registry's models and turn them into the ``.tflite`` files the workers time.

Runs in the parent process (it imports TensorFlow; the workers never do).
Conversion is :func:`isp_tf.export.convert.export_tflite`, the code path of
``export/export_to_tflite.py``: NNAPI rewrites, fixed shapes, INT8 calibrated
on the data pipeline's synthetic frames, the MEAN quantisation fix.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from isp_tf.errors import ExportError, IspTfError

PRECISIONS = ("fp32", "fp16", "int8")


@dataclasses.dataclass(frozen=True)
class ModelChoice:
    """One ``--models`` entry: registry name, small variant or not, weights file."""

    name: str
    small: bool = False
    weights: Optional[str] = None
    merged: bool = False  # MicroISP only: branches merged into 12-channel convs (benchmarks.merged)

    @property
    def label(self) -> str:
        return self.name + ("-small" if self.small else "") + ("-merged" if self.merged else "")


def parse_models(text: str, small: bool = False, weights: Sequence[str] = ()) -> Tuple[ModelChoice, ...]:
    """``"microisp,pynet:small"`` -> ModelChoices; ``weights``: ``NAME=PATH`` or one bare path.

    Variants after the colon, joined by ``+``: ``small`` (the registry's tiny
    config) and, for MicroISP, ``merged`` (:mod:`benchmarks.merged`), e.g.
    ``microisp:merged`` or ``microisp:small+merged``.
    """
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
        variants = {v for v in variant.lower().split("+") if v}
        if variants - {"small", "merged"}:
            raise IspTfError(f"{entry!r}: unknown variant; use :small, :merged or :small+merged")
        if "merged" in variants and name != "microisp":
            raise IspTfError(f"{entry!r}: only microisp has a merged variant")
        path = by_name.get(name)
        if path is not None and not pathlib.Path(path).is_file():
            from isp_tf.errors import MissingFileError

            raise MissingFileError(f"{path}: weights file not found (--weights {name}=PATH)")
        choices.append(ModelChoice(name, small or "small" in variants, path, "merged" in variants))
    unknown = set(by_name) - {c.name for c in choices}
    if unknown:
        raise IspTfError(f"--weights names models not in --models: {', '.join(sorted(unknown))}")
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
        if choice.merged:
            from benchmarks.merged import merge_branches

            model = merge_branches(model)
    return model


def _export_merged(choice: ModelChoice, precision: str, path, input_hw, io: str) -> None:
    """The merged MicroISP through the export module's steps (fixed shape, calibration, MEAN fix)."""
    from benchmarks.merged import merge_branches
    from isp_tf.export.convert import (DEFAULT_CALIBRATION, calibration_frames, convert_function,
                                       fixed_function, load_export_model)
    from isp_tf.export.rewrites import align_mean_quantization
    from isp_tf.utils import atomic_write

    loaded = load_export_model(choice.name, weights=choice.weights, small=choice.small)
    model = merge_branches(loaded.model)
    concrete = fixed_function(model, input_hw)
    representative = None
    if precision == "int8":
        frames = calibration_frames(DEFAULT_CALIBRATION, input_hw, 8, 0, progress=False)
        representative = lambda: ([f] for f in frames)  # noqa: E731
    data = convert_function(concrete, precision, io, representative, model)
    if precision == "int8":
        data, _ = align_mean_quantization(data)
    with atomic_write(path) as f:
        f.write(data)


def export(choice: ModelChoice, precision: str, path, input_hw, io: str = "float32") -> pathlib.Path:
    """Export ``choice`` with :func:`isp_tf.export.convert.export_tflite` to ``path``.

    The model is traced at the packed input ``input_hw`` (fixed shape, as
    deployed); the workers resize it to every other frame size, which is
    exact for models whose graph holds no size constants (checked by the
    worker: the output must be twice the input).  ``io="float32"`` keeps the
    INT8 model's input/output float with QUANTIZE/DEQUANTIZE inside the graph,
    where XNNPACK runs them multi-threaded (the phone export uses int8 I/O).
    Ops NNAPI 1.2 would refuse are allowed here (the CPU runs them); the parity
    check against Keras is skipped (the export tests cover it).
    """
    from isp_tf.export.convert import export_tflite

    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    h, w = int(input_hw[0]), int(input_hw[1])
    io = io if precision == "int8" else "auto"
    if choice.merged:
        _export_merged(choice, precision, path, (h, w), io)
        return pathlib.Path(path)
    export_tflite(choice.name, str(path), precision=precision, input_size=f"{2 * h}x{2 * w}",
                  weights=choice.weights, small=choice.small, io=io, allow_cpu_fallback=True,
                  parity=False, progress=False, log=lambda *a, **k: None)
    return pathlib.Path(path)
