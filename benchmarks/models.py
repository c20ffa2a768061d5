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


from isp_tf.errors import ExportError, IspTfError

PRECISIONS = ("fp32", "fp16", "int8")


@dataclasses.dataclass(frozen=True)
class ModelChoice:
    """One ``--models`` entry: registry name, small preset or not, weights file, spec variant."""

    name: str
    small: bool = False
    weights: Optional[str] = None
    variant: Optional[str] = None  # a name in the model's ModelSpec.variants
    direction: Optional[str] = None  # a name in the model's ModelSpec.directions (None: forward)
    xnnpack_prelu: bool = False  # INT8 exports: PReLU as LEAKY_RELU/MUL/ADD for XNNPACK (a CPU-only graph)

    @property
    def label(self) -> str:
        return (self.name + ("-small" if self.small else "") + (f"-{self.variant}" if self.variant else "")
                + (f"-{self.direction}" if self.direction not in (None, "forward") else "")
                + ("-xnnpack-prelu" if self.xnnpack_prelu else ""))

    @property
    def spec_direction(self):
        """The :class:`~isp_tf.models.registry.Direction` this choice runs."""
        from isp_tf.models import get_spec

        return get_spec(self.name).direction(self.direction)


def parse_models(text: str, small: bool = False, weights: Sequence[str] = ()) -> Tuple[ModelChoice, ...]:
    """``"microisp,pynet:small"`` -> ModelChoices; ``weights``: ``NAME=PATH`` or one bare path.

    Options after the colon, joined by ``+``: ``small`` (the registry's tiny
    preset), any variant the model's spec declares (``ModelSpec.variants``,
    e.g. ``microisp:merged`` or ``microisp:small+merged``) and any of its
    directions (``ModelSpec.directions``, e.g. ``invisp:inverse``), and ``xnnpack-prelu``
    (INT8 exports with PReLUs XNNPACK runs in int8, a CPU-only graph; fp32/fp16 unchanged).
    """
    from isp_tf.models import available_models, get_spec

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
        name, _, options = entry.partition(":")
        name = name.lower()
        if name not in available_models():
            raise IspTfError(f"unknown model {name!r}; known models: {', '.join(available_models())}")
        options = {v for v in options.lower().split("+") if v}
        spec = get_spec(name)
        directions = options & {d.name for d in spec.directions}
        variants = options - {"small", "xnnpack-prelu"} - directions
        known = set(spec.variants)
        if variants - known or len(variants) > 1 or len(directions) > 1:
            raise IspTfError(f"{entry!r}: unknown option; use :small"
                             + "".join(f", :{v} or :small+{v}" for v in sorted(known))
                             + "".join(f", :{d.name}" for d in spec.directions[1:]) + ", :xnnpack-prelu"
                             + (f" ({name} has no variants)" if not known else ""))
        path = by_name.get(name)
        if path is not None and not pathlib.Path(path).is_file():
            from isp_tf.errors import MissingFileError

            raise MissingFileError(f"{path}: weights file not found (--weights {name}=PATH)")
        choices.append(ModelChoice(name, small or "small" in options, path, next(iter(variants), None),
                                   next(iter(directions), None), "xnnpack-prelu" in options))
    unknown = set(by_name) - {c.name for c in choices}
    if unknown:
        raise IspTfError(f"--weights names models not in --models: {', '.join(sorted(unknown))}")
    return tuple(choices)


def build(choice: ModelChoice, input_hw: Optional[Tuple[int, int]] = None, tiling: bool = False):
    """The Keras model (``tiling=True``: its tiling variant), with weights if given, as its variant."""
    from isp_tf.models import get_spec
    from isp_tf.models.weights import resolve_model

    spec = get_spec(choice.name)
    shape = None if input_hw is None else (int(input_hw[0]), int(input_hw[1]), spec.input_channels)
    if choice.direction not in (None, "forward") and shape:
        raise IspTfError(f"{choice.label}: a derived direction is built from the forward model at free size")
    model = resolve_model(choice.name, choice.weights, small=choice.small, fresh=choice.weights is None,
                          tiling=tiling, input_shape=shape).model
    if choice.variant:
        from isp_tf.layers.global_stats import tiling_mode

        with tiling_mode(tiling):
            model = spec.variant(choice.variant).transform(model)
    if choice.direction not in (None, "forward"):
        from isp_tf.models.registry import derive_direction

        model = derive_direction(spec, model, choice.direction)
    return model


def _export_dynamic(choice: ModelChoice, precision: str, path, io: str, calib_side: int = 256) -> None:
    """Export with free height and width (for models whose fixed-shape graph holds size constants,
    e.g. PyNET's TRANSPOSE_CONV output shapes): NNAPI rewrites, INT8 calibrated on
    ``calib_side``-px frames, the MEAN quantisation fix.  CPU benchmarking only (NNAPI needs fixed shapes)."""
    from isp_tf._keras import tf
    from isp_tf.export.calibration import DEFAULT_CALIBRATION, calibration_frames
    from isp_tf.export.conversion import convert_function, load_export_model
    from isp_tf.export.keras_rewrites import rewrite_for_nnapi
    from isp_tf.export.tflite_passes import align_mean_quantization
    from isp_tf.utils import atomic_write

    direction = choice.spec_direction
    loaded = load_export_model(choice.name, weights=choice.weights, small=choice.small, variant=choice.variant,
                               direction=choice.direction)
    model = rewrite_for_nnapi(loaded.model)[0] if not loaded.qat else loaded.model
    port = direction.image_input
    fn = tf.function(lambda x: model(x, training=False), input_signature=[
        tf.TensorSpec([1, None, None, port.channels], tf.float32, name=port.name)])
    representative = None
    if precision == "int8":
        side = max(calib_side, direction.size_multiple)
        frames = calibration_frames(DEFAULT_CALIBRATION, (side, side), 8, 0, progress=False,
                                    direction=direction)
        representative = lambda: iter(frames)  # noqa: E731
    data = convert_function(fn.get_concrete_function(), precision, io, representative, model)
    if precision == "int8":
        data, _ = align_mean_quantization(data)
    with atomic_write(path) as f:
        f.write(data)


def resizable(path, input_hw, step: int, output_scale: int = 2) -> bool:
    """Whether the ``.tflite`` can be planned at another size than ``input_hw`` (+2 ``step``)."""
    from ai_edge_litert import interpreter as litert

    interpreter = litert.Interpreter(
        model_path=str(path), experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    detail = interpreter.get_input_details()[0]
    h, w = int(input_hw[0]) + 2 * step, int(input_hw[1]) + 2 * step
    try:
        interpreter.resize_tensor_input(detail["index"], [1, h, w, int(detail["shape"][-1])], strict=False)
        interpreter.allocate_tensors()
    except (RuntimeError, ValueError):
        return False
    out = interpreter.get_output_details()[0]["shape"]
    return tuple(int(d) for d in out[1:3]) == (output_scale * h, output_scale * w)


def export(choice: ModelChoice, precision: str, path, input_hw, io: str = "float32",
           dynamic: bool = False) -> pathlib.Path:
    """Export ``choice`` with :func:`isp_tf.export.convert.export_tflite` to ``path``.

    The model is traced at the packed input ``input_hw`` (fixed shape, as
    deployed); the workers resize it to every other frame size, which is
    exact for models whose graph holds no size constants (checked by the
    worker: the output must be twice the input).  ``io="float32"`` keeps the
    INT8 model's input/output float with QUANTIZE/DEQUANTIZE inside the graph,
    where XNNPACK runs them multi-threaded (the phone export uses int8 I/O).
    Ops NNAPI 1.2 would refuse are allowed here (the CPU runs them); the parity
    check against Keras is skipped (the export tests cover it).  ``dynamic=True``
    exports with free height and width instead (:func:`_export_dynamic`).
    """
    from isp_tf.export.convert import export_tflite

    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    h, w = int(input_hw[0]), int(input_hw[1])
    io = io if precision == "int8" else "auto"
    if dynamic:
        _export_dynamic(choice, precision, path, io if precision == "int8" else "auto")
        return pathlib.Path(path)
    scale = choice.spec_direction.output_scale
    export_tflite(choice.name, str(path), precision=precision, input_size=f"{scale * h}x{scale * w}",
                  weights=choice.weights, small=choice.small, io=io, allow_cpu_fallback=True,
                  variant=choice.variant, direction=choice.direction,
                  xnnpack_prelu=choice.xnnpack_prelu and precision == "int8",
                  parity=False, progress=False, log=lambda *a, **k: None)
    return pathlib.Path(path)
