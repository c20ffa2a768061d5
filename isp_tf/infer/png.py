"""PNG files, 8- or 16-bit, written atomically (numpy and zlib only).

Pillow cannot write 16-bit RGB PNGs and imageio rejects them, so this module
encodes PNG itself: non-interlaced, one IDAT chunk, every row with the "Up"
filter (the difference to the row above: cheap to compute with numpy and
compresses photos well).  :func:`read_png` decodes what :func:`write_png`
writes (and any non-interlaced PNG using filters None, Sub or Up).
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

from isp_tf.errors import InputShapeError, IspTfError
from isp_tf.utils import atomic_write

__all__ = ["encode_png", "read_png", "to_uint", "write_png"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (grey, grey+alpha, RGB, RGBA)


def to_uint(image, bits: int) -> np.ndarray:
    """Float ``image`` in [0, 1] -> uint8 (``bits=8``) or uint16 (``bits=16``), rounded, clipped."""
    if bits not in (8, 16):
        raise InputShapeError(f"PNG bit depth must be 8 or 16, got {bits}")
    top = (1 << bits) - 1
    scaled = np.clip(np.nan_to_num(np.asarray(image, np.float32), nan=0.0), 0.0, 1.0) * top
    return np.rint(scaled).astype(np.uint8 if bits == 8 else np.uint16)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(image: np.ndarray, level: int = 6) -> bytes:
    """PNG bytes of a uint8 or uint16 image, (H, W) or (H, W, C) with C in 1..4."""
    image = np.asarray(image)
    if image.dtype not in (np.uint8, np.uint16):
        raise InputShapeError(f"a PNG needs uint8 or uint16 pixels, got {image.dtype}")
    if image.ndim == 2:
        image = image[..., np.newaxis]
    if image.ndim != 3 or image.shape[-1] not in _COLOR_TYPES or 0 in image.shape:
        raise InputShapeError(f"a PNG image must be (H, W) or (H, W, 1..4), got {image.shape}")
    height, width, channels = image.shape
    bits = 8 * image.dtype.itemsize
    rows = image.astype(image.dtype.newbyteorder(">"), copy=False).reshape(height, -1).view(np.uint8)
    filtered = np.empty((height, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = 2  # "Up"
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # wraps modulo 256, as PNG wants
    header = struct.pack(">IIBBBBB", width, height, bits, _COLOR_TYPES[channels], 0, 0, 0)
    return (_SIGNATURE + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(filtered.tobytes(), level)) + _chunk(b"IEND", b""))


def write_png(path, image: np.ndarray, level: int = 6) -> None:
    """Write ``image`` (uint8 or uint16) to ``path`` atomically."""
    data = encode_png(image, level)
    with atomic_write(path) as f:
        f.write(data)


def read_png(path) -> np.ndarray:
    """Decode a non-interlaced 8/16-bit PNG (filters None, Sub, Up) to (H, W, C)."""
    data = open(path, "rb").read()
    if not data.startswith(_SIGNATURE):
        raise IspTfError(f"{path}: not a PNG file")
    pos, header, idat = len(_SIGNATURE), None, []
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    width, height, bits, colour, _, _, interlace = header
    channels = {v: k for k, v in _COLOR_TYPES.items()}.get(colour)
    if bits not in (8, 16) or channels is None or interlace:
        raise IspTfError(f"{path}: unsupported PNG ({bits}-bit, colour type {colour}, interlace {interlace})")
    bpp = channels * bits // 8
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(height, width * bpp + 1)
    rows = raw[:, 1:].copy()
    for y in range(height):
        kind = raw[y, 0]
        if kind == 1:  # Sub: running sum per byte position within a pixel
            r = rows[y].reshape(width, bpp).astype(np.uint64)
            rows[y] = (np.cumsum(r, axis=0) % 256).astype(np.uint8).ravel()
        elif kind == 2 and y > 0:
            rows[y] += rows[y - 1]
        elif kind not in (0, 1, 2):
            raise IspTfError(f"{path}: PNG filter {kind} is not supported by this reader")
    dtype = np.dtype(">u2") if bits == 16 else np.dtype(np.uint8)
    return rows.view(dtype).reshape(height, width, channels).astype(dtype.newbyteorder("="))
