"""Simulated cameras for synthetic training data whose camera parameters carry signal (numpy only).

The plain ``synthetic:`` pairs (:mod:`isp_tf.data.synthetic`) draw a random
colour-matrix mix and a digital gain that no metadata records, so a network
conditioned on EXIF (ParamISP) has nothing to learn from the EXIF there.  The
``cameras:`` pairs come from a few fixed simulated cameras, and every
parameter the EXIF and the DNG tags record changes the RAW:

* colour: each camera has its own XYZ -> camera matrix (one of the dcraw
  ``adobe_coeff`` rows of :data:`isp_tf.data.synthetic.CAMERA_XYZ_TO_CAM`),
  CFA pattern and black/white levels; white balance is drawn per shot as in
  Brooks et al. and stored (as-shot gains);
* exposure: each shot has an exposure bias ``b ~ U[-1.5, 0.5]`` EV against
  the camera's meter; the EXIF says ISO ``S``, f-number ``N`` and exposure
  time ``t = 2^b N^2 / (K S)`` (``K`` the camera's meter constant), and the
  RAW is ``2^b`` times the metered exposure (clipped at white).  Recovering
  the target's brightness needs ``b``, which only the EXIF gives;
* noise: shot-noise variance ``0.012 * S / 6400 * noise_gain`` (per camera)
  with Brooks' read-noise fit, so ISO says how noisy the RAW is;
* tone: the target is the camera's own rendering of the photo,
  ``photo ** tone`` (its "look", told apart by its colour matrix), and long
  exposures (``t > 1/30`` s) get a softer rendering (``tone`` lowered by 0.1), an
  exposure-dependent tone curve the EXIF reveals.

Focal length is drawn from the camera's zoom range and recorded, but changes
nothing in the image (no lens model): conditioning on it cannot help here.  The meter constants make
the shortest exposures (highest ISO, widest aperture, -1.5 EV) shorter than
1/28800 s, below the range ParamISP's encoding is built for (those files
get the out-of-range warning when read; the training pipeline stays quiet).
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from isp_tf.errors import DatasetError
from isp_tf.raw.image import Exif, RawImage

__all__ = ["CAMERAS", "CONSTANTS", "RANGES", "CameraParamsWarning", "SimulatedCamera", "camera_names",
           "camera_params_vector", "check_optics", "encode", "encode_value", "quiet_camera_warnings",
           "select_camera", "synthesize_camera"]


@dataclasses.dataclass(frozen=True)
class SimulatedCamera:
    """One simulated camera; see the module docstring for what each value does."""

    name: str
    matrix: str                      # key of CAMERA_XYZ_TO_CAM
    cfa_pattern: str
    levels: Tuple[int, int]          # black, white
    iso_range: Tuple[float, float]
    f_numbers: Tuple[float, ...]
    focal_range: Tuple[float, float]  # mm
    meter: float = 100.0             # K in t = 2^b N^2 / (K S)
    noise_gain: float = 1.0
    tone: float = 1.0


CAMERAS: Dict[str, SimulatedCamera] = {c.name: c for c in (
    SimulatedCamera("cam_a", "Canon EOS 5D Mark II", "RGGB", (1023, 15600), (100.0, 6400.0),
                    (2.8, 4.0, 5.6, 8.0), (24.0, 105.0), meter=100.0, noise_gain=0.6, tone=1.0),
    SimulatedCamera("cam_b", "Nikon D7000", "BGGR", (600, 15520), (100.0, 3200.0),
                    (1.8, 2.8, 4.0, 8.0), (35.0, 35.0), meter=80.0, noise_gain=1.0, tone=0.85),
    SimulatedCamera("cam_c", "Canon EOS 550D", "GRBG", (2048, 15000), (100.0, 6400.0),
                    (3.5, 5.6, 8.0, 11.0), (18.0, 55.0), meter=125.0, noise_gain=1.4, tone=1.15),
    SimulatedCamera("cam_d", "Nikon D750", "GBRG", (128, 4095), (64.0, 1600.0),
                    (1.7, 2.2, 2.8), (4.2, 4.2), meter=60.0, noise_gain=2.0, tone=0.95),
)}

EXPOSURE_BIAS = (-1.5, 0.5)
LONG_EXPOSURE = 1.0 / 30.0


def camera_names() -> List[str]:
    return list(CAMERAS)


def _camera(name: str) -> SimulatedCamera:
    if name not in CAMERAS:
        raise DatasetError(f"unknown simulated camera {name!r}; cameras: {', '.join(CAMERAS)}")
    return CAMERAS[name]


def synthesize_camera(image: np.ndarray, camera, seed=0, *, noise: bool = True):
    """Unprocess one sRGB photo as shot by ``camera`` (a name or :class:`SimulatedCamera`).

    Returns :class:`isp_tf.data.synthetic.SyntheticPair`; ``params`` holds the
    exposure bias ``bias_ev``, ``camera``, gains and noise levels.
    """
    from isp_tf.data import synthetic as syn

    cam = _camera(camera) if isinstance(camera, str) else camera
    photo = syn.even_srgb_image(image, "synthesize_camera")
    rng = np.random.default_rng(seed)

    iso = float(np.exp(rng.uniform(*np.log(cam.iso_range))))
    f_number = float(rng.choice(cam.f_numbers))
    focal = float(np.exp(rng.uniform(*np.log(cam.focal_range))))
    bias = float(rng.uniform(*EXPOSURE_BIAS))
    exposure_time = float(2.0 ** bias * f_number ** 2 / (cam.meter * iso))
    tone = cam.tone - (0.1 if exposure_time > LONG_EXPOSURE else 0.0)
    target = photo ** tone

    xyz_to_cam = syn.CAMERA_XYZ_TO_CAM[cam.matrix]
    rgb_to_cam = syn.rgb_to_cam_matrix(xyz_to_cam)
    red_gain, blue_gain = rng.uniform(1.9, 2.4), rng.uniform(1.5, 1.9)
    x = syn.gamma_expand(syn.inverse_smoothstep(photo)) @ rgb_to_cam.T
    x = syn.safe_invert_gains(x, 2.0 ** -bias, red_gain, blue_gain)
    linear = np.clip(x, 0.0, 1.0)
    m = syn.mosaic(linear, cam.cfa_pattern)
    shot = syn.SHOT_NOISE_RANGE[1] * iso / syn.ISO_AT_MAX_SHOT * cam.noise_gain
    read = float(np.exp(syn.READ_NOISE_SLOPE * np.log(shot) + syn.READ_NOISE_INTERCEPT))
    if noise:
        m = syn.add_noise(m, shot, read, rng)
    black, white = cam.levels
    bayer = np.clip(np.round(black + m * (white - black)), 0, white).astype(np.uint16)
    cam_to_srgb = np.linalg.inv(rgb_to_cam)
    cam_to_srgb /= cam_to_srgb.sum(axis=1, keepdims=True)
    raw = RawImage(bayer=bayer, cfa_pattern=cam.cfa_pattern, black_level=np.full(4, float(black)),
                   white_level=float(white), wb_gains=np.array([red_gain, 1.0, blue_gain]),
                   cam_to_xyz=syn._SRGB_TO_XYZ @ cam_to_srgb, cam_to_srgb=cam_to_srgb,
                   exif=Exif(iso=round(iso), exposure_time=exposure_time, f_number=f_number,
                             focal_length=round(focal, 1)),
                   orientation=1, camera=f"isp_tf simulated {cam.name}")
    params = dict(camera=cam.name, bias_ev=bias, red_gain=float(red_gain), blue_gain=float(blue_gain),
                  shot_noise=shot, read_noise=read, tone=tone)
    return syn.SyntheticPair(raw=raw, target=target.astype(np.float32), linear=linear.astype(np.float32),
                             params=params)


def load_camera_pair(index: int, seed, cameras: Sequence[str], photos: Sequence[str]):
    """Pair ``index``: camera ``cameras[index % len]``, photo ``photos[(index // len(cameras)) % len]``."""
    from isp_tf.data.photos import load_photo

    cam = cameras[index % len(cameras)]
    photo = photos[(index // len(cameras)) % len(photos)]
    pair = synthesize_camera(load_photo(photo), cam, seed=(int(seed), int(index)))
    return pair.raw, pair.target


def parse_cameras_spec(rest: Optional[str], spec: str):
    """``N[:CAMERA,...[:PHOTO,...]]`` -> ``(n, cameras, photos)``."""
    from isp_tf.data.photos import BUNDLED_PHOTOS, photo_path

    parts = (rest or "").split(":")
    try:
        n = int(parts[0]) if parts[0] else 64
        if n <= 0:
            raise ValueError
    except ValueError:
        raise DatasetError(f"{spec}: the count after 'cameras:' must be a positive integer") from None
    cameras = [c.strip() for c in (parts[1] if len(parts) > 1 else "").split(",") if c.strip()] or camera_names()
    for c in cameras:
        _camera(c)
    photos = [p.strip() for p in (parts[2] if len(parts) > 2 else "").split(",") if p.strip()] or list(BUNDLED_PHOTOS)
    for p in photos:
        photo_path(p)
    return n, cameras, photos


def select_camera(specs, camera: str):
    """The ``cameras:`` specs of ``specs`` restricted to ``camera`` (``--camera`` of a fine-tune)."""
    _camera(camera)
    specs = [specs] if isinstance(specs, str) else list(specs)
    out = []
    for spec in specs:
        layout, _, rest = spec.partition(":")
        if layout.strip().lower() != "cameras":
            raise DatasetError(f"--camera {camera}: {spec} is not a cameras: dataset (its examples name no camera)")
        parts = rest.split(":")
        photos = parts[2] if len(parts) > 2 else ""
        out.append(f"cameras:{parts[0]}:{camera}" + (f":{photos}" if photos else ""))
    return out


# --------------------------------------------------------------------------- camera parameters
# ParamISP's host-side encoding (documented in isp_tf/models/paramisp/params.py): here, numpy
# only, because the data pipeline computes it as the ``params`` metadata of every example.
FIELDS = ("focal_length", "f_number", "exposure_time", "iso")
EPS = 1e-12

#: field -> (s, c, (d1, d2, d3), a, b); for exposure c is 1/28800 (the authors' `1 / (t * 28800)`)
CONSTANTS: Dict[str, tuple] = {
    "focal_length": (200.0, 4.2, (50.0, 30.0, 20.0), 1.9, 5.8),
    "f_number": (32.0, 1.7, (11.0, 5.0, 2.0), 0.7, 4.3),
    "exposure_time": (30.0, 1.0 / 28800.0, (11.0, 5.0, 2.0), -15.0, 20.0),
    "iso": (8000.0, 64.0, (3100.0, 1300.0, 500.0), 6.0, 7.0),
}

#: the range each encoding is built for: [c, s] (its reciprocal and linear terms stay within ~[0, 1] there)
RANGES: Dict[str, tuple] = {k: (v[1], v[0]) for k, v in CONSTANTS.items()}


class CameraParamsWarning(UserWarning):
    """A camera parameter is missing (encoded as 0, as the authors do) or outside its encoding's range."""


def encode_value(value, field: str) -> np.ndarray:
    """The 15-value encoding of ``value`` (a number or an array: one row per value)."""
    s, c, divisors, a, b = CONSTANTS[field]
    v = np.maximum(np.asarray(value, np.float64), EPS)
    log2 = np.log2(v)
    terms = [v / s, np.sqrt(v / s), (v / s) ** 0.25, c / v, np.sqrt(c / v), (c / v) ** 0.25,
             (log2 - a) / b, np.sin(log2), np.cos(log2)]
    for d in divisors:
        terms += [np.sin(v / d), np.cos(v / d)]
    return np.stack(terms, axis=-1)


def encode(wb_gains, cam_to_srgb, optics) -> np.ndarray:
    """``(wb (..., 3), ccm (..., 3, 3), [focal, f-number, exposure, ISO] (..., 4)) -> (..., 84)`` float32."""
    wb = np.asarray(wb_gains, np.float64)
    wb = wb / wb[..., 1:2]
    m = np.asarray(cam_to_srgb, np.float64)
    optics = np.asarray(optics, np.float64)
    flat = m.reshape(m.shape[:-2] + (9,))
    try:
        inv = np.linalg.inv(m)
    except np.linalg.LinAlgError:  # a singular matrix in a broken file: the pseudo-inverse, not a crash
        inv = np.linalg.pinv(m)
    inv = inv.reshape(m.shape[:-2] + (9,))
    parts = [wb, 1.0 / wb, flat, inv] + [encode_value(optics[..., k], f) for k, f in enumerate(FIELDS)]
    return np.concatenate(parts, axis=-1).astype(np.float32)


def check_optics(values: Sequence[float], source: str = "camera parameters") -> None:
    """Warn (one :class:`CameraParamsWarning`) about missing fields and (another) about values
    outside :data:`RANGES`."""
    missing = [f for f, v in zip(FIELDS, values) if not v or not np.isfinite(v) or v <= 0]
    if missing:
        warnings.warn(f"{source}: {', '.join(missing)} missing; encoded as 0 (clipped to 1e-12) as "
                      f"ParamISP's authors do, the result may be poor", CameraParamsWarning, stacklevel=3)
    outside = [f"{f}={v:g} (range {RANGES[f][0]:g}..{RANGES[f][1]:g})" for f, v in zip(FIELDS, values)
               if f not in missing and not RANGES[f][0] <= v <= RANGES[f][1]]
    if outside:
        warnings.warn(f"{source}: outside the encoding's range: {', '.join(outside)}",
                      CameraParamsWarning, stacklevel=3)


_QUIET = contextvars.ContextVar("isp_tf_quiet_camera_warnings", default=False)


@contextlib.contextmanager
def quiet_camera_warnings():
    """No :class:`CameraParamsWarning` from :func:`camera_params_vector` in this thread meanwhile
    (the training pipeline decodes every example's metadata, for every model)."""
    token = _QUIET.set(True)
    try:
        yield
    finally:
        _QUIET.reset(token)


def camera_params_vector(raw) -> np.ndarray:
    """ParamISP's ``params`` input (84 float32) of an :class:`isp_tf.raw.RawImage`: its as-shot WB,
    colour matrix and EXIF, encoded (:func:`encode`); warns about missing / out-of-range EXIF
    (:func:`check_optics`, naming ``raw.path``) unless :func:`quiet_camera_warnings`."""
    exif = raw.exif
    values = [float(getattr(exif, f, None) or 0.0) if exif is not None else 0.0 for f in FIELDS]
    if not _QUIET.get():
        check_optics(values, str(getattr(raw, "path", None) or raw.camera or "RAW image"))
    return encode(raw.wb_gains, raw.cam_to_srgb, values)
