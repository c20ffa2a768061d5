"""Does the ``.tflite`` compute what the Keras model computes, on a real photo?

Every export runs once under ai-edge-litert (the interpreter phones use, with
XNNPACK) on a real RAW file -- read with :func:`isp_tf.raw.read_raw`, packed to
brought to the direction's image input (packed Bayer, mosaic, linear RGB or
sRGB) at the export size, every per-frame ``vector`` input (camera parameters:
ParamISP, GenISP) computed from the same file by its port's ``from_raw`` --
and its output is compared with the Keras model's float32 output on the same
inputs:

* FP32: the maximum absolute difference (the bar is ``FP32_TOLERANCE`` = 1e-4);
* FP16 and INT8: PSNR in dB against the Keras float32 output.

PSNR is measured on both outputs clipped to [0, 1] (the picture a viewer
would show; the ISP heads emit ``tanh * 0.58 + 0.5``, slightly wider than
[0, 1]) with peak 1 (:func:`isp_tf.runtime.metrics.psnr`).  The TFLite side
runs with :func:`isp_tf.runtime.session.run_tflite` (one input) or a
:class:`~isp_tf.runtime.session.LiteRtSession` (several, matched by name).
"""
from __future__ import annotations

import dataclasses
import glob
import math
import os
import pathlib
from typing import List, Optional, Sequence, Tuple

import numpy as np

from isp_tf.errors import ExportError
from isp_tf.runtime.metrics import psnr

FP32_TOLERANCE = 1e-4
_REPO = pathlib.Path(__file__).resolve().parents[2]


@dataclasses.dataclass
class ParityResult:
    """Keras float32 vs TFLite on one input."""

    input: str
    max_abs_error: float
    mean_abs_error: float
    psnr_db: float

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["psnr_db"] = None if math.isinf(self.psnr_db) else round(self.psnr_db, 3)
        d["reference"] = "Keras float32 model, same weights, same input"
        return d


def default_raw_candidates() -> Sequence[str]:
    """Real RAW files to try, in order: ``sample_RAW_photos/*.dng`` of the
    checkout, then ``../shared/raw_samples`` (or ``$ISP_TF_RAW_SAMPLES``)."""
    shared = pathlib.Path(os.environ.get("ISP_TF_RAW_SAMPLES", _REPO.parent / "shared" / "raw_samples"))
    found = sorted(glob.glob(str(_REPO / "sample_RAW_photos" / "*.dng")))
    found += [str(shared / name) for name in ("canon_eos550d_colorchart.dng", "canon_eos_d30.crw")
              if (shared / name).exists()]
    return found


def _fit(packed: np.ndarray, hw: Tuple[int, int]) -> np.ndarray:
    """Scale ``packed`` (h, w, 4) up only if needed to cover ``hw``, then centre-crop to it."""
    h, w = packed.shape[:2]
    th, tw = hw
    factor = max(th / h, tw / w, 1.0)
    if factor > 1.0:
        from scipy.ndimage import zoom
        packed = zoom(packed, (factor * (1 + 1e-6), factor * (1 + 1e-6), 1), order=1)
        h, w = packed.shape[:2]
    y0, x0 = (h - th) // 2, (w - tw) // 2
    return np.ascontiguousarray(packed[y0:y0 + th, x0:x0 + tw]).astype(np.float32)


def _parity_path(path: Optional[str]) -> str:
    if path is None:
        candidates = default_raw_candidates()
        if not candidates:
            raise ExportError("no real RAW file for the parity check: pass --parity-input FILE "
                              "(a .dng or any LibRaw format) or put files in sample_RAW_photos/")
        path = candidates[0]
    return str(path)


def load_parity_input(path: Optional[str], hw: Tuple[int, int],
                      kind: str = "packed_bayer") -> Tuple[np.ndarray, str]:
    """``(1, h, w, C)`` float32 in [0, 1] from a real RAW file, and its path.

    ``kind`` is the model input's port kind (``Port.kind`` of the exported
    direction's image input, :data:`isp_tf.models.registry.PORT_KINDS`):

    * ``packed_bayer`` (default): ``pack_bayer(raw)``, C = 4;
    * ``bayer``: the normalised mosaic cropped to RGGB (``rggb_crop``), C = 1;
    * ``linear_rgb``: the linear stage of :func:`isp_tf.raw.render_classical`
      (white balance on the mosaic, clip, bilinear demosaic), C = 3;
    * ``srgb``: :func:`isp_tf.raw.render_classical` of the file, C = 3 (an
      inverse ISP's input).

    ``path=None`` takes the first of :func:`default_raw_candidates`.  The
    image is centre-cropped to ``hw``, after a bilinear upscale when the
    photo is smaller than that (a 12 MP export from a 2 MP sample).
    """
    from isp_tf.raw import read_raw

    path = _parity_path(path)
    image = parity_image(read_raw(path), kind)
    return _fit(image, hw)[np.newaxis], path


def load_parity_inputs(path: Optional[str], hw: Tuple[int, int], direction) -> Tuple[List[np.ndarray], str]:
    """Every input of ``direction`` (a :class:`~isp_tf.models.registry.Direction`), in its
    port order, from one real RAW file, and the file's path.

    The image input is :func:`load_parity_input`'s (its port kind, at ``hw``);
    a per-frame ``vector`` input is ``(1, channels)`` float32 computed from the
    same file by the port's ``from_raw`` (what ``python -m isp_tf.infer``
    feeds), or, for a port without one, by the data pipeline's metadata of its
    name (:data:`isp_tf.data.layouts.META_VECTORS`, what INT8 calibration
    feeds).  A vector input with neither, or one outside its port's
    ``value_range`` (ParamISP's ~1e12 terms of missing EXIF), is an
    :class:`ExportError`.
    """
    from isp_tf.raw import read_raw

    path = _parity_path(path)
    raw = read_raw(path)
    inputs = [_fit(parity_image(raw, direction.image_input.kind), hw)[np.newaxis]]
    for port in direction.inputs[1:]:
        inputs.append(_vector_input(port, raw, path))
    return inputs, path


def _vector_input(port, raw, path: str) -> np.ndarray:
    source = getattr(port, "from_raw", None)
    if source is None:
        from isp_tf.data.layouts import META_VECTORS
        source = META_VECTORS.get(port.name)
    if source is None:
        raise ExportError(f"parity: per-frame input {port.name!r} has no from_raw and no data-pipeline "
                          f"metadata of that name to compute it from {path}; export with --no-parity")
    try:
        value = np.asarray(source(raw), np.float32).reshape(1, -1)
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001 - a RAW file lacking what the port needs
        raise ExportError(f"parity: cannot compute per-frame input {port.name!r} from {path}: "
                          f"{type(exc).__name__}: {exc}") from None
    if value.shape[1] != port.channels:
        raise ExportError(f"parity: per-frame input {port.name!r} from {path} has {value.shape[1]} "
                          f"values, the port takes {port.channels}")
    lo, hi = port.value_range
    outside = (value < lo) | (value > hi) | ~np.isfinite(value)
    if outside.any():
        # e.g. ParamISP's 1/1e-12 terms of missing EXIF: the outputs blow up (1e10 and more), and an
        # absolute FP32 bar compares float32 rounding of huge numbers, not the conversion
        k = int(np.flatnonzero(outside[0])[0])
        raise ExportError(f"parity: per-frame input {port.name!r} computed from {path} holds "
                          f"{value[0, k]:.3g} at [{k}], outside the port's range [{lo:g}, {hi:g}] "
                          "(missing camera metadata?), so the outputs say nothing about the conversion; "
                          "pass --parity-input a RAW file with complete metadata, or --no-parity")
    return value


def parity_image(raw, kind: str = "packed_bayer") -> np.ndarray:
    """The ``(h, w, C)`` model input of port kind ``kind`` for a :class:`~isp_tf.raw.RawImage`
    (see :func:`load_parity_input`)."""
    from isp_tf.raw import demosaic_bilinear, normalize_bayer, pack_bayer, render_classical, rggb_crop

    if kind == "packed_bayer":
        return pack_bayer(raw)
    if kind == "bayer":
        y0, y1, x0, x1 = rggb_crop(raw.bayer.shape, raw.cfa_pattern)
        return normalize_bayer(raw)[y0:y1, x0:x1, np.newaxis]
    if kind == "linear_rgb":
        mosaic = normalize_bayer(raw)
        gains = np.asarray(raw.wb_gains, np.float64)
        gains = (gains / gains.min()).astype(np.float32)
        for y in (0, 1):
            for x in (0, 1):
                mosaic[y::2, x::2] *= gains["RGB".index(raw.cfa_pattern[2 * y + x])]
        np.minimum(mosaic, np.float32(1.0), out=mosaic)
        return demosaic_bilinear(mosaic, raw.cfa_pattern)
    if kind == "srgb":
        return render_classical(raw)
    raise ExportError(f"parity: no real-photo input for port kind {kind!r} "
                      "(packed_bayer, bayer, linear_rgb, srgb)")


def compare(reference: np.ndarray, candidate: np.ndarray, input_name: str = "") -> ParityResult:
    """Differences between a reference output and a candidate output of the same shape."""
    if reference.shape != candidate.shape:
        raise ExportError(f"parity: TFLite output {candidate.shape} vs Keras {reference.shape}")
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    return ParityResult(input_name, float(diff.max()), float(diff.mean()), psnr(reference, candidate))


__all__ = ["FP32_TOLERANCE", "ParityResult", "compare", "default_raw_candidates", "load_parity_input",
           "load_parity_inputs", "parity_image", "run_parity"]

def run_parity(concrete, tflite: bytes, x, used: str, precision: str, qat: bool = False,
               reference=None) -> dict:
    """Keras (``concrete``) vs ``tflite`` on ``x``; FP32 must be within ``FP32_TOLERANCE``.

    ``x``: the image array, or the list of every model input in the concrete
    function's order (:func:`load_parity_inputs`); the TFLite inputs are
    matched to them by name.  ``reference``: another float model's concrete
    function (e.g. the weights a QAT run started from), reported as
    ``vs_reference_weights``.
    """
    xs = [np.asarray(a) for a in x] if isinstance(x, (list, tuple)) else [np.asarray(x)]
    keras_out = concrete(*[_tf_constant(a) for a in xs])
    if isinstance(keras_out, (list, tuple, dict)):
        raise ExportError("the model must have exactly one output to export")
    candidate = _run_tflite(tflite, xs, _input_names(concrete))
    result = compare(keras_out.numpy(), candidate, used)
    info = result.to_dict()
    if qat:
        info["reference"] = "the QAT Keras model (fake quantisation), same weights, same input"
    if reference is not None:
        vs = compare(reference(*[_tf_constant(a) for a in xs]).numpy(), candidate, used).to_dict()
        vs["reference"] = "Keras float32 model of --reference-weights"
        info["vs_reference_weights"] = vs
    if precision == "fp32":
        info["tolerance"] = FP32_TOLERANCE
        if result.max_abs_error > FP32_TOLERANCE:
            raise ExportError(f"FP32 parity failed on {used}: max abs error {result.max_abs_error:.3g} "
                              f"> {FP32_TOLERANCE}")
    return info


def _input_names(concrete) -> List[str]:
    try:
        args = concrete.structured_input_signature[0]
        return [getattr(spec, "name", None) or "" for spec in args]
    except Exception:  # noqa: BLE001 - not a tf ConcreteFunction: positional order
        return []


def _run_tflite(tflite: bytes, xs: List[np.ndarray], names: Sequence[str]) -> np.ndarray:
    """The first output of ``tflite`` on ``xs`` (given in ``names`` order; TFLite's inputs
    are matched by name when every name is found, else taken in the file's order)."""
    if len(xs) == 1:
        from isp_tf.runtime.session import run_tflite
        return run_tflite(tflite, xs[0])
    from isp_tf.runtime.session import LiteRtSession

    session = LiteRtSession(tflite)
    if len(session.inputs) != len(xs):
        raise ExportError(f"parity: the .tflite takes {len(session.inputs)} inputs, the model {len(xs)}")
    order = list(range(len(xs)))
    tflite_names = [d["name"] for d in session.inputs]
    if names and sorted(tflite_names) == sorted(names):
        order = [list(names).index(n) for n in tflite_names]
    return session.run(*[xs[k] for k in order])[0]


def _tf_constant(x):
    from isp_tf._keras import tf
    return tf.constant(x)
