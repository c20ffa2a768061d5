"""The classical reference ISP (training targets and the baseline) and orientation."""
from __future__ import annotations

import numpy as np

from isp_tf.errors import InputShapeError
from isp_tf.raw.bayer import check_cfa_pattern, demosaic_bilinear, normalize_bayer, rggb_crop
from isp_tf.raw.color import apply_color_matrix, linear_to_srgb
from isp_tf.raw.image import RawImage


def render_classical(raw: RawImage, *, align_to_packed: bool = False) -> np.ndarray:
    """Render a :class:`RawImage` to sRGB: the reference ISP, float32 (H, W, 3) in [0, 1].

    Steps (the order and clipping of dcraw/LibRaw with camera white balance,
    highlight clipping, no auto-brightening, linear demosaic, sRGB output):

    1. per-site black subtraction and division by (white - black), clip [0, 1];
    2. white balance gains on the mosaic, clip [0, 1]. The gains are scaled so
       the smallest is 1 (normally G, so usually unchanged): every channel of a
       saturated pixel then clips to 1 and highlights stay white instead of
       turning magenta (dcraw/LibRaw's highlight mode 0 does the same);
    3. bilinear demosaic with mirrored borders (:func:`demosaic_bilinear`);
    4. camera -> linear sRGB with ``raw.cam_to_srgb``, clip [0, 1];
    5. the sRGB transfer curve.

    Differs from LibRaw's render at the borders (LibRaw averages the
    available neighbours of the outermost pixel, we mirror) and in the exact
    16-bit rounding; see tests/raw/test_raw_render.py for the measured difference.
    Orientation is *not* applied, so the output stays pixel-aligned with
    ``raw.bayer`` (use :func:`apply_orientation` for display).

    Args:
      align_to_packed: crop to the window that :func:`pack_bayer` keeps, so the
        output is ``(2h, 2w, 3)`` for a packed ``(h, w, 4)`` and pixel (y, x)
        belongs to packed pixel (y // 2, x // 2). The demosaic runs on the full
        mosaic first, so the crop has no extra border effects.
    """
    mosaic = normalize_bayer(raw)
    gains = np.asarray(raw.wb_gains, dtype=np.float64)
    gains = (gains / gains.min()).astype(np.float32)  # as LibRaw: smallest gain 1, see step 2
    pattern = check_cfa_pattern(raw.cfa_pattern, raw.path or "<RawImage>")
    for y in (0, 1):
        for x in (0, 1):
            mosaic[y::2, x::2] *= gains["RGB".index(pattern[2 * y + x])]
    np.minimum(mosaic, np.float32(1.0), out=mosaic)
    rgb = demosaic_bilinear(mosaic, pattern)
    out = linear_to_srgb(apply_color_matrix(rgb, raw.cam_to_srgb))  # clips to [0, 1] first
    if align_to_packed:
        y0, y1, x0, x1 = rggb_crop(mosaic.shape, raw.cfa_pattern)
        out = out[y0:y1, x0:x1]
    return np.ascontiguousarray(out)


def apply_orientation(image, orientation: int):
    """Turn an image stored in sensor order into display order for an EXIF orientation.

    ``image`` is (H, W) or (H, W, C) (or any (H, W, ...) array); ``orientation``
    is the EXIF code: 1 as stored, 2 mirrored left-right, 3 rotated 180,
    4 mirrored top-bottom, 5 transposed, 6 rotate 90 clockwise to view,
    7 transverse, 8 rotate 90 counter-clockwise to view.
    """
    image = np.asarray(image)
    if image.ndim < 2:
        raise InputShapeError(f"an image needs at least 2 dimensions, got shape {image.shape}")
    o = int(orientation)
    if o == 1:
        return image
    if o == 2:
        return image[:, ::-1]
    if o == 3:
        return image[::-1, ::-1]
    if o == 4:
        return image[::-1]
    if o == 5:
        return np.swapaxes(image, 0, 1)
    if o == 6:
        return np.swapaxes(image[::-1], 0, 1)     # rotate 90 clockwise
    if o == 7:
        return np.swapaxes(image[::-1, ::-1], 0, 1)
    if o == 8:
        return np.swapaxes(image[:, ::-1], 0, 1)  # rotate 90 counter-clockwise
    raise ValueError(f"orientation must be an EXIF code 1..8, got {orientation}")
