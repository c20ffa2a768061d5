"""The conversion step of an export: the model to export, traced at a fixed shape, converted.

:func:`load_export_model` resolves weights (:func:`isp_tf.models.weights.resolve_model`)
and applies the spec's direction and variant; :func:`fixed_function` traces it
at batch 1 and a fixed image size (NNAPI does not delegate open dimensions);
:func:`convert_function` runs the TFLite converter at a precision (see
:mod:`isp_tf.export.convert` for the precisions and I/O types).
"""
from __future__ import annotations

import warnings
from typing import Optional, Tuple

from isp_tf.errors import ExportError, InputShapeError, IspTfError

__all__ = ["IO_TYPES", "PRECISIONS", "convert_function", "fixed_function", "load_export_model", "resolve_io"]

PRECISIONS = ("fp32", "fp16", "int8")
IO_TYPES = ("auto", "float32", "uint8", "int8")


def load_export_model(name: str, weights: Optional[str] = None, small: bool = False,
                      seed: int = 0, config: Optional[dict] = None, variant: Optional[str] = None,
                      direction: Optional[str] = None):
    """The model to export: :func:`isp_tf.models.weights.resolve_model` (a weights file
    of ``name``, its shipped weights, or freshly initialised with ``seed`` at the
    ``small`` / ``config`` preset), then the spec's ``direction`` and ``variant``."""
    from isp_tf.models import get_spec
    from isp_tf.models.registry import derive_direction
    from isp_tf.models.weights import resolve_model

    spec = get_spec(name)
    loaded = resolve_model(spec.name, weights, small=small, config=config, fresh=True, seed=seed)
    if direction not in (None, "forward"):
        if loaded.qat:
            raise ExportError(f"{weights}: QAT weights export the forward direction only")
        loaded.model = derive_direction(spec, loaded.model, direction)
    if variant is not None:
        if loaded.qat:
            raise ExportError(f"{weights}: variant {variant!r} cannot be applied to QAT weights")
        loaded.model = spec.variant(variant).transform(loaded.model)
    return loaded


def fixed_function(model, input_hw: Tuple[int, int]):
    """A ``tf.function`` of ``model`` in inference mode at batch 1 and image input ``(h, w)``.

    The first model input is the image (``(1, h, w, C)``); further inputs
    (per-frame vectors) keep their own static shapes.
    """
    from isp_tf._keras import keras, tf

    h, w = input_hw
    specs = []
    for k, tensor in enumerate(model.inputs):
        shape = [1, h, w, int(tensor.shape[-1])] if k == 0 else [1] + [int(d) for d in tensor.shape[1:]]
        name = tensor.name.split(":")[0] if k else (model.input_names[0] if hasattr(model, "input_names")
                                                    else "image")
        specs.append(tf.TensorSpec(shape, tf.float32, name=name))
    try:  # a symbolic call first: the model's own shape errors surface unwrapped
        symbolic = [keras.Input(batch_shape=spec.shape) for spec in specs]
        model(symbolic if len(symbolic) > 1 else symbolic[0], training=False)
    except IspTfError as exc:
        raise InputShapeError(f"{model.name} cannot take an input of {h}x{w}: "
                              f"{_own_message(exc)}") from None
    except Exception:  # noqa: BLE001 - some models only trace inside tf.function
        pass
    if len(specs) == 1:
        fn = tf.function(lambda x: model(x, training=False), input_signature=specs)
    else:
        fn = tf.function(lambda *xs: model(list(xs), training=False), input_signature=specs)
    try:
        return fn.get_concrete_function()
    except Exception as exc:  # tracing wraps the model's own errors (StagingError...)
        raise InputShapeError(f"{model.name} cannot be traced at an input of {h}x{w}: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None


def _own_message(exc) -> str:
    """An isp_tf error's message without Keras's "Exception encountered when calling layer" frame."""
    lines = [line.strip() for line in str(exc).splitlines()]
    own = [line for line in lines if line and not line.startswith(("Exception encountered", "Call arg", "•"))]
    return " ".join(own) if own else str(exc)


def resolve_io(precision: str, io: str) -> str:
    """The model I/O type: ``auto`` is float32 for fp32/fp16 and int8 for int8."""
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if io not in IO_TYPES:
        raise ExportError(f"unknown --io {io!r}; choose one of {', '.join(IO_TYPES)}")
    if io == "auto":
        return "int8" if precision == "int8" else "float32"
    if precision != "int8" and io != "float32":
        raise ExportError(f"--io {io} needs --precision int8 ({precision} models have float32 I/O)")
    return io


def convert_function(concrete, precision: str, io: str = "auto", representative=None,
                     trackable=None) -> bytes:
    """Convert a fixed-shape concrete function at ``precision`` (see module docstring)."""
    from isp_tf._keras import tf

    io = resolve_io(precision, io)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([concrete], trackable)
    # Convert the frozen function directly: lowering to a SavedModel first would
    # re-trace every Keras layer (about 2/3 of the conversion time, same result).
    conv.experimental_lower_to_saved_model = False
    if precision == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if representative is not None:
            conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = getattr(tf, io)
        conv.inference_output_type = getattr(tf, io)
    try:
        with warnings.catch_warnings():  # "Statistics for quantized inputs were expected": int8 I/O
            warnings.simplefilter("ignore", UserWarning)
            return bytes(conv.convert())
    except Exception as exc:  # the converter raises a variety of internal errors
        raise ExportError(f"TFLite conversion at {precision} failed: {str(exc).splitlines()[0]}") from exc
