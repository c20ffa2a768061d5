"""Keras model -> fixed-shape ``.tflite`` that NNAPI 1.2 delegates, with proof.

:func:`export_tflite` is what ``export/export_to_tflite.py`` runs::

    result = export_tflite("microisp", "microisp_fp32.tflite", precision="fp32",
                           input_size="fullhd")

Steps: build the model (registry + weights file, or a QAT weights file), swap
layers NNAPI 1.2 would refuse (:func:`isp_tf.export.keras_rewrites.rewrite_for_nnapi`),
trace it at a fixed ``(1, h, w, 4)`` input (NNAPI does not delegate open
dimensions), convert at the asked precision, apply the flatbuffer pass for
quantized MEAN, validate against the API-29 rules (:mod:`isp_tf.export.nnapi`;
refused ops fail the export unless ``allow_cpu_fallback``), run the file under
ai-edge-litert on a real RAW photo against the Keras model
(:mod:`isp_tf.export.parity`), then write the ``.tflite`` and a JSON beside it.

Sizes.  ``input_size`` names the *output* frame: ``fullhd`` 1080 x 1920,
``12mp`` 3000 x 4000, ``32mp`` 4896 x 6528 (6528 x 4896 is the 4:3 frame of
the 32 MP phone sensors MicroISP was shown on, e.g. Samsung ISOCELL GD1), or
``HxW``.  The model input is the packed Bayer frame ``(H/2, W/2, 4)``, so H and
W must be even and H/2, W/2 multiples of the model's ``size_multiple``
(PyNET: 16, it halves the resolution four times).  ``tile=N`` exports an
``N x N`` output tile model for tiled execution instead.

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
import datetime
import hashlib
import json
import math
import pathlib
import warnings
from typing import List, Optional, Tuple

import numpy as np

from isp_tf.errors import ExportError, InputShapeError, IspTfError
from isp_tf.runtime.frames import FRAME_SIZES, parse_frame_size  # noqa: F401 - part of this module's API
from isp_tf.utils import atomic_write

PRECISIONS = ("fp32", "fp16", "int8")
IO_TYPES = ("auto", "float32", "uint8", "int8")
DEFAULT_CALIBRATION = "synthetic:8"
MAX_CALIBRATION_CROP = 128  # packed pixels per side of one calibration crop


# ---------------------------------------------------------------------------
# sizes
# ---------------------------------------------------------------------------
def model_input_hw(spec, frame_hw: Tuple[int, int], what: str = "frame") -> Tuple[int, int]:
    """Packed input ``(h, w)`` for an output ``frame_hw``; :class:`InputShapeError` says why not."""
    H, W = frame_hw
    scale, mult = int(spec.output_scale), int(spec.size_multiple)
    for side, value in (("height", H), ("width", W)):
        if value % scale:
            raise InputShapeError(
                f"{spec.name}: output {what} {side} {value} is odd; the model takes packed Bayer at "
                f"1/{scale} of the output size, so the output {side} must be a multiple of {scale}")
    h, w = H // scale, W // scale
    for side, value in (("height", h), ("width", w)):
        if value % mult:
            lo, hi = value // mult * mult, (value // mult + 1) * mult
            raise InputShapeError(
                f"{spec.name}: output {what} {H}x{W} gives a packed input {side} of {value}, not a "
                f"multiple of {mult} ({spec.name} halves the resolution {int(math.log2(mult))} times); "
                f"nearest output {side}s that work: {lo * scale} or {hi * scale} "
                f"(crop or pad the frame, or export tiles with --tile)")
    return h, w


# ---------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------
# calibration
# ---------------------------------------------------------------------------
def calibration_frames(spec_text: str, input_hw: Tuple[int, int], count: int = 8,
                       seed: int = 0, progress: bool = True) -> List[np.ndarray]:
    """``count`` calibration inputs ``(1, h, w, 4)``, each a mosaic of packed crops
    from :func:`isp_tf.data.build_dataset` (training crops: random, augmented).

    Crops of at most ``MAX_CALIBRATION_CROP`` packed pixels keep the pipeline
    cheap whatever the export size; tiling them fills a frame of the fixed
    model input, so the activation ranges are those of real image content.
    """
    from isp_tf.data import build_dataset

    h, w = input_hw
    side = int(min(MAX_CALIBRATION_CROP, h, w))
    rows, cols = -(-h // side), -(-w // side)
    ds = build_dataset(spec_text, split="train", patch_size=2 * side, batch_size=1, seed=seed,
                       cache=True, augment=True, repeat=True)
    crops = iter(ds)
    frames = []
    bar = _progress(range(count), progress, "calibration frames")
    for _ in bar:
        frame = np.empty((1, rows * side, cols * side, 4), np.float32)
        for r in range(rows):
            for c in range(cols):
                x, _ = next(crops)
                frame[:, r * side:(r + 1) * side, c * side:(c + 1) * side] = x.numpy()[:1]
        frames.append(frame[:, :h, :w])
    return frames


def _progress(iterable, enabled, desc):
    if not enabled:
        return iterable
    from tqdm import tqdm
    return tqdm(iterable, desc=desc, leave=False)


# ---------------------------------------------------------------------------
# conversion
# ---------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------
# the whole export
# ---------------------------------------------------------------------------
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


def export_sizes(spec, input_size, tile: Optional[int] = None):
    """``(output (H, W), packed input (h, w))`` of a frame export, or of an N x N tile export."""
    if tile is None:
        frame_hw = parse_frame_size(input_size)
        return frame_hw, model_input_hw(spec, frame_hw)
    if int(tile) != tile or tile < 2:
        raise ExportError(f"--tile {tile}: a tile side must be an integer of at least 2 output pixels")
    frame_hw = (int(tile), int(tile))
    return frame_hw, model_input_hw(spec, frame_hw, what="tile")


def run_parity(concrete, tflite: bytes, x, used: str, precision: str, qat: bool = False,
               reference=None) -> dict:
    """Keras (``concrete``) vs ``tflite`` on ``x``; FP32 must be within ``FP32_TOLERANCE``.

    ``reference``: another float model's concrete function (e.g. the weights a
    QAT run started from), reported as ``vs_reference_weights``.
    """
    from isp_tf.export.parity import FP32_TOLERANCE, compare
    from isp_tf.runtime.session import run_tflite

    keras_out = concrete(_tf_constant(x))
    if isinstance(keras_out, (list, tuple, dict)):
        raise ExportError("the model must have exactly one output to export")
    candidate = run_tflite(tflite, x)
    result = compare(keras_out.numpy(), candidate, used)
    info = result.to_dict()
    if qat:
        info["reference"] = "the QAT Keras model (fake quantisation), same weights, same input"
    if reference is not None:
        vs = compare(reference(_tf_constant(x)).numpy(), candidate, used).to_dict()
        vs["reference"] = "Keras float32 model of --reference-weights"
        info["vs_reference_weights"] = vs
    if precision == "fp32":
        info["tolerance"] = FP32_TOLERANCE
        if result.max_abs_error > FP32_TOLERANCE:
            raise ExportError(f"FP32 parity failed on {used}: max abs error {result.max_abs_error:.3g} "
                              f"> {FP32_TOLERANCE}")
    return info


def export_tflite(model: str, out, *, precision: str = "fp32", input_size="fullhd",
                  tile: Optional[int] = None, weights: Optional[str] = None, small: bool = False,
                  config: Optional[dict] = None, keras_model=None, reference_weights: Optional[str] = None,
                  io: str = "auto", allow_cpu_fallback: bool = False,
                  calibration_data: Optional[str] = None, calibration_frames_count: int = 8,
                  parity_input: Optional[str] = None, parity: bool = True, seed: int = 0,
                  api_level: int = 29, progress: bool = True, log=print, variant: Optional[str] = None,
                  direction: Optional[str] = None) -> ExportResult:
    """Export ``model`` to ``out`` (a ``.tflite`` path, or None to only return the bytes).

    ``direction`` (``ModelSpec.directions``, default ``forward``) and
    ``variant`` (``ModelSpec.variants``, e.g. MicroISP's ``merged``) pick the
    graph; both are recorded in the JSON.

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
    from isp_tf.export.parity import load_parity_input
    from isp_tf.export.keras_rewrites import rewrite_for_nnapi
    from isp_tf.export.tflite_passes import align_mean_quantization, fold_requantize, shorten_tensor_names
    from isp_tf.models import get_spec
    from isp_tf.models.weights import LoadedModel

    io = resolve_io(precision, io)
    spec = get_spec(model)
    spec.direction(direction)  # an unknown direction fails before anything is built
    if variant is not None:
        spec.variant(variant)
    frame_hw, input_hw = export_sizes(spec, input_size, tile)
    if out is not None and not str(out).endswith(".tflite"):
        raise ExportError(f"--out {out}: the file name must end in .tflite")

    if keras_model is not None:
        qat = any(type(layer).__name__ in ("QuantizeLayer", "QuantizeWrapper", "QuantizeWrapperV2")
                  for layer in keras_model.layers)
        loaded = LoadedModel(keras_model, spec.name, dict(config or {}), weights, qat=qat)
    else:
        loaded = load_export_model(spec.name, weights=weights, small=small, seed=seed, config=config,
                                   variant=variant, direction=direction)
    keras_model, swapped = rewrite_for_nnapi(loaded.model) if not loaded.qat else (loaded.model, [])
    if swapped:
        log(f"rewrote for NNAPI 1.2: {', '.join(swapped)}")
    concrete = fixed_function(keras_model, input_hw)
    if parity:  # read the photo first: a bad file fails before the slow conversion
        x, used = load_parity_input(parity_input, input_hw)

    representative = None
    calib_spec = None
    if precision == "int8":
        calib_spec = calibration_data or DEFAULT_CALIBRATION
        frames = calibration_frames(calib_spec, input_hw, calibration_frames_count, seed, progress)
        representative = lambda: ([f] for f in frames)  # noqa: E731
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
            reference = fixed_function(load_export_model(spec.name, weights=reference_weights).model,
                                       input_hw)
        parity_info = run_parity(concrete, tflite, x, used, precision, loaded.qat, reference)

    tile_info = (_tile_info(spec, loaded, tile, input_hw, tflite, out, precision)
                 if tile is not None else None)
    metadata = build_metadata(tflite, spec, loaded, precision, io, frame_hw, input_hw, tile_info,
                              report, parity_info, calib_spec,
                              {"keras_layers": list(swapped), "mean_ops_aligned": len(mean_fixed),
                               "requantize_ops_folded": requant_removed}, direction=direction)
    metadata["direction"] = direction or "forward"
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


def _tf_constant(x):
    from isp_tf._keras import tf
    return tf.constant(x)


def _tensor_info(details, role: str) -> dict:
    dtype = np.dtype(details["dtype"]).name
    info = {"name": details["name"], "shape": [int(d) for d in details["shape"]], "dtype": dtype}
    if dtype in ("int8", "uint8"):
        scale, zp = details["quantization"]
        info["scale"] = float(scale)
        info["zero_point"] = int(zp)
        if role == "input":
            info["quantize"] = "q = clip(round(x / scale) + zero_point) to the dtype's range"
        else:
            info["dequantize"] = "x = (q - zero_point) * scale"
    return info


def _tile_info(spec, loaded, tile: int, input_hw, tflite: Optional[bytes] = None, out=None,
               precision: Optional[str] = None) -> dict:
    """How a runner should use a tile model: halo and core alignment from
    :func:`isp_tf.tiling.analysis.analyze` of the tiling variant (None when unknown).

    With ``out`` (the tile ``.tflite`` path) and ``tflite`` it also writes the
    tile manifest and the per-pass models beside it
    (:func:`isp_tf.tiling.manifest.write_manifest`): what a phone needs for
    exact tiled inference of a frame of any size."""
    info = {"side": tile, "input_side": input_hw[0],
            "global_statistics": "computed over the tile alone when the tile model runs by itself; the "
                                 "pass models of the tile manifest (isp_tf.tiling.manifest) give the "
                                 "whole-frame result"}
    try:
        from isp_tf.layers import tiling_mode
        from isp_tf.models import create_model
        from isp_tf.tiling.analysis import analyze

        with tiling_mode():
            variant = create_model(spec.name, **loaded.config)
        fp = analyze(variant, spec.size_multiple)
    except Exception as exc:  # noqa: BLE001 - metadata only; the export itself is valid
        info["analysis_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return info
    info.update({"halo": fp.halo, "stride": fp.stride, "core_step": fp.core_step, "align": fp.align,
                 "min_side": fp.min_side, "global_layers": sum(len(g) for g in fp.groups)})
    core = input_hw[0] - 2 * fp.halo
    info["core_input_side"] = core if core > 0 else None
    if core <= 0:
        info["warning"] = (f"the tile ({input_hw[0]} input px) is not larger than twice the halo "
                           f"({fp.halo}): no pixel of it is exact")
    if out is not None and tflite is not None:
        from isp_tf.tiling.manifest import manifest_path, write_manifest

        path = manifest_path(out)
        try:
            manifest = write_manifest(tflite, fp.geometry, path, input_side=min(input_hw), max_passes=16,
                                      source={"tile_model": pathlib.Path(out).name, "model": spec.name,
                                              "precision": precision, "config": loaded.config})
        except (IspTfError, RuntimeError, ValueError) as exc:  # a graph the LiteRT tiler cannot
            # rewrite or resize: the tile model itself stays valid
            info["manifest_error"] = str(exc)
        else:
            info["manifest"] = path.name
            info["passes"] = [p["model"] for p in manifest["passes"]]
            info["align"] = manifest["geometry"]["align"]
    return info


def _port_info(details, port, role: str) -> dict:
    """A TFLite tensor's JSON entry, described by the spec's :class:`~isp_tf.models.registry.Port`."""
    info = _tensor_info(details, role)
    if port is not None:
        info["kind"] = port.kind
        info["layout"] = port.layout
        info["normalise" if role == "input" else "denormalise"] = port.normalise
    return info


def build_metadata(tflite: bytes, spec, loaded, precision, io, frame_hw, input_hw, tile, report,
                   parity_info, calib_spec, rewrites, direction=None) -> dict:
    """The JSON written beside the ``.tflite`` (see the README's export section).

    Inputs and outputs are described by the ports of the spec's ``direction``
    (kind, layout, how to normalise / denormalise), so an app can feed the
    model from the JSON alone."""
    from isp_tf._keras import tf
    from isp_tf.runtime.session import make_interpreter

    d = spec.direction(direction)
    interp = make_interpreter(tflite, num_threads=1)
    ins = interp.get_input_details()
    outs = interp.get_output_details()
    port = lambda ports, k: ports[k] if k < len(ports) else None  # noqa: E731
    in_infos = [_port_info(t, port(d.inputs, k), "input") for k, t in enumerate(ins)]
    out_infos = [_port_info(t, port(d.outputs, k), "output") for k, t in enumerate(outs)]
    meta = {
        "model": spec.name,
        "config": loaded.config,
        "weights": loaded.weights,
        "weights_sha256": _sha256(loaded.weights) if loaded.weights else None,
        "qat": loaded.qat,
        "precision": precision,
        "io": io,
        "frame": {"height": frame_hw[0], "width": frame_hw[1]} if tile is None else None,
        "tile": tile,
        "input": in_infos[0],
        "inputs": in_infos,
        "outputs": out_infos,
        "ops": report.ops_used(),
        "nnapi": {"api_level": report.api_level, "ok": report.ok, "rejected_ops": report.rejected_ops,
                  "rules_broken": report.rules_broken(),
                  "findings": [f.to_dict() for f in report.findings]},
        "parity": parity_info,
        "calibration": calib_spec,
        "export_rewrites": rewrites,
        "file_bytes": len(tflite),
        "tensorflow": tf.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return meta


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


__all__ = ["DEFAULT_CALIBRATION", "ExportResult", "FRAME_SIZES", "IO_TYPES", "PRECISIONS",
           "build_metadata", "calibration_frames", "convert_function", "export_sizes", "export_tflite",
           "fixed_function", "load_export_model", "model_input_hw", "parse_frame_size", "resolve_io",
           "run_parity"]
