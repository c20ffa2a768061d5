"""``write_dng``: save a Bayer mosaic and its metadata as a DNG.

A small, dependency-free little-endian TIFF writer (numpy + struct). We write
the TIFF ourselves rather than through tifffile/pidng because a DNG needs an
EXIF sub-IFD (ISO, exposure time, f-number, focal length) that LibRaw *and*
exifread read back, and exact control of each tag's TIFF type.

What is written (DNG 1.4, uncompressed 16-bit CFA, one strip):
  IFD0: NewSubfileType 0, size, PhotometricInterpretation CFA (32803),
  Make/Model, Orientation, CFARepeatPatternDim 2x2 + CFAPattern,
  CFAPlaneColor RGB, CFALayout 1, DNGVersion 1.4, UniqueCameraModel,
  BlackLevelRepeatDim 2x2 + BlackLevel (4 values, by CFA position),
  WhiteLevel, ColorMatrix1 (XYZ -> camera native, from ``cam_to_xyz`` and the
  white balance) with CalibrationIlluminant1 = D65, AsShotNeutral = 1/wb_gains.
  EXIF IFD: ExposureTime, FNumber, ISOSpeedRatings, FocalLength (only those
  that are known).
"""
from __future__ import annotations

import dataclasses
import fractions
import struct

import numpy as np

from isp_tf.errors import InputShapeError, RawWriteError
from isp_tf.raw.bayer import check_cfa_pattern
from isp_tf.raw.color import SRGB_TO_XYZ, xyz_to_cam_from_cam_to_xyz
from isp_tf.raw.image import RawImage
from isp_tf.utils import atomic_write

# TIFF field types
BYTE, ASCII, SHORT, LONG, RATIONAL, UNDEFINED, SRATIONAL = 1, 2, 3, 4, 5, 7, 10
_TYPE_FMT = {BYTE: "B", SHORT: "H", LONG: "I", RATIONAL: "II", UNDEFINED: "B", SRATIONAL: "ii"}

ILLUMINANT_D65 = 21  # DNG CalibrationIlluminant code
MIN_SIDE = 22  # LibRaw (like dcraw) treats images under 22 pixels a side as not RAW
_CFA_CODE = {"R": 0, "G": 1, "B": 2}


def _rational(x, signed=False):
    """(numerator, denominator) of ``x``, exact for short decimals like 1/125 or 2.8.

    Denominators up to 10^6 keep matrix entries to ~1e-12; large values trade
    denominator digits for numerator range.
    """
    lim = 2 ** 31 - 1 if signed else 2 ** 32 - 1
    x = float(x)
    if not np.isfinite(x) or abs(x) > lim or (x < 0 and not signed):
        raise ValueError(f"{x} cannot be stored as a TIFF {'S' if signed else ''}RATIONAL")
    f = fractions.Fraction(x).limit_denominator(1_000_000)
    while abs(f.numerator) > lim:
        f = f.limit_denominator(max(1, f.denominator // 10))
    return f.numerator, f.denominator


def _entry(tag, typ, values):
    """Encode one IFD entry's value bytes and count."""
    if typ == ASCII:
        data = values.encode("ascii", "replace") + b"\0"
        return tag, typ, len(data), data
    if typ == UNDEFINED and isinstance(values, (bytes, bytearray)):
        return tag, typ, len(values), bytes(values)
    values = list(np.atleast_1d(values)) if not isinstance(values, list) else values
    if typ in (RATIONAL, SRATIONAL):
        flat = [v for x in values for v in _rational(x, signed=typ == SRATIONAL)]
        data = struct.pack("<" + _TYPE_FMT[typ][0] * len(flat), *flat)
    else:
        data = struct.pack("<" + _TYPE_FMT[typ] * len(values), *[int(v) for v in values])
    return tag, typ, len(values), data


def _ifd_bytes(entries, offset, next_ifd=0):
    """Serialise an IFD placed at ``offset``; large values follow the entry table."""
    entries = sorted(entries, key=lambda e: e[0])
    n = len(entries)
    table = struct.pack("<H", n)
    extra = b""
    extra_at = offset + 2 + 12 * n + 4
    for tag, typ, count, data in entries:
        if len(data) <= 4:
            table += struct.pack("<HHI", tag, typ, count) + data.ljust(4, b"\0")
        else:
            if (extra_at + len(extra)) % 2:
                extra += b"\0"
            table += struct.pack("<HHII", tag, typ, count, extra_at + len(extra))
            extra += data
    table += struct.pack("<I", next_ifd)
    return table + extra


def write_tiff(path, image: np.ndarray, ifd0_entries, exif_entries=()):
    """Write a one-strip little-endian TIFF with the given IFD0 (and EXIF IFD) entries.

    ``image`` is (H, W) or (H, W, S) uint16 (or uint8); the size, sample and
    strip tags are added here. Entries are ``(tag, type, values)`` tuples. The
    file is written atomically. Low level: used by :func:`write_dng` and by
    tests that need unusual DNGs (X-Trans, linear, monochrome).
    """
    image = np.ascontiguousarray(image)
    if image.dtype not in (np.uint8, np.uint16) or image.ndim not in (2, 3):
        raise RawWriteError(path, f"TIFF data must be 2-D or 3-D uint8/uint16, got "
                                  f"{image.dtype} {image.shape}")
    h, w = image.shape[:2]
    spp = 1 if image.ndim == 2 else image.shape[2]
    bits = image.dtype.itemsize * 8
    pixels = np.ascontiguousarray(image.astype("<u2" if bits == 16 else "u1", copy=False))
    entries = [_entry(t, ty, v) for t, ty, v in ifd0_entries]
    entries += [_entry(256, LONG, w), _entry(257, LONG, h), _entry(258, SHORT, [bits] * spp),
                _entry(259, SHORT, 1), _entry(277, SHORT, spp), _entry(278, LONG, h),
                _entry(279, LONG, pixels.nbytes), _entry(284, SHORT, 1)]
    exif = [_entry(t, ty, v) for t, ty, v in exif_entries]
    # Layout: header | pixels | IFD0 | EXIF IFD. Offsets need sizes, so place the
    # pixels first (at 8, well aligned) and patch the pointers in.
    pix_at = 8
    ifd0_at = pix_at + pixels.nbytes + (pixels.nbytes % 2)
    ifd0_entries_final = entries + [(273, LONG, 1, struct.pack("<I", pix_at))]
    if exif:
        ifd0_entries_final.append((34665, LONG, 1, b"\0\0\0\0"))  # sized now, patched below
        ifd0 = _ifd_bytes(ifd0_entries_final, ifd0_at)
        exif_at = ifd0_at + len(ifd0) + (len(ifd0) % 2)
        ifd0_entries_final[-1] = (34665, LONG, 1, struct.pack("<I", exif_at))
        ifd0 = _ifd_bytes(ifd0_entries_final, ifd0_at)
        tail = ifd0 + b"\0" * (len(ifd0) % 2) + _ifd_bytes(exif, exif_at)
    else:
        tail = _ifd_bytes(ifd0_entries_final, ifd0_at)
    header = b"II" + struct.pack("<HI", 42, ifd0_at)
    with atomic_write(path) as f:
        f.write(header)
        f.write(memoryview(pixels).cast("B"))  # no copy of a large mosaic
        f.write(b"\0" * (pixels.nbytes % 2))
        f.write(tail)


def _metadata_dict(metadata) -> dict:
    if isinstance(metadata, RawImage):
        d = {f.name: getattr(metadata, f.name) for f in dataclasses.fields(metadata)}
        d.pop("bayer")
        return d
    if isinstance(metadata, dict):
        return dict(metadata)
    raise RawWriteError("<metadata>", f"metadata must be a RawImage or a dict, got "
                                      f"{type(metadata).__name__}")


def _exif_value(exif, name):
    if exif is None:
        return None
    v = exif.get(name) if isinstance(exif, dict) else getattr(exif, name, None)
    return None if v is None or not np.isfinite(v) or v <= 0 else float(v)


def write_dng(path, bayer, metadata) -> None:
    """Write ``bayer`` with ``metadata`` as an uncompressed DNG that rawpy and exifread read.

    Args:
      path: output file; written atomically (a crash leaves no partial file).
      bayer: (H, W) mosaic in sensor units, H and W even and >= 22: uint16,
        or an integer-valued array in [0, 65535] (floats are rejected unless they hold whole numbers, so
        nothing is silently rounded).
      metadata: a :class:`RawImage` (its ``bayer`` is ignored) or a dict with
        the same field names. Needed: ``cfa_pattern``, ``black_level`` (1 or 4
        values, CFA order), ``white_level``. Optional: ``wb_gains`` (default
        1, 1, 1), ``cam_to_xyz`` (white-balanced camera RGB -> XYZ, mapping
        (1, 1, 1) to the D65 white like every ``RawImage``'s; default: the sRGB
        primaries, i.e. camera RGB == linear sRGB), ``exif`` (:class:`Exif` or dict), ``orientation``
        (EXIF code, default 1), ``camera`` ("Make Model").

    Reading the file back with :func:`isp_tf.raw.read_raw` gives the same
    pixels, pattern, levels, white balance, colour matrices (to float
    rounding of the stored rationals), EXIF values and orientation.
    """
    md = _metadata_dict(metadata)
    where = str(path)
    arr = np.asarray(bayer)
    if arr.ndim != 2:
        raise InputShapeError(f"{where}: a DNG mosaic must be 2-D (H, W), got shape {arr.shape}")
    if min(arr.shape) < MIN_SIDE or arr.shape[0] % 2 or arr.shape[1] % 2:
        raise InputShapeError(f"{where}: mosaic height and width must be even and at least "
                              f"{MIN_SIDE} (LibRaw refuses smaller images), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise RawWriteError(where, "bayer holds non-integer values; a DNG stores "
                                       "integer sensor units (scale by the white level first)")
    if arr.size and (arr.min() < 0 or arr.max() > 65535):
        raise RawWriteError(where, f"bayer values must be in [0, 65535], got "
                                   f"[{arr.min()}, {arr.max()}]")
    pattern = check_cfa_pattern(md.get("cfa_pattern"), where)
    black = np.asarray(md.get("black_level", 0), dtype=np.float64).ravel()
    if black.size == 1:
        black = np.repeat(black, 4)
    if black.size != 4:
        raise RawWriteError(where, f"black_level needs 1 or 4 values, got {black.size}")
    white = md.get("white_level")
    if white is None or not 0 < float(white) <= 65535 or np.any(black >= float(white)):
        raise RawWriteError(where, f"white_level {white} must be in (max black level, 65535]")
    gains = np.asarray(md.get("wb_gains") if md.get("wb_gains") is not None else (1, 1, 1),
                       dtype=np.float64).ravel()
    if gains.size != 3 or np.any(~np.isfinite(gains)) or np.any(gains <= 0):
        raise RawWriteError(where, f"wb_gains must be 3 positive numbers, got {gains.tolist()}")
    gains = gains / gains[1]
    cam_to_xyz = md.get("cam_to_xyz")
    if cam_to_xyz is None:
        cam_to_xyz = SRGB_TO_XYZ
    cam_to_xyz = np.asarray(cam_to_xyz, dtype=np.float64)
    if cam_to_xyz.shape != (3, 3) or abs(np.linalg.det(cam_to_xyz)) < 1e-12:
        raise RawWriteError(where, "cam_to_xyz must be an invertible 3x3 matrix")
    d65 = SRGB_TO_XYZ.sum(axis=1)
    if not np.allclose(cam_to_xyz.sum(axis=1), d65, rtol=1e-3, atol=1e-4):
        raise RawWriteError(where, f"cam_to_xyz must map the white-balanced neutral (1, 1, 1) "
                                   f"to the D65 white {np.round(d65, 4).tolist()}, it gives "
                                   f"{np.round(cam_to_xyz.sum(axis=1), 4).tolist()}")
    orientation = int(md.get("orientation") or 1)
    if orientation not in range(1, 9):
        raise RawWriteError(where, f"orientation must be an EXIF code 1..8, got {orientation}")
    camera = md.get("camera") or "isp_tf camera"
    make, _, model = camera.partition(" ")
    model = model or make

    xyz_to_cam = xyz_to_cam_from_cam_to_xyz(cam_to_xyz, gains)
    black_int = np.all(black == np.round(black))
    ifd0 = [
        (254, LONG, 0),
        (262, SHORT, 32803),
        (271, ASCII, make),
        (272, ASCII, model),
        (274, SHORT, orientation),
        (305, ASCII, "isp_tf"),
        (33421, SHORT, [2, 2]),
        (33422, BYTE, [_CFA_CODE[c] for c in pattern]),
        (50706, BYTE, [1, 4, 0, 0]),
        (50707, BYTE, [1, 1, 0, 0]),
        (50708, ASCII, camera),
        (50710, BYTE, [0, 1, 2]),
        (50711, SHORT, 1),
        (50713, SHORT, [2, 2]),
        (50714, LONG if black_int else RATIONAL, black.tolist()),
        (50717, LONG, int(round(float(white)))),
        (50721, SRATIONAL, xyz_to_cam.ravel().tolist()),
        (50728, RATIONAL, (1.0 / gains).tolist()),
        (50778, SHORT, ILLUMINANT_D65),
    ]
    exif_md = md.get("exif")
    exif = []
    for tag, typ, name in ((33434, RATIONAL, "exposure_time"), (33437, RATIONAL, "f_number"),
                           (34855, SHORT, "iso"), (37386, RATIONAL, "focal_length")):
        v = _exif_value(exif_md, name)
        if v is not None:
            if tag == 34855:
                v = int(round(v))
                typ = SHORT if v <= 65535 else LONG
            exif.append((tag, typ, v))
    if exif:
        exif.append((36864, UNDEFINED, b"0230"))
    try:
        write_tiff(path, arr.astype(np.uint16), ifd0, exif)
    except RawWriteError:
        raise
    except ValueError as e:  # a value no TIFF field can hold (e.g. an absurd exposure time)
        raise RawWriteError(where, str(e)) from None
