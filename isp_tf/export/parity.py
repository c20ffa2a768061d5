"""Does the ``.tflite`` compute what the Keras model computes, on a real photo?

Every export runs once under ai-edge-litert (the interpreter phones use, with
XNNPACK) on a real RAW file -- read with :func:`isp_tf.raw.read_raw`, packed to
``[R, G1, G2, B]`` and brought to the export size -- and its output is compared
with the Keras model's float32 output on the same input:

* FP32: the maximum absolute difference (the bar is ``FP32_TOLERANCE`` = 1e-4);
* FP16 and INT8: PSNR in dB against the Keras float32 output.

PSNR is measured on both outputs clipped to [0, 1] (the picture a viewer
would show; the ISP heads emit ``tanh * 0.58 + 0.5``, slightly wider than
[0, 1]) with peak 1.
"""
from __future__ import annotations

import dataclasses
import glob
import math
import os
import pathlib
from typing import Optional, Sequence, Tuple

import numpy as np

from isp_tf.errors import ExportError, InputShapeError

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


def load_parity_input(path: Optional[str], hw: Tuple[int, int]) -> Tuple[np.ndarray, str]:
    """``(1, h, w, 4)`` float32 packed Bayer in [0, 1] from a real RAW file, and its path.

    ``path=None`` takes the first of :func:`default_raw_candidates`.  The
    packed image is centre-cropped to ``hw``, after a bilinear upscale when the
    photo is smaller than that (a 12 MP export from a 2 MP sample).
    """
    from isp_tf.raw import pack_bayer, read_raw

    if path is None:
        candidates = default_raw_candidates()
        if not candidates:
            raise ExportError("no real RAW file for the parity check: pass --parity-input FILE "
                              "(a .dng or any LibRaw format) or put files in sample_RAW_photos/")
        path = candidates[0]
    packed = pack_bayer(read_raw(path))
    return _fit(packed, hw)[np.newaxis], str(path)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two images in [0, 1] (clipped first), peak 1; inf when equal."""
    a = np.clip(np.asarray(a, np.float64), 0.0, 1.0)
    b = np.clip(np.asarray(b, np.float64), 0.0, 1.0)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


def make_interpreter(tflite, num_threads: int = 2):
    """An ai-edge-litert interpreter for a path or bytes, tensors allocated."""
    from ai_edge_litert.interpreter import Interpreter

    kwargs = {"model_content": bytes(tflite)} if isinstance(tflite, (bytes, bytearray)) else \
        {"model_path": str(tflite)}
    interp = Interpreter(num_threads=num_threads, **kwargs)
    interp.allocate_tensors()
    return interp


def run_tflite(tflite, x: np.ndarray, num_threads: int = 2) -> np.ndarray:
    """Run a one-input, one-output ``.tflite`` on float ``x`` (quantising and
    de-quantising at the boundary when the model has integer input/output)."""
    interp = make_interpreter(tflite, num_threads)
    (inp,) = interp.get_input_details()
    out = interp.get_output_details()[0]
    shape = tuple(int(d) for d in inp["shape"])
    if tuple(x.shape) != shape:
        raise InputShapeError(f"input of shape {tuple(x.shape)} for a model that takes {shape}")
    if np.issubdtype(inp["dtype"], np.integer):
        scale, zp = inp["quantization"]
        info = np.iinfo(inp["dtype"])
        x = np.clip(np.round(x / scale) + zp, info.min, info.max).astype(inp["dtype"])
    interp.set_tensor(inp["index"], x.astype(inp["dtype"]))
    interp.invoke()
    y = interp.get_tensor(out["index"])
    if np.issubdtype(out["dtype"], np.integer):
        scale, zp = out["quantization"]
        y = (y.astype(np.float32) - zp) * scale
    return y.astype(np.float32)


def compare(reference: np.ndarray, candidate: np.ndarray, input_name: str = "") -> ParityResult:
    """Differences between a reference output and a candidate output of the same shape."""
    if reference.shape != candidate.shape:
        raise ExportError(f"parity: TFLite output {candidate.shape} vs Keras {reference.shape}")
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    return ParityResult(input_name, float(diff.max()), float(diff.mean()), psnr(reference, candidate))


__all__ = ["FP32_TOLERANCE", "ParityResult", "compare", "default_raw_candidates",
           "load_parity_input", "make_interpreter", "psnr", "run_tflite"]
