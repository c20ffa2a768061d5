"""Colour science for RAW rendering: sRGB transfer curve, colour matrices.

Conventions (the same as dcraw/LibRaw and the DNG specification):

* ``xyz_to_cam`` (LibRaw's ``rgb_xyz_matrix``, a DNG ``ColorMatrix``) maps
  CIE XYZ (D65) to *camera-native*, not white-balanced, RGB.
* ``cam_to_srgb`` maps *white-balanced* camera RGB to linear sRGB. It is the
  inverse of ``xyz_to_cam @ SRGB_TO_XYZ`` after that product's rows were
  normalised to sum to one, so a white-balanced neutral (1, 1, 1) stays
  (1, 1, 1): the rows of ``cam_to_srgb`` sum to 1.
* ``cam_to_xyz = SRGB_TO_XYZ @ cam_to_srgb`` (white-balanced camera RGB -> XYZ,
  D65 white point).

All functions are numpy only and work on arrays of any leading shape whose
last axis holds the three colour channels.
"""
from __future__ import annotations

import numpy as np

#: Linear sRGB (D65) -> CIE XYZ, IEC 61966-2-1.
SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]], dtype=np.float64)
#: CIE XYZ -> linear sRGB (D65).
XYZ_TO_SRGB = np.linalg.inv(SRGB_TO_XYZ)


def _float_copy(x):
    """``x`` as a new float array (float32 unless it already is a float type), clipped to [0, 1]."""
    x = np.asarray(x)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
    return np.clip(x, 0.0, 1.0, dtype=dtype) if x.dtype == dtype else \
        np.clip(x.astype(dtype), 0.0, 1.0)


def linear_to_srgb(x):
    """The sRGB transfer curve (IEC 61966-2-1): linear [0, 1] -> encoded [0, 1].

    Input is clipped to [0, 1] first; output has the input's float dtype
    (float32 for integer input).
    """
    x = _float_copy(x)
    # 1.055 x^(1/2.4) - 0.055 written as 1 + 1.055 (x^(1/2.4) - 1): exactly 1 at x = 1 in float32
    out = np.power(x, 1.0 / 2.4, out=np.empty_like(x))
    out -= 1.0
    out *= 1.055
    out += 1.0
    np.copyto(out, x * 12.92, where=x <= 0.0031308)
    return out


def srgb_to_linear(x):
    """Inverse of :func:`linear_to_srgb`: encoded sRGB [0, 1] -> linear [0, 1]."""
    x = _float_copy(x)
    out = np.add(x, 0.055, out=np.empty_like(x))
    out /= 1.055
    np.power(out, 2.4, out=out)
    np.copyto(out, x / 12.92, where=x <= 0.04045)
    return out


def apply_color_matrix(rgb, m):
    """Multiply every pixel of ``rgb`` (..., 3) by the 3x3 matrix ``m``: out = m @ px.

    Float input keeps its dtype (float32 stays float32), integers become float32;
    no clipping.
    """
    rgb = np.asarray(rgb)
    m = np.asarray(m, dtype=np.float64)
    if m.shape != (3, 3):
        raise ValueError(f"colour matrix must be 3x3, got shape {m.shape}")
    if rgb.ndim < 1 or rgb.shape[-1] != 3:
        raise ValueError(f"image must have 3 channels in its last axis, got shape {rgb.shape}")
    dtype = rgb.dtype if np.issubdtype(rgb.dtype, np.floating) else np.float32
    # einsum's optimised path goes through BLAS: several times faster than matmul on (N, 3)
    return np.einsum("...c,dc->...d", rgb.astype(dtype, copy=False), m.astype(dtype),
                     optimize=True)


def cam_to_srgb_from_xyz_to_cam(xyz_to_cam) -> np.ndarray:
    """White-balanced camera RGB -> linear sRGB from an XYZ->camera matrix.

    ``xyz_to_cam`` is 3x3 (or 4x3, LibRaw's ``rgb_xyz_matrix``, whose 4th row is
    ignored). dcraw's recipe: ``cam_rgb = xyz_to_cam @ SRGB_TO_XYZ``, rows
    normalised to sum 1 (this folds the white balance out), inverted.
    """
    m = np.asarray(xyz_to_cam, dtype=np.float64)[:3, :3]
    cam_rgb = m @ SRGB_TO_XYZ
    sums = cam_rgb.sum(axis=1, keepdims=True)
    if np.any(np.abs(sums) < 1e-12):
        raise ValueError("XYZ->camera matrix maps white to zero in some channel")
    cam_rgb = cam_rgb / sums
    out = np.linalg.inv(cam_rgb)
    return out / out.sum(axis=1, keepdims=True)  # removes rounding: rows sum to exactly 1


def cam_to_xyz_from_cam_to_srgb(cam_to_srgb) -> np.ndarray:
    """White-balanced camera RGB -> XYZ (D65): ``SRGB_TO_XYZ @ cam_to_srgb``."""
    return SRGB_TO_XYZ @ np.asarray(cam_to_srgb, dtype=np.float64)


def xyz_to_cam_from_cam_to_xyz(cam_to_xyz, wb_gains=None) -> np.ndarray:
    """An XYZ->camera-native matrix (what a DNG ``ColorMatrix1`` stores).

    Inverts ``cam_to_xyz`` (white-balanced camera -> XYZ) and undoes the white
    balance: camera-native = white-balanced / gains. ``wb_gains=None`` means
    unit gains. Rows are scaled so the matrix maps the D65 white to a camera
    neutral whose largest component is 1 (the DNG convention). The round trip
    through :func:`cam_to_srgb_from_xyz_to_cam` gives back ``cam_to_xyz``.
    """
    inv = np.linalg.inv(np.asarray(cam_to_xyz, dtype=np.float64))
    gains = np.ones(3) if wb_gains is None else np.asarray(wb_gains, dtype=np.float64)
    m = inv / gains[:, None]
    white = m @ (SRGB_TO_XYZ @ np.ones(3))
    return m / np.max(white)
