"""Image metrics in numpy (no TensorFlow), small enough for 32 MP frames."""
from __future__ import annotations

import math

import numpy as np

from isp_tf.errors import InputShapeError

_BLOCK_ELEMENTS = 1 << 22  # ~4 M values (32 MB of float64) per block


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two images of the same shape, peak 1, both clipped to [0, 1] first.

    ``inf`` when they are equal.  Computed in float64 over blocks of rows, so
    a 32 MP frame (even a read-only ``np.load(..., mmap_mode="r")`` one) needs
    only a few tens of MB, not float64 copies of both images.
    """
    a, b = np.atleast_1d(np.asarray(a)), np.atleast_1d(np.asarray(b))
    if a.shape != b.shape:
        raise InputShapeError(f"psnr of images of different shapes {a.shape} and {b.shape}")
    if a.size == 0:
        raise InputShapeError("psnr of empty images")
    while a.ndim > 1 and a.shape[0] == 1:  # (1, H, W, C) -> (H, W, C): block over rows
        a, b = a[0], b[0]
    rows = max(1, _BLOCK_ELEMENTS // max(1, a.size // max(1, a.shape[0])))
    total = 0.0
    for y in range(0, a.shape[0], rows):
        d = np.clip(a[y:y + rows], 0.0, 1.0).astype(np.float64) - np.clip(b[y:y + rows], 0.0, 1.0)
        total += float(np.sum(d * d))
    mse = total / a.size
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


__all__ = ["psnr"]
