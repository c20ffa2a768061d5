"""The parsing of ``--resolutions``: named frame sizes come from :mod:`isp_tf.runtime.frames`."""
from __future__ import annotations

from typing import Tuple

from isp_tf.runtime.frames import frame_label, parse_frame_size


def parse_resolution(text: str) -> Tuple[str, Tuple[int, int]]:
    """``"12mp"`` or ``"HxW"`` (output pixels, even) -> (label, (H, W)).

    A thin wrapper of :func:`isp_tf.runtime.frames.parse_frame_size` (which
    raises :class:`~isp_tf.errors.FrameSizeError`) that also gives the label the
    records and the report use.
    """
    return frame_label(text), parse_frame_size(text)


def round_up(value: int, multiple: int) -> int:
    return -(-int(value) // int(multiple)) * int(multiple)
