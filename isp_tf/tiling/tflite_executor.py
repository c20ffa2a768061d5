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
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from isp_tf.errors import InputShapeError, IspTfError
from isp_tf.runtime.session import LiteRtSession, check_runtime
from isp_tf.tiling.planner import (Geometry, Tile, TilingError, lcm, largest_box, pad_to_multiple, padded_size,
                                   plan_tiles, round_core)

__all__ = ["TILED_RUNTIMES", "TiledSession", "expose_global_stats", "pass_models", "stats_alignment"]

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


def pass_models(data: bytes, stats) -> List[tuple]:
    """One pruned model per pass, from :func:`expose_global_stats`'s output.

    Pass ``d`` keeps only the ops its depth-``d`` statistics maps need (for
    MicroISP the first pass runs 3 of the 16 convolution layers of a branch);
    the final pass only what the model's own outputs need.  Every model keeps
    all inputs (the model's own, then every statistic, as in ``data``).
    Returns ``[(bytes, [stat index per output])]`` in pass order (final: ``[]``,
    its outputs are the model's own outputs).
    """
    from isp_tf.export.flatbuffer import read_tflite, write_tflite

    depths = sorted({st["depth"] for st in stats})
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
        models.append((write_tflite(model), which))
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
class TiledSession:
    """Runs a frame tile by tile, one pruned model per pass (see the module docstring).

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
                      quiet: bool = True) -> "TiledSession":
        """The session a tile manifest (:mod:`isp_tf.tiling.manifest`) describes; ``core``
        overrides the manifest's default core side."""
        from isp_tf.tiling.manifest import read_manifest

        manifest = read_manifest(path)
        if manifest.get("resizable") is False:
            raise TilingError(f"{path}: the pass models cannot be resized to other tile shapes "
                              "(their graph holds size constants); export with free sizes to tile")
        folder = pathlib.Path(path).resolve().parent
        passes = [{"model": str(folder / p["model"]), "statistics": list(p["statistics"])}
                  for p in manifest["passes"]]
        return cls(passes, manifest["statistics"], Geometry.from_dict(manifest["geometry"]),
                   int(core if core is not None else manifest["core"]), threads, runtime, quiet)

    @classmethod
    def from_tflite(cls, tflite, geometry: Geometry, core: int, threads: int = 2, runtime: str = "xnnpack",
                    quiet: bool = True) -> "TiledSession":
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
        side = self.geometry.min_side
        if min(height, width) < side:
            raise InputShapeError(f"input of {height}x{width} px is smaller than one tile of this model "
                                  f"({side}x{side} input px)")
        h, w = padded_size(height, width, self.geometry.size_multiple)
        if (h, w) not in self._plans:
            geometry = Geometry(**{**self.geometry.__dict__, "align": self.align})
            self._plans[(h, w)] = plan_tiles(h, w, self.core, geometry)
        self.tile_list = self._plans[(h, w)]
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
            want = tuple(int(d) for d in self.inputs[k]["shape"])
            v = np.asarray(v, np.float32)
            if v.shape == want[1:]:
                v = v[np.newaxis]
            if v.shape != want:
                raise InputShapeError(f"per-frame input {self.inputs[k]['name']}: expected shape {want}, "
                                      f"got {v.shape}")
            out[k] = v
        return out

    def run(self, frame: np.ndarray, *vectors) -> List[np.ndarray]:
        """Every image output for ``frame`` (and the per-frame inputs), float32."""
        frame = np.asarray(frame, np.float32)
        squeeze = frame.ndim == 3
        if squeeze:
            frame = frame[np.newaxis]
        channels = int(self.inputs[self.image_index]["shape"][-1])
        if frame.ndim != 4 or frame.shape[0] != 1 or frame.shape[-1] != channels:
            raise InputShapeError(f"expected a (1, h, w, {channels}) frame, got shape {frame.shape}")
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
