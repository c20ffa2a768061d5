"""Named frame sizes and the parsing of ``fullhd`` / ``12mp`` / ``HxW`` (numpy-free, no TensorFlow).

Sizes are *output* (sRGB) frames, height x width, landscape.  The model input is
the packed Bayer frame, half of each side, so both sides must be even.
"""
from __future__ import annotations

import re
from typing import Dict, Tuple

from isp_tf.errors import FrameSizeError

#: named output frames, (height, width)
FRAME_SIZES: Dict[str, Tuple[int, int]] = {
    "fullhd": (1080, 1920),   # 2.1 MP
    "4k": (2160, 3840),       # 8.3 MP
    "12mp": (3000, 4000),     # 12 MP, 4:3 (MicroISP's own test size: 1500x2000 packed)
    "32mp": (4896, 6528),     # 32 MP, 4:3 (the 6528 x 4896 frame of e.g. Samsung ISOCELL GD1, Sony IMX616)
}

_HXW = re.compile(r"(\d+)\s*[x,]\s*(\d+)")


def parse_frame_size(text) -> Tuple[int, int]:
    """``'fullhd'``, ``'4k'``, ``'12mp'``, ``'32mp'`` (any case) or ``'HxW'`` -> output ``(H, W)``.

    Raises :class:`~isp_tf.errors.FrameSizeError` for anything else, and for
    sides that are odd or smaller than 2 (the packed input is half the size).
    """
    key = str(text).strip().lower()
    if key in FRAME_SIZES:
        return FRAME_SIZES[key]
    match = _HXW.fullmatch(key)
    if not match:
        raise FrameSizeError(f"unknown frame size {text!r}: use {', '.join(FRAME_SIZES)} or HxW "
                             "(output pixels, e.g. 1080x1920)")
    h, w = int(match[1]), int(match[2])
    if h < 2 or w < 2 or h % 2 or w % 2:
        odd = [str(v) for v in (h, w) if v % 2]
        why = f" ({', '.join(odd)} is odd)" if odd else ""
        raise FrameSizeError(f"frame size {text!r}: height and width must be even and >= 2{why}; "
                             "the model input is the packed Bayer frame, half the size")
    return h, w


def frame_label(text) -> str:
    """The canonical label of a frame size: its name (``'12MP'`` -> ``'12mp'``) or ``'HxW'``."""
    key = str(text).strip().lower()
    if key in FRAME_SIZES:
        return key
    h, w = parse_frame_size(text)
    return f"{h}x{w}"


def megapixels(hw) -> float:
    """Millions of pixels of an ``(H, W)`` frame."""
    return int(hw[0]) * int(hw[1]) / 1e6


__all__ = ["FRAME_SIZES", "frame_label", "megapixels", "parse_frame_size"]
