"""``RawImage``: a Bayer mosaic and the metadata needed to render it."""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

CFA_PATTERNS = ("RGGB", "GRBG", "GBRG", "BGGR")


@dataclasses.dataclass
class Exif:
    """Shooting parameters; ``None`` where the file does not say."""

    iso: Optional[float] = None
    exposure_time: Optional[float] = None  # seconds
    f_number: Optional[float] = None
    focal_length: Optional[float] = None  # millimetres


@dataclasses.dataclass
class RawImage:
    """A RAW photo as the sensor saw it.

    Attributes:
      bayer: 2-D array (H, W), the visible sensor area, values in sensor units
        (uint16 or float32), *not* black-subtracted.
      cfa_pattern: one of ``CFA_PATTERNS``, the colours of the top-left 2x2
        block of ``bayer`` in reading order, read from the file.
      black_level: 4 floats, in the CFA order of ``cfa_pattern`` (i.e. for
        positions (0,0), (0,1), (1,0), (1,1) of each 2x2 block).
      white_level: saturation value after LibRaw's linearisation.
      wb_gains: (R, G, B) multipliers normalised so that G == 1.
      cam_to_xyz: 3x3, camera RGB (white balanced) -> CIE XYZ (D65).
      cam_to_srgb: 3x3, camera RGB (white balanced) -> linear sRGB, rows sum to 1.
      exif: shooting parameters.
      orientation: EXIF orientation code 1..8 (1 = as stored).
      path: the file it was read from, if any.
      camera: "Make Model" if known.
    """

    bayer: np.ndarray
    cfa_pattern: str
    black_level: np.ndarray
    white_level: float
    wb_gains: np.ndarray
    cam_to_xyz: np.ndarray
    cam_to_srgb: np.ndarray
    exif: Exif = dataclasses.field(default_factory=Exif)
    orientation: int = 1
    path: Optional[str] = None
    camera: Optional[str] = None

    @property
    def height(self) -> int:
        return int(self.bayer.shape[0])

    @property
    def width(self) -> int:
        return int(self.bayer.shape[1])
