"""Exact tiled inference with LiteRT: a frame through a tile-sized ``.tflite``.

:mod:`isp_tf.infer.tiling` tiles Keras models exactly (halo for the receptive
field, statistics passes for whole-image statistics).  A phone or this
benchmark runs the ``.tflite`` instead, so the same idea is applied to the
flatbuffer:

* :func:`expose_global_stats` rewrites the exported model.  Every ``MEAN``
  over the spatial axes (MicroISP's attention pooling, PyNET's instance-norm
  moments) is removed; its *output* (the pooled statistic) becomes an extra
  model input and its *input* (the per-position map being averaged) an extra
  model output.  Statistics are grouped by dependency depth: a statistic
  computed from features that already used other statistics comes later.
* :func:`pass_models` prunes it into one model per pass: pass ``d`` keeps
  only the ops its depth-``d`` maps need (MicroISP's first pass runs 3 of the
  16 convolution layers of each branch), the final pass only what the image
  needs (no pooling chains).
* :class:`TiledSession` (in the worker) runs, for every depth, one pass over
  all tiles with the statistics known so far fed in and sums the depth's maps
  over each tile's *core*; the sums divided by the position counts are the
  whole-frame means.  A final pass with every statistic fed in writes the
  output cores.  Each pass opens its interpreter and drops it afterwards, so
  only one pass's memory is held at a time.

Tile geometry comes from :func:`isp_tf.infer.tiling.analyze`: the halo (the
receptive field) and the core step (MicroISP: 81, the attention's pooling
block).  Tile boxes additionally start on a multiple of the statistics maps'
stride, so a strided VALID pooling chain samples the frame's grid; the map
rows of a core are then ``[(core_start - box_start) / jump, (core_end -
box_start) / jump)``.  The output equals whole-frame inference up to float
summation order (INT8: up to the requantisation of the means).
"""
from __future__ import annotations

import json
import math
import pathlib
from typing import Dict, List

import numpy as np

from isp_tf.errors import IspTfError

_SPATIAL_STRIDE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D")
#: more statistics passes than this and tiling is not benchmarked (PyNET: one per instance-norm depth)
MAX_PASSES = 8


class TilingTooCostly(IspTfError):
    """The model needs so many statistics passes that tiled inference is not worth timing."""


def _lcm(*values: int) -> int:
    out = 1
    for v in values:
        out = out * int(v) // math.gcd(out, int(v))
    return out


# ----------------------------------------------------------------------------
# the flatbuffer rewrite
# ----------------------------------------------------------------------------
def expose_global_stats(tflite: bytes):
    """Rewrite a ``.tflite`` so whole-image means are fed in and their maps read out.

    Returns ``(new_bytes, stats)``; ``stats`` lists, per removed ``MEAN``, a
    dict with ``name``, ``given`` (index among the new model's inputs),
    ``map`` (index among its outputs), ``jump`` (input pixels per map pixel)
    and ``depth`` (pass number, 0 first).  The converter sometimes splits a
    mean over height and width into two ``MEAN`` ops (one axis each): the pair
    counts as one statistic.  The image input stays input 0 and
    the image output output 0.  A model without spatial means comes back
    unchanged with ``stats == []``.
    """
    from isp_tf.export.flatbuffer import read_tflite, write_tflite

    graph = read_tflite(bytes(tflite))
    model = graph.model
    sg = model.subgraphs[0]
    producer = {t.index: op for op in graph.operators for t in op.outputs}
    means = _spatial_means(graph)  # [(first op, last op)]: map = first's input, statistic = last's output
    if not means:
        return bytes(tflite), []
    mean_of_output = {last.outputs[0].index: k for k, (_, last) in enumerate(means)}
    image_input = graph.inputs[0].index

    # dependency depth of each mean: the deepest mean upstream of its input, plus one
    upstream_cache: Dict[int, frozenset] = {}

    def upstream(tensor_index: int) -> frozenset:
        if tensor_index in upstream_cache:
            return upstream_cache[tensor_index]
        upstream_cache[tensor_index] = frozenset()  # cycle guard (graphs are acyclic)
        found = set()
        if tensor_index in mean_of_output:
            found.add(mean_of_output[tensor_index])
            result = frozenset(found)
        else:
            op = producer.get(tensor_index)
            for t in (op.inputs if op is not None else []):
                if t is not None and not t.constant:
                    found |= upstream(t.index)
            result = frozenset(found)
        upstream_cache[tensor_index] = result
        return result

    depth: Dict[int, int] = {}

    def depth_of(k: int) -> int:
        if k not in depth:
            depth[k] = 1 + max((depth_of(j) for j in upstream(means[k][0].inputs[0].index)), default=-1)
        return depth[k]

    # input pixels per pixel of a tensor, following the first non-constant input
    jump_cache: Dict[int, float] = {image_input: 1.0}

    def jump_of(tensor_index: int) -> float:
        if tensor_index in jump_cache:
            return jump_cache[tensor_index]
        op = producer.get(tensor_index)
        if op is None:
            raise IspTfError(f"tensor {tensor_index} does not come from the image input")
        spatial = [t for t in op.inputs if t is not None and not t.constant and t.rank == 4]
        base = jump_of(spatial[0].index) if spatial else 1.0
        opts = op.options
        if op.name in _SPATIAL_STRIDE_OPS:
            base *= int(getattr(opts, "strideH", 1) or 1)
        elif op.name == "SPACE_TO_DEPTH":
            base *= int(opts.blockSize)
        elif op.name == "DEPTH_TO_SPACE":
            base /= int(opts.blockSize)
        elif op.name == "TRANSPOSE_CONV":
            base /= int(getattr(opts, "strideH", 1) or 1)
        jump_cache[tensor_index] = base
        return base

    stats = []
    new_inputs = [int(i) for i in sg.inputs]
    new_outputs = [int(i) for i in sg.outputs]
    for k, (first, last) in enumerate(means):
        out_t = sg.tensors[last.outputs[0].index]
        # the pooled statistic becomes a fixed-size input (batch 1)
        shape = [1] + [int(d) for d in (out_t.shape if out_t.shape is not None else [])][1:]
        out_t.shape = shape
        out_t.shapeSignature = list(shape)
        jump = jump_of(first.inputs[0].index)
        if abs(jump - round(jump)) > 1e-9 or jump < 1:
            raise IspTfError(f"{last.outputs[0].name}: a statistics map at 1/{jump} of the input "
                             "cannot be cut into tiles")
        stats.append({"name": last.outputs[0].name, "given": len(new_inputs), "map": len(new_outputs),
                      "jump": int(round(jump)), "depth": depth_of(k)})
        new_inputs.append(last.outputs[0].index)
        new_outputs.append(first.inputs[0].index)
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
    the final pass only what the image needs.  Every model keeps all inputs
    (image first, then every statistic, as in ``data``).  Returns
    ``[(bytes, [stat index per output])]`` in pass order (final: ``[]``).
    """
    from isp_tf.export.flatbuffer import read_tflite, write_tflite

    depths = sorted({st["depth"] for st in stats})
    models = []
    for depth in depths + [None]:
        model = read_tflite(bytes(data)).model
        sg = model.subgraphs[0]
        outputs = [int(i) for i in sg.outputs]
        which = [] if depth is None else [k for k, st in enumerate(stats) if st["depth"] == depth]
        keep = [outputs[0]] if depth is None else [outputs[stats[k]["map"]] for k in which]
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


_REDUCTIONS = ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "REDUCE_ANY", "REDUCE_ALL")


def _axes(op):
    data = op.inputs[1].data if len(op.inputs) > 1 and op.inputs[1] is not None else None
    if data is None:
        raise IspTfError(f"{op.outputs[0].name}: reduction axes are not constant; cannot tile")
    rank = op.inputs[0].rank
    return {int(a) % rank for a in np.ravel(data)}


def _spatial_means(graph):
    """Whole-image means of a 4-D image tensor: ``MEAN`` over axes {1, 2}, or the
    converter's split form ``MEAN`` over one spatial axis feeding a ``MEAN`` over
    the other.  Any other reduction over a spatial axis cannot be tiled exactly
    and raises :class:`IspTfError` (rather than silently using per-tile values)."""
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
        raise IspTfError(f"{op.outputs[0].name}: {op.name} over spatial axes {sorted(axes)} is not a "
                         "whole-image mean this tiler can feed in; cannot tile exactly")
    return pairs


# ----------------------------------------------------------------------------
# the plan (parent process)
# ----------------------------------------------------------------------------
def axis_spans(length: int, core: int, halo: int, align: int) -> List[List[int]]:
    """``[box_start, box_end, core_start, core_end, final_start]`` along one axis.

    Cores of ``core`` px (the last one ends at ``length``; a remainder thinner
    than half a core joins the previous one); boxes reach ``halo`` px beyond
    the core, their start rounded down to a multiple of ``align`` (the
    statistics passes need the pooling grid); ``final_start`` is the unrounded
    ``core_start - halo`` the final pass uses (its statistics are given).
    """
    cuts = list(range(0, length, core)) + [length]
    if len(cuts) > 2 and cuts[-1] - cuts[-2] < core // 2:
        del cuts[-2]
    spans = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        start = max(0, (a - halo) // align * align)
        spans.append([start, min(length, b + halo), a, b, max(0, a - halo)])
    return spans


def plan(height: int, width: int, core: int, halo: int, align: int) -> List[List[int]]:
    """Tiles as ``[y0, x0, y1, x1, cy0, cx0, cy1, cx1, fy0, fx0]`` (input pixels), row by row.

    ``(y0, x0)`` starts the statistics passes' box, ``(fy0, fx0)`` the final pass's."""
    rows = axis_spans(height, core, halo, align)
    cols = axis_spans(width, core, halo, align)
    return [[r[0], c[0], r[1], c[1], r[2], c[2], r[3], c[3], r[4], c[4]] for r in rows for c in cols]


def prepare(choice, precision: str, model_in_hw, tile, workdir, exported_whole,
            budget_mb: float = 300.0) -> Dict:
    """Everything a worker needs to run ``choice`` tiled on a frame of ``model_in_hw``.

    Analyses the Keras model's tiling variant (halo, core step), rewrites the
    exported ``.tflite`` with :func:`expose_global_stats` and plans the tiles.
    ``tile``: ``"auto"`` (:func:`isp_tf.infer.tiling.auto_core` for a tile whose
    activations fit ``budget_mb``) or a core side in packed pixels (rounded up
    to the core step).
    """
    from benchmarks import models as bm
    from isp_tf.infer import tiling
    from isp_tf.models import get_spec

    spec = get_spec(choice.name)
    variant = bm.build(choice, tiling=True)
    footprint = tiling.analyze(variant, spec.size_multiple)
    step = footprint.core_step
    core = tiling.auto_core(footprint, budget_mb * 2 ** 20) if tile == "auto" else int(tile)
    core = max(step, -(-core // step) * step)
    exported_whole = pathlib.Path(exported_whole)
    out_path = pathlib.Path(workdir) / f"{exported_whole.stem}_stats_io.tflite"
    if not out_path.exists():
        data, stats = expose_global_stats(exported_whole.read_bytes())
        out_path.write_bytes(data)
        out_path.with_suffix(".json").write_text(json.dumps(stats))
    stats = json.loads(out_path.with_suffix(".json").read_text())
    passes = len({s["depth"] for s in stats}) + 1
    if passes > MAX_PASSES:
        raise TilingTooCostly(f"exact tiling needs {passes} passes over the frame (one per depth of "
                              f"whole-image statistics); not timed, run it whole")
    passes_spec = []
    for k, (data, which) in enumerate(pass_models(out_path.read_bytes(), stats)):
        pass_path = out_path.with_name(f"{out_path.stem}_pass{k}.tflite")
        pass_path.write_bytes(data)
        passes_spec.append({"model_path": str(pass_path), "maps": which})
    align = _lcm(footprint.stride, *(s["jump"] for s in stats))
    h, w = int(model_in_hw[0]), int(model_in_hw[1])
    tiles = plan(h, w, core, footprint.halo, align)
    return {"model_path": str(out_path), "passes": passes_spec, "tiles": tiles, "stats": stats, "core": core,
            "halo": footprint.halo, "align": align, "output_scale": footprint.output_scale,
            "frame_hw": [h, w]}


# ----------------------------------------------------------------------------
# running (worker process: numpy + LiteRT only)
# ----------------------------------------------------------------------------
class TiledSession:
    """Runs a frame tile by tile, one pruned model per pass (see the module docstring).

    Each pass opens its own interpreter and drops it when the pass ends, so
    memory is that of the largest pass model at the largest tile, not the sum;
    opening and planning it is part of the frame's latency.  Attributes:
    ``tiles`` (count), ``passes`` (statistics depths + 1), ``core``,
    ``tile_input`` (the largest statistics box, packed px), ``resizes_per_frame``.
    """

    def __init__(self, spec: Dict, threads: int, runtime: str = "xnnpack"):
        from ai_edge_litert import interpreter as litert

        if runtime not in ("xnnpack", "builtin"):
            raise IspTfError(f"tiled mode runs on the interpreter runtimes (xnnpack, builtin), not {runtime!r}")
        self.resolver = (litert.OpResolverType.AUTO if runtime == "xnnpack"
                         else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.threads = threads
        self.spec = spec
        self.stats = spec["stats"]
        self.pass_specs = spec["passes"]
        self.tile_list = [list(map(int, t)) for t in spec["tiles"]]
        self.tiles = len(self.tile_list)
        self.passes = len(self.pass_specs)
        self.core = spec["core"]
        self.tile_input = [max(t[2] - t[0] for t in self.tile_list), max(t[3] - t[1] for t in self.tile_list)]
        self.scale = int(spec["output_scale"])
        self.resizes_per_frame = 0
        first = self._open(self.pass_specs[-1]["model_path"])
        self.inputs = first.get_input_details()  # the same inputs in every pass model
        del first

    def _open(self, path):
        from ai_edge_litert import interpreter as litert

        from benchmarks import measure

        with measure.quiet_native_stderr():
            return litert.Interpreter(model_path=str(path), num_threads=self.threads,
                                      experimental_op_resolver_type=self.resolver)

    def _boxes(self, final: bool):
        """``(box, core)`` per tile, grouped by box size (fewer re-plans of the interpreter)."""
        boxes = []
        for t in self.tile_list:
            y0, x0 = (t[8], t[9]) if final and len(t) >= 10 else (t[0], t[1])
            boxes.append(((y0, x0, t[2], t[3]), tuple(t[4:8])))
        return sorted(boxes, key=lambda b: (b[0][2] - b[0][0], b[0][3] - b[0][1], b[0]))

    def _resize(self, it, h: int, w: int):
        detail = self.inputs[0]
        strict = any(int(d) < 0 for d in detail.get("shape_signature", []))
        it.resize_tensor_input(detail["index"], [1, h, w, int(detail["shape"][-1])], strict=strict)
        it.allocate_tensors()
        self.resizes_per_frame += 1

    @staticmethod
    def _to(detail, x):
        scale, zero = detail.get("quantization", (0.0, 0))
        if detail["dtype"] == np.float32 or not scale:
            return np.asarray(x, dtype=detail["dtype"])
        info = np.iinfo(detail["dtype"])
        return np.clip(np.rint(np.asarray(x) / scale + zero), info.min, info.max).astype(detail["dtype"])

    @staticmethod
    def _from(detail, y):
        scale, zero = detail.get("quantization", (0.0, 0))
        if y.dtype == np.float32 or not scale:
            return y.astype(np.float32, copy=False)
        return (y.astype(np.float32) - zero) * scale

    def run(self, frame: np.ndarray) -> np.ndarray:
        """``frame`` (1, H, W, C) float32 -> (1, sH, sW, C') float32."""
        self.resizes_per_frame = 0
        given = {st["given"]: np.zeros(self.inputs[st["given"]]["shape"], np.float32) for st in self.stats}
        s = self.scale
        out = None
        for pass_index, pass_spec in enumerate(self.pass_specs):
            final = pass_index == self.passes - 1
            group = [self.stats[k] for k in pass_spec["maps"]]
            sums = [0.0] * len(group)
            counts = [0] * len(group)
            it = self._open(pass_spec["model_path"])
            outputs = it.get_output_details()
            shape = None
            for (y0, x0, y1, x1), (cy0, cx0, cy1, cx1) in self._boxes(final):
                if shape != (y1 - y0, x1 - x0):
                    shape = (y1 - y0, x1 - x0)
                    self._resize(it, *shape)
                it.set_tensor(self.inputs[0]["index"], self._to(self.inputs[0], frame[:, y0:y1, x0:x1]))
                for idx, value in given.items():
                    it.set_tensor(self.inputs[idx]["index"], self._to(self.inputs[idx], value))
                it.invoke()
                if final:
                    y = self._from(outputs[0], it.get_tensor(outputs[0]["index"]))
                    if out is None:
                        out = np.empty((1, frame.shape[1] * s, frame.shape[2] * s, y.shape[-1]), np.float32)
                    out[0, cy0 * s:cy1 * s, cx0 * s:cx1 * s] = y[0, (cy0 - y0) * s:(cy1 - y0) * s,
                                                                 (cx0 - x0) * s:(cx1 - x0) * s]
                    continue
                for k, st in enumerate(group):
                    fmap = self._from(outputs[k], it.get_tensor(outputs[k]["index"]))
                    j = st["jump"]
                    part = fmap[0, (cy0 - y0) // j:-(-(cy1 - y0) // j), (cx0 - x0) // j:-(-(cx1 - x0) // j)]
                    sums[k] = sums[k] + part.sum(axis=(0, 1), dtype=np.float64)
                    counts[k] += part.shape[0] * part.shape[1]
            del it  # free this pass's interpreter before the next one is planned
            for k, st in enumerate(group):
                if counts[k] == 0:
                    raise IspTfError(f"{st['name']}: the frame is smaller than one pooling window")
                mean = (sums[k] / counts[k]).astype(np.float32)
                given[st["given"]] = mean.reshape(given[st["given"]].shape)
        return out

    def macs(self, nonzero: bool = False) -> int:
        """MACs of one frame: every tile of every pass, each pass with its own pruned model."""
        from benchmarks.macs import tflite_macs

        total = 0
        channels = int(self.inputs[0]["shape"][-1])
        for pass_index, pass_spec in enumerate(self.pass_specs):
            per_shape: Dict[tuple, int] = {}
            for (y0, x0, y1, x1), _ in self._boxes(final=pass_index == self.passes - 1):
                key = (y1 - y0, x1 - x0)
                if key not in per_shape:
                    per_shape[key] = tflite_macs(pass_spec["model_path"], [1, key[0], key[1], channels],
                                                 nonzero=nonzero)
                total += per_shape[key]
        return total
