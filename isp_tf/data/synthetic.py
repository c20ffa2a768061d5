"""Synthetic RAW from sRGB photos ("unprocessing", Brooks et al. 2019).

Brooks, Mildenhall, Xue, Chen, Sharlet, Barron, "Unprocessing Images for
Learned Raw Denoising", CVPR 2019, invert a simple camera pipeline step by
step to turn an sRGB photo into a plausible sensor RAW:

1. inverse tone curve: the inverse of smoothstep, ``0.5 - sin(asin(1 - 2x) / 3)``;
2. inverse gamma: ``max(x, 1e-8) ** 2.2``;
3. inverse colour correction: linear sRGB -> camera RGB through a random
   convex mix of real cameras' XYZ->camera matrices (rows normalised);
4. inverse white balance and digital gain: multiply by
   ``[1/red_gain, 1, 1/blue_gain] / rgb_gain`` with ``rgb_gain = 1/N(0.8, 0.1)``,
   ``red_gain ~ U[1.9, 2.4]``, ``blue_gain ~ U[1.5, 1.9]``, softened near white
   so highlights are not pushed below saturation (inflection 0.9);
5. mosaic to the Bayer pattern;
6. shot and read noise: ``variance = shot * x + read`` with ``shot`` log-uniform
   in [1e-4, 0.012] and ``log(read) = 2.18 log(shot) + 1.20 + N(0, 0.26)``.

Where we differ from the paper, and why:

* The result is a real sensor file, not a float image: the noisy mosaic is
  scaled to a randomly chosen sensor's black and white levels and quantised
  to uint16, so the ``RawImage`` goes through the same decode path
  (``normalize_bayer``, ``pack_bayer``) as a camera's, and ``write_dng`` can
  store it.
* Any of the four Bayer patterns, not only RGGB.
* The noise level sets the EXIF: ISO is proportional to the shot-noise
  variance (ISO 6400 at the paper's largest shot noise, 0.012) and exposure
  time is ``1 / (1.25 ISO)`` s (1/125 s at ISO 100: a scene of constant
  brightness), so metadata and noise agree.
* The camera matrices are our own table (below), optionally extended with
  the matrices of the real files in ``shared/raw_samples``.

The digital gain ``rgb_gain`` has no place in a ``RawImage`` (white balance is
normalised to green), so ``render_classical`` of a synthetic RAW is darker by
``1 / rgb_gain`` and lacks the smoothstep tone curve: the training target is
the original photo, which a network learns to reproduce.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

from isp_tf.errors import DatasetError
from isp_tf.raw.image import CFA_PATTERNS, Exif, RawImage

# XYZ -> camera-native matrices (D65), the dcraw / LibRaw ``adobe_coeff``
# table (public; originally from Adobe DNG Converter), divided by 10000.
CAMERA_XYZ_TO_CAM = {
    "Canon EOS 5D Mark II": [[4716, 603, -830], [-7798, 15474, 2480], [-1496, 1937, 6651]],
    "Canon EOS 450D": [[5784, -262, -821], [-7539, 15064, 2672], [-1982, 2681, 7427]],
    "Canon EOS 550D": [[6941, -1164, -857], [-3825, 11597, 2534], [-416, 1540, 6039]],
    "Nikon D700": [[8139, -2171, -663], [-8747, 16541, 2295], [-1925, 2008, 8093]],
    "Nikon D7000": [[8198, -2239, -724], [-4871, 12389, 2798], [-1043, 2050, 7181]],
    "Nikon D750": [[9020, -2890, -715], [-4535, 12436, 2348], [-934, 1919, 7086]],
}
CAMERA_XYZ_TO_CAM = {k: np.asarray(v, np.float64) / 10000.0 for k, v in CAMERA_XYZ_TO_CAM.items()}

#: (black level, white level) of typical sensors: 14-bit DSLRs, 12-bit, a 10-bit phone.
SENSOR_LEVELS = ((512, 16383), (1023, 15600), (600, 15520), (2048, 15000), (128, 4095), (64, 1023))

# Brooks et al. 2019 constants (see METHODS.md, last section).
SHOT_NOISE_RANGE = (1e-4, 0.012)
READ_NOISE_SLOPE, READ_NOISE_INTERCEPT, READ_NOISE_STD = 2.18, 1.20, 0.26
HIGHLIGHT_INFLECTION = 0.9
#: ISO of the largest shot noise of the paper's range; ISO is proportional to shot noise.
ISO_AT_MAX_SHOT = 6400.0

_SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                         [0.2126729, 0.7151522, 0.0721750],
                         [0.0193339, 0.1191920, 0.9503041]])


@dataclasses.dataclass
class SyntheticPair:
    """One unprocessed photo.

    Attributes:
      raw: the synthetic sensor image (``bayer`` uint16 with real black/white
        levels) and its metadata (pattern, WB gains, colour matrices, EXIF).
      target: ``(H, W, 3)`` float32 sRGB in [0, 1], the photo it came from
        (cropped to the mosaic's even size), aligned pixel for pixel.
      linear: ``(H, W, 3)`` float32, the clean camera-space image before
        mosaicking and noise (what a denoiser/demosaicer should recover).
      params: the random draws: ``xyz_to_cam``, ``rgb_gain``, ``red_gain``,
        ``blue_gain``, ``shot_noise``, ``read_noise``.
    """

    raw: RawImage
    target: np.ndarray
    linear: np.ndarray
    params: dict


def camera_matrices(include_raw_samples: bool = False) -> dict:
    """The XYZ->camera matrices the colour mix draws from.

    Args:
      include_raw_samples: also read the matrices of the real files in
        ``shared/raw_samples`` (through :func:`isp_tf.raw.read_raw`) when that
        folder exists. Off by default so results do not depend on it.
    """
    table = dict(CAMERA_XYZ_TO_CAM)
    if include_raw_samples:
        import os
        import pathlib

        from isp_tf.raw import RAW_EXTENSIONS, read_raw
        from isp_tf.raw.color import xyz_to_cam_from_cam_to_xyz

        folder = pathlib.Path(os.environ.get(
            "ISP_TF_RAW_SAMPLES", pathlib.Path(__file__).resolve().parents[3] / "shared" / "raw_samples"))
        for path in sorted(folder.glob("*")):
            if path.suffix.lower() not in RAW_EXTENSIONS:
                continue
            raw = read_raw(path)
            table[f"{raw.camera or path.stem} ({path.name})"] = xyz_to_cam_from_cam_to_xyz(
                raw.cam_to_xyz, raw.wb_gains)
    return table


def random_xyz_to_cam(rng: np.random.Generator, matrices: Optional[dict] = None) -> np.ndarray:
    """A random convex combination of the given XYZ->camera matrices (Brooks' CCM mix)."""
    mats = np.stack(list((matrices or CAMERA_XYZ_TO_CAM).values()))
    weights = rng.uniform(1e-8, 1.0, size=len(mats))
    weights /= weights.sum()
    return np.tensordot(weights, mats, axes=1)


def rgb_to_cam_matrix(xyz_to_cam: np.ndarray) -> np.ndarray:
    """Linear sRGB -> camera RGB: ``xyz_to_cam @ SRGB_TO_XYZ`` with rows summing to 1."""
    m = np.asarray(xyz_to_cam, np.float64) @ _SRGB_TO_XYZ
    return m / m.sum(axis=1, keepdims=True)


def inverse_smoothstep(x: np.ndarray) -> np.ndarray:
    """Inverse of the smoothstep tone curve ``3x^2 - 2x^3`` on [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return 0.5 - np.sin(np.arcsin(1.0 - 2.0 * x) / 3.0)


def gamma_expand(x: np.ndarray) -> np.ndarray:
    """Brooks' approximate inverse of the sRGB curve: ``max(x, 1e-8) ** 2.2``."""
    return np.maximum(x, 1e-8) ** 2.2


def safe_invert_gains(x: np.ndarray, rgb_gain: float, red_gain: float, blue_gain: float) -> np.ndarray:
    """Divide by the white-balance and digital gains, sparing highlights.

    Pixels whose mean is above ``HIGHLIGHT_INFLECTION`` blend towards gain 1
    (quadratically), so a saturated white stays saturated instead of turning
    into a tinted grey the forward pipeline could never clip back.
    """
    gains = np.array([1.0 / red_gain, 1.0, 1.0 / blue_gain]) / rgb_gain
    gray = x.mean(axis=-1, keepdims=True)
    mask = (np.maximum(gray - HIGHLIGHT_INFLECTION, 0.0) / (1.0 - HIGHLIGHT_INFLECTION)) ** 2
    safe = np.maximum(mask + (1.0 - mask) * gains, gains)
    return x * safe


def mosaic(rgb: np.ndarray, cfa_pattern: str = "RGGB") -> np.ndarray:
    """Sample ``(H, W, 3)`` to an ``(H, W)`` Bayer mosaic of ``cfa_pattern`` (H, W even)."""
    if cfa_pattern not in CFA_PATTERNS:
        raise DatasetError(f"CFA pattern {cfa_pattern!r} is not one of {', '.join(CFA_PATTERNS)}")
    h, w, _ = rgb.shape
    out = np.empty((h, w), rgb.dtype)
    for k, colour in enumerate(cfa_pattern):
        dy, dx = divmod(k, 2)
        out[dy::2, dx::2] = rgb[dy::2, dx::2, "RGB".index(colour)]
    return out


def random_noise_levels(rng: np.random.Generator) -> tuple:
    """``(shot, read)`` noise: shot log-uniform, read from Brooks' log-linear fit."""
    log_shot = rng.uniform(np.log(SHOT_NOISE_RANGE[0]), np.log(SHOT_NOISE_RANGE[1]))
    log_read = READ_NOISE_SLOPE * log_shot + READ_NOISE_INTERCEPT + rng.normal(0.0, READ_NOISE_STD)
    return float(np.exp(log_shot)), float(np.exp(log_read))


def add_noise(x: np.ndarray, shot: float, read: float, rng: np.random.Generator) -> np.ndarray:
    """Heteroscedastic Gaussian noise, ``variance = shot * x + read``."""
    variance = shot * np.maximum(x, 0.0) + read
    return x + rng.normal(size=x.shape) * np.sqrt(variance)


def exif_for_noise(shot: float, rng: np.random.Generator) -> Exif:
    """EXIF that agrees with a shot-noise level (see the module docstring)."""
    iso = float(max(25, round(ISO_AT_MAX_SHOT * shot / SHOT_NOISE_RANGE[1])))
    return Exif(iso=iso, exposure_time=1.0 / (1.25 * iso),
                f_number=float(rng.choice([1.8, 2.8, 4.0, 5.6, 8.0])),
                focal_length=float(rng.choice([24.0, 35.0, 50.0, 85.0])))


def even_srgb_image(image, caller: str = "synthesize") -> np.ndarray:
    """An (H, W, 3) sRGB image (float in [0, 1] or any integer type) as float64 in [0, 1],
    cropped to even height and width (whole 2x2 CFA blocks).

    Raises:
      DatasetError: not an (H, W, 3) image of at least 2x2 pixels.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or min(image.shape[:2]) < 2:
        raise DatasetError(f"{caller} needs an (H, W, 3) sRGB image, got shape {image.shape}")
    if np.issubdtype(image.dtype, np.integer):
        image = image.astype(np.float64) / np.iinfo(image.dtype).max
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    return np.clip(image[:h, :w].astype(np.float64), 0.0, 1.0)


def synthesize(image: np.ndarray, seed=0, *, cfa_pattern: Optional[str] = None,
               levels: Optional[tuple] = None, matrices: Optional[dict] = None,
               noise: bool = True, iso: Optional[float] = None) -> SyntheticPair:
    """Unprocess one sRGB photo into a synthetic RAW.

    Args:
      image: ``(H, W, 3)`` sRGB, float in [0, 1] or uint8/uint16; odd sizes
        lose their last row/column.
      seed: an int or a sequence of ints (``np.random.default_rng``); the same
        seed and photo give the same RAW, bit for bit.
      cfa_pattern: Bayer pattern; random among the four when ``None``.
      levels: ``(black, white)``; random among :data:`SENSOR_LEVELS` when ``None``.
      matrices: name -> XYZ->camera matrix to mix; :data:`CAMERA_XYZ_TO_CAM` when ``None``.
      noise: add shot and read noise (the EXIF ISO is set from it either way).
      iso: fix the ISO (and so the shot noise, ``0.012 * iso / 6400``) instead
        of drawing the shot noise; read noise still follows Brooks' fit.
    """
    target = even_srgb_image(image, "synthesize")

    rng = np.random.default_rng(seed)
    pattern = cfa_pattern or str(rng.choice(CFA_PATTERNS))
    black, white = levels or SENSOR_LEVELS[int(rng.integers(len(SENSOR_LEVELS)))]
    xyz_to_cam = random_xyz_to_cam(rng, matrices)
    rgb_to_cam = rgb_to_cam_matrix(xyz_to_cam)
    rgb_gain = 1.0 / rng.normal(0.8, 0.1)
    red_gain, blue_gain = rng.uniform(1.9, 2.4), rng.uniform(1.5, 1.9)
    shot, read = random_noise_levels(rng)
    if iso is not None:
        if not iso > 0:
            raise DatasetError(f"iso must be positive, got {iso!r}")
        shot = SHOT_NOISE_RANGE[1] * float(iso) / ISO_AT_MAX_SHOT
        read = float(np.exp(READ_NOISE_SLOPE * np.log(shot) + READ_NOISE_INTERCEPT))
    exif = exif_for_noise(shot, rng)

    x = gamma_expand(inverse_smoothstep(target))
    x = x @ rgb_to_cam.T
    x = safe_invert_gains(x, rgb_gain, red_gain, blue_gain)
    linear = np.clip(x, 0.0, 1.0)
    m = mosaic(linear, pattern)
    if noise:
        m = add_noise(m, shot, read, rng)
    bayer = np.clip(np.round(black + m * (white - black)), 0, white).astype(np.uint16)

    cam_to_srgb = np.linalg.inv(rgb_to_cam)
    cam_to_srgb /= cam_to_srgb.sum(axis=1, keepdims=True)
    raw = RawImage(
        bayer=bayer, cfa_pattern=pattern, black_level=np.full(4, float(black)),
        white_level=float(white), wb_gains=np.array([red_gain, 1.0, blue_gain]),
        cam_to_xyz=_SRGB_TO_XYZ @ cam_to_srgb, cam_to_srgb=cam_to_srgb, exif=exif,
        orientation=1, camera="isp_tf synthetic")
    params = dict(xyz_to_cam=xyz_to_cam, rgb_gain=float(rgb_gain), red_gain=float(red_gain),
                  blue_gain=float(blue_gain), shot_noise=shot, read_noise=read)
    return SyntheticPair(raw=raw, target=target.astype(np.float32),
                         linear=linear.astype(np.float32), params=params)


def synthesize_bundled(index: int, seed=0, *, names: Optional[Sequence[str]] = None,
                       **kwargs) -> SyntheticPair:
    """Synthetic pair number ``index``: photo ``names[index % len(names)]``, seed ``(seed, index)``."""
    from isp_tf.data.photos import BUNDLED_PHOTOS, load_photo

    names = list(names or BUNDLED_PHOTOS)
    return synthesize(load_photo(names[index % len(names)]), seed=(int(seed), int(index)), **kwargs)


def rendered_pair(raw) -> tuple:
    """``(raw, target)`` from a real RAW file (path or ``RawImage``): the target is
    :func:`isp_tf.raw.render_classical` of the whole frame, aligned with ``raw.bayer``."""
    from isp_tf.raw import read_raw, render_classical

    if not isinstance(raw, RawImage):
        raw = read_raw(raw)
    return raw, np.asarray(render_classical(raw), np.float32)
