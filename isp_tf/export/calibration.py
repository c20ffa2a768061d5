"""INT8 calibration inputs: frames of the fixed export size assembled from tf.data crops."""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

__all__ = ["DEFAULT_CALIBRATION", "MAX_CALIBRATION_CROP", "calibration_frames"]

DEFAULT_CALIBRATION = "synthetic:8"
MAX_CALIBRATION_CROP = 128  # packed pixels per side of one calibration crop


def calibration_frames(spec_text: str, input_hw: Tuple[int, int], count: int = 8,
                       seed: int = 0, progress: bool = True, direction=None) -> List[List[np.ndarray]]:
    """``count`` calibration samples of a model direction: per sample the list of its
    inputs, the image ``(1, h, w, C)`` first (what a TFLite representative dataset yields).

    The image is a mosaic of crops from :func:`isp_tf.data.build_dataset`
    (training crops: random, augmented).  ``direction`` (a
    :class:`~isp_tf.models.registry.Direction`; default: packed Bayer in) says
    what the inputs are: a RAW kind is built by the pipeline (``input_kind``),
    an ``srgb`` input (an inverse ISP) takes the pairs' sRGB targets, and a
    per-frame ``vector`` input takes the pipeline's metadata of the same name
    (``with_metadata``: ``wb_gains``, ``cam_to_srgb``, ``cam_to_xyz``, ``exif``)
    of the first crop.  Crops of at most ``MAX_CALIBRATION_CROP`` input pixels
    keep the pipeline cheap whatever the export size; tiling them fills a frame
    of the fixed model input, so the activation ranges are those of real image
    content.
    """
    from isp_tf.data import build_dataset
    from isp_tf.errors import ExportError

    kind = direction.image_input.kind if direction is not None else "packed_bayer"
    vectors = [p for p in direction.inputs[1:]] if direction is not None else []
    _check_vector_sources(vectors)
    from_target = kind == "srgb"
    h, w = input_hw
    side = int(min(MAX_CALIBRATION_CROP, h, w))
    rows, cols = -(-h // side), -(-w // side)
    # the pipeline's patch size is the full-resolution side: packed Bayer is half of it
    patch = 2 * side if kind == "packed_bayer" else side
    ds = build_dataset(spec_text, split="train", patch_size=patch, batch_size=1, seed=seed,
                       cache=True, augment=True, repeat=True, with_metadata=bool(vectors),
                       **({} if from_target else {"input_kind": kind}))
    crops = iter(ds)
    samples = []
    bar = _progress(range(count), progress, "calibration frames")
    for _ in bar:
        frame, extra = None, None
        for r in range(rows):
            for c in range(cols):
                x, y = next(crops)
                if extra is None and vectors:
                    extra = []
                    for port in vectors:
                        if port.name not in x:
                            raise ExportError(f"calibration of per-frame input {port.name!r}: the data "
                                              f"pipeline has no such metadata ({', '.join(x)})")
                        extra.append(np.asarray(x[port.name], np.float32).reshape(1, port.channels))
                image = x["raw"] if vectors else x
                crop = (y if from_target else image).numpy()[:1]
                if frame is None:
                    frame = np.empty((1, rows * side, cols * side, crop.shape[-1]), np.float32)
                frame[:, r * side:(r + 1) * side, c * side:(c + 1) * side] = crop
        samples.append([frame[:, :h, :w]] + (extra or []))
    return samples


def _check_vector_sources(ports) -> None:
    """The pipeline's metadata of a port's name is what ``Port.from_raw`` computes at inference
    (:data:`isp_tf.data.layouts.META_VECTORS`, one function each); refuse a port computed otherwise."""
    from isp_tf.data.layouts import META_VECTORS
    from isp_tf.errors import ExportError

    for port in ports:
        source = getattr(port, "from_raw", None)
        if source is not None and META_VECTORS.get(port.name) is not source:
            raise ExportError(f"calibration of per-frame input {port.name!r}: its from_raw "
                              f"({getattr(source, '__qualname__', source)}) is not the data pipeline's "
                              f"metadata of that name ({', '.join(META_VECTORS)})")


def _progress(iterable, enabled, desc):
    if not enabled:
        return iterable
    from tqdm import tqdm
    return tqdm(iterable, desc=desc, leave=False)
