"""Deterministic synthetic frames of any size, cheap even at 32 MP (numpy only).

Latency does not depend on pixel values, but fidelity (tiled vs whole-frame
PSNR) and the baselines (rawpy, the classical renderer) want something like
a photo: smooth colour gradients, a few soft blobs, fine texture and a little
noise, so that every tile differs from its neighbours.
"""
from __future__ import annotations

import numpy as np

from isp_tf.raw.image import Exif, RawImage

#: metadata of the synthetic sensor (10-bit, RGGB, like the IMX586 MicroISP was trained on)
BLACK_LEVEL = 64
WHITE_LEVEL = 1023
WB_GAINS = (2.0, 1.0, 1.6)
#: shooting parameters of a phone camera in daylight (ParamISP's camera-parameter input reads them)
EXIF = Exif(iso=100, exposure_time=1 / 100, f_number=1.8, focal_length=4.7)


def synthetic_packed(height: int, width: int, seed: int = 0, channels: int = 4) -> np.ndarray:
    """A smooth textured frame (height, width, channels) float32 in [0, 1] (model input pixels):
    packed Bayer by default, or the 3 channels of an RGB input."""
    height, width = int(height), int(width)
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    frame = np.empty((height, width, channels), np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=(channels, 3)).astype(np.float32)
    for c in range(channels):
        base = 0.35 + 0.25 * np.sin(2.1 * np.pi * x + phase[c, 0]) * np.cos(1.7 * np.pi * y + phase[c, 1])
        texture = 0.08 * np.sin(97.0 * x + phase[c, 2]) * np.sin(61.0 * y)
        frame[..., c] = base + texture
    for _ in range(6):  # soft blobs
        cy, cx = rng.uniform(0, 1, 2)
        r = rng.uniform(0.05, 0.2)
        colour = rng.uniform(-0.25, 0.35, channels).astype(np.float32)
        blob = np.exp(-(((y - cy) ** 2) + ((x - cx) * width / max(height, 1)) ** 2) / (2 * r * r))
        frame += blob[..., None].astype(np.float32) * colour
    frame += rng.normal(0.0, 0.01, size=(1, width, channels)).astype(np.float32)  # column noise, cheap
    np.clip(frame, 0.0, 1.0, out=frame)
    return frame


def synthetic_raw(height: int, width: int, seed: int = 0) -> RawImage:
    """A :class:`RawImage` of ``height`` x ``width`` sensor pixels (even sizes), RGGB, 10 bit."""
    from isp_tf.raw import unpack_bayer

    if height % 2 or width % 2:
        raise ValueError(f"a Bayer frame needs even sides, got {height}x{width}")
    packed = synthetic_packed(height // 2, width // 2, seed)
    mosaic = unpack_bayer(packed) * (WHITE_LEVEL - BLACK_LEVEL) + BLACK_LEVEL
    bayer = np.rint(mosaic).astype(np.uint16)
    cam_to_srgb = np.array([[1.6, -0.45, -0.15], [-0.2, 1.45, -0.25], [0.0, -0.5, 1.5]], np.float32)
    from isp_tf.raw.color import cam_to_xyz_from_cam_to_srgb

    return RawImage(
        bayer=bayer, cfa_pattern="RGGB",
        black_level=np.full(4, BLACK_LEVEL, np.float32), white_level=float(WHITE_LEVEL),
        wb_gains=np.asarray(WB_GAINS, np.float32), cam_to_xyz=cam_to_xyz_from_cam_to_srgb(cam_to_srgb),
        cam_to_srgb=cam_to_srgb, exif=EXIF, camera="isp_tf synthetic")
