"""Export sizes: the frame (or tile) asked for -> the model's fixed input size.

A size names the *frame* in image pixels, the photo the direction makes or
takes: for a direction that renders (RAW -> sRGB: MicroISP, PyNET, GenISP,
the forward ISPs) its output image, and for a direction whose image input is
an sRGB photo (InvISP's and ParamISP's ``inverse``, sRGB -> RAW) that input
image.  The model input is then the direction's image port at
``frame / output_scale`` (packed Bayer ``(H/2, W/2, 4)`` for ``output_scale``
2) or the frame itself (an sRGB input); its sides must be multiples of the
direction's ``size_multiple``.  So ``--input-size 128x128`` gives a
``(1, 128, 128, 3)`` input for ParamISP's inverse (a 128 x 128 RGGB mosaic
out) and a ``(1, 64, 64, 4)`` packed input for its forward (a 128 x 128 sRGB
image out): the same photo either way.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

from isp_tf.errors import ExportError, InputShapeError
from isp_tf.runtime.frames import parse_frame_size

__all__ = ["export_sizes", "frame_is_input", "model_input_hw"]


def frame_is_input(direction) -> bool:
    """Whether a size names the direction's input image (an sRGB photo in: an inverse ISP)
    rather than its output image."""
    return direction is not None and direction.image_input.kind == "srgb"


def model_input_hw(spec, frame_hw: Tuple[int, int], what: str = "frame",
                   direction: Optional[str] = None) -> Tuple[int, int]:
    """Model image input ``(h, w)`` for a frame ``frame_hw`` of ``spec``'s ``direction``
    (default forward; see the module docstring); :class:`InputShapeError` says why not."""
    d = spec.direction(direction)
    H, W = frame_hw
    scale, mult = int(d.output_scale), int(d.size_multiple)
    name = spec.name if d.name == "forward" else f"{spec.name} {d.name}"
    if frame_is_input(d):
        h, w, role = H, W, "input"
    else:
        role = "output"
        for side, value in (("height", H), ("width", W)):
            if value % scale:
                raise InputShapeError(
                    f"{name}: output {what} {side} {value} is odd; the model takes packed Bayer at "
                    f"1/{scale} of the output size, so the output {side} must be a multiple of {scale}")
        h, w = H // scale, W // scale
    for side, value in (("height", h), ("width", w)):
        if value % mult:
            lo, hi = value // mult * mult, (value // mult + 1) * mult
            step = scale if role == "output" else 1
            article = "a packed" if role == "output" and scale > 1 else "an"
            raise InputShapeError(
                f"{name}: {role} {what} {H}x{W} gives {article} input {side} of {value}, not a "
                f"multiple of {mult} ({spec.name} halves the resolution {int(math.log2(mult))} times); "
                f"nearest {role} {side}s that work: {lo * step} or {hi * step} "
                f"(crop or pad the frame, or export tiles with --tile)")
    return h, w


def export_sizes(spec, input_size, tile: Optional[int] = None, direction: Optional[str] = None):
    """``(frame (H, W), model input (h, w))`` of a frame export, or of an N x N tile export,
    of ``spec``'s ``direction`` (the frame as the module docstring says)."""
    if tile is None:
        frame_hw = parse_frame_size(input_size)
        return frame_hw, model_input_hw(spec, frame_hw, direction=direction)
    if int(tile) != tile or tile < 2:
        raise ExportError(f"--tile {tile}: a tile side must be an integer of at least 2 frame pixels")
    frame_hw = (int(tile), int(tile))
    return frame_hw, model_input_hw(spec, frame_hw, what="tile", direction=direction)
