"""Export sizes: the output frame (or tile) asked for -> the model's fixed input size."""
from __future__ import annotations

import math
from typing import Optional, Tuple

from isp_tf.errors import ExportError, InputShapeError
from isp_tf.runtime.frames import parse_frame_size

__all__ = ["export_sizes", "model_input_hw"]


def model_input_hw(spec, frame_hw: Tuple[int, int], what: str = "frame") -> Tuple[int, int]:
    """Packed input ``(h, w)`` for an output ``frame_hw``; :class:`InputShapeError` says why not."""
    H, W = frame_hw
    scale, mult = int(spec.output_scale), int(spec.size_multiple)
    for side, value in (("height", H), ("width", W)):
        if value % scale:
            raise InputShapeError(
                f"{spec.name}: output {what} {side} {value} is odd; the model takes packed Bayer at "
                f"1/{scale} of the output size, so the output {side} must be a multiple of {scale}")
    h, w = H // scale, W // scale
    for side, value in (("height", h), ("width", w)):
        if value % mult:
            lo, hi = value // mult * mult, (value // mult + 1) * mult
            raise InputShapeError(
                f"{spec.name}: output {what} {H}x{W} gives a packed input {side} of {value}, not a "
                f"multiple of {mult} ({spec.name} halves the resolution {int(math.log2(mult))} times); "
                f"nearest output {side}s that work: {lo * scale} or {hi * scale} "
                f"(crop or pad the frame, or export tiles with --tile)")
    return h, w


def export_sizes(spec, input_size, tile: Optional[int] = None):
    """``(output (H, W), packed input (h, w))`` of a frame export, or of an N x N tile export."""
    if tile is None:
        frame_hw = parse_frame_size(input_size)
        return frame_hw, model_input_hw(spec, frame_hw)
    if int(tile) != tile or tile < 2:
        raise ExportError(f"--tile {tile}: a tile side must be an integer of at least 2 output pixels")
    frame_hw = (int(tile), int(tile))
    return frame_hw, model_input_hw(spec, frame_hw, what="tile")
