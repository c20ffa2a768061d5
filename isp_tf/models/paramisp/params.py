"""ParamISP's camera parameters: read from a RAW file, encoded on the host into the model's vector.

The encoding itself lives in :mod:`isp_tf.data.cameras` (numpy only), since
the data pipeline computes the same vector as metadata (``params``, what
INT8 calibration feeds); this module re-exports it.

The model takes one per-frame vector of 84 float32 values (the ``params``
port), computed here, outside the graph, so that the phone app computes it
from EXIF and NNAPI 1.2 never sees LOG/SIN/COS:

* ``[0:3]``   white balance ``wb / wb_G`` (as-shot gains, green = 1),
* ``[3:6]``   its reciprocal ``1 / wb``,
* ``[6:15]``  the camera RGB (white balanced) -> linear sRGB matrix, row-major,
* ``[15:24]`` its inverse, row-major,
* ``[24:84]`` the 15-value encodings of focal length (mm), f-number,
  exposure time (s) and ISO, in that order (:func:`encode_value`).

For a value ``v`` (0 if unknown, clipped to 1e-12) and constants ``(s, c,
d1, d2, d3, a, b)`` the encoding is::

    v/s, sqrt(v/s), (v/s)^0.25, c/v, sqrt(c/v), (c/v)^0.25,
    (log2 v - a)/b, sin(log2 v), cos(log2 v),
    sin(v/d1), cos(v/d1), sin(v/d2), cos(v/d2), sin(v/d3), cos(v/d3)

with (the authors' data/utils.py)::

    focal length  s=200   c=4.2      d=50, 30, 20      a=1.9  b=5.8
    f-number      s=32    c=1.7      d=11, 5, 2        a=0.7  b=4.3
    exposure      s=30    c=1/28800  d=11, 5, 2        a=-15  b=20
    ISO           s=8000  c=64       d=3100, 1300, 500 a=6    b=7

A missing field is encoded as the authors do (0 -> 1e-12, whose reciprocal
terms are ~1e12), but :func:`read_camera_params` reports it in one warning
naming the file and the field; a value outside the encoding's range
(:data:`RANGES`) is reported as well.  Both warnings are
:class:`CameraParamsWarning`.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from isp_tf.data.cameras import (CONSTANTS, FIELDS, RANGES, CameraParamsWarning, camera_params_vector,
                                 check_optics, encode, encode_value)

__all__ = ["CONSTANTS", "RANGES", "CameraParams", "CameraParamsWarning", "encode", "encode_value",
           "params_from_raw", "read_camera_params"]


@dataclasses.dataclass
class CameraParams:
    """What ParamNet is conditioned on; optics fields 0 where unknown."""

    wb_gains: np.ndarray            # (3,) as-shot R, G, B gains
    cam_to_srgb: np.ndarray         # (3, 3) white-balanced camera RGB -> linear sRGB
    focal_length: float = 0.0       # mm
    f_number: float = 0.0
    exposure_time: float = 0.0      # s
    iso: float = 0.0

    def optics(self) -> np.ndarray:
        return np.array([self.focal_length, self.f_number, self.exposure_time, self.iso], np.float64)

    def vector(self) -> np.ndarray:
        """The model's (84,) float32 ``params`` input."""
        return encode(self.wb_gains, self.cam_to_srgb, self.optics())


def params_from_raw(raw, source: Optional[str] = None) -> CameraParams:
    """The :class:`CameraParams` of an :class:`isp_tf.raw.RawImage` (its EXIF, as-shot WB and
    colour matrix), warning about missing or out-of-range fields (see :func:`check_optics`)."""
    exif = raw.exif
    values = [float(getattr(exif, f, None) or 0.0) if exif is not None else 0.0 for f in FIELDS]
    check_optics(values, str(source or getattr(raw, "path", None) or "RAW image"))
    return CameraParams(np.asarray(raw.wb_gains, np.float64), np.asarray(raw.cam_to_srgb, np.float64), *values)


def read_camera_params(path) -> CameraParams:
    """Read a RAW file (any LibRaw format, :func:`isp_tf.raw.read_raw`) and return its parameters."""
    from isp_tf.raw import read_raw

    return params_from_raw(read_raw(path), source=str(path))


#: ``Port.from_raw`` of the ``params`` port (``RawImage -> (84,) float32``, warning as
#: :func:`check_optics`); the training pipeline's ``params`` metadata is the same function.
params_vector_from_raw = camera_params_vector
