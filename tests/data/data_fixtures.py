"""Helpers of the isp_tf.data tests: small synthetic RAW images and patch locators."""
import dataclasses

import numpy as np

from isp_tf.data.photos import load_photo
from isp_tf.data.synthetic import synthesize
from isp_tf.raw import RawImage, normalize_bayer, render_classical, unpack_bayer


def small_raw(seed, shape=(36, 44), pattern="RGGB", orientation=1, photo="astronaut") -> RawImage:
    """A noisy synthetic RAW of ``shape`` cut from a bundled photo (different content per seed)."""
    image = load_photo(photo)
    rng = np.random.default_rng(seed)
    y = int(rng.integers(0, image.shape[0] - shape[0]))
    x = int(rng.integers(0, image.shape[1] - shape[1]))
    pair = synthesize(image[y:y + shape[0], x:x + shape[1]], seed=seed, cfa_pattern=pattern,
                      levels=(512, 16383), iso=800)
    return dataclasses.replace(pair.raw, orientation=orientation)


def render_of_patch(packed, raw: RawImage) -> np.ndarray:
    """The classical render of a packed RGGB patch, with ``raw``'s colour metadata."""
    mosaic = unpack_bayer(np.asarray(packed))
    patch_raw = dataclasses.replace(raw, bayer=mosaic, cfa_pattern="RGGB", black_level=np.zeros(4),
                                    white_level=1.0, orientation=1)
    return render_classical(patch_raw)


def dihedral(x, t):
    """numpy twin of the pipeline's transform ``t``: rot90^(t % 4) (counter-clockwise), then transpose if t >= 4."""
    x = np.rot90(x, k=t % 4)
    return np.swapaxes(x, 0, 1) if t >= 4 else x


def inverse_dihedral(x, t):
    if t >= 4:
        x = np.swapaxes(x, 0, 1)
    return np.rot90(x, k=-(t % 4))


def locate(packed, rgb, raw: RawImage, target: np.ndarray):
    """Find where a pipeline patch came from: ``(t, y, x)`` such that undoing
    transform ``t`` gives the mosaic crop at (y, x) of ``raw`` and the target
    crop at the same place, with every pixel on a site of its own colour.
    Returns every match (a correct pipeline gives exactly one)."""
    full = normalize_bayer(raw)
    colours = np.array([[ "RGB".index(c) for c in raw.cfa_pattern[:2]],
                        ["RGB".index(c) for c in raw.cfa_pattern[2:]]])
    h, w = full.shape
    site_colour = colours[np.arange(h)[:, None] % 2, np.arange(w)[None, :] % 2]
    mosaic = unpack_bayer(np.asarray(packed))
    p = mosaic.shape[0]
    rggb = np.tile(np.array([[0, 1], [1, 2]]), (p // 2, p // 2))
    matches = []
    for t in range(8):
        m = inverse_dihedral(mosaic, t)
        r = inverse_dihedral(np.asarray(rgb), t)
        c = inverse_dihedral(rggb, t)
        for y in range(h - p + 1):
            for x in range(w - p + 1):
                if (np.array_equal(full[y:y + p, x:x + p], m) and np.array_equal(site_colour[y:y + p, x:x + p], c)
                        and np.allclose(target[y:y + p, x:x + p], r, atol=1e-6)):
                    matches.append((t, y, x))
    return matches
