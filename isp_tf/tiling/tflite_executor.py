"""Exact tiled execution of ``.tflite`` models with LiteRT: numpy + ai-edge-litert, no TensorFlow.

:class:`isp_tf.tiling.keras_executor.TiledRunner` tiles Keras models exactly
(halo for the receptive field, statistics passes for whole-image statistics).
A phone, or the benchmark worker, runs the ``.tflite`` instead, so the same
idea is applied to the flatbuffer:

* :func:`expose_global_stats` rewrites the exported model.  Every ``MEAN``
  over the spatial axes (MicroISP's attention pooling, PyNET's instance-norm
  moments) is removed; its *output* (the pooled statistic) becomes an extra
  model input and its *input* (the per-position map being averaged) an extra
  model output.  Statistics are grouped by dependency depth: a statistic
  computed from features that already used other statistics comes later.
* :func:`pass_models` prunes it into one model per pass: pass ``d`` keeps
  only the ops its depth-``d`` maps need (MicroISP's first pass runs 3 of the
  16 convolution layers of each branch), the final pass only what the image
  outputs need (no pooling chains).
* :class:`TiledSession` runs, for every depth, one pass over all tiles with
  the statistics known so far fed in and sums the depth's maps over each
  tile's *core*; the sums divided by the position counts are the whole-frame
  means.  A final pass with every statistic fed in writes the output cores.
  Each pass opens its interpreter and drops it afterwards, so only one pass's
  memory is held at a time.

Tile geometry (halo, core step, alignment) comes from the Keras analysis
(:func:`isp_tf.tiling.analysis.analyze`) and the plan from the one planner
(:func:`isp_tf.tiling.planner.plan_tiles`); a tile manifest
(:mod:`isp_tf.tiling.manifest`) stores both beside the pass models.  The
statistics passes read each tile's *statistics box*, whose start is a
multiple of the maps' strides, so a strided VALID pooling chain samples the
frame's grid; the map rows of a core are then ``[(core_start - box_start) //
jump, ceil((core_end - box_start) / jump))``.  The output equals whole-frame
inference up to float summation order (INT8: up to the requantisation of the
means).

Per-frame inputs (e.g. a camera-parameter vector: every original input but
the first rank-4 one) are fed unchanged to every tile of every pass.
"""
from __future__ import annotations

import pathlib
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from isp_tf.errors import InputShapeError, IspTfError
from isp_tf.runtime.session import LiteRtSession, check_runtime, dequantize, quantize
from isp_tf.tiling.planner import (Geometry, Tile, TilingError, lcm, largest_box, pad_to_multiple, padded_size,
                                   plan_tiles, round_core, segment_box)

__all__ = ["TILED_RUNTIMES", "PassSession", "TiledSession", "expose_global_stats", "pass_models", "stats_alignment"]

_SPATIAL_STRIDE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D")
_REDUCTIONS = ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "REDUCE_ANY", "REDUCE_ALL")
#: the runtimes a tiled session runs on (interpreter runtimes: every pass resizes per tile shape)
TILED_RUNTIMES = ("xnnpack", "builtin")


# ----------------------------------------------------------------------------
# the flatbuffer rewrite
# ----------------------------------------------------------------------------
def _image_input(graph) -> int:
    """Index of the image among the graph's inputs: the first rank-4 one."""
    for k, t in enumerate(graph.inputs):
        if t.rank == 4:
            return k
    raise TilingError("the model has no image input (batch, height, width, channels)")


def expose_global_stats(tflite: bytes):
    """Rewrite a ``.tflite`` so whole-image means are fed in and their maps read out.

    Returns ``(new_bytes, stats)``; ``stats`` lists, per removed ``MEAN``, a
    dict with ``name``, ``given`` (index among the new model's inputs),
    ``map`` (index among its outputs), ``jump`` (input pixels per map pixel)
    and ``depth`` (pass number, 0 first).  The converter sometimes splits a
    mean over height and width into two ``MEAN`` ops (one axis each): the pair
    counts as one statistic.  The model's own inputs (the image, and any
    per-frame inputs) and outputs keep their places; statistics inputs and
    maps come after them.  A model without spatial means comes back unchanged
    with ``stats == []``.
    """
    from isp_tf.export.flatbuffer import read_tflite, write_tflite

    graph = read_tflite(bytes(tflite))
    model = graph.model
    sg = model.subgraphs[0]
    means = _spatial_means(graph)  # [(first op, last op)]: map = first's input, statistic = last's output
    if not means:
        return bytes(tflite), []
    mean_of_output = {last.outputs[0].index: k for k, (_, last) in enumerate(means)}
    image_input = graph.inputs[_image_input(graph)].index

    # one walk in graph order (operators are topologically sorted): which tensors
    # come from the image, their resolution, and the means upstream of them
    from_image = {image_input: True}
    jumps: Dict[int, float] = {image_input: 1.0}
    upstream: Dict[int, frozenset] = {}
    for op in graph.operators:
        live = [t for t in op.inputs if t is not None and not t.constant]
        found = frozenset().union(*(upstream.get(t.index, frozenset()) for t in live)) if live else frozenset()
        spatial = [t for t in live if t.rank == 4 and from_image.get(t.index)]
        if len(spatial) > 1:  # broadcasting: follow the full-size operand
            spatial.sort(key=lambda t: -(int(t.shape[1]) if len(t.shape) > 1 else 0))
        base = jumps[spatial[0].index] if spatial else 1.0
        opts = op.options
        if op.name in _SPATIAL_STRIDE_OPS:
            base *= int(getattr(opts, "strideH", 1) or 1)
        elif op.name == "SPACE_TO_DEPTH":
            base *= int(opts.blockSize)
        elif op.name == "DEPTH_TO_SPACE":
            base /= int(opts.blockSize)
        elif op.name == "TRANSPOSE_CONV":
            base /= int(getattr(opts, "strideH", 1) or 1)
        came = any(from_image.get(t.index) for t in live)
        for t in op.outputs:
            from_image[t.index] = came
            if came:
                jumps[t.index] = base
            upstream[t.index] = frozenset([mean_of_output[t.index]]) if t.index in mean_of_output else found

    depth: Dict[int, int] = {}
    for k, (first, _) in enumerate(means):  # upstream means come earlier in graph order
        depth[k] = 1 + max((depth[j] for j in upstream.get(first.inputs[0].index, ())), default=-1)

    stats = []
    new_inputs = [int(i) for i in sg.inputs]
    new_outputs = [int(i) for i in sg.outputs]
    for k, (first, last) in enumerate(means):
        out_t = sg.tensors[last.outputs[0].index]
        # the pooled statistic becomes a fixed-size input (batch 1)
        shape = [1] + [int(d) for d in (out_t.shape if out_t.shape is not None else [])][1:]
        out_t.shape = shape
        out_t.shapeSignature = list(shape)
        map_index = first.inputs[0].index
        if map_index not in jumps:
            raise TilingError(f"{last.outputs[0].name}: the statistic's map does not come from the image input")
        jump = jumps[map_index]
        if abs(jump - round(jump)) > 1e-9 or jump < 1:
            raise TilingError(f"{last.outputs[0].name}: a statistics map at 1/{jump} of the input "
                              "cannot be cut into tiles")
        stats.append({"name": last.outputs[0].name, "given": len(new_inputs), "map": len(new_outputs),
                      "jump": int(round(jump)), "depth": depth[k]})
        new_inputs.append(last.outputs[0].index)
        new_outputs.append(map_index)
    removed = {op.index for pair in means for op in pair}
    sg.operators = [op for k, op in enumerate(sg.operators) if k not in removed]
    sg.inputs = new_inputs
    sg.outputs = new_outputs
    model.signatureDefs = []  # the signature no longer matches; LiteRT falls back to the graph I/O
    return write_tflite(model), stats


def pass_models(data: bytes, stats, final_only: bool = False) -> List[tuple]:
    """One pruned model per pass, from :func:`expose_global_stats`'s output (``final_only``: the
    final pass's alone, for a manifest of segments without passes).

    Pass ``d`` keeps only the ops its depth-``d`` statistics maps need (for
    MicroISP the first pass runs 3 of the 16 convolution layers of a branch);
    the final pass only what the model's own outputs need.  Every model keeps
    all inputs (the model's own, then every statistic, as in ``data``).
    Returns ``[(bytes, [stat index per output])]`` in pass order (final: ``[]``,
    its outputs are the model's own outputs).
    """
    from isp_tf.export.flatbuffer import drop_unused, read_tflite, write_tflite

    depths = [] if final_only else sorted({st["depth"] for st in stats})
    models = []
    for depth in depths + [None]:
        model = read_tflite(bytes(data)).model
        sg = model.subgraphs[0]
        outputs = [int(i) for i in sg.outputs]
        own = outputs[:len(outputs) - len(stats)]
        which = [] if depth is None else [k for k, st in enumerate(stats) if st["depth"] == depth]
        keep = own if depth is None else [outputs[stats[k]["map"]] for k in which]
        producer = {int(t): i for i, op in enumerate(sg.operators) for t in op.outputs}
        needed, todo = set(), list(keep)
        while todo:
            i = producer.get(todo.pop())
            if i is None or i in needed:
                continue
            needed.add(i)
            todo.extend(int(t) for t in sg.operators[i].inputs if int(t) >= 0)
        sg.operators = [op for i, op in enumerate(sg.operators) if i in needed]
        sg.outputs = keep
        models.append((write_tflite(drop_unused(model)), which))
    return models


def stats_alignment(stride: int, stats) -> int:
    """Where statistics boxes must start: ``lcm`` of the stride and every statistics map's jump."""
    return lcm(int(stride), *(int(s["jump"]) for s in stats))


def _axes(op):
    data = op.inputs[1].data if len(op.inputs) > 1 and op.inputs[1] is not None else None
    if data is None:
        raise TilingError(f"{op.outputs[0].name}: reduction axes are not constant; cannot tile")
    rank = op.inputs[0].rank
    return {int(a) % rank for a in np.ravel(data)}


def _spatial_means(graph):
    """Whole-image means of a 4-D image tensor: ``MEAN`` over axes {1, 2}, or the
    converter's split form ``MEAN`` over one spatial axis feeding a ``MEAN`` over
    the other.  Any other reduction over a spatial axis cannot be tiled exactly
    and raises :class:`TilingError` (rather than silently using per-tile values)."""
    consumers: Dict[int, list] = {}
    for op in graph.operators:
        for t in op.inputs:
            if t is not None:
                consumers.setdefault(t.index, []).append(op)
    pairs, used = [], set()
    for op in graph.operators:
        if op.name not in _REDUCTIONS or op.index in used or op.inputs[0].rank != 4:
            continue
        axes = _axes(op)
        if not axes & {1, 2}:
            continue  # a channel reduction: position-wise
        if op.name == "MEAN" and axes == {1, 2}:
            pairs.append((op, op))
            continue
        if op.name == "MEAN" and len(axes) == 1:
            (axis,) = axes
            keep = bool(getattr(op.options, "keepDims", False))
            other = 3 - axis if (keep or axis == 2) else 1  # after dropping axis 1, axis 2 becomes 1
            nxt = consumers.get(op.outputs[0].index, [])
            if len(nxt) == 1 and nxt[0].name == "MEAN" and _axes(nxt[0]) == {other}:
                pairs.append((op, nxt[0]))
                used.add(nxt[0].index)
                continue
        raise TilingError(f"{op.outputs[0].name}: {op.name} over spatial axes {sorted(axes)} is not a "
                          "whole-image mean this tiler can feed in; cannot tile exactly")
    return pairs


# ----------------------------------------------------------------------------
# running
# ----------------------------------------------------------------------------
class PassSession:
    """Runs a frame tile by tile, one pruned model per pass: the version-1 executor, which
    recomputes the network up to each statistic (kept for manifests without segments;
    :class:`TiledSession` runs every op once).

    Args:
      passes: in pass order, ``{"model": path or bytes, "statistics": [stat index per
        output]}``; the last one (``"statistics": []``) is the final pass, whose
        outputs are the model's image outputs.
      stats: the statistics of :func:`expose_global_stats` (``given``, ``map``,
        ``jump``, ``depth``, ``name``).
      geometry: a :class:`~isp_tf.tiling.planner.Geometry` (halo, core step,
        alignment, output scales, size multiple, minimum side).
      core: the core side (input px, rounded up to ``geometry.core_step``) to plan with.
      threads, runtime: LiteRT threads and runtime (:data:`TILED_RUNTIMES`).

    ``run(frame, *vectors)`` takes a (1, H, W, C) (or (H, W, C)) float32 frame
    and one array per per-frame input, in the model's input order, and returns
    every image output (float32, same rank as the frame); ``session(frame,
    *vectors)`` the first one.  Each pass opens its own interpreter and drops
    it when the pass ends, so memory is that of the largest pass model at the
    largest tile, not the sum; opening and planning it is part of the frame's
    latency.  After :meth:`plan` (which ``run`` calls): ``tiles`` (count),
    ``passes`` (statistics depths + 1), ``core``, ``tile_input`` (the largest
    statistics box, input px), ``resizes_per_frame``.
    """

    def __init__(self, passes: Sequence[dict], stats: Sequence[dict], geometry: Geometry, core: int,
                 threads: int = 2, runtime: str = "xnnpack", quiet: bool = True):
        check_runtime(runtime)
        if runtime not in TILED_RUNTIMES:
            raise IspTfError(f"tiled mode runs on the interpreter runtimes ({', '.join(TILED_RUNTIMES)}), "
                             f"not {runtime!r}")
        if not passes or passes[-1].get("statistics"):
            raise TilingError("the last pass must be the final pass (no statistics maps)")
        self.pass_specs = [dict(p) for p in passes]
        self.stats = [dict(s) for s in stats]
        self.geometry = geometry
        self.core = round_core(core, geometry.core_step)
        self.threads = int(threads)
        self.runtime = runtime
        self.quiet = quiet
        self.passes = len(self.pass_specs)
        self.resizes_per_frame = 0
        first = LiteRtSession(self.pass_specs[-1]["model"], self.threads, "builtin", quiet=quiet)
        self.inputs = first.inputs  # the same inputs in every pass model
        del first
        given = {int(s["given"]) for s in self.stats}
        own = [k for k in range(len(self.inputs)) if k not in given]
        images = [k for k in own if len(self.inputs[k]["shape"]) == 4]
        if not images:
            raise TilingError("the pass models have no image input")
        self.image_index = images[0]
        self.vector_indices = [k for k in own if k != self.image_index]
        self._plans: Dict[Tuple[int, int], List[Tile]] = {}
        self.tile_list: List[Tile] = []
        self.tiles = 0
        self.tile_input: Optional[List[int]] = None

    @classmethod
    def from_manifest(cls, path, threads: int = 2, runtime: str = "xnnpack", core: Optional[int] = None,
                      quiet: bool = True) -> "PassSession":
        """The session a tile manifest (:mod:`isp_tf.tiling.manifest`) describes; ``core``
        overrides the manifest's default core side."""
        from isp_tf.tiling.manifest import read_manifest

        manifest = read_manifest(path)
        if manifest.get("resizable") is False:
            raise TilingError(f"{path}: the pass models cannot be resized to other tile shapes "
                              "(their graph holds size constants); export with free sizes to tile")
        if not manifest["passes"]:
            raise TilingError(f"{path}: this manifest has segments only (the model needs "
                              f"{manifest.get('passes_omitted', 'too many')} statistics passes): run it with "
                              "TiledSession")
        folder = pathlib.Path(path).resolve().parent
        passes = [{"model": str(folder / p["model"]), "statistics": list(p["statistics"])}
                  for p in manifest["passes"]]
        return cls(passes, manifest["statistics"], Geometry.from_dict(manifest["geometry"]),
                   int(core if core is not None else manifest["core"]), threads, runtime, quiet)

    @classmethod
    def from_tflite(cls, tflite, geometry: Geometry, core: int, threads: int = 2, runtime: str = "xnnpack",
                    quiet: bool = True) -> "PassSession":
        """Rewrite and prune ``tflite`` (path or bytes) in memory and run it tiled."""
        data = pathlib.Path(tflite).read_bytes() if not isinstance(tflite, (bytes, bytearray)) else bytes(tflite)
        exposed, stats = expose_global_stats(data)
        passes = [{"model": model, "statistics": which} for model, which in pass_models(exposed, stats)]
        return cls(passes, stats, geometry, core, threads, runtime, quiet)

    # -- the plan --------------------------------------------------------------
    @property
    def align(self) -> int:
        """Statistics boxes start on multiples of this (the geometry's, and every map's jump)."""
        return lcm(self.geometry.align, stats_alignment(self.geometry.stride, self.stats))

    def plan(self, height: int, width: int) -> List[Tile]:
        """The tiles of an (unpadded) ``height`` x ``width`` frame (sets ``tiles``, ``tile_input``)."""
        geometry = Geometry(**{**self.geometry.__dict__, "align": self.align})
        _, _, self.tile_list = _cached_plan(self._plans, height, width, self.core, geometry)
        self.tiles = len(self.tile_list)
        self.tile_input = list(largest_box(self.tile_list))
        return self.tile_list

    def boxes(self, pass_index: int, tiles: Optional[Sequence[Tile]] = None):
        """``(box, tile)`` of every tile in pass ``pass_index``, grouped by box size (fewer
        re-plans of the interpreter): statistics boxes, or the final pass's boxes."""
        final = pass_index == self.passes - 1
        tiles = self.tile_list if tiles is None else tiles
        boxes = [(t.box if final else t.stats_box, t) for t in tiles]
        return sorted(boxes, key=lambda b: (b[0][2] - b[0][0], b[0][3] - b[0][1], b[0]))

    def work(self, height: int, width: int) -> List[Tuple[object, List[Tuple[int, int]]]]:
        """Per pass, ``(model, [(h, w) of every box])``: what one frame runs (for MAC counts)."""
        tiles = self.plan(height, width)
        return [(spec["model"], [(b[2] - b[0], b[3] - b[1]) for b, _ in self.boxes(k, tiles)])
                for k, spec in enumerate(self.pass_specs)]

    # -- running ---------------------------------------------------------------
    def _vectors(self, vectors) -> Dict[int, np.ndarray]:
        if len(vectors) != len(self.vector_indices):
            raise InputShapeError(f"this model takes {len(self.vector_indices)} per-frame input(s) beside "
                                  f"the image, got {len(vectors)}")
        out = {}
        for k, v in zip(self.vector_indices, vectors):
            v = _batched_vector(v, self.inputs[k])
            out[k] = v
        return out

    def run(self, frame: np.ndarray, *vectors) -> List[np.ndarray]:
        """Every image output for ``frame`` (and the per-frame inputs), float32."""
        frame, squeeze = _batched_frame(frame, self.inputs[self.image_index])
        height, width = frame.shape[1:3]
        fixed = self._vectors(vectors)
        tiles = self.plan(height, width)
        padded = pad_to_multiple(frame[0], self.geometry.size_multiple)[np.newaxis]
        self.resizes_per_frame = 0
        given = {int(st["given"]): np.zeros(self.inputs[int(st["given"])]["shape"], np.float32)
                 for st in self.stats}
        outs: Optional[List[np.ndarray]] = None
        scales: List[int] = []
        for pass_index, pass_spec in enumerate(self.pass_specs):
            final = pass_index == self.passes - 1
            group = [self.stats[k] for k in pass_spec["statistics"]]
            sums = [0.0] * len(group)
            counts = [0] * len(group)
            session = LiteRtSession(pass_spec["model"], self.threads, self.runtime, quiet=self.quiet)
            inputs: List[Optional[np.ndarray]] = [None] * len(self.inputs)
            for k, v in fixed.items():
                inputs[k] = v
            shape = None
            for (y0, x0, y1, x1), tile in self.boxes(pass_index, tiles):
                if shape != (y1 - y0, x1 - x0):
                    shape = (y1 - y0, x1 - x0)
                    self.resizes_per_frame += 1
                inputs[self.image_index] = padded[:, y0:y1, x0:x1]
                for idx, value in given.items():
                    inputs[idx] = value
                results = session.run(*inputs)
                cy0, cx0, cy1, cx1 = tile.core
                if final:
                    if outs is None:
                        scales = [self._scale(y, shape) for y in results]
                        outs = [np.empty((1, padded.shape[1] * s, padded.shape[2] * s, y.shape[-1]), np.float32)
                                for y, s in zip(results, scales)]
                    for out, y, s in zip(outs, results, scales):
                        out[0, cy0 * s:cy1 * s, cx0 * s:cx1 * s] = y[0, (cy0 - y0) * s:(cy1 - y0) * s,
                                                                     (cx0 - x0) * s:(cx1 - x0) * s]
                    continue
                for k, st in enumerate(group):
                    j = int(st["jump"])
                    part = results[k][0, (cy0 - y0) // j:-(-(cy1 - y0) // j), (cx0 - x0) // j:-(-(cx1 - x0) // j)]
                    sums[k] = sums[k] + part.sum(axis=(0, 1), dtype=np.float64)
                    counts[k] += part.shape[0] * part.shape[1]
            del session  # free this pass's interpreter before the next one is opened
            for k, st in enumerate(group):
                if counts[k] == 0:
                    raise InputShapeError(f"{st['name']}: the frame is smaller than one pooling window")
                mean = (sums[k] / counts[k]).astype(np.float32)
                given[int(st["given"])] = mean.reshape(given[int(st["given"])].shape)
        outs = [o[:, :height * s, :width * s] for o, s in zip(outs, scales)]
        return [o[0] for o in outs] if squeeze else outs

    def __call__(self, frame: np.ndarray, *vectors) -> np.ndarray:
        """The first image output only."""
        return self.run(frame, *vectors)[0]

    @staticmethod
    def _scale(y: np.ndarray, box_hw) -> int:
        scale = y.shape[1] // box_hw[0]
        if scale < 1 or y.shape[1] != scale * box_hw[0] or y.shape[2] != scale * box_hw[1]:
            raise TilingError(f"an output of {tuple(y.shape[1:3])} for a tile of {tuple(box_hw)}: "
                              "not a whole-number scale of the input")
        return scale


# ----------------------------------------------------------------------------
# the segment executor: every op once per tile, own halo per segment
# ----------------------------------------------------------------------------
#: how float tensors kept between segments are stored (integer tensors keep the graph's int8)
STORAGE_DTYPES = ("float32", "float16")
#: builtin codes of the ops whose filter (input 1) sizes are the multiply-adds per output pixel:
#: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, TRANSPOSE_CONV
_WORK_OPS = (3, 4, 9, 67)


def _cached_plan(plans: dict, height: int, width: int, core: int, geometry: Geometry):
    """``(padded h, padded w, tiles)`` of an unpadded frame, planned once per padded size in ``plans``."""
    side = geometry.min_side
    if min(height, width) < side:
        raise InputShapeError(f"input of {height}x{width} px is smaller than one tile of this model "
                              f"({side}x{side} input px)")
    h, w = padded_size(height, width, geometry.size_multiple)
    if (h, w) not in plans:
        plans[(h, w)] = plan_tiles(h, w, core, geometry)
    return h, w, plans[(h, w)]


def _batched_frame(frame, detail) -> Tuple[np.ndarray, bool]:
    """``frame`` as (1, h, w, C) float32 for the image input ``detail``, and whether it was (h, w, C)."""
    frame = np.asarray(frame, np.float32)
    squeeze = frame.ndim == 3
    if squeeze:
        frame = frame[np.newaxis]
    channels = int(detail["shape"][-1])
    if frame.ndim != 4 or frame.shape[0] != 1 or frame.shape[-1] != channels:
        raise InputShapeError(f"expected a (1, h, w, {channels}) frame, got shape {frame.shape}")
    return frame, squeeze


def _batched_vector(vector, detail) -> np.ndarray:
    """A per-frame input as float32 of ``detail``'s shape (its batch axis added when missing)."""
    want = tuple(int(d) for d in detail["shape"])
    v = np.asarray(vector, np.float32)
    if v.shape == want[1:]:
        v = v[np.newaxis]
    if v.shape != want:
        raise InputShapeError(f"per-frame input {detail['name']}: expected shape {want}, got {v.shape}")
    return v


class _Part:
    """One segment model: raw (already quantised) arrays in and out.

    Keeps up to ``shapes`` interpreters, one per input shape, least recently used replaced: a row of
    tiles has two box shapes (full cores and the last, wider or narrower one), so with two no tile of a
    row resizes an interpreter (each resize re-plans XNNPACK; see :func:`segment_box`).  The price is
    a second activation arena per segment model."""

    def __init__(self, model, threads, runtime, quiet, shapes: int = 2):
        self.args = (model, threads, runtime, quiet)
        first = LiteRtSession(model, threads, runtime, quiet=quiet)
        self.inputs = first.inputs
        self.outputs = first.outputs
        self.limit = max(1, int(shapes))
        self.by_shape: Dict[tuple, object] = {}  # input shapes -> interpreter, oldest first
        self.spare = [first.interpreter]
        self.resizes = 0

    def _interpreter(self, shapes):
        it = self.by_shape.pop(shapes, None)
        if it is None:
            if self.spare:
                it = self.spare.pop()
            elif len(self.by_shape) < self.limit:
                model, threads, runtime, quiet = self.args
                it = LiteRtSession(model, threads, runtime, quiet=quiet).interpreter
            else:
                it = self.by_shape.pop(next(iter(self.by_shape)))
            for d, shape in zip(self.inputs, shapes):
                it.resize_tensor_input(d["index"], list(shape), strict=False)
            it.allocate_tensors()
            self.resizes += 1
        self.by_shape[shapes] = it  # now the most recent
        return it

    def run(self, arrays, consume=None) -> Optional[List[np.ndarray]]:
        """Invoke on ``arrays`` (any layout; cast to the input's dtype as they are copied in).
        Returns copies of the outputs, or, with ``consume``, calls ``consume(views)`` with views of
        the interpreter's own buffers (copy what you keep: they are reused by the next run)."""
        it = self._interpreter(tuple(tuple(a.shape) for a in arrays))
        for d, a in zip(self.inputs, arrays):
            it.tensor(d["index"])()[...] = a  # one copy, straight into the interpreter's buffer
        it.invoke()
        if consume is None:
            return [it.get_tensor(d["index"]) for d in self.outputs]
        consume([it.tensor(d["index"])() for d in self.outputs])  # views gone before the next invoke
        return None


def _to_input(detail, array, store=None) -> np.ndarray:
    """A store's crop (or a value) as model input ``detail`` takes it: raw integers pass as they
    are, floats are quantised for an integer input, cast for a float one."""
    dtype = np.dtype(detail["dtype"])
    if array.dtype == dtype and np.issubdtype(dtype, np.integer):
        return array
    if np.issubdtype(dtype, np.floating) and np.issubdtype(array.dtype, np.floating):
        return array  # cast as it is copied into the interpreter (:meth:`_Part.run`)
    if np.issubdtype(array.dtype, np.integer) and store is not None:  # an int store into a float input
        array = (array.astype(np.float32) - store.zero_point) * store.scale
    return np.ascontiguousarray(quantize(detail, array))


class TiledSession:
    """Exact tiled execution that runs every op of the network once per tile.

    The graph is cut at its whole-image statistics into segments
    (:func:`isp_tf.tiling.segments.segment_plan`).  For each segment in turn,
    every tile's box (its core plus the segment's own halo) goes through the
    segment's local model, whose output cores are written into frame-sized
    stores, and every tile's core through its statistics models, whose maps
    are summed (float64) over the frame: the sums divided by the position
    counts are the whole-frame means the next segments are given.  Stores are
    freed after the last segment that reads them.

    Args:
      plan: a :class:`~isp_tf.tiling.segments.SegmentPlan` (models as bytes or paths).
      geometry: the model's :class:`~isp_tf.tiling.planner.Geometry` (core step, alignment,
        output scales, size multiple, min side; its ``halo`` is the largest segment halo).
      core: core side (input px, rounded up to ``core_step``).
      threads, runtime: LiteRT threads and runtime (:data:`TILED_RUNTIMES`).
      storage: ``float32`` (default; the output equals the whole frame to float summation
        order) or ``float16`` (half the memory of the stores; see the tiling docs for the
        measured error) for the float tensors kept between segments.  INT8 models keep
        their int8 tensors as they are (exact).
      per_frame: optional ``(model, feeds, k)``: a model run once on the whole frame (GenISP's
        ConvWB/ConvCC, ``ModelSpec.split``) whose output is per-frame vector ``k``; the
        caller then passes the other vectors only.
      store_budget: bytes the stores of a frame may hold at once (``None``: no limit, every
        tensor a later segment needs is stored).  Over it, stores are *recomputed* instead:
        not kept, but produced again over each box that reads them by re-running their
        segment's local model (over that box plus its halo, recursively for its own
        recomputed inputs), chosen greedily by bytes saved per unit of work added
        (:meth:`choose_recomputed`; elementwise segments such as an instance norm's
        ``x - mean`` cost nothing).  Exact like the stored ones; more MACs.

    ``run(frame, *vectors)`` returns every image output (float32, the frame's rank);
    ``session(frame, *vectors)`` the first.  After :meth:`plan`: ``tiles``, ``segments``
    (= ``passes``: each a single pass over the frame), ``core``, ``tile_input``,
    ``resizes_per_frame``, ``recomputed`` (store ids), ``store_mb`` (their peak).
    """

    def __init__(self, plan, geometry: Geometry, core: int, threads: int = 2, runtime: str = "xnnpack",
                 quiet: bool = True, storage: str = "float32", per_frame=None, inputs=None,
                 store_budget: Optional[float] = None):
        check_runtime(runtime)
        if runtime not in TILED_RUNTIMES:
            raise IspTfError(f"tiled mode runs on the interpreter runtimes ({', '.join(TILED_RUNTIMES)}), "
                             f"not {runtime!r}")
        if storage not in STORAGE_DTYPES:
            raise IspTfError(f"storage must be one of {', '.join(STORAGE_DTYPES)}, not {storage!r}")
        self.segment_plan = plan
        self.geometry = geometry
        self.core = round_core(core, geometry.core_step)
        self.threads, self.runtime, self.quiet, self.storage = int(threads), runtime, quiet, storage
        self.per_frame = per_frame
        self.segments = self.passes = len(plan.segments)
        self.halos = plan.halos
        self.stats = plan.stats
        self.inputs = inputs if inputs is not None else self._describe_inputs()
        self.image_index = next(k for k, d in enumerate(self.inputs) if d.get("role") == "image")
        self.vector_indices = [k for k, d in enumerate(self.inputs) if d.get("role") == "per_frame"]
        self._plans: Dict[Tuple[int, int], List[Tile]] = {}
        self.tile_list: List[Tile] = []
        self.tiles = 0
        self.tile_input: Optional[List[int]] = None
        self.resizes_per_frame = 0
        self.store_budget = store_budget
        self.recomputed: frozenset = frozenset()
        self.store_mb = 0.0
        self._work: Optional[List[float]] = None

    def _describe_inputs(self) -> List[dict]:
        """The original model's inputs (image, per-frame vectors), from the first models that take them."""
        image = self.segment_plan.stores[0]
        found = {}
        for local, parts in self.segment_plan.segments:
            for part in ([local] if local is not None else []) + [p for p in parts if p.model is not None]:
                details = None
                for j, (kind, k) in enumerate(part.inputs):
                    if kind in ("vector",) or (kind == "store" and k == 0):
                        if details is None:
                            details = LiteRtSession(part.model, 1, "builtin", quiet=True).inputs
                        key = ("image", 0) if kind == "store" else ("vector", k)
                        found.setdefault(key, dict(details[j]))
        image_detail = {"name": image.name, "dtype": np.dtype(image.dtype),
                        "shape": np.array([1, 1, 1, image.channels]), "quantization": (image.scale, image.zero_point)}
        order = self.segment_plan.own_inputs or [("image", 0)] + [
            ("vector", k) for k in range(len(self.segment_plan.vector_inputs))]
        out = []
        for key in order:
            if key == ("image", 0):
                out.append(dict(found.get(key, image_detail), role="image"))
            elif key in found:
                out.append(dict(found[key], role="per_frame", vector=key[1]))
            else:
                raise TilingError(f"per-frame input {key[1]} is read by no segment")
        return out

    # -- construction ----------------------------------------------------------
    @classmethod
    def from_tflite(cls, tflite, geometry: Geometry, core: int, threads: int = 2, runtime: str = "xnnpack",
                    quiet: bool = True, storage: str = "float32") -> "TiledSession":
        """Cut ``tflite`` (path or bytes) into segments in memory and run it tiled."""
        from isp_tf.tiling.segments import segment_plan

        data = pathlib.Path(tflite).read_bytes() if not isinstance(tflite, (bytes, bytearray)) else bytes(tflite)
        exposed, stats = expose_global_stats(data)
        plan = segment_plan(exposed, stats, lcm(geometry.stride, geometry.size_multiple))
        return cls(plan, _segment_geometry(geometry, plan), core, threads, runtime, quiet, storage)

    @classmethod
    def from_manifest(cls, path, threads: int = 2, runtime: str = "xnnpack", core: Optional[int] = None,
                      quiet: bool = True, storage: str = "float32", store_budget: Optional[float] = None):
        """The session a tile manifest (:mod:`isp_tf.tiling.manifest`) describes: this executor
        when the manifest has ``segments``, else the pass executor (:class:`PassSession`).
        ``core`` overrides the manifest's default core side."""
        from isp_tf.tiling.manifest import read_manifest, segment_plan_from_manifest

        manifest = read_manifest(path)
        if "segments" not in manifest:
            return PassSession.from_manifest(path, threads, runtime, core, quiet)
        if manifest.get("resizable") is False:
            raise TilingError(f"{path}: the segment models cannot be resized to other tile shapes "
                              "(their graph holds size constants); export with free sizes to tile")
        plan, per_frame = segment_plan_from_manifest(manifest, pathlib.Path(path).resolve().parent)
        geometry = _segment_geometry(Geometry.from_dict(manifest["geometry"]), plan)
        return cls(plan, geometry, int(core if core is not None else manifest["core"]), threads, runtime, quiet,
                   storage, per_frame=per_frame, store_budget=store_budget)

    # -- the plan --------------------------------------------------------------
    def plan(self, height: int, width: int) -> List[Tile]:
        """The tiles of an (unpadded) ``height`` x ``width`` frame (sets ``tiles``, ``tile_input``)."""
        h, w, self.tile_list = _cached_plan(self._plans, height, width, self.core, self.geometry)
        self.tiles = len(self.tile_list)
        self.frame_hw = (h, w)
        boxes = [self._box(t, halo) for t in self.tile_list for halo in self.halos]
        self.tile_input = [max(b[2] - b[0] for b in boxes), max(b[3] - b[1] for b in boxes)]
        self.recomputed = self.choose_recomputed(h, w)
        self.store_mb = round(self._peak_store_bytes(h, w, self.recomputed) / 2 ** 20, 1)
        return self.tile_list

    # -- store or recompute ----------------------------------------------------
    def _store_bytes(self, sid: int, h: int, w: int) -> float:
        st = self.segment_plan.stores[sid]
        return int(h / st.jump) * int(w / st.jump) * st.channels * np.dtype(self._store_dtype(st)).itemsize

    def _kept(self, sid: int) -> bool:
        """Stores that are never recomputed: the frame and the model's outputs."""
        return sid == 0 or self.segment_plan.stores[sid].output is not None

    def _last_reader(self, recomputed) -> Dict[int, int]:
        """The last segment that reads each stored tensor, directly or through a recomputed one."""
        stores = self.segment_plan.stores
        last = {sid: st.last for sid, st in enumerate(stores)}
        for sid in sorted(recomputed, key=lambda v: -stores[v].producer):  # consumers before producers
            local = self.segment_plan.segments[stores[sid].producer][0]
            for kind, k in local.inputs:
                if kind == "store":
                    last[k] = max(last[k], last[sid])
        return last

    def _peak_store_bytes(self, h: int, w: int, recomputed) -> float:
        stores, last = self.segment_plan.stores, self._last_reader(recomputed)
        live = [sid for sid in range(1, len(stores)) if sid not in recomputed and stores[sid].output is None]
        return max([sum(self._store_bytes(sid, h, w) for sid in live if stores[sid].producer <= seg <= last[sid])
                    for seg in range(len(self.segment_plan.segments))] + [0])

    def _segment_work(self) -> List[float]:
        """Per segment, its local model's multiply-adds per output pixel (conv filters' sizes): the
        price of recomputing its outputs."""
        if self._work is None:
            from isp_tf.export.flatbuffer import read_tflite

            work = []
            for local, _ in self.segment_plan.segments:
                total = 0.0
                if local is not None:
                    data = pathlib.Path(local.model).read_bytes() if not isinstance(local.model, (bytes, bytearray)) \
                        else bytes(local.model)
                    model = read_tflite(data).model
                    codes = [max(int(c.builtinCode), int(c.deprecatedBuiltinCode)) for c in model.operatorCodes]
                    sg = model.subgraphs[0]
                    for op in sg.operators:
                        if codes[op.opcodeIndex] in _WORK_OPS and len(op.inputs) > 1 and op.inputs[1] >= 0:
                            total += float(np.prod(sg.tensors[op.inputs[1]].shape))
                work.append(total)
            self._work = work
        return self._work

    def choose_recomputed(self, height: int, width: int) -> frozenset:
        """The stores to recompute so the stores of a (padded) ``height`` x ``width`` frame fit
        ``store_budget``: greedily, at the segment where the kept stores peak, the one saving the
        most bytes per unit of work its recomputation adds (its producer's conv MACs per pixel times
        the number of models reading it, plus one); none without a budget.  A budget even the
        full recomputation misses gives that (the least memory there is)."""
        if self.store_budget is None:
            return frozenset()
        stores, segments = self.segment_plan.stores, self.segment_plan.segments
        work = self._segment_work()
        readers = {sid: 0 for sid in range(len(stores))}
        for local, parts in segments:
            for part in ([local] if local is not None else []) + list(parts):
                for kind, k in part.inputs:
                    if kind == "store":
                        readers[k] += 1
        chosen: set = set()
        while self._peak_store_bytes(height, width, chosen) > self.store_budget:
            last = self._last_reader(chosen)
            loads = [sum(self._store_bytes(sid, height, width) for sid in range(len(stores))
                         if not self._kept(sid) and sid not in chosen and stores[sid].producer <= seg <= last[sid])
                     for seg in range(len(segments))]
            peak = int(np.argmax(loads))
            candidates = [sid for sid in range(len(stores)) if not self._kept(sid) and sid not in chosen
                          and stores[sid].producer <= peak <= last[sid]]
            if not candidates:
                break
            chosen.add(max(candidates, key=lambda sid: self._store_bytes(sid, height, width)
                           / (1.0 + work[stores[sid].producer] * readers[sid])))
        # a cheap early pick can turn out useless once a larger store is recomputed (GenISP: an instance
        # norm's ``x - mean`` before the 64-channel conv after it): keep what the budget allows, dearest first
        for sid in sorted(chosen, key=lambda v: -work[stores[v].producer] * readers[v]):
            if self._peak_store_bytes(height, width, chosen - {sid}) <= self.store_budget:
                chosen.discard(sid)
        return frozenset(chosen)

    def _box(self, tile: Tile, halo: int):
        return segment_box(tile.core, halo, self.frame_hw)

    def calls(self, height: int, width: int) -> List[Tuple[object, List[List[Tuple[int, ...]]]]]:
        """Per model, ``(model, [input shapes of each call])``: what one frame runs (MAC counts),
        recomputations included."""
        tiles = self.plan(height, width)
        segments = self.segment_plan.segments
        calls: Dict[int, List] = {}  # model key -> shapes; local models by segment, stats by (seg, j)
        models: Dict[object, object] = {}

        def recompute(sid, box, done):  # a recomputed store read over box: its producer's call, once a tile
            p = self.segment_plan.stores[sid].producer
            pbox = segment_box(box, segments[p][0].halo, self.frame_hw)
            if (p, pbox) not in done:
                done.add((p, pbox))
                add(p, segments[p][0].model, segments[p][0].inputs, pbox, done)

        def add(key, model, feeds, box, done):
            for kind, k in feeds:  # recomputed inputs first, as run() does
                if kind == "store" and k in self.recomputed:
                    recompute(k, box, done)
            models[key] = model
            calls.setdefault(key, []).append(self._feed_shapes(feeds, box))

        for seg, (local, parts) in enumerate(segments):
            for t in tiles:
                done: set = set()
                if local is not None and not all(o in self.recomputed for o in local.outputs):
                    add(seg, local.model, local.inputs, self._box(t, local.halo), done)
                for j, part in enumerate(parts):
                    if not self._counts(t, part):
                        continue
                    if part.model is None:  # reads its store: recomputing it is a call
                        (kind, sid), = part.inputs
                        if sid in self.recomputed:
                            recompute(sid, t.core, done)
                        continue
                    add((seg, j), part.model, part.inputs, t.core, done)
        return [(models[key], shapes) for key, shapes in calls.items()]

    def _feed_shapes(self, feeds, box):
        shapes = []
        for kind, k in feeds:
            if kind == "store":
                s = self.segment_plan.stores[k]
                y0, x0, y1, x1 = (int(v / s.jump) for v in box)
                shapes.append((1, y1 - y0, x1 - x0, s.channels))
            elif kind == "vector":
                shapes.append(tuple(int(d) for d in self.inputs[self.vector_indices[k]]["shape"]))
            else:
                shapes.append(tuple(int(d) for d in self.stats[k]["shape"]))
        return shapes

    def _reach(self, seg: int) -> Optional[int]:
        """How far above a core segment ``seg`` may read a stored tensor when it recomputes others
        (each recomputation adds its producer's halo, twice where a box is shifted inside the
        frame); ``None`` without recomputation (the box rule alone)."""
        if not self.recomputed:
            return None
        stores, segments = self.segment_plan.stores, self.segment_plan.segments

        def through(sid):
            if sid not in self.recomputed:
                return 0
            local = segments[stores[sid].producer][0]
            return 2 * local.halo + max([through(k) for kind, k in local.inputs if kind == "store"] + [0])

        local, parts = segments[seg]
        reach = [2 * local.halo + through(k) for kind, k in local.inputs if kind == "store"] if local else []
        reach += [through(k) for part in parts for kind, k in part.inputs if kind == "store"]
        return max(reach + [0])

    @staticmethod
    def _counts(tile: Tile, part) -> bool:
        cy0, cx0, cy1, cx1 = tile.core
        return min(cy1 - cy0, cx1 - cx0) >= part.min_side

    # -- running ---------------------------------------------------------------
    def _vectors(self, vectors) -> List[np.ndarray]:
        want_n = len(self.vector_indices) - (1 if self.per_frame is not None else 0)
        if len(vectors) != want_n:
            raise InputShapeError(f"this model takes {want_n} per-frame input(s) beside the image, "
                                  f"got {len(vectors)}")
        out = [None] * len(self.vector_indices)
        given_by_user = [k for k in self.vector_indices
                         if self.per_frame is None or int(self.inputs[k]["vector"]) != self.per_frame[2]]
        for k, v in zip(given_by_user, vectors):
            v = _batched_vector(v, self.inputs[k])
            out[int(self.inputs[k]["vector"])] = v
        return out

    def _store_dtype(self, store):
        if store.output is not None:
            return np.float32
        if store.dtype in ("int8", "uint8", "int16"):
            return np.dtype(store.dtype)
        return np.dtype(self.storage)

    def run(self, frame: np.ndarray, *vectors) -> List[np.ndarray]:
        """Every image output for ``frame`` (and the per-frame inputs), float32."""
        frame, squeeze = _batched_frame(frame, self.inputs[self.image_index])
        height, width = frame.shape[1:3]
        fixed = self._vectors(vectors)
        if self.per_frame is not None:  # once, on the whole (unpadded) frame
            model, feeds, target = self.per_frame
            part = _Part(model, self.threads, self.runtime, self.quiet)
            arrays = [frame if kind == "image" else fixed[k] for kind, k in feeds]
            (value,) = part.run([_to_input(d, a) for d, a in zip(part.inputs, arrays)])
            k = next(k for k in self.vector_indices if int(self.inputs[k]["vector"]) == target)
            fixed[target] = dequantize(part.outputs[0], value).reshape([int(d) for d in self.inputs[k]["shape"]])
            del part
        tiles = self.plan(height, width)
        h, w = self.frame_hw
        padded = pad_to_multiple(frame[0], self.geometry.size_multiple)[np.newaxis]
        plan = self.segment_plan
        rows = sorted({(t.core[0], t.core[2]) for t in tiles})
        data: Dict[int, object] = {0: padded}  # store id -> full array (frame, outputs) or _Bands
        given: Dict[int, np.ndarray] = {}
        self.resizes_per_frame = 0
        recomputed, last = self.recomputed, self._last_reader(self.recomputed)
        producers: Dict[int, _Part] = {}  # segment -> its local model, kept while it recomputes stores
        memo: Dict[tuple, list] = {}  # (segment, box) -> its local outputs, within one tile's step

        def recompute(sid, box):
            """Store ``sid`` over ``box``: its segment's local model run again over the box plus its halo."""
            st = plan.stores[sid]
            local = plan.segments[st.producer][0]
            pbox = segment_box(box, local.halo, (h, w))
            if (st.producer, pbox) not in memo:
                if st.producer not in producers:
                    producers[st.producer] = _Part(local.model, self.threads, self.runtime, self.quiet)
                part = producers[st.producer]
                arrays = [value(f, pbox, d) for f, d in zip(local.inputs, part.inputs)]
                memo[(st.producer, pbox)] = part.run(arrays)
            part = producers[st.producer]
            j = local.outputs.index(sid)
            y = memo[(st.producer, pbox)][j]
            oy, ox = (int(v / st.jump) for v in pbox[:2])
            y0, x0, y1, x1 = (int(v / st.jump) for v in box)
            y = y[:, y0 - oy:y1 - oy, x0 - ox:x1 - ox]
            return y if np.issubdtype(self._store_dtype(st), np.integer) else dequantize(part.outputs[j], y)

        def crop(sid, box):
            if sid in recomputed:
                return recompute(sid, box)
            s = plan.stores[sid]
            y0, x0, y1, x1 = (int(v / s.jump) for v in box)
            store = data[sid]
            return store.read(y0, x0, y1, x1) if isinstance(store, _Bands) else store[:, y0:y1, x0:x1]

        def value(feed, box, detail):
            kind, k = feed
            if kind == "store":
                return _to_input(detail, crop(k, box), plan.stores[k])
            if kind == "vector":
                return _to_input(detail, fixed[k])
            return _to_input(detail, given[k])

        def write_cores(store_ids, details, views, box, tile, r):
            """A local model's outputs (views of its buffers) -> the cores of their stores."""
            for sid, y, d in zip(store_ids, views, details):
                st = plan.stores[sid]
                if sid in recomputed:
                    continue
                if sid not in data:
                    dtype = self._store_dtype(st)
                    data[sid] = (np.empty((1, int(h / st.jump), int(w / st.jump), y.shape[-1]), dtype)
                                 if st.output is not None else
                                 _Bands(rows, st.jump, int(w / st.jump), int(y.shape[-1]), dtype))
                by0, bx0 = (int(v / st.jump) for v in box[:2])
                cy0, cx0, cy1, cx1 = (int(v / st.jump) for v in tile.core)
                part = y[:, cy0 - by0:cy1 - by0, cx0 - bx0:cx1 - bx0]
                store = data[sid]
                target = store.band(r, cx0, cx1) if isinstance(store, _Bands) else \
                    store[:, cy0:cy1, cx0:cx1]
                if np.issubdtype(target.dtype, np.integer):
                    target[...] = part
                else:
                    target[...] = dequantize(d, part)

        self.segment_seconds = []
        for seg, (local, parts) in enumerate(plan.segments):
            started = time.perf_counter()
            sums = {k: 0.0 for part in parts for k in part.outputs}
            counts = {k: 0 for k in sums}
            lp = None
            if local is not None and not all(o in recomputed for o in local.outputs):
                lp = _Part(local.model, self.threads, self.runtime, self.quiet)
                if any(o in recomputed for o in local.outputs):
                    producers[seg] = lp  # kept: later segments recompute with it
            sps = [_Part(p.model, self.threads, self.runtime, self.quiet) if p.model is not None else None
                   for p in parts]
            halo = local.halo if local is not None else 0
            reach = self._reach(seg)
            for r, (ry0, ry1) in enumerate(rows):  # row by row: the stores read for the last time shrink
                row = sorted((t for t in tiles if t.core[0] == ry0),
                             key=lambda t: (lambda b: (b[3] - b[1], b[1]))(self._box(t, halo)))
                for tile in row:
                    memo.clear()
                    if lp is not None:
                        box = self._box(tile, halo)
                        arrays = [value(f, box, d) for f, d in zip(local.inputs, lp.inputs)]
                        lp.run(arrays, lambda views: write_cores(local.outputs, lp.outputs, views, box, tile, r))
                    for spec, sp in zip(parts, sps):
                        if not self._counts(tile, spec):
                            continue
                        if sp is None:  # the map is a stored tensor itself
                            (kind, sid), = spec.inputs
                            st = plan.stores[sid]
                            m = crop(sid, tile.core)
                            m = (m.astype(np.float64) - st.zero_point) * st.scale if st.scale else m
                            maps = [m]
                        else:
                            arrays = [value(f, tile.core, d) for f, d in zip(spec.inputs, sp.inputs)]
                            maps = [dequantize(d, y) for y, d in zip(sp.run(arrays), sp.outputs)]
                        for k, m in zip(spec.outputs, maps):
                            sums[k] = sums[k] + m.sum(axis=(0, 1, 2), dtype=np.float64)
                            counts[k] += m.shape[1] * m.shape[2]
                # rows no later tile of this segment reads: free them in stores read for the last time
                if r + 1 < len(rows):
                    keep_from = (min(self._box(t, halo)[0] for t in tiles if t.core[0] == rows[r + 1][0])
                                 if reach is None else max(0, rows[r + 1][0] - reach))
                    for sid, store in data.items():
                        if isinstance(store, _Bands) and last[sid] <= seg:
                            store.free_before(keep_from)
            memo.clear()
            self.resizes_per_frame += sum(p.resizes for p in [lp, *sps] if p is not None and p not in
                                          producers.values())
            for p in [p for p in producers if max([last[v] for v in recomputed
                                                   if plan.stores[v].producer == p] + [-1]) <= seg]:
                self.resizes_per_frame += producers.pop(p).resizes  # no later segment recomputes with it
            del lp, sps  # free this segment's interpreters before the next ones are opened
            for k in sums:
                if counts[k] == 0:
                    raise InputShapeError(f"{self.stats[k]['name']}: the frame is smaller than one pooling window")
                shape = [int(d) for d in self.stats[k]["shape"]]
                given[k] = (sums[k] / counts[k]).astype(np.float32).reshape(shape)
            for sid in [sid for sid in data if sid and last[sid] <= seg and plan.stores[sid].output is None]:
                del data[sid]
            self.segment_seconds.append(round(time.perf_counter() - started, 4))
        outputs = sorted((s.output, sid) for sid, s in enumerate(plan.stores) if s.output is not None)
        outs = [data[sid][:, :int(height / plan.stores[sid].jump), :int(width / plan.stores[sid].jump)]
                for _, sid in outputs]
        return [o[0] for o in outs] if squeeze else outs

    def __call__(self, frame: np.ndarray, *vectors) -> np.ndarray:
        """The first image output only."""
        return self.run(frame, *vectors)[0]


class _Bands:
    """A frame-sized store kept as one band of rows per row of tiles, so the bands no later tile
    reads can be freed while a segment runs (the stores read for the last time shrink as the
    ones written grow: about one set of stores at a time, not two)."""

    def __init__(self, rows, jump, width: int, channels: int, dtype):
        self.edges = [(int(a / jump), int(b / jump)) for a, b in rows]  # store rows of each band
        self.jump = jump
        self.shape = (width, channels)
        self.dtype = dtype
        self.bands: Dict[int, np.ndarray] = {}

    def band(self, r: int, x0: int, x1: int) -> np.ndarray:
        """The view of band ``r``, columns ``[x0, x1)`` (allocated on first use)."""
        if r not in self.bands:
            y0, y1 = self.edges[r]
            self.bands[r] = np.empty((1, y1 - y0, self.shape[0], self.shape[1]), self.dtype)
        return self.bands[r][:, :, x0:x1]

    def read(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        parts = []
        for r, (b0, b1) in enumerate(self.edges):
            if b1 <= y0 or b0 >= y1:
                continue
            if r not in self.bands:
                raise TilingError(f"rows {b0}-{b1} of a store were read after being freed (or before written)")
            parts.append(self.bands[r][:, max(y0, b0) - b0:min(y1, b1) - b0, x0:x1])
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)

    def free_before(self, y_input_px: int) -> None:
        """Drop the bands that end at or above input row ``y_input_px``."""
        limit = int(y_input_px / self.jump)
        for r, (_, b1) in enumerate(self.edges):
            if b1 <= limit:
                self.bands.pop(r, None)


def _segment_geometry(geometry: Geometry, plan) -> Geometry:
    """``geometry`` with the largest segment halo (what a tile's box may reach)."""
    import dataclasses

    return dataclasses.replace(geometry, halo=max(plan.halos + [0]))
