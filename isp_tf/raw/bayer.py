"""Bayer mosaics: normalisation, packing to 4 channels, bilinear demosaicing.

Every function takes the CFA pattern explicitly (or from a ``RawImage``) and
never assumes RGGB. The packed layout used everywhere in isp_tf is the
canonical ``[R, G1, G2, B]`` at half resolution, where G1 shares a row with R
and G2 shares a row with B.
"""
from __future__ import annotations

import numpy as np

from isp_tf.errors import InputShapeError, RawReadError, UnsupportedCFAError
from isp_tf.raw.image import CFA_PATTERNS, RawImage

_RGGB_OFFSET = {"RGGB": (0, 0), "GRBG": (0, 1), "GBRG": (1, 0), "BGGR": (1, 1)}


def check_cfa_pattern(cfa_pattern, source="<array>") -> str:
    """Return ``cfa_pattern`` upper-cased if it is one of ``CFA_PATTERNS``.

    Raises:
      UnsupportedCFAError: anything else (naming ``source`` and the pattern).
    """
    if not isinstance(cfa_pattern, str) or cfa_pattern.upper() not in CFA_PATTERNS:
        raise UnsupportedCFAError(
            source, f"CFA pattern {cfa_pattern!r} is not one of {', '.join(CFA_PATTERNS)}")
    return cfa_pattern.upper()


def rggb_offset(cfa_pattern) -> tuple:
    """``(dy, dx)``: where the first red pixel sits in a 2x2 block of ``cfa_pattern``.

    RGGB (0, 0), GRBG (0, 1), GBRG (1, 0), BGGR (1, 1). Cropping ``dy`` rows
    and ``dx`` columns off the top-left of a mosaic makes it RGGB.
    """
    return _RGGB_OFFSET[check_cfa_pattern(cfa_pattern)]


def _check_mosaic(mosaic, min_size=2) -> np.ndarray:
    mosaic = np.asarray(mosaic)
    if mosaic.ndim != 2:
        raise InputShapeError(f"a Bayer mosaic must be 2-D (H, W), got shape {mosaic.shape}")
    if min(mosaic.shape) < min_size:
        raise InputShapeError(f"a Bayer mosaic must be at least {min_size}x{min_size}, "
                              f"got shape {mosaic.shape}")
    return mosaic


def _site_array(values) -> np.ndarray:
    """A (2, 2) array of per-CFA-site values given 1, 4 or (2, 2) values."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 1:
        return np.full((2, 2), float(v.reshape(())))
    if v.size == 4:
        return v.reshape(2, 2)
    raise RawReadError("<RawImage>", f"black_level needs 1 or 4 per-site values, got {v.size}")


def normalize_bayer(raw: RawImage) -> np.ndarray:
    """``(bayer - black) / (white - black)`` per CFA site, clipped to [0, 1], float32.

    ``black_level`` holds one value per 2x2 site in the order of
    ``raw.cfa_pattern``, so subtraction is by position, never by colour name.
    """
    mosaic = _check_mosaic(raw.bayer, min_size=1)
    black = _site_array(raw.black_level)
    white = float(raw.white_level)
    if np.any(white <= black):
        raise RawReadError(raw.path or "<RawImage>", f"white level {white} is not above the "
                                                     f"black level {black.ravel().tolist()}")
    out = mosaic.astype(np.float32)  # a copy
    for y in (0, 1):
        for x in (0, 1):
            site = out[y::2, x::2]
            site -= np.float32(black[y, x])
            site *= np.float32(1.0 / (white - black[y, x]))
    return np.clip(out, 0.0, 1.0, out=out)


def _mosaic_and_pattern(raw_or_mosaic, cfa_pattern):
    if isinstance(raw_or_mosaic, RawImage):
        pattern = check_cfa_pattern(cfa_pattern or raw_or_mosaic.cfa_pattern,
                                    raw_or_mosaic.path or "<RawImage>")
        return normalize_bayer(raw_or_mosaic), pattern
    if cfa_pattern is None:
        raise UnsupportedCFAError("<array>", "a bare mosaic needs its cfa_pattern "
                                             "(one of RGGB, GRBG, GBRG, BGGR)")
    return _check_mosaic(raw_or_mosaic).astype(np.float32, copy=False), check_cfa_pattern(cfa_pattern)


def rggb_crop(shape, cfa_pattern) -> tuple:
    """``(y0, y1, x0, x1)``: the window of a mosaic of ``shape`` that :func:`pack_bayer` keeps.

    It starts at :func:`rggb_offset` (so the top-left pixel is red) and has even
    height and width.
    """
    dy, dx = rggb_offset(cfa_pattern)
    h = (shape[0] - dy) // 2 * 2
    w = (shape[1] - dx) // 2 * 2
    return dy, dy + h, dx, dx + w


def pack_bayer(raw_or_mosaic, cfa_pattern=None) -> np.ndarray:
    """Pack a Bayer mosaic into ``(H/2, W/2, 4)`` float32, channels ``[R, G1, G2, B]``.

    Args:
      raw_or_mosaic: a :class:`RawImage` (normalised with :func:`normalize_bayer`,
        so values are in [0, 1]) or a 2-D array taken as it is (cast to float32).
      cfa_pattern: the mosaic's pattern; required for an array, defaults to
        ``raw.cfa_pattern`` for a ``RawImage``.

    Whatever the sensor's pattern, the output is canonical RGGB: the mosaic is
    cropped by :func:`rggb_offset` (one row for GBRG, one column for GRBG, one
    of each for BGGR) so that its top-left pixel is red, then trimmed to even
    height and width. So the packed image covers the mosaic window
    :func:`rggb_crop` and may lose one row/column at each edge; this keeps
    every packed pixel a real 2x2 block of the sensor (no colour is invented
    and no channels are permuted, which would mix two different pixel sites).
    """
    mosaic, pattern = _mosaic_and_pattern(raw_or_mosaic, cfa_pattern)
    y0, y1, x0, x1 = rggb_crop(mosaic.shape, pattern)
    m = mosaic[y0:y1, x0:x1]
    if m.size == 0:
        raise InputShapeError(f"mosaic of shape {mosaic.shape} is too small to pack")
    h, w = m.shape
    # (h/2, 2, w/2, 2) -> (h/2, w/2, 2, 2) -> channels in reading order R, G1, G2, B
    return np.ascontiguousarray(
        m.reshape(h // 2, 2, w // 2, 2).transpose(0, 2, 1, 3).reshape(h // 2, w // 2, 4))


def unpack_bayer(packed) -> np.ndarray:
    """Inverse of :func:`pack_bayer`: ``(..., h, w, 4)`` -> ``(..., 2h, 2w)`` RGGB mosaic."""
    packed = np.asarray(packed)
    if packed.ndim < 3 or packed.shape[-1] != 4:
        raise InputShapeError(f"packed Bayer must be (..., h, w, 4), got shape {packed.shape}")
    *lead, h, w, _ = packed.shape
    m = packed.reshape(*lead, h, w, 2, 2)
    m = np.moveaxis(m, -2, -3)  # (..., h, 2, w, 2)
    return np.ascontiguousarray(m.reshape(*lead, 2 * h, 2 * w))


def cfa_masks(shape, cfa_pattern) -> np.ndarray:
    """Boolean ``(3, H, W)`` masks of the R, G and B sites of a mosaic."""
    masks = np.zeros((3,) + tuple(shape), bool)
    for (y, x), c in _site_colours(cfa_pattern).items():
        masks[c, y::2, x::2] = True
    return masks


def _site_colours(cfa_pattern):
    """{(y, x): colour index 0/1/2} for the four sites of a 2x2 block."""
    pattern = check_cfa_pattern(cfa_pattern)
    return {(y, x): "RGB".index(pattern[2 * y + x]) for y in (0, 1) for x in (0, 1)}


def demosaic_bilinear(mosaic, cfa_pattern) -> np.ndarray:
    """Bilinear demosaic: ``(H, W)`` mosaic -> ``(H, W, 3)`` float32 RGB.

    Each colour plane keeps its own samples. A missing green is the mean of
    its 4 neighbours (all green in a Bayer mosaic); a missing red or blue is
    the mean of the 2 horizontal neighbours (on a green site in that colour's
    row), the 2 vertical ones (green site in the other row) or the 4 diagonal
    ones (on the opposite colour's site). This is the classic convolution with
    ``[[0,1,0],[1,4,1],[0,1,0]]/4`` (G) and ``[[1,2,1],[2,4,2],[1,2,1]]/4``
    (R, B), evaluated per site.

    Borders are mirrored *without* repeating the edge pixel (numpy 'reflect',
    scipy.ndimage 'mirror', TF 'REFLECT'). That keeps the Bayer phase across
    the border, so a flat field stays exactly flat up to the edges. InvISP's
    reference (colour_demosaicing with a repeating border mode) puts the wrong
    colour under the kernel at the first/last row and column; we do not.
    """
    m = _check_mosaic(mosaic).astype(np.float32, copy=False)
    colours = _site_colours(cfa_pattern)
    h, w = m.shape
    p = np.pad(m, 1, mode="reflect")
    horiz = p[1:-1, :-2] + p[1:-1, 2:]                     # left + right
    vert = p[:-2, 1:-1] + p[2:, 1:-1]                      # up + down
    diag = p[:-2, :-2] + p[:-2, 2:] + p[2:, :-2] + p[2:, 2:]
    cross = (horiz + vert) * np.float32(0.25)
    horiz *= np.float32(0.5)
    vert *= np.float32(0.5)
    diag *= np.float32(0.25)
    out = np.empty((h, w, 3), np.float32)
    for (y, x), c in colours.items():
        site = (slice(y, None, 2), slice(x, None, 2))
        out[site + (c,)] = m[site]
        if c == 1:  # green site: R and B from its row and its column
            row_colour = colours[(y, 1 - x)]               # the non-green in this row
            out[site + (row_colour,)] = horiz[site]
            out[site + (2 - row_colour,)] = vert[site]
        else:       # red or blue site: green from the cross, the other from the diagonals
            out[site + (1,)] = cross[site]
            out[site + (2 - c,)] = diag[site]
    return out


def average_greens(packed) -> np.ndarray:
    """``(..., h, w, 4)`` [R, G1, G2, B] -> ``(..., h, w, 3)`` [R, (G1 + G2) / 2, B]."""
    packed = np.asarray(packed)
    if packed.ndim < 3 or packed.shape[-1] != 4:
        raise InputShapeError(f"packed Bayer must be (..., h, w, 4), got shape {packed.shape}")
    dtype = packed.dtype if np.issubdtype(packed.dtype, np.floating) else np.float32
    p = packed.astype(dtype, copy=False)
    green = (p[..., 1] + p[..., 2]) / 2
    return np.stack([p[..., 0], green, p[..., 3]], axis=-1).astype(dtype, copy=False)
