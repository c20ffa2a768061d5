"""sRGB photos that ship inside installed packages: the sources of synthetic RAW.

Every photo here is a file inside an installed wheel (scikit-image's
``skimage/data`` folder, matplotlib's ``mpl-data/sample_data``), so nothing is
ever downloaded. scikit-image fetches some of its ``skimage.data`` images on
first use (``eagle``, ``brain``, ``kidney``, ``lily``...): those are rejected
with a :class:`~isp_tf.errors.DatasetError` instead of reaching the network.

This module is the one list of them; :mod:`isp_tf.data.synthetic`,
``make_samples`` and the ``synthetic`` dataset layout all read it.
"""
from __future__ import annotations

import pathlib

import numpy as np

from isp_tf.errors import DatasetError

#: name -> (package, file inside that package's data folder). Colour photos of
#: natural scenes only (no microscopy, no greyscale, no drawings).
BUNDLED_PHOTOS = {
    "astronaut": ("skimage", "astronaut.png"),
    "coffee": ("skimage", "coffee.png"),
    "chelsea": ("skimage", "chelsea.png"),
    "rocket": ("skimage", "rocket.jpg"),
    "motorcycle": ("skimage", "motorcycle_left.png"),
    "hubble": ("skimage", "hubble_deep_field.jpg"),
    "grace_hopper": ("matplotlib", "grace_hopper.jpg"),
}

#: Where each photo comes from, as its package documents it.
PHOTO_CREDITS = {
    "astronaut": "Eileen Collins, NASA; public domain",
    "coffee": "Rachel Michetti (Pikolo Espresso Bar); CC0",
    "chelsea": "Stefan van der Walt; CC0",
    "rocket": "DSCOVR launch, SpaceX; public domain",
    "motorcycle": "Middlebury stereo data set (Scharstein et al. 2014)",
    "hubble": "Hubble deep field, NASA; public domain",
    "grace_hopper": "Grace Hopper, U.S. Navy portrait; public domain",
}


def _data_dir(package: str) -> pathlib.Path:
    if package == "skimage":
        import skimage.data
        return pathlib.Path(skimage.data.data_dir)
    if package == "matplotlib":
        import matplotlib
        return pathlib.Path(matplotlib.get_data_path()) / "sample_data"
    raise ValueError(f"unknown package {package!r}")


def photo_path(name: str) -> pathlib.Path:
    """Path of the bundled photo ``name`` (a key of :data:`BUNDLED_PHOTOS`).

    Raises:
      DatasetError: ``name`` is not bundled (for instance a scikit-image image
        that would need a download), or its file is missing from the install.
    """
    if name not in BUNDLED_PHOTOS:
        raise DatasetError(
            f"photo {name!r} is not one of the bundled photos ({', '.join(BUNDLED_PHOTOS)}); "
            f"scikit-image images that need a download are not used")
    package, filename = BUNDLED_PHOTOS[name]
    path = _data_dir(package) / filename
    if not path.is_file():
        raise DatasetError(f"photo {name!r}: {path} is missing from the installed {package}; "
                           f"reinstall {package} (this file ships inside its wheel)")
    return path


def load_photo(name: str) -> np.ndarray:
    """The bundled photo ``name`` as ``(H, W, 3)`` float32 sRGB in [0, 1]."""
    import imageio.v3 as iio

    image = np.asarray(iio.imread(photo_path(name)))
    if image.ndim != 3 or image.shape[-1] < 3:
        raise DatasetError(f"photo {name!r} is not an RGB image (shape {image.shape})")
    return image[..., :3].astype(np.float32) / 255.0
