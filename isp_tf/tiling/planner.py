"""Where the tiles of a frame go: one planner for the Keras and the LiteRT executors.

No TensorFlow here (the LiteRT executor and a phone-side runner use it too);
the model analysis that fills a :class:`Footprint` is
:func:`isp_tf.tiling.analysis.analyze`.

**Rules** (all in model-input pixels, from the frame's origin; the frame is
first padded to a multiple of ``size_multiple``, see :func:`pad_to_multiple`).
Along each axis, for a core side ``core`` (rounded up to ``core_step``):

1. *Cores*: cut at ``0, core, 2 core, ...`` below the length, and at the
   length; a last piece thinner than ``core // 2`` joins the previous core
   (so no thin edge tile costs a whole extra run of every pass).  The cores
   cover the frame exactly once, every core starts on a multiple of
   ``core_step``, only the last core of a row or column may differ in size.
2. *Box* (:attr:`Tile.box`): the core plus ``halo`` pixels on each side, cut at
   the frame's edges.  This is what a pass that has every statistic given (the
   final pass) reads.  It starts on the stride grid: cores are multiples of
   ``core_step`` and the halo is a multiple of the stride.
3. *Statistics box* (:attr:`Tile.stats_box`): the box with its start rounded
   down to a multiple of ``align``, the least common multiple of the model's
   stride and of the strides ("jumps") of its statistics maps.  A ``.tflite``
   statistics pass reduces a strided VALID pooling chain over the box, which
   samples the frame's grid only from such a start; the map rows of the core
   are then ``[(core_start - box_start) // jump, ceil((core_end - box_start) / jump))``.
   The Keras executor's tiling layers crop the core themselves and accept any
   stride-aligned box, so the same boxes serve both executors.

A 2-D tile is the product of a row span and a column span, row by row.
"""
from __future__ import annotations

import dataclasses
import math
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from isp_tf.errors import IspTfError

__all__ = ["Footprint", "Geometry", "Span", "Tile", "TilingError", "auto_core", "axis_spans",
           "box_lead", "cache_core", "cpu_caches", "largest_box", "lcm", "memory_budget", "pad_to_multiple", "padded_size",
           "plan_tiles", "round_core", "segment_box"]


class TilingError(IspTfError, ValueError):
    """The model cannot be tiled exactly (an op the analysis does not know...)."""


def lcm(*values: int) -> int:
    """Least common multiple of positive integers (1 for none)."""
    out = 1
    for v in values:
        out = out * int(v) // math.gcd(out, int(v))
    return out


# ----------------------------------------------------------------------------
# what the planner needs to know about a model
# ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Geometry:
    """The tiling geometry of a model, without the model (what a manifest stores).

    Attributes:
      halo: input pixels a tile needs on each side of its core.
      stride: the model's total down-sampling (box origins are multiples of it).
      core_step: core boundaries are multiples of this.
      align: statistics boxes start on multiples of this (``lcm`` of the
        stride and the statistics maps' jumps; a multiple of ``stride``).
      output_scales: output pixels per input pixel, one per image output.
      size_multiple: frames are reflect-padded to multiples of this.
      min_side: the smallest frame side (input px) the model takes.
    """

    halo: int
    stride: int = 1
    core_step: int = 1
    align: int = 0  # 0: the stride
    output_scales: Tuple[int, ...] = (1,)
    size_multiple: int = 1
    min_side: int = 1

    def __post_init__(self):
        if not self.align:
            object.__setattr__(self, "align", int(self.stride))
        object.__setattr__(self, "output_scales", tuple(int(s) for s in self.output_scales))

    @property
    def output_scale(self) -> int:
        return self.output_scales[0]

    def to_dict(self) -> dict:
        return {"halo": self.halo, "stride": self.stride, "core_step": self.core_step, "align": self.align,
                "output_scales": list(self.output_scales), "size_multiple": self.size_multiple,
                "min_side": self.min_side}

    @classmethod
    def from_dict(cls, data: dict) -> "Geometry":
        return cls(halo=int(data["halo"]), stride=int(data["stride"]), core_step=int(data["core_step"]),
                   align=int(data["align"]), output_scales=tuple(int(s) for s in data["output_scales"]),
                   size_multiple=int(data.get("size_multiple", 1)), min_side=int(data.get("min_side", 1)))


@dataclasses.dataclass(frozen=True)
class Footprint:
    """What :func:`isp_tf.tiling.analysis.analyze` learned about a Keras model.

    Attributes:
      halo: input pixels a tile needs on each side of its core (a multiple of
        ``stride`` and ``size_multiple``).
      radius: the exact receptive-field bound before rounding (model-input px).
      stride: the model's total down-sampling; tile origins are multiples of it.
      core_step: core boundaries are multiples of this (see the module docstring).
      output_scale: output pixels per input pixel of the first output (2 for
        packed Bayer -> RGB); ``output_scales`` has one per image output.
      groups: global-statistics layers grouped by dependency depth, in pass order.
      bytes_per_pixel: peak activation bytes per input pixel (estimated from the
        graph: tensors alive at once, times 2).
      size_multiple: the spec's size multiple the frame is padded to.
      min_side: the smallest frame side (input px) the model takes: its total
        stride, or one pooling window of a global layer (MicroISP: 79).
      align: statistics boxes start on multiples of this: ``lcm`` of the stride
        and, per global layer, the input pixels per position of its
        ``positionwise`` map (its resolution times its ``alignment``).
      output_scales: output pixels per input pixel, one per image output.
    """

    halo: int
    radius: float
    stride: int
    core_step: int
    output_scale: int
    groups: Tuple[tuple, ...]
    bytes_per_pixel: float
    size_multiple: int = 1
    min_side: int = 1
    align: int = 0  # 0: the stride
    output_scales: Tuple[int, ...] = ()  # (): (output_scale,)

    def __post_init__(self):
        if not self.align:
            object.__setattr__(self, "align", int(self.stride))
        if not self.output_scales:
            object.__setattr__(self, "output_scales", (int(self.output_scale),))

    @classmethod
    def of_geometry(cls, geometry: "Geometry", bytes_per_pixel: float) -> "Footprint":
        """What the planner needs of a model known by its :class:`Geometry` and activation bytes per
        pixel only (a manifest, a cache entry): no statistics groups, the halo as the radius."""
        return cls(halo=geometry.halo, radius=float(geometry.halo), stride=geometry.stride,
                   core_step=geometry.core_step, output_scale=geometry.output_scales[0], groups=(),
                   bytes_per_pixel=float(bytes_per_pixel), size_multiple=geometry.size_multiple,
                   min_side=geometry.min_side, align=geometry.align, output_scales=geometry.output_scales)

    @property
    def passes(self) -> int:
        """Model runs per tile: one per statistics group plus the final pass."""
        return len(self.groups) + 1

    @property
    def geometry(self) -> Geometry:
        return Geometry(halo=self.halo, stride=self.stride, core_step=self.core_step, align=self.align,
                        output_scales=self.output_scales, size_multiple=self.size_multiple,
                        min_side=self.min_side)


# ----------------------------------------------------------------------------
# the plan
# ----------------------------------------------------------------------------
class Span(NamedTuple):
    """One tile's extent along one axis (see the module docstring)."""

    start: int         # box start: core_start - halo, cut at 0
    end: int           # box end: core_end + halo, cut at the length
    core_start: int
    core_end: int
    stats_start: int   # statistics box start: start rounded down to a multiple of align


@dataclasses.dataclass(frozen=True)
class Tile:
    """One tile, in input pixels of the (padded) frame: ``(y0, x0, y1, x1)`` boxes.

    ``core`` is what the tile writes; ``box`` what a pass with every statistic
    given reads (core + halo); ``stats_box`` what a statistics pass reads (the
    box, its start aligned for the statistics maps; ``box`` when not given).
    """

    box: Tuple[int, int, int, int]
    core: Tuple[int, int, int, int]
    stats_box: Optional[Tuple[int, int, int, int]] = None

    def __post_init__(self):
        if self.stats_box is None:
            object.__setattr__(self, "stats_box", self.box)

    def core_in(self, box: Sequence[int]) -> Tuple[int, int, int, int]:
        """The core relative to ``box`` (one of this tile's boxes)."""
        y0, x0 = box[:2]
        cy0, cx0, cy1, cx1 = self.core
        return cy0 - y0, cx0 - x0, cy1 - y0, cx1 - x0

    @property
    def core_in_tile(self) -> Tuple[int, int, int, int]:
        """The core relative to :attr:`box`."""
        return self.core_in(self.box)


def round_core(core: int, core_step: int) -> int:
    """``core`` rounded up to a multiple of ``core_step`` (at least one step)."""
    step = int(core_step)
    return max(step, -(-int(core) // step) * step)


def axis_spans(length: int, core: int, halo: int, align: int = 1) -> List[Span]:
    """The spans along one axis of ``length`` px for cores of ``core`` px (rules 1-3)."""
    length, core, halo, align = int(length), int(core), int(halo), max(1, int(align))
    if length <= 0 or core <= 0:
        raise TilingError(f"cannot plan tiles of {core} px over {length} px")
    cuts = list(range(0, length, core)) + [length]
    if len(cuts) > 2 and cuts[-1] - cuts[-2] < core // 2:
        del cuts[-2]
    spans = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        start = max(0, a - halo)
        spans.append(Span(start, min(length, b + halo), a, b, start // align * align))
    return spans


def plan_tiles(height: int, width: int, core: int, geometry) -> List[Tile]:
    """Tiles covering a ``height`` x ``width`` (padded) frame, row by row.

    ``core`` is rounded up to ``geometry.core_step``; ``geometry`` is a
    :class:`Geometry`, a :class:`Footprint` or anything with ``halo``,
    ``core_step`` and ``align``.
    """
    core = round_core(core, geometry.core_step)
    align = int(getattr(geometry, "align", 0) or getattr(geometry, "stride", 1))
    rows = axis_spans(height, core, geometry.halo, align)
    cols = axis_spans(width, core, geometry.halo, align)
    return [Tile((r.start, c.start, r.end, c.end), (r.core_start, c.core_start, r.core_end, c.core_end),
                 (r.stats_start, c.stats_start, r.end, c.end))
            for r in rows for c in cols]


def segment_box(core: Sequence[int], halo: int, frame_hw: Sequence[int]) -> Tuple[int, int, int, int]:
    """What a segment's local model reads for ``core`` (``(y0, x0, y1, x1)``): the core plus ``halo`` on
    each side, **shifted inside** the frame at its edges rather than cut there.

    Every core of full size then has a box of one size (core + 2 halo) wherever it lies, so a LiteRT
    interpreter keeps its shape from tile to tile (a resize re-plans XNNPACK: ~7 ms per segment model
    and tile at MicroISP's 12 MP, measured).  Exactness holds: an edge core still starts or ends on the
    frame's edge, where the model's own padding is the whole frame's, and has at least ``halo`` pixels
    of context on its inner side (more is harmless).  The extra inner pixels cost ``halo`` rows or
    columns of an edge tile, so an axis whose core is under eight halos is cut at the edge instead
    (the extra work would outweigh a resize).  Aligned like the core: a core boundary, the halo and
    the (padded) frame size are all on the stride grid."""
    out = []
    for start, end, length in ((core[0], core[2], frame_hw[0]), (core[1], core[3], frame_hw[1])):
        start, end, length, halo = int(start), int(end), int(length), int(halo)
        if end - start < 8 * halo:
            out.append((max(0, start - halo), min(length, end + halo)))
            continue
        size = min(length, end - start + 2 * halo)
        first = min(max(0, start - halo), length - size)
        out.append((first, first + size))
    (y0, y1), (x0, x1) = out
    return y0, x0, y1, x1


def largest_box(tiles: Sequence[Tile]) -> Tuple[int, int]:
    """The largest (h, w) of the tiles' statistics boxes (the larger of each tile's two boxes)."""
    return (max(t.stats_box[2] - t.stats_box[0] for t in tiles),
            max(t.stats_box[3] - t.stats_box[1] for t in tiles))


def box_lead(geometry) -> int:
    """How far an interior statistics box starts before its core: the halo rounded up to ``align``."""
    align = int(getattr(geometry, "align", 0) or getattr(geometry, "stride", 1))
    return -(-int(geometry.halo) // align) * align


def padded_size(height: int, width: int, multiple: int) -> Tuple[int, int]:
    """``(height, width)`` rounded up to multiples of ``multiple``."""
    m = int(multiple)
    return -(-int(height) // m) * m, -(-int(width) // m) * m


def pad_to_multiple(frame: np.ndarray, multiple: int) -> np.ndarray:
    """Reflect-pad the bottom and right of (h, w, c) ``frame`` to multiples of ``multiple``."""
    h, w = frame.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    if not ph and not pw:
        return frame
    return np.pad(frame, ((0, ph), (0, pw), (0, 0)), mode="reflect" if min(h, w) > 1 else "edge")


# ----------------------------------------------------------------------------
# memory
# ----------------------------------------------------------------------------
def memory_budget() -> float:
    """Bytes ``tile="auto"`` may spend on activations: 40 % of available memory."""
    import psutil

    return 0.4 * psutil.virtual_memory().available


def auto_core(footprint, budget_bytes: Optional[float] = None, frame_hw: Optional[Sequence[int]] = None) -> int:
    """The largest core (input px, a multiple of ``core_step``) whose tiles' activations fit.

    An interior statistics box is ``core + lead + halo`` px per side
    (:func:`box_lead`); its activations are that squared times
    ``footprint.bytes_per_pixel``, which must fit ``budget_bytes`` (default
    :func:`memory_budget`).  With ``frame_hw`` (the padded frame) the core is
    lowered, a step at a time, until every tile of that frame's plan fits
    (an edge core may be up to 1.5 cores, rule 1); never below one step.
    """
    budget_bytes = memory_budget() if budget_bytes is None else budget_bytes
    step = int(footprint.core_step)
    per_px = max(float(footprint.bytes_per_pixel), 1e-9)
    side = math.sqrt(max(budget_bytes, 0) / per_px)
    core = int(side) - box_lead(footprint) - int(footprint.halo)
    core = max(step, core // step * step)
    if frame_hw is not None:
        while core > step:
            h, w = largest_box(plan_tiles(int(frame_hw[0]), int(frame_hw[1]), core, footprint))
            if h * w * per_px <= budget_bytes:
                break
            core -= step
    return core


# ----------------------------------------------------------------------------
# speed: tiles sized for the caches and the threads
# ----------------------------------------------------------------------------
def cpu_caches(cpu: int = 0) -> dict:
    """``{"L1d": bytes, "L2": bytes, "L3": bytes}`` of ``cpu`` from Linux's sysfs (levels it does not
    list are left out; ``{}`` elsewhere).  L1/L2 are per core here, L3 is shared."""
    import glob
    import os

    caches = {}
    for folder in sorted(glob.glob(f"/sys/devices/system/cpu/cpu{cpu}/cache/index*")):
        try:
            level = open(os.path.join(folder, "level")).read().strip()
            kind = open(os.path.join(folder, "type")).read().strip()
            size = open(os.path.join(folder, "size")).read().strip()
        except OSError:
            continue
        if kind == "Instruction":
            continue
        scale = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}.get(size[-1:].upper(), 1)
        digits = size[:-1] if size[-1:].isalpha() else size
        if digits.isdigit():
            caches[f"L{level}" + ("d" if level == "1" else "")] = int(digits) * scale
    return caches


#: one tile's activation bytes per thread, in L2 sizes, that ``tile="auto"`` aims at
L2_MULTIPLE = 8
#: the L2 per core assumed where sysfs does not tell (bytes)
DEFAULT_L2 = 1024 ** 2


def cache_core(footprint, threads: int = 1, caches: Optional[dict] = None,
               budget_bytes: Optional[float] = None, frame_hw: Optional[Sequence[int]] = None) -> int:
    """The core ``tile="auto"`` runs: tiles sized for the caches and the threads, within the memory.

    A tile's activations (``footprint.bytes_per_pixel`` x its box) are aimed at
    :data:`L2_MULTIPLE` x the L2 of a core x ``threads``: each of ``threads``
    threads gets its share of every op of the tile, and one op's input and output
    are a fraction (about an eighth, MicroISP) of all the tile's live tensors, so
    each thread's part of an op stays in its own L2 while the halo's extra work
    and the per-tile overheads stay small.  Measured on MicroISP at 12 MP
    (``python -m benchmarks.tile_sweep``; benchmarks/results/tile_sweep_12mp.md):
    latency is flat within 4 % for cores of 162-324 px at 1 and 2 threads, and
    rises by 25-100 % from 486 px on (the tile's tensors leave the caches); this
    rule picks 162 px for 1 thread and 243 px for 2 with a 2 MiB L2.  The last
    level cache is not used: a virtual machine reports the whole socket's (480 MiB
    here), not the share its cores get.  Then :func:`auto_core` caps it by
    ``budget_bytes`` (default :func:`memory_budget`; ``math.inf``: no cap) for ``frame_hw``.
    """
    caches = cpu_caches() if caches is None else caches
    l2 = int(caches.get("L2") or DEFAULT_L2)
    step = int(footprint.core_step)
    side = math.sqrt(L2_MULTIPLE * l2 * max(1, int(threads)) / max(float(footprint.bytes_per_pixel), 1e-9))
    by_cache = max(step, int(side - 2 * int(footprint.halo)) // step * step)  # a segment box: core + 2 halos
    # never under 8 halos (as segment_box): smaller cores spend more on their halos than the caches give back
    # (PyNET: 64-px segment halos and 3.5 KB of activations per pixel would aim at 16-px cores)
    by_cache = max(by_cache, round_core(8 * int(footprint.halo), step))
    if budget_bytes == math.inf:
        return by_cache
    return min(by_cache, auto_core(footprint, budget_bytes, frame_hw))
