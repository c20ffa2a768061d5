"""8- and 16-bit PNG files through pypng, written atomically.

Pillow cannot write 16-bit RGB PNGs and imageio rejects them; pypng (pure
Python, zlib) writes and reads every PNG bit depth.
"""
from __future__ import annotations

import numpy as np
import png

from isp_tf.errors import InputShapeError, IspTfError
from isp_tf.utils import atomic_write

__all__ = ["read_png", "to_uint", "write_png"]


def to_uint(image, bits: int) -> np.ndarray:
    """Float ``image`` in [0, 1] -> uint8 (``bits=8``) or uint16 (``bits=16``), rounded, clipped."""
    if bits not in (8, 16):
        raise InputShapeError(f"PNG bit depth must be 8 or 16, got {bits}")
    top = (1 << bits) - 1
    scaled = np.clip(np.nan_to_num(np.asarray(image, np.float32), nan=0.0), 0.0, 1.0) * top
    return np.rint(scaled).astype(np.uint8 if bits == 8 else np.uint16)


def write_png(path, image: np.ndarray, level: int = 6) -> None:
    """Write ``image`` (uint8 or uint16; (H, W) or (H, W, 1..4)) to ``path`` atomically."""
    image = np.asarray(image)
    if image.dtype not in (np.uint8, np.uint16):
        raise InputShapeError(f"a PNG needs uint8 or uint16 pixels, got {image.dtype}")
    if image.ndim == 2:
        image = image[..., np.newaxis]
    if image.ndim != 3 or not 1 <= image.shape[-1] <= 4 or 0 in image.shape:
        raise InputShapeError(f"a PNG image must be (H, W) or (H, W, 1..4), got {image.shape}")
    height, width, channels = image.shape
    writer = png.Writer(width, height, greyscale=channels <= 2, alpha=channels in (2, 4),
                        bitdepth=8 * image.dtype.itemsize, compression=level)
    with atomic_write(path) as f:
        writer.write(f, image.reshape(height, width * channels))


def read_png(path) -> np.ndarray:
    """Decode an 8- or 16-bit PNG to an (H, W, C) uint8/uint16 array."""
    try:
        width, height, rows, info = png.Reader(filename=str(path)).asDirect()
        data = np.vstack([np.asarray(row) for row in rows])
    except (png.Error, OSError) as exc:
        raise IspTfError(f"{path}: not a readable PNG ({exc})") from None
    dtype = np.uint16 if info["bitdepth"] > 8 else np.uint8
    return data.astype(dtype).reshape(height, width, info["planes"])
