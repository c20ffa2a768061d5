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
      sources: where ``read_raw`` found each EXIF field and the camera name:
        ``{"iso", "exposure_time", "f_number", "focal_length", "camera"}`` ->
        ``"exif"`` (the file's EXIF, via exifread), ``"libraw"`` (LibRaw's
        decoded fields, via rawpy), ``"ciff"`` (a Canon CRW record) or None
        (unknown); None when the image was not read by ``read_raw``.
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
    sources: Optional[dict] = dataclasses.field(default=None, compare=False)

    def __post_init__(self):
        """Normalise field types (lists become arrays) and reject what cannot be a Bayer image."""
        from isp_tf.errors import InputShapeError, RawReadError, UnsupportedCFAError

        where = self.path or "<RawImage>"
        self.bayer = np.asarray(self.bayer)
        if self.bayer.ndim != 2:
            raise InputShapeError(f"{where}: bayer must be a 2-D mosaic, got shape "
                                  f"{self.bayer.shape}")
        if not isinstance(self.cfa_pattern, str) or self.cfa_pattern.upper() not in CFA_PATTERNS:
            raise UnsupportedCFAError(where, f"CFA pattern {self.cfa_pattern!r} is not one of "
                                             f"{', '.join(CFA_PATTERNS)}")
        self.cfa_pattern = self.cfa_pattern.upper()
        black = np.asarray(self.black_level, dtype=np.float32).ravel()
        if black.size == 1:
            black = np.repeat(black, 4)
        if black.size != 4:
            raise RawReadError(where, f"black_level needs 1 or 4 values, got {black.size}")
        self.black_level = black
        self.white_level = float(self.white_level)
        gains = np.asarray(self.wb_gains, dtype=np.float32).ravel()
        if gains.size != 3:
            raise RawReadError(where, f"wb_gains needs 3 values (R, G, B), got {gains.size}")
        self.wb_gains = gains
        for name in ("cam_to_xyz", "cam_to_srgb"):
            m = np.asarray(getattr(self, name), dtype=np.float64)
            if m.shape != (3, 3):
                raise RawReadError(where, f"{name} must be 3x3, got shape {m.shape}")
            setattr(self, name, m)
        if self.exif is None:
            self.exif = Exif()
        self.orientation = int(self.orientation or 1)

    @property
    def height(self) -> int:
        return int(self.bayer.shape[0])

    @property
    def width(self) -> int:
        return int(self.bayer.shape[1])
