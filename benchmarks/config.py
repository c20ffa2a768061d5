"""Named frame sizes and the parsing of ``--resolutions``."""
from __future__ import annotations

import re
from typing import Tuple

from isp_tf.errors import IspTfError

#: output (sRGB) sizes, height x width, landscape
RESOLUTIONS = {
    "fullhd": (1080, 1920),   # 2.1 MP
    "4k": (2160, 3840),       # 8.3 MP
    "12mp": (3000, 4000),     # 12 MP, 4:3 (MicroISP's own test size: 1500x2000 packed)
    "32mp": (4896, 6528),     # 32 MP, 4:3 (e.g. Sony IMX616 / IMX709 sensors)
}


def parse_resolution(text: str) -> Tuple[str, Tuple[int, int]]:
    """``"12mp"`` or ``"HxW"`` (output pixels, even) -> (label, (H, W))."""
    key = str(text).strip().lower()
    if key in RESOLUTIONS:
        return key, RESOLUTIONS[key]
    match = re.fullmatch(r"(\d+)x(\d+)", key)
    if not match:
        raise IspTfError(f"unknown resolution {text!r}: use {', '.join(RESOLUTIONS)} or HxW "
                         "(output pixels, e.g. 1080x1920)")
    h, w = int(match[1]), int(match[2])
    if h < 2 or w < 2 or h % 2 or w % 2:
        raise IspTfError(f"resolution {text!r}: height and width must be even and >= 2 "
                         "(the model input is the packed Bayer frame, half the size)")
    return key, (h, w)


def megapixels(hw) -> float:
    return hw[0] * hw[1] / 1e6


def round_up(value: int, multiple: int) -> int:
    return -(-int(value) // int(multiple)) * int(multiple)
