"""The segment plan on a Keras functional model: every layer once per tile (needs TensorFlow).

The same cut as :mod:`isp_tf.tiling.segments` makes in a ``.tflite``, made on
the layer graph of a (flat) functional tf_keras model, so ``TiledRunner`` runs
what LiteRT and the phone run:

* a tensor's *level* is 1 + the deepest :class:`GlobalStatsLayer` it depends
  on (0 for the inputs).  A global layer with an input of level ``L`` sums its
  ``positionwise`` in segment ``L`` (over each tile's *core* of its stored
  input: the protocol makes that the frame's grid) and applies the
  whole-frame mean in segment ``L + 1`` (``apply(x, pooled)``);
* segment ``L`` is one ``tf.function`` over the layers of level ``L``: it
  reads the stored tensors of earlier segments over the tile's box (core +
  the segment's own halo, found by tracing the function and walking its ops
  as :func:`isp_tf.tiling.analysis.analyze` does) and writes the cores of the
  tensors later segments read into frame-sized float32 stores.

Models whose global layers sit inside nested models are not cut here
(:func:`keras_segments` returns ``None``); the runner then uses its passes.
"""
from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from typing import Dict, List, Optional

import numpy as np

from isp_tf._keras import keras, tf
from isp_tf.layers.global_stats import GlobalStatsLayer
from isp_tf.tiling import analysis
from isp_tf.tiling.planner import TilingError, segment_box

__all__ = ["KerasSegment", "KerasSegments", "keras_segments"]


class _Same:
    """What ``Node.map_arguments`` pops: the same tensor every time."""

    def __init__(self, value):
        self.value = value

    def pop(self):
        return self.value


@dataclasses.dataclass
class KerasSegment:
    fn: object                 # (stored inputs..., vectors..., given...) -> [stored outputs]
    inputs: List[str]          # ids of the stored tensors it reads
    outputs: List[str]         # ids of the tensors it writes
    applies: List[int]         # global layers (indices) whose mean it applies
    sums: List[int]            # global layers whose positionwise it sums over cores
    halo: int = 0
    compiled: object = None    # fn as a tf.function with free tile sizes
    sum_fns: dict = dataclasses.field(default_factory=dict)  # layer -> tf.function summing its positionwise


@dataclasses.dataclass
class KerasSegments:
    segments: List[KerasSegment]
    layers: List[GlobalStatsLayer]
    layer_inputs: List[str]     # id of each global layer's input tensor
    jumps: Dict[str, Fraction]  # model-input px per px of every stored tensor
    image: str
    vectors: List[str]
    outputs: List[str]
    last_use: Dict[str, int]
    channels: Dict[str, int]
    pooled_dtypes: List[object]

    @property
    def halos(self) -> List[int]:
        return [s.halo for s in self.segments]


def _nodes(model):
    depths = sorted(model._nodes_by_depth, reverse=True)  # noqa: SLF001 - the functional graph
    return [n for d in depths for n in model._nodes_by_depth[d] if not n.is_input]  # noqa: SLF001


def keras_segments(model, image_index: int, probe_side: int, halo_step: int) -> Optional[KerasSegments]:
    """Cut ``model`` at its global layers (see the module docstring), or ``None`` when it cannot be
    cut here (global layers inside nested models, or none at all)."""
    if not hasattr(model, "_nodes_by_depth"):
        return None
    nodes = _nodes(model)
    layers = [n.layer for n in nodes if isinstance(n.layer, GlobalStatsLayer)]
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)
              and any(isinstance(m, GlobalStatsLayer) for m in layer.submodules)]
    if not layers or nested or len(set(map(id, layers))) != len(layers):
        return None
    ids = [str(id(t)) for t in model.inputs]
    image = ids[image_index]
    vectors = [i for k, i in enumerate(ids) if k != image_index]
    out_ids = [str(id(t)) for t in model.outputs]

    level: Dict[str, int] = {i: 0 for i in ids}
    node_level, layer_of = {}, {}
    layer_inputs: List[str] = [""] * len(layers)
    for n in nodes:
        lv = max((level[i] for i in n.flat_input_ids), default=0)
        if isinstance(n.layer, GlobalStatsLayer):
            k = layers.index(n.layer)
            layer_of[id(n)] = k
            if len(n.flat_input_ids) != 1:
                raise TilingError(f"{n.layer.name}: a global layer with several inputs")
            layer_inputs[k] = n.flat_input_ids[0]
            lv += 1  # its output needs its own whole-frame mean
        node_level[id(n)] = lv
        for o in n.flat_output_ids:
            level[o] = lv
    last = max(level.values())
    in_level = [level[i] for i in layer_inputs]

    # probe shapes (for jumps): one eager run of every layer on a small frame
    probe = {}
    for i, t in zip(ids, model.inputs):
        shape = [1] + [probe_side if d is None else int(d) for d in t.shape[1:]] if i == image else \
            [1] + [int(d) for d in t.shape[1:]]
        probe[i] = tf.zeros(shape, t.dtype)
    for n in nodes:
        args, kwargs = n.map_arguments({i: _Same(probe[i]) for i in n.flat_input_ids})
        outs = tf.nest.flatten(n.layer(*args, **kwargs))
        for o, y in zip(n.flat_output_ids, outs):
            probe[o] = y

    def spatial(i):
        return i not in vectors and len(probe[i].shape) == 4 and (i == image or _from_image(i))

    from_image = {image}
    for n in nodes:
        if any(i in from_image for i in n.flat_input_ids):
            from_image.update(n.flat_output_ids)
    _from_image = from_image.__contains__  # noqa: E731

    jumps = {i: Fraction(probe_side, int(probe[i].shape[1])) for i in probe if spatial(i)}
    # each global layer's whole-frame value, as positionwise gives it (shape (K,), its dtype)
    pooled = [tf.reduce_mean(layer.positionwise(probe[x]), axis=[0, 1, 2]) for layer, x in zip(layers, layer_inputs)]

    # what each segment reads from earlier ones (stores), and writes
    wanted: Dict[int, List[str]] = {}
    for k, i in enumerate(layer_inputs):
        wanted.setdefault(level[i], []).append(i)  # summed over cores, applied a segment later
    for i in out_ids:
        wanted.setdefault(level[i], []).append(i)
    producer = {o: n for n in nodes for o in n.flat_output_ids}
    seg_io = {}
    for seg in range(last, -1, -1):
        outs = [i for i in dict.fromkeys(wanted.get(seg, [])) if i != image]
        needed, todo, inputs = [], list(outs), []
        seen = set()
        while todo:
            i = todo.pop()
            n = producer.get(i)
            if n is None or (spatial(i) and level[i] < seg):
                if i not in inputs:
                    inputs.append(i)
                continue
            if id(n) in seen:
                continue
            seen.add(id(n))
            needed.append(n)
            if id(n) in layer_of:  # apply(x, mean): x comes from the store
                x = layer_inputs[layer_of[id(n)]]
                if x not in inputs:
                    inputs.append(x)
                continue
            todo.extend(n.flat_input_ids)
        for i in inputs:
            if spatial(i) and i != image:
                wanted.setdefault(level[i], []).append(i)
        order = {id(n): k for k, n in enumerate(nodes)}
        seg_io[seg] = (sorted(needed, key=lambda n: order[id(n)]), inputs, outs)

    last_use: Dict[str, int] = {}
    segments = []
    for seg in range(last + 1):
        run_nodes, inputs, outs = seg_io.get(seg, ([], [], []))
        stored = [i for i in inputs if spatial(i)]
        applies = sorted({layer_of[id(n)] for n in run_nodes if id(n) in layer_of})
        sums = [k for k in range(len(layers)) if in_level[k] == seg]
        for i in stored + [layer_inputs[k] for k in sums]:
            last_use[i] = max(last_use.get(i, -1), seg)
        fn = _segment_fn(run_nodes, stored, vectors, outs, layers, layer_of, layer_inputs, applies)
        segment = KerasSegment(fn, stored, outs, applies, sums)
        segment.compiled = tf.function(fn, autograph=False, input_signature=[
            [tf.TensorSpec([1, None, None, int(probe[i].shape[-1])], tf.float32) for i in stored],
            [tf.TensorSpec(probe[i].shape, probe[i].dtype) for i in vectors],
            [tf.TensorSpec(pooled[k].shape, pooled[k].dtype) for k in applies]])
        if outs:
            segment.halo = _halo(fn, stored, vectors, applies, pooled, probe, jumps, layers, halo_step,
                                 probe_side)
        segments.append(segment)
    for i in out_ids:
        last_use[i] = last + 1
    channels = {i: int(probe[i].shape[-1]) for i in jumps}
    for k, layer in enumerate(layers):
        layer_sum = _sum_fn(layer, channels[layer_inputs[k]])
        for segment in segments:
            if k in segment.sums:
                segment.sum_fns = {**getattr(segment, "sum_fns", {}), k: layer_sum}
    return KerasSegments(segments, layers, layer_inputs, {i: jumps[i] for i in jumps}, image, vectors, out_ids,
                         last_use, channels, [p.dtype.as_numpy_dtype for p in pooled])


def _segment_fn(run_nodes, stored, vectors, outs, layers, layer_of, layer_inputs, applies):
    def run(stores, vecs, given):
        values = dict(zip(stored, stores))
        values.update(zip(vectors, vecs))
        pooled = dict(zip(applies, given))
        for n in run_nodes:
            if id(n) in layer_of:
                k = layer_of[id(n)]
                layer = layers[k]
                y = layer.apply(values[layer_inputs[k]], pooled[k][tf.newaxis])
                values[n.flat_output_ids[0]] = y
                continue
            args, kwargs = n.map_arguments({i: _Same(values[i]) for i in n.flat_input_ids})
            if getattr(getattr(n.layer, "_call_spec", None), "expects_training_arg", False):
                kwargs["training"] = False
            ys = tf.nest.flatten(n.layer(*args, **kwargs))
            for o, y in zip(n.flat_output_ids, ys):
                values[o] = y
        return [values[i] for i in outs]

    return run


def _halo(fn, stored, vectors, applies, pooled, probe, jumps, layers, halo_step, side) -> int:
    """The receptive-field radius (model-input px) of one segment function, rounded up."""
    concrete = tf.function(fn, autograph=False).get_concrete_function(
        [tf.TensorSpec([1, int(side / jumps[i]), int(side / jumps[i]), int(probe[i].shape[-1])], tf.float32)
         for i in stored],
        [tf.TensorSpec(probe[i].shape, probe[i].dtype) for i in vectors],
        [tf.TensorSpec(pooled[k].shape, pooled[k].dtype) for k in applies])
    graph = concrete.graph
    placeholders = [t for t in graph.inputs if t.dtype != tf.resource][:len(stored)]
    states = {t.ref(): analysis._Spatial(jumps[i], Fraction(0)) for t, i in zip(placeholders, stored)}  # noqa: SLF001
    names = {g.name: k for k, g in enumerate(layers)}
    for op in graph.get_operations():
        if op.type == "Placeholder":
            continue
        for t, state in zip(op.outputs, analysis._propagate(op, states, names)):  # noqa: SLF001
            if state is not None:
                states[t.ref()] = state
    radius = Fraction(0)
    for t in tf.nest.flatten(concrete.structured_outputs):
        state = states.get(t.ref())
        if isinstance(state, analysis._Unknown):  # noqa: SLF001
            raise TilingError(f"cannot tile this model exactly: {state.why}")
        if state is not None:
            radius = max(radius, state.radius)
    step = max(1, int(halo_step))
    return int(math.ceil(radius / step)) * step


def _sum_fn(layer, channels: int):
    """``x -> (sum over positions of layer.positionwise(x) in float64, position count)``."""
    def run(x):
        values = layer.positionwise(x)
        count = tf.reduce_prod(tf.shape(values)[1:3])
        return tf.reduce_sum(tf.cast(values, tf.float64), axis=[0, 1, 2]), count

    return tf.function(run, autograph=False,
                       input_signature=[tf.TensorSpec([1, None, None, int(channels)], tf.float32)])


def run_segments(plan: KerasSegments, frame: np.ndarray, vectors, tiles, progress=None):
    """Every output of the (padded) ``frame`` (h, w, C), tile by tile, segment by segment."""
    h, w = frame.shape[:2]
    data: Dict[str, np.ndarray] = {plan.image: frame[np.newaxis]}
    given: List[Optional[np.ndarray]] = [None] * len(plan.layers)
    fns = [s.compiled for s in plan.segments]
    vecs = [tf.constant(v) for v in vectors]

    def rows(i, box):
        j = plan.jumps[i]
        return tuple(int(v / j) for v in box)

    for seg, (segment, fn) in enumerate(zip(plan.segments, fns)):
        totals = {k: [0.0, 0] for k in segment.sums}
        sum_fns = getattr(segment, "sum_fns", {})
        for tile in tiles:
            cy0, cx0, cy1, cx1 = tile.core
            if segment.outputs:
                halo = segment.halo
                box = segment_box(tile.core, halo, (h, w))
                ins = []
                for i in segment.inputs:
                    y0, x0, y1, x1 = rows(i, box)
                    ins.append(tf.constant(data[i][:, y0:y1, x0:x1]))
                outs = fn(ins, vecs, [tf.constant(given[k]) for k in segment.applies])
                for i, y in zip(segment.outputs, outs):
                    if i not in data:
                        j = plan.jumps[i]
                        data[i] = np.empty((1, int(h / j), int(w / j), int(y.shape[-1])), np.float32)
                    by0, bx0 = rows(i, box)[:2]
                    ry0, rx0, ry1, rx1 = rows(i, tile.core)
                    data[i][:, ry0:ry1, rx0:rx1] = y.numpy()[:, ry0 - by0:ry1 - by0, rx0 - bx0:rx1 - bx0]
            for k in segment.sums:
                layer = plan.layers[k]
                side = layer.min_side or layer.find_min_side(plan.channels[plan.layer_inputs[k]])
                x_id = plan.layer_inputs[k]
                y0, x0, y1, x1 = rows(x_id, tile.core)
                if min(y1 - y0, x1 - x0) < side:
                    continue  # no complete pooling window: no position, as on the whole frame
                total, count = sum_fns[k](tf.constant(data[x_id][:, y0:y1, x0:x1]))
                totals[k][0] = totals[k][0] + total.numpy()
                totals[k][1] += int(count)
            if progress:
                progress(1)
        for k, (total, count) in totals.items():
            if count <= 0:
                from isp_tf.errors import InputShapeError

                raise InputShapeError(f"{plan.layers[k].name}: the frame is smaller than one pooling window")
            given[k] = (np.asarray(total, np.float64) / count).astype(plan.pooled_dtypes[k])
        for i in [i for i in data if i != plan.image and plan.last_use.get(i, -1) <= seg]:
            del data[i]
    return [data[i][0] for i in plan.outputs]
