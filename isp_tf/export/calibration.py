"""INT8 calibration inputs: frames of the fixed export size assembled from tf.data crops."""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

__all__ = ["DEFAULT_CALIBRATION", "MAX_CALIBRATION_CROP", "calibration_frames"]

DEFAULT_CALIBRATION = "synthetic:8"
MAX_CALIBRATION_CROP = 128  # packed pixels per side of one calibration crop


def calibration_frames(spec_text: str, input_hw: Tuple[int, int], count: int = 8,
                       seed: int = 0, progress: bool = True, direction=None) -> List[np.ndarray]:
    """``count`` calibration inputs ``(1, h, w, C)`` of a model direction's image input,
    each a mosaic of crops from :func:`isp_tf.data.build_dataset` (training crops:
    random, augmented).

    ``direction`` (a :class:`~isp_tf.models.registry.Direction`; default: packed
    Bayer in, 2x out) says what the input is: a RAW kind is built by the
    pipeline (``input_kind``), an ``srgb`` input (an inverse ISP) takes the
    pairs' sRGB targets.  Crops of at most ``MAX_CALIBRATION_CROP`` input
    pixels keep the pipeline cheap whatever the export size; tiling them fills
    a frame of the fixed model input, so the activation ranges are those of
    real image content.
    """
    from isp_tf.data import build_dataset

    kind = direction.image_input.kind if direction is not None else "packed_bayer"
    scale = direction.output_scale if direction is not None else 2
    from_target = kind == "srgb"
    h, w = input_hw
    side = int(min(MAX_CALIBRATION_CROP, h, w))
    rows, cols = -(-h // side), -(-w // side)
    # the patch size is the target's side: the model input is 1/scale of it (or the target itself)
    patch = side if from_target else side * scale
    ds = build_dataset(spec_text, split="train", patch_size=patch, batch_size=1, seed=seed,
                       cache=True, augment=True, repeat=True,
                       **({} if from_target else {"input_kind": kind}))
    crops = iter(ds)
    frames = []
    bar = _progress(range(count), progress, "calibration frames")
    for _ in bar:
        frame = None
        for r in range(rows):
            for c in range(cols):
                x, y = next(crops)
                crop = (y if from_target else x).numpy()[:1]
                if frame is None:
                    frame = np.empty((1, rows * side, cols * side, crop.shape[-1]), np.float32)
                frame[:, r * side:(r + 1) * side, c * side:(c + 1) * side] = crop
        frames.append(frame[:, :h, :w])
    return frames


def _progress(iterable, enabled, desc):
    if not enabled:
        return iterable
    from tqdm import tqdm
    return tqdm(iterable, desc=desc, leave=False)
