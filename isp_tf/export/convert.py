"""Keras model -> fixed-shape ``.tflite`` that NNAPI 1.2 delegates, with proof.

:func:`export_tflite` is what ``export/export_to_tflite.py`` runs::

    result = export_tflite("microisp", "microisp_fp32.tflite", precision="fp32",
                           input_size="fullhd")

Steps, one module each: build the model and pick its direction and variant
(:mod:`isp_tf.export.conversion`, weights through the one resolver), swap
layers NNAPI 1.2 would refuse (:mod:`isp_tf.export.keras_rewrites`), trace it at
a fixed input (:mod:`isp_tf.export.sizes`; NNAPI does not delegate open
dimensions), calibrate INT8 (:mod:`isp_tf.export.calibration`), convert, apply
the flatbuffer passes (:mod:`isp_tf.export.tflite_passes`), validate against
the API-29 rules (:mod:`isp_tf.export.nnapi`; refused ops fail the export unless
``allow_cpu_fallback``), run the file under ai-edge-litert on a real RAW photo
against the Keras model (:mod:`isp_tf.export.parity`), then write the
``.tflite`` and the JSON beside it (:mod:`isp_tf.export.metadata`; a tile
export also writes the manifest of exact tiled execution).

Sizes.  ``input_size`` names the *frame*, the photo in image pixels: the
output of a direction that renders RAW -> sRGB, the sRGB input of an inverse
direction (sRGB -> RAW; :mod:`isp_tf.export.sizes`): ``fullhd`` 1080 x 1920,
``12mp`` 3000 x 4000, ``32mp`` 4896 x 6528 (6528 x 4896 is the 4:3 frame of
the 32 MP phone sensors MicroISP was shown on, e.g. Samsung ISOCELL GD1), or
``HxW``.  The model input is the direction's image port at ``1/output_scale``
of that (MicroISP, PyNET, ParamISP's forward: packed Bayer ``(H/2, W/2, 4)``;
an inverse: the sRGB frame itself), its sides multiples of the direction's
``size_multiple`` (PyNET: 16, it halves the resolution four times).  ``tile=N`` exports an
``N x N`` tile model (frame pixels) for tiled execution instead.

Precisions.  ``fp32``; ``fp16`` (float16 weights, float32 compute and I/O: the
delegate folds the weights back to fp32 at API 29); ``int8`` full-integer,
calibrated on frames assembled from crops of the tf.data pipeline
(``calibration_data``, default ``synthetic:8``).  Integer model I/O:
``io='int8'`` (the default for int8) has no QUANTIZE/DEQUANTIZE op at all and is
the only choice every op of which NNAPI 1.2 delegates -- at API 29 the delegate
refuses QUANTIZE with int8 output (what ``io='uint8'`` and ``io='float32'``
insert at the input) and int8 DEQUANTIZE with a non-zero zero point (the
``float32`` output); it converts int8 model inputs/outputs to uint8 itself.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import List, Optional

from isp_tf.errors import ExportError
from isp_tf.export.calibration import DEFAULT_CALIBRATION, calibration_frames
from isp_tf.export.conversion import convert_function, fixed_function, load_export_model, resolve_io
from isp_tf.export.metadata import build_metadata, tile_info as describe_tile
from isp_tf.export.parity import run_parity
from isp_tf.export.sizes import export_sizes
from isp_tf.utils import atomic_write

__all__ = ["ExportResult", "export_tflite"]


@dataclasses.dataclass
@dataclasses.dataclass
class ExportResult:
    tflite_path: Optional[str]
    json_path: Optional[str]
    tflite: bytes
    metadata: dict
    report: object  # NNAPIReport

    @property
    def size_bytes(self) -> int:
        return len(self.tflite)


def export_tflite(model: str, out, *, precision: str = "fp32", input_size="fullhd",
                  tile: Optional[int] = None, weights: Optional[str] = None, small: bool = False,
                  config: Optional[dict] = None, keras_model=None, reference_weights: Optional[str] = None,
                  io: str = "auto", allow_cpu_fallback: bool = False,
                  calibration_data: Optional[str] = None, calibration_frames_count: int = 8,
                  parity_input: Optional[str] = None, parity: bool = True, seed: int = 0,
                  api_level: int = 29, progress: bool = True, log=print, variant: Optional[str] = None,
                  direction: Optional[str] = None, xnnpack_prelu: bool = False) -> ExportResult:
    """Export ``model`` to ``out`` (a ``.tflite`` path, or None to only return the bytes).

    ``direction`` (``ModelSpec.directions``, default ``forward``) and
    ``variant`` (``ModelSpec.variants``, e.g. MicroISP's ``merged``) pick the
    graph; both are recorded in the JSON.  ``xnnpack_prelu`` (INT8 for the CPU): per-channel PReLUs as
    LEAKY_RELU/MUL/ADD (:func:`~isp_tf.export.keras_rewrites.rewrite_prelu_for_xnnpack`), which XNNPACK
    runs in int8 where it refuses PRELU; recorded in the JSON (``cpu_rewrites``).

    ``keras_model``: export this in-memory model (built for ``model`` with
    ``config``) instead of loading one; ``weights`` and ``small`` are then unused.
    ``reference_weights``: a float weights file of the same model (e.g. the run a
    QAT fine-tune started from); parity then also reports PSNR against it.

    Raises :class:`ExportError` (bad precision, I/O, size, failed conversion or
    FP32 parity), :class:`InputShapeError`, :class:`WeightsMismatchError`, or
    :class:`NNAPIValidationError` when an op would stay on the CPU and
    ``allow_cpu_fallback`` is false (nothing is written then).
    """
    from isp_tf.export import nnapi as nnapi_mod
    from isp_tf.export.parity import load_parity_inputs
    from isp_tf.export.keras_rewrites import rewrite_for_nnapi, rewrite_prelu_for_xnnpack
    from isp_tf.export.tflite_passes import align_mean_quantization, fold_requantize, shorten_tensor_names
    from isp_tf.models import get_spec
    from isp_tf.models.weights import LoadedModel

    io = resolve_io(precision, io)
    spec = get_spec(model)
    spec.direction(direction)  # an unknown direction fails before anything is built
    if variant is not None:
        spec.variant(variant)
    frame_hw, input_hw = export_sizes(spec, input_size, tile, direction)
    if out is not None and not str(out).endswith(".tflite"):
        raise ExportError(f"--out {out}: the file name must end in .tflite")

    if keras_model is not None:
        qat = any(type(layer).__name__ in ("QuantizeLayer", "QuantizeWrapper", "QuantizeWrapperV2")
                  for layer in keras_model.layers)
        loaded = LoadedModel(keras_model, spec.name, dict(config or {}), weights, qat=qat)
    else:
        loaded = load_export_model(spec.name, weights=weights, small=small, seed=seed, config=config,
                                   variant=variant, direction=direction)
    per_frame = None
    if tile is not None and spec.split is not None and direction in (None, "forward") and precision != "int8":
        # whole-frame values that are not spatial means (GenISP's ConvWB/ConvCC): the tile model is the
        # spec's tileable part; the per-frame part goes into the tile manifest (isp_tf.tiling.manifest)
        per_frame, render = spec.split(loaded.model)
        loaded = LoadedModel(render, loaded.name, loaded.config, loaded.weights, loaded.qat)
        parity = False  # the tile model takes the per-frame values as one more input
    keras_model, swapped = rewrite_for_nnapi(loaded.model) if not loaded.qat else (loaded.model, [])
    if swapped:
        log(f"rewrote for NNAPI 1.2: {', '.join(swapped)}")
    cpu_rewrites: List[str] = []
    if xnnpack_prelu:
        if precision != "int8" or loaded.qat:
            raise ExportError("--xnnpack-prelu rewrites a post-training INT8 export's PReLUs for XNNPACK; "
                              f"not for {'a QAT model' if loaded.qat else precision}")
        keras_model, cpu_rewrites = rewrite_prelu_for_xnnpack(keras_model)
        log(f"PReLU as LEAKY_RELU/MUL/ADD for XNNPACK int8: {len(cpu_rewrites)} layers")
    concrete = fixed_function(keras_model, input_hw)
    if parity:  # read the photo first: a bad file fails before the slow conversion
        x, used = load_parity_inputs(parity_input, input_hw, spec.direction(direction))

    representative = None
    calib_spec = None
    if precision == "int8":
        calib_spec = calibration_data or DEFAULT_CALIBRATION
        frames = calibration_frames(calib_spec, input_hw, calibration_frames_count, seed, progress,
                                    direction=spec.direction(direction))
        representative = lambda: iter(frames)  # noqa: E731
    tflite = convert_function(concrete, precision, io, representative, keras_model)
    mean_fixed: List[int] = []
    requant_removed = 0
    if precision == "int8":
        tflite, requant_removed = fold_requantize(tflite)
        tflite, mean_fixed = align_mean_quantization(tflite)
    tflite = shorten_tensor_names(tflite)

    report = nnapi_mod.check_nnapi(tflite, api_level=api_level)
    if not report.ok and not allow_cpu_fallback:
        raise nnapi_mod.nnapi_error(report, f"{spec.name} {precision} export")

    parity_info = None
    if parity:
        reference = None
        if reference_weights is not None:
            reference = fixed_function(load_export_model(spec.name, weights=reference_weights,
                                                         direction=direction, variant=variant).model, input_hw)
        parity_info = run_parity(concrete, tflite, x, used, precision, loaded.qat, reference)

    tile_info = (describe_tile(spec, loaded, tile, input_hw, tflite, out, precision, per_frame=per_frame)
                 if tile is not None else None)
    metadata = build_metadata(tflite, spec, loaded, precision, io, frame_hw, input_hw, tile_info,
                              report, parity_info, calib_spec,
                              {"keras_layers": list(swapped), "mean_ops_aligned": len(mean_fixed),
                               "requantize_ops_folded": requant_removed}, direction=direction)
    metadata["direction"] = direction or "forward"
    metadata["cpu_rewrites"] = {"xnnpack_prelu": cpu_rewrites} if xnnpack_prelu else {}
    metadata["variant"] = variant if variant is None else {
        "name": variant, "nnapi": spec.variant(variant).nnapi, "about": spec.variant(variant).description}
    tflite_path = json_path = None
    if out is not None:
        tflite_path = str(out)
        json_path = str(pathlib.Path(out).with_suffix(".json"))
        with atomic_write(tflite_path) as f:
            f.write(tflite)
        with atomic_write(json_path, "w") as f:
            json.dump(metadata, f, indent=2)
            f.write("\n")
    return ExportResult(tflite_path, json_path, tflite, metadata, report)
