"""Cut a ``.tflite`` at its whole-image statistics into segments that each run once over the frame.

The pass executor (:class:`~isp_tf.tiling.tflite_executor.PassSession`) is
exact but recomputes: pass ``d`` re-runs the network from the image up to the
depth-``d`` statistics, so a model with ``D`` statistics depths runs its
first layers ``D + 1`` times (MicroISP: 4.5x the whole-frame MACs).  Here the
graph is cut instead, after :func:`~isp_tf.tiling.tflite_executor.expose_global_stats`
(every spatial ``MEAN`` removed; its result an input, its map an output):

* every tensor gets a *level*: 1 + the deepest statistic it depends on (0
  for the image and the per-frame vectors).  Segment ``L`` holds the ops of
  level ``L``: everything it needs is known once the statistics of depths
  ``< L`` are (segment ``D``, the last, writes the image outputs);
* **local model** of segment ``L``: its ops minus the *statistics chains*;
  inputs: the *stored* tensors of earlier segments it reads (the image is
  the first store), the per-frame vectors and the statistics known so far;
  outputs: the tensors of level ``L`` that later segments (or this
  segment's chains) read.  It runs tile by tile over each tile's box: the
  core plus **its own halo** (the receptive field of this segment alone,
  from :func:`segment_halo`), and its outputs' cores are written into
  frame-sized stores (float32, float16 or the graph's own int8);
* **statistics model(s)** of segment ``L``: the chains -- the ops that only
  feed the depth-``L`` maps (MicroISP: the attention's strided VALID pooling
  convolutions) -- run on each tile's *core* of their source stores.  Cores
  start on multiples of the core step, so a chain that commutes with crops
  at its alignment (the :class:`~isp_tf.layers.global_stats.GlobalStatsLayer`
  protocol) sees the frame's grid; the sum of its map over all cores is the
  whole-frame sum.  A chain op that does not commute with crops (a ``SAME``
  convolution wider than 1x1) stays in the local model, whose output it
  then is, cropped to the core.  A core smaller than a chain's window
  (:attr:`StatsPart.min_side`) adds no position, as on the whole frame.

Every op then runs once per tile, over core + that segment's halo; the
tensors that cross a statistic are stored once.  MicroISP: 5 segments
(halos 3, 3, 5, 3, 2 px against the whole model's 16), ~1.05x the
whole-frame MACs at a 486-px core.

No TensorFlow: numpy and the flatbuffer schema (``isp_tf.export.flatbuffer``).
"""
from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from isp_tf.tiling.planner import TilingError

__all__ = ["LocalPart", "SegmentPlan", "StatsPart", "Store", "segment_plan"]

_WINDOW_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "L2_POOL_2D")
_PASS_THROUGH = frozenset("""
    ADD SUB MUL DIV FLOOR_DIV FLOOR_MOD PRELU RELU RELU6 RELU_N1_TO_1 RELU_0_TO_1 LEAKY_RELU LOGISTIC TANH ELU
    HARD_SWISH GELU EXP LOG RSQRT SQRT SQUARE SQUARED_DIFFERENCE NEG ABS MAXIMUM MINIMUM POW QUANTIZE
    DEQUANTIZE CONCATENATION RESHAPE CAST FLOOR CEIL ROUND SELECT SELECT_V2 GREATER GREATER_EQUAL LESS
    LESS_EQUAL EQUAL NOT_EQUAL LOGICAL_AND LOGICAL_OR LOGICAL_NOT SPLIT SPLIT_V STRIDED_SLICE SLICE PACK
    UNPACK BROADCAST_TO TILE GATHER SIN COS SIGN ZEROS_LIKE ONES_LIKE ADD_N SOFTMAX LOG_SOFTMAX
    FULLY_CONNECTED BATCH_MATMUL MEAN SUM REDUCE_MAX REDUCE_MIN REDUCE_PROD TRANSPOSE EXPAND_DIMS SQUEEZE
""".split())
_SAME, _VALID = 0, 1


@dataclasses.dataclass
class Store:
    """A frame-sized tensor kept between segments (the image is store 0).

    ``jump``: model-input px per pixel of it (a :class:`Fraction`; 1/2 for a
    depth-to-space output); ``producer``: the segment that writes it (-1: the
    image); ``last``: the last segment that reads it (it is freed after);
    ``output``: the index among the model's image outputs, or ``None``.
    """

    name: str
    tensor: int
    jump: Fraction
    channels: int
    dtype: str
    scale: float = 0.0
    zero_point: int = 0
    producer: int = -1
    last: int = -1
    output: Optional[int] = None

    def to_dict(self) -> dict:
        return {"name": self.name, "jump": [self.jump.numerator, self.jump.denominator],
                "channels": self.channels, "dtype": self.dtype, "scale": self.scale,
                "zero_point": self.zero_point, "producer": self.producer, "last": self.last,
                "output": self.output}

    @classmethod
    def from_dict(cls, d: dict) -> "Store":
        return cls(d["name"], -1, Fraction(int(d["jump"][0]), int(d["jump"][1])), int(d["channels"]), d["dtype"],
                   float(d.get("scale", 0.0)), int(d.get("zero_point", 0)), int(d["producer"]), int(d["last"]),
                   d.get("output"))


#: one model input: ("store", store id) | ("vector", per-frame input k of the original model)
#: | ("statistic", statistic index)
Feed = Tuple[str, int]


@dataclasses.dataclass
class LocalPart:
    """The tile-by-tile model of a segment: reads ``inputs`` over each tile's box (core + ``halo``),
    writes the cores of its outputs into ``outputs`` (store ids, in the model's output order)."""

    model: object  # bytes, or a file path once written
    inputs: List[Feed]
    outputs: List[int]
    halo: int

    def to_dict(self, name) -> dict:
        return {"model": name, "inputs": [list(f) for f in self.inputs], "outputs": list(self.outputs),
                "halo": int(self.halo)}


@dataclasses.dataclass
class StatsPart:
    """A statistics model: reads ``inputs`` over each tile's *core*; its outputs are the maps of
    the statistics ``outputs`` (indices), summed over every position.  A core smaller than
    ``min_side`` input px (on either axis) yields no position and is skipped."""

    model: object
    inputs: List[Feed]
    outputs: List[int]
    min_side: int

    def to_dict(self, name) -> dict:
        return {"model": name, "inputs": [list(f) for f in self.inputs], "outputs": list(self.outputs),
                "min_side": int(self.min_side)}


@dataclasses.dataclass
class SegmentPlan:
    """Segments in order: ``segments[L] = (local part or None, [stats parts])``; ``stores``; the
    statistics (``name``, ``given``: input index of the exposed graph, ``depth``, ``shape``)."""

    segments: List[Tuple[Optional[LocalPart], List[StatsPart]]]
    stores: List[Store]
    stats: List[dict]
    vector_inputs: List[int]  # input indices (of the exposed graph) of the per-frame vectors
    image_input: int
    own_inputs: List[Tuple[str, int]] = dataclasses.field(default_factory=list)  # the model's own inputs
    # in their order: ("image", 0) or ("vector", k)

    @property
    def halos(self) -> List[int]:
        return [local.halo if local is not None else 0 for local, _ in self.segments]


# ----------------------------------------------------------------------------
# geometry of tensors
# ----------------------------------------------------------------------------
def _window(op):
    """``(kernel extent, stride, padding)`` of a windowed op (conv, pool)."""
    o = op.options
    if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        shape = op.inputs[1].shape
        k = max(int(shape[1]), int(shape[2]))
        d = int(getattr(o, "dilationHFactor", 1) or 1)
        return (k - 1) * d + 1, int(o.strideH or 1), int(o.padding)
    return max(int(o.filterHeight), int(o.filterWidth)), int(o.strideH or 1), int(o.padding)


def _reach(extent: int, stride: int, padding: int) -> int:
    excess = max(extent - stride, 0)
    return (excess + 1) // 2 if padding == _SAME else excess


def _hw(t):
    return (int(t.shape[1]), int(t.shape[2])) if t is not None and t.rank == 4 else None


def propagate(graph, ops, sources: Dict[int, Fraction]) -> Dict[int, Tuple[Fraction, Fraction]]:
    """``{tensor: (jump, radius)}`` of every tensor of ``ops`` (in graph order) that derives from
    the spatial tensors ``sources`` (``{tensor: jump}``, radius 0): the receptive-field radius
    in model-input px, conservative like :func:`isp_tf.tiling.analysis.analyze`."""
    state = {int(t): (Fraction(j), Fraction(0)) for t, j in sources.items()}
    for op in ops:
        spatial = [(t, state[t.index]) for t in op.inputs if t is not None and t.index in state]
        if not spatial or op.name in ("SHAPE", "RANK", "SIZE"):
            continue  # shape ops: their values do not depend on positions
        if op.name == "TRANSPOSE_CONV":
            spatial = [(t, s) for t, s in spatial if t is op.inputs[2]] or spatial
        jump = min(s[0] for _, s in spatial)
        radius = max(s[1] for _, s in spatial)
        kind = op.name
        if kind in _WINDOW_OPS:
            extent, stride, pad = _window(op)
            out = (jump * stride, radius + _reach(extent, stride, pad) * jump)
        elif kind == "TRANSPOSE_CONV":
            k = max(int(op.inputs[1].shape[1]), int(op.inputs[1].shape[2]))
            s = int(op.options.strideH or 1)
            p = max(k - s, 0) // 2 if int(op.options.padding) == _SAME else 0
            out = (jump / s, radius + Fraction(max(k - 1 - p, p + s - 1), s) * jump)
        elif kind == "DEPTH_TO_SPACE":
            out = (jump / int(op.options.blockSize), radius)
        elif kind == "SPACE_TO_DEPTH":
            out = (jump * int(op.options.blockSize), radius)
        elif kind in ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"):
            (ih, _), (oh, _) = _hw(spatial[0][0]), _hw(op.outputs[0])
            new = jump * Fraction(ih, oh)
            out = (new, radius + 3 * max(jump, new))
        elif kind in ("PAD", "PADV2", "MIRROR_PAD"):
            pads = op.inputs[1].data
            if pads is None:
                raise TilingError(f"{op.outputs[0].name}: padding that is not a constant; cannot tile")
            out = (jump, radius + int(np.max(np.asarray(pads)[1:3])) * jump)
        elif kind in _PASS_THROUGH:
            out = (jump, radius)
        else:
            raise TilingError(f"{op.outputs[0].name}: op {kind} is not known to the segment planner")
        for t in op.outputs:
            state[t.index] = out
    return state


def _crop_safe(op) -> bool:
    """Whether ``op`` gives, on a crop of its input at a multiple of the alignment, the crop
    of its output: position-wise ops, VALID windows, 1x1 stride-1 windows."""
    if op.name in _WINDOW_OPS:
        extent, stride, pad = _window(op)
        return pad == _VALID or (extent == 1 and stride == 1)
    return op.name in _PASS_THROUGH and op.name not in (
        "MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "TRANSPOSE", "STRIDED_SLICE", "SLICE")


def _need(ops, maps: Sequence[int]) -> Dict[int, int]:
    """Smallest side (own px) of every chain tensor for the map(s) to have one position."""
    need = {int(m): 1 for m in maps}
    for op in reversed(ops):
        out = max((need.get(t.index, 0) for t in op.outputs), default=0)
        if not out:
            continue
        if op.name in _WINDOW_OPS:
            extent, stride, _ = _window(op)
            want = (out - 1) * stride + extent
        else:
            want = out
        for t in op.inputs:
            if t is not None and not t.constant:
                need[t.index] = max(need.get(t.index, 0), want)
    return need


# ----------------------------------------------------------------------------
# cutting
# ----------------------------------------------------------------------------
def _ops_between(graph, inputs: Sequence[int], outputs: Sequence[int]):
    """The operators of ``graph`` (in graph order) from tensors ``inputs`` to ``outputs``: what
    :func:`_cut` keeps, with the graph's own tensor indices."""
    producer = {t.index: op for op in graph.operators for t in op.outputs}
    stop = set(int(i) for i in inputs)
    needed, todo = {}, [int(o) for o in outputs]
    while todo:
        t = todo.pop()
        op = None if t in stop else producer.get(t)
        if op is None or op.index in needed:
            continue
        needed[op.index] = op
        todo.extend(x.index for x in op.inputs if x is not None)
    return [needed[i] for i in sorted(needed)]


def _cut(data: bytes, inputs: Sequence[int], outputs: Sequence[int]) -> bytes:
    """The model of ``data`` from tensors ``inputs`` to tensors ``outputs`` (ops in between)."""
    from isp_tf.export.flatbuffer import drop_unused, read_tflite, write_tflite

    model = read_tflite(bytes(data)).model
    sg = model.subgraphs[0]
    producer = {int(t): i for i, op in enumerate(sg.operators) for t in op.outputs}
    stop = set(int(i) for i in inputs)
    needed, todo = set(), [int(o) for o in outputs]
    while todo:
        t = todo.pop()
        if t in stop:
            continue
        i = producer.get(t)
        if i is None or i in needed:
            continue
        needed.add(i)
        todo.extend(int(x) for x in sg.operators[i].inputs if int(x) >= 0)
    sg.operators = [op for i, op in enumerate(sg.operators) if i in needed]
    sg.inputs = [int(i) for i in inputs]
    sg.outputs = [int(o) for o in outputs]
    for i in inputs:  # intermediate tensors become inputs: any size
        t = sg.tensors[int(i)]
        if t.shape is not None and len(t.shape) == 4:
            t.shapeSignature = [1, -1, -1, int(t.shape[3])]
    model.signatureDefs = []
    return write_tflite(drop_unused(model))


def segment_plan(exposed: bytes, stats: Sequence[dict], halo_step: int = 1) -> SegmentPlan:
    """Cut ``exposed`` (from :func:`~isp_tf.tiling.tflite_executor.expose_global_stats`, with its
    ``stats``) into segments (see the module docstring).  ``halo_step``: every segment's halo
    is rounded up to a multiple of it (the model's stride and size multiple, so boxes start on
    the stride grid)."""
    from isp_tf.export.flatbuffer import read_tflite

    graph = read_tflite(bytes(exposed))
    sg_inputs = [t.index for t in graph.inputs]
    sg_outputs = [t.index for t in graph.outputs]
    given = {sg_inputs[int(s["given"])]: k for k, s in enumerate(stats)}
    maps = {sg_outputs[int(s["map"])]: k for k, s in enumerate(stats)}
    own_outputs = [t for t in sg_outputs if t not in maps]
    image = next((t.index for t in graph.inputs if t.rank == 4 and t.index not in given), None)
    if image is None:
        raise TilingError("the model has no image input (batch, height, width, channels)")
    vectors = [t.index for t in graph.inputs if t.index != image and t.index not in given]
    depths = sorted({int(s["depth"]) for s in stats})
    if depths != list(range(len(depths))):
        raise TilingError(f"statistics depths {depths} are not 0, 1, ...")
    last_segment = len(depths)

    ops = graph.operators
    tensors = graph.tensors
    geo = propagate(graph, ops, {image: Fraction(1)})
    level: Dict[int, int] = {t: 0 for t in [image] + vectors}
    for t, k in given.items():
        level[t] = int(stats[k]["depth"]) + 1
    op_level = {}
    for op in ops:
        lv = max((level.get(t.index, 0) for t in op.inputs if t is not None and not t.constant), default=0)
        op_level[op.index] = lv
        for t in op.outputs:
            level[t.index] = lv
    spatial = lambda t: t in geo  # noqa: E731 - derives from the image
    producer = {t.index: op for op in ops for t in op.outputs}
    consumers: Dict[int, list] = {}
    for op in ops:
        for t in op.inputs:
            if t is not None:
                consumers.setdefault(t.index, []).append(op)
    for m, k in maps.items():
        if level.get(m, 0) != int(stats[k]["depth"]):
            raise TilingError(f"{stats[k]['name']}: its map is at level {level.get(m)}, not its depth "
                              f"{stats[k]['depth']}")

    # the statistics chains: ops that feed only maps of their own depth and commute with crops
    chain_ops: Dict[int, Set[int]] = {}
    chain_all: Set[int] = set()
    for op in reversed(ops):
        if not _crop_safe(op) or not spatial(op.outputs[0].index):
            continue
        def private(t):
            if t.index in own_outputs:
                return False
            if t.index in maps:
                return not consumers.get(t.index)
            users = consumers.get(t.index, [])
            return bool(users) and all(c.index in chain_all and op_level[c.index] == op_level[op.index]
                                       for c in users)
        if all(private(t) for t in op.outputs):
            chain_ops.setdefault(op_level[op.index], set()).add(op.index)
            chain_all.add(op.index)

    def sources_of(op_ids):
        """Non-constant inputs of ``op_ids`` that those ops do not produce."""
        made = {t.index for i in op_ids for t in ops[i].outputs}
        found = []
        for i in sorted(op_ids):
            for t in ops[i].inputs:
                if t is not None and not t.constant and t.index not in made and t.index not in found:
                    found.append(t.index)
        return found

    def feed(t) -> Feed:
        if t in given:
            return ("statistic", given[t])
        if t in vectors:
            return ("vector", vectors.index(t))
        return ("store", t)

    # statistics parts, per depth: grouped by what their chains need of the core; a map that is
    # itself a stored tensor (no chain: an instance norm's mean of x) is summed as it is (model None)
    stats_parts: Dict[int, List[Tuple[List[int], List[int], int, bool]]] = {}
    for depth in depths:
        depth_maps = [m for m, k in maps.items() if int(stats[k]["depth"]) == depth]
        chain = sorted(chain_ops.get(depth, set()))
        groups: Dict[int, List[int]] = {}
        for m in depth_maps:
            mine = _chain_of(m, chain, ops, producer)
            if not mine:
                stats_parts.setdefault(depth, []).append(([m], [m], 1, False))
                continue
            need = _need([ops[i] for i in mine], [m])
            side = 1
            for t in sources_of(mine):
                if spatial(t):
                    side = max(side, int(math.ceil(need.get(t, 1) * geo[t][0])))
            groups.setdefault(side, []).append(m)
        for side, ms in groups.items():
            mine = sorted(set().union(*(_chain_of(m, chain, ops, producer) for m in ms)))
            stats_parts.setdefault(depth, []).append((sources_of(mine), ms, side, True))

    # local parts, last segment first: what a segment reads from earlier ones becomes their output
    wanted: Dict[int, List[int]] = {}  # segment -> tensors of its level that must be stored
    for depth, parts in stats_parts.items():
        for srcs, _, _, _ in parts:
            for t in srcs:
                if spatial(t):
                    wanted.setdefault(level[t], []).append(t)
    for t in own_outputs:
        wanted.setdefault(level.get(t, 0), []).append(t)
    local_io: Dict[int, Tuple[List[int], List[int]]] = {}
    for seg in range(last_segment, -1, -1):
        outs = [t for t in dict.fromkeys(wanted.get(seg, [])) if t != image]
        if not outs:
            continue
        # ops of this segment's local model: backward from its outputs, stopping at earlier levels
        needed, todo, inputs = set(), list(outs), []
        while todo:
            t = todo.pop()
            op = producer.get(t)
            if op is None or (spatial(t) and level.get(t, 0) < seg) or t in given:
                if t not in inputs:
                    inputs.append(t)
                continue
            if op.index in needed:
                continue
            if op.index in chain_all:
                raise TilingError(f"{tensors[t].name}: a statistics chain feeds the image path")
            needed.add(op.index)
            todo.extend(x.index for x in op.inputs if x is not None and not x.constant)
        for t in inputs:
            if spatial(t) and t != image:
                wanted.setdefault(level[t], []).append(t)
        local_io[seg] = (inputs, outs)

    # stores: the image, then every stored tensor in segment order
    stores: List[Store] = []
    store_of: Dict[int, int] = {}

    def add_store(t, producer_seg):
        if t in store_of:
            return
        tensor = tensors[t]
        jump = geo[t][0]
        scale = float(tensor.scale[0]) if tensor.scale else 0.0
        zero = int(tensor.zero_point[0]) if tensor.zero_point else 0
        store_of[t] = len(stores)
        stores.append(Store(tensor.name, t, jump, int(tensor.shape[-1]), tensor.dtype, scale, zero, producer_seg,
                            -1, own_outputs.index(t) if t in own_outputs else None))

    add_store(image, -1)
    for seg in sorted(local_io):
        for t in local_io[seg][1]:
            add_store(t, seg)

    def feeds(ts, seg):
        out = []
        for t in ts:
            f = feed(t)
            if f[0] == "store":
                if t not in store_of:
                    raise TilingError(f"{tensors[t].name}: needed by segment {seg} but no segment stores it")
                sid = store_of[t]
                stores[sid].last = max(stores[sid].last, seg)
                f = ("store", sid)
            out.append(f)
        return out

    segments: List[Tuple[Optional[LocalPart], List[StatsPart]]] = []
    for seg in range(last_segment + 1):
        local = None
        if seg in local_io:
            ins, outs = local_io[seg]
            model = _cut(exposed, ins, outs)
            spatial_in = {t: geo[t][0] for t in ins if spatial(t)}
            state = propagate(graph, _ops_between(graph, ins, outs), spatial_in)
            radius = max((state[int(t)][1] for t in outs if int(t) in state), default=Fraction(0))
            step = max(1, int(halo_step))
            halo = int(math.ceil(radius / step)) * step
            local = LocalPart(model, feeds(ins, seg), [store_of[t] for t in outs], halo)
        parts = []
        for srcs, ms, side, has_model in stats_parts.get(seg, []):
            model = _cut(exposed, srcs, ms) if has_model else None
            parts.append(StatsPart(model, feeds(srcs, seg), [maps[m] for m in ms], side))
        segments.append((local, parts))
    for s in stores:
        if s.output is not None:
            s.last = last_segment + 1  # kept to the end: the frame's output
    described = [dict(s, shape=[1] + [int(d) for d in tensors[sg_inputs[int(s["given"])]].shape[1:]]) for s in stats]
    own = [("image", 0) if t.index == image else ("vector", vectors.index(t.index))
           for t in graph.inputs if t.index not in given]
    return SegmentPlan(segments, stores, described, vectors, image, own)


def _chain_of(m: int, chain: Sequence[int], ops, producer) -> List[int]:
    """The chain ops (indices) upstream of map tensor ``m``."""
    chain = set(chain)
    found, todo = set(), [m]
    while todo:
        t = todo.pop()
        op = producer.get(t)
        if op is None or op.index not in chain or op.index in found:
            continue
        found.add(op.index)
        todo.extend(x.index for x in op.inputs if x is not None and not x.constant)
    return sorted(found)
