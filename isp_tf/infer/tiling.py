"""Exact tiled inference: bounded memory, output equal to whole-frame inference.

A full-resolution RAW frame (12 MP, 32 MP) does not fit through a network at
once without gigabytes of activations, so :class:`TiledRunner` runs it tile by
tile.  Two things would make naive tiles differ from the whole frame, and each
has a fix:

**Local receptive field -> a halo.**  Every tile is its *core* (the part of
the output it writes) plus a margin of ``halo`` input pixels on each side, cut
at the frame's edges.  :func:`analyze` traces the model once (a
``tf.function`` graph at a fixed size) and walks its ops from the input:
every convolution, pooling, transposed convolution, resize or pad adds its
reach to the receptive-field radius (in model-input pixels, conservative:
``SAME`` padding counts the larger side), depth-to-space and space-to-depth
only change the scale.  Element-wise ops pass it through.  An op it does not
know, or a whole-image pooling outside a :class:`GlobalStatsLayer`, makes
:func:`analyze` refuse with :class:`TilingError` instead of guessing.  The
halo is that radius rounded up to the model's total stride (and to
``size_multiple``), so every tile
starts on the down-sampling grid of the whole frame: strided convs, pools and
transposed convs then see exactly the pixels (and, at the frame edges, the
same zero padding) they see on the whole frame.

**Whole-image statistics -> statistics passes.**  MicroISP's attention pools
over the frame, PyNET's instance norm takes the frame's mean and variance;
per-tile statistics would change the picture.  Those layers derive from
:class:`isp_tf.layers.global_stats.GlobalStatsLayer` (its docstring has the
protocol).  The same traced graph tells which global layer depends on which:
a layer depends on another if data flows from the other's whole-image
reductions into its own.  Layers are grouped by depth in that dependency
graph: MicroISP's 12 attentions form 4 groups (first and second attention of
stage 1, then of stage 2; the 3 colour branches run side by side), so a frame
takes 4 statistics passes plus the final pass, not 13.  For the passes the
runner rebuilds the model inside ``tiling_mode()`` (by the registry builder,
or ``keras.models.clone_model``) and copies the weights; this happens only
when a frame needs more than one tile.  In pass ``d`` every tile reports the
sum of ``positionwise`` over its core for the group-``d`` layers (the groups
before it already use their whole-frame values, so the values inside the core
are exact); the sums over all tiles (in float64) divided by the position counts
are the whole-frame means, which every later tile then uses.  Every pass runs
the whole model on the tile (one traced graph serves all passes).  PyNET's
instance norms sit one after another: 48 groups, so PyNET needs 49 passes per
tile.  That is exact but slow; use the whole frame (``tile=0``) when it fits.

**Alignment.**  Core boundaries (in model-input pixels, from the frame's
origin) are multiples of ``core_step``: the least common multiple of the
model's total stride, the spec's ``size_multiple`` and, for every global
layer, its ``alignment`` times the input pixels per pixel of that layer
(MicroISP's attention pools blocks of 81 x 81 packed pixels, so its cores are
multiples of 81; a PyNET norm at 1/16 resolution needs multiples of 16).
The last core of a row or column ends at the frame's edge, whatever its size
(an *edge tile*); ``positionwise`` of the last core then ends with the same
partial pooling window the whole frame ends with.  Tile origins (core minus
halo) stay on the stride grid because the halo is a multiple of the stride.

**Frames that are not a multiple of** ``size_multiple`` (PyNET: 16 packed
pixels at full depth) are padded by reflection up to the next multiple and the
output is cropped back.  This equals whole-frame inference *of the padded
frame*, cropped: the padded pixels join the whole-image statistics and their
neighbours see reflected rather than zero-padded borders, so it is not the
(impossible) inference of the unpadded frame; near the bottom and right edges
the picture differs from a model that accepted any size.

**Memory** is bounded by the tile: ``(core + 2 * halo)^2`` input pixels times
the model's peak activation bytes per pixel (estimated from the traced graph:
the image tensors alive at once when ops run in order and free their inputs
after the last use, doubled for concurrency), plus the frame's input and
output arrays.  ``tile="auto"`` runs the whole frame when that fits in 40 % of
the available memory (``psutil``), else the largest core whose tile fits.
Tiling costs time: every tile runs ``passes`` times and recomputes its halo
(MicroISP at FullHD: 2.7 s whole, about 5x that in 6 tiles), so whole-frame
is preferred whenever it fits.

Exactness also assumes every op is translation-equivariant (no coordinate
channels) and that the model runs in inference mode.
"""
from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from isp_tf._keras import keras, tf
from isp_tf.errors import InputShapeError, IspTfError
from isp_tf.layers.global_stats import GlobalStatsLayer, tiling_mode

__all__ = [
    "Footprint", "Tile", "TiledRunner", "TilingError", "analyze", "auto_core",
    "copy_weights", "global_layers", "memory_budget", "plan_tiles",
]


class TilingError(IspTfError, ValueError):
    """The model cannot be tiled exactly (an op the analysis does not know...)."""


# ----------------------------------------------------------------------------
# graph analysis
# ----------------------------------------------------------------------------
# ops that map each position to the same position (broadcasting per-image values)
_ELEMENTWISE = frozenset("""
    Identity IdentityN Cast StopGradient PreventGradient Snapshot EnsureShape CheckNumerics
    BiasAdd Add AddV2 AddN Sub Mul MulNoNan RealDiv Div DivNoNan FloorDiv FloorMod Maximum Minimum
    Pow SquaredDifference Relu Relu6 LeakyRelu Elu Selu Sigmoid Tanh Softplus Softsign Exp Expm1
    Log Log1p Neg Abs Sign Square Sqrt Rsqrt Reciprocal Inv Erf Erfc Floor Ceil Round Rint Sin Cos
    ClipByValue Select SelectV2 Greater GreaterEqual Less LessEqual Equal NotEqual LogicalAnd
    LogicalOr LogicalNot FusedBatchNorm FusedBatchNormV2 FusedBatchNormV3 Softmax LogSoftmax
    ZerosLike OnesLike Gelu HardSwish Relu6Grad IsNan IsFinite
""".split())
# ops whose output is spatial only if the spatial shape is unchanged (channel ops)
_SHAPE_KEEPING = frozenset("""
    Reshape Squeeze ExpandDims StridedSlice Slice Split SplitV ConcatV2 Concat Pack Transpose
    Tile BroadcastTo GatherV2 Unpack
""".split())
_REDUCTIONS = frozenset("Mean Sum Max Min Prod All Any EuclideanNorm ArgMax ArgMin".split())
_SHAPE_OPS = frozenset("Shape ShapeN Size Rank".split())
_CONV = frozenset(["Conv2D", "DepthwiseConv2dNative", "_FusedConv2D"])
_POOL = frozenset(["MaxPool", "AvgPool", "MaxPoolV2"])
_RESIZE = frozenset(["ResizeBilinear", "ResizeNearestNeighbor", "ResizeBicubic", "ResizeArea"])


@dataclasses.dataclass(frozen=True)
class _Spatial:
    """A tensor laid out on the image grid: ``jump`` model-input px per pixel, and
    each pixel depends on input pixels at most ``radius`` px beyond its own span."""

    jump: Fraction
    radius: Fraction


@dataclasses.dataclass(frozen=True)
class _Unknown:
    """A tensor the analysis cannot place on the grid; ``why`` names the op."""

    why: str


@dataclasses.dataclass(frozen=True)
class Footprint:
    """What :func:`analyze` learned about a model.

    Attributes:
      halo: input pixels a tile needs on each side of its core (a multiple of
        ``stride`` and ``size_multiple``).
      radius: the exact receptive-field bound before rounding (model-input px).
      stride: the model's total down-sampling; tile origins are multiples of it.
      core_step: core boundaries are multiples of this (see the module docstring).
      output_scale: output pixels per input pixel (2 for packed Bayer -> RGB).
      groups: global-statistics layers grouped by dependency depth, in pass order.
      bytes_per_pixel: peak activation bytes per input pixel (estimated from the
        graph: tensors alive at once, times 2).
      size_multiple: the spec's size multiple the frame is padded to.
      min_side: the smallest frame side (input px) the model takes: its total
        stride, or one pooling window of a global layer (MicroISP: 79).
    """

    halo: int
    radius: float
    stride: int
    core_step: int
    output_scale: int
    groups: Tuple[Tuple[GlobalStatsLayer, ...], ...]
    bytes_per_pixel: float
    size_multiple: int = 1
    min_side: int = 1

    @property
    def passes(self) -> int:
        """Model runs per tile: one per statistics group plus the final pass."""
        return len(self.groups) + 1


def global_layers(model) -> List[GlobalStatsLayer]:
    """Every :class:`GlobalStatsLayer` in ``model``, nested ones included."""
    found = [m for m in model.submodules if isinstance(m, GlobalStatsLayer)]
    return list(dict.fromkeys(found))  # unique, in tracking order


def _lcm(*values: int) -> int:
    out = 1
    for v in values:
        out = out * int(v) // math.gcd(out, int(v))
    return out


def _attr(op, name, default=None):
    try:
        return op.get_attr(name)
    except (ValueError, TypeError):
        return default


def _const_value(tensor):
    """The value of a constant tensor in a traced graph, else ``None``."""
    op = tensor.op
    while op.type == "Identity":
        op = op.inputs[0].op
    if op.type != "Const":
        return None
    return tf.make_ndarray(op.get_attr("value"))


def _hw(tensor):
    shape = tensor.shape
    if shape.rank != 4 or shape[1] is None or shape[2] is None:
        return None
    return int(shape[1]), int(shape[2])


def _reach(kernel: int, stride: int, padding: bytes) -> int:
    """Input pixels a conv/pool output pixel reaches beyond its own span (one side, max)."""
    excess = max(kernel - stride, 0)
    if padding == b"SAME":
        return (excess + 1) // 2
    return excess  # VALID: all on one side; EXPLICIT: bounded by the kernel


def _propagate(op, states, global_names):
    """States of ``op``'s outputs from its inputs' states (see :class:`_Spatial`)."""
    ins = [states.get(t.ref()) for t in op.inputs]
    spatial = [(t, s) for t, s in zip(op.inputs, ins) if isinstance(s, _Spatial)]
    unknown = [s for s in ins if isinstance(s, _Unknown)]
    outs = list(op.outputs)
    if not spatial and not unknown:
        return [None] * len(outs)
    if unknown:
        return [unknown[0]] * len(outs)
    kind = op.type
    in_hw = _hw(spatial[0][0])
    jump = spatial[0][1].jump
    radius = max(s.radius for _, s in spatial)
    if any(s.jump != jump for _, s in spatial):
        return [_Unknown(f"{op.name} ({kind}) mixes tensors of different resolutions")] * len(outs)
    in_global = any(part in global_names for part in op.name.split("/"))

    def same_grid(tensor):
        return _Spatial(jump, radius) if _hw(tensor) == in_hw else _Unknown(
            f"{op.name} ({kind}) changes the spatial layout")

    if kind in _SHAPE_OPS:
        return [None] * len(outs)
    if kind in _REDUCTIONS:
        axes = _const_value(op.inputs[1])
        rank = op.inputs[0].shape.rank
        axes = set() if axes is None else {int(a) % rank for a in np.ravel(axes)}
        if not axes & {1, 2}:
            return [same_grid(t) for t in outs]
        if in_global:
            return [None] * len(outs)  # a whole-image statistic: replaced by `given` when tiling
        return [_Unknown(f"{op.name} pools over the whole image outside a GlobalStatsLayer")] * len(outs)
    if kind in _ELEMENTWISE or kind in _SHAPE_KEEPING:
        # inside a global layer, anything off the grid is statistics bookkeeping
        # (the core crop, pooled vectors) that reaches the output only via `given`
        return [None if in_global and _hw(t) != in_hw else same_grid(t) for t in outs]
    if kind in ("If", "StatelessIf", "Case", "StatelessCase") and in_global:
        return [None if _hw(t) is None else same_grid(t) for t in outs]
    if kind in _CONV and _attr(op, "data_format", b"NHWC") == b"NHWC":
        kh, kw = (int(d) for d in op.inputs[1].shape[:2])
        _, sh, sw, _ = _attr(op, "strides")
        _, dh, dw, _ = _attr(op, "dilations", [1, 1, 1, 1])
        pad = _attr(op, "padding")
        reach = max(_reach((kh - 1) * dh + 1, sh, pad), _reach((kw - 1) * dw + 1, sw, pad))
        if sh != sw:
            return [_Unknown(f"{op.name}: unequal strides")] * len(outs)
        return [_Spatial(jump * sh, radius + reach * jump)] + [None] * (len(outs) - 1)
    if kind in _POOL:
        _, kh, kw, _ = _attr(op, "ksize")
        _, sh, sw, _ = _attr(op, "strides")
        pad = _attr(op, "padding")
        if sh != sw:
            return [_Unknown(f"{op.name}: unequal strides")] * len(outs)
        reach = max(_reach(kh, sh, pad), _reach(kw, sw, pad))
        return [_Spatial(jump * sh, radius + reach * jump)]
    if kind == "Conv2DBackpropInput" and len(spatial) == 1 and spatial[0][0] is op.inputs[2]:
        kh, kw = (int(d) for d in op.inputs[1].shape[:2])
        _, sh, sw, _ = _attr(op, "strides")
        if sh != sw:
            return [_Unknown(f"{op.name}: unequal strides")] * len(outs)
        # output o = s * i - p + t (t < k): it reaches (k - 1 - p) / s input pixels
        # left, and the input pixel's own span reaches (p + s - 1) / s to the right
        k = max(kh, kw)
        pad = max(k - sh, 0) // 2 if _attr(op, "padding") == b"SAME" else 0
        reach = Fraction(max(k - 1 - pad, pad + sh - 1), sh)
        return [_Spatial(jump / sh, radius + reach * jump)]
    if kind in ("DepthToSpace", "SpaceToDepth"):
        block = int(_attr(op, "block_size"))
        return [_Spatial(jump / block if kind == "DepthToSpace" else jump * block, radius)]
    if kind in _RESIZE:
        out_hw = _hw(outs[0])
        if out_hw is None or out_hw[0] * in_hw[1] != out_hw[1] * in_hw[0]:
            return [_Unknown(f"{op.name}: resize to an unknown or anisotropic size")]
        new_jump = jump * Fraction(in_hw[0], out_hw[0])
        return [_Spatial(new_jump, radius + 3 * max(jump, new_jump))]
    if kind in ("Pad", "PadV2", "MirrorPad"):
        pads = _const_value(op.inputs[1])
        if pads is None:
            return [_Unknown(f"{op.name}: padding that is not a constant")]
        return [_Spatial(jump, radius + int(np.max(pads[1:3])) * jump)]
    return [_Unknown(f"{op.name}: op {kind} is not known to the tiling analysis")] * len(outs)


def _trace_size(model, size_multiple: int) -> int:
    align = _lcm(size_multiple, 16, *(g.alignment for g in global_layers(model)))
    return align * max(1, -(-256 // align))


def _is_global_reduction(op) -> bool:
    """A reduction over the spatial axes (a whole-image statistic), or a branch
    that may hold one (the tiling variant guards its pooling chains with ``tf.cond``)."""
    if op.type in ("If", "StatelessIf"):
        return True
    if op.type not in _REDUCTIONS or len(op.inputs) < 2:
        return False
    axes, rank = _const_value(op.inputs[1]), op.inputs[0].shape.rank
    return axes is not None and rank is not None and bool(
        {int(a) % rank for a in np.ravel(axes)} & {1, 2})


def _scope_layer(op, index: Dict[str, int]) -> Optional[int]:
    """Index of the innermost global layer whose name scope holds ``op``."""
    found = None
    for part in op.name.split("/"):
        found = index.get(part, found)
    return found


def _peak_live_bytes(graph, states) -> int:
    """Largest total size of image tensors alive at once when the ops run in
    graph order, each tensor freed after its last consumer (what TensorFlow's
    executor does); doubled, since independent branches may run concurrently."""
    ops = graph.get_operations()
    last_use = {}
    for i, op in enumerate(ops):
        for t in op.inputs:
            last_use[t.ref()] = i
    live, peak, free_at = 0, 0, {}
    for i, op in enumerate(ops):
        for t in op.outputs:
            if isinstance(states.get(t.ref()), _Spatial):
                size = (t.shape.num_elements() or 0) * t.dtype.size
                live += size
                free_at.setdefault(last_use.get(t.ref(), i), []).append(size)
        peak = max(peak, live)
        live -= sum(free_at.pop(i, []))
    return 2 * peak


def analyze(model, size_multiple: int = 1) -> Footprint:
    """Receptive field, strides, alignment and statistics groups of ``model``.

    ``model`` is the normal model: the analysis traces it once at a fixed size
    and reads the graph.  A global layer depends on another when data flows from
    the other's whole-image reductions into its own.  Raises
    :class:`TilingError` when the graph has an op the analysis cannot place.
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise TilingError("tiling needs a model with one input and one output")
    channels = int(model.inputs[0].shape[-1])
    size = _trace_size(model, size_multiple)
    fn = tf.function(lambda x: model(x, training=False), autograph=False)
    concrete = fn.get_concrete_function(tf.TensorSpec([1, size, size, channels], tf.float32))
    graph = concrete.graph
    layers = global_layers(model)
    index = {g.name: i for i, g in enumerate(layers)}

    states: Dict = {}
    tags: Dict = {}  # tensor -> bit set of the global layers whose statistics it depends on
    deps = [0] * len(layers)
    layer_jump: Dict[int, Tuple[Fraction, int]] = {}  # (resolution, channels) of each layer's input
    (source,) = [t for t in graph.inputs if t.dtype == tf.float32 and t.shape.rank == 4]
    states[source.ref()] = _Spatial(Fraction(1), Fraction(0))
    for op in graph.get_operations():
        if op is source.op:
            continue
        tag = 0
        for t in op.inputs:
            tag |= tags.get(t.ref(), 0)
        owner = _scope_layer(op, index)
        if owner is not None:  # the layer's input: its finest spatial tensor
            for t in op.inputs:
                st = states.get(t.ref())
                if isinstance(st, _Spatial) and st.jump < layer_jump.get(owner, (st.jump + 1, 0))[0]:
                    layer_jump[owner] = (st.jump, int(t.shape[-1]))
            if _is_global_reduction(op):
                deps[owner] |= tag
                tag |= 1 << owner
        for t, state in zip(op.outputs, _propagate(op, states, index)):
            if state is not None:
                states[t.ref()] = state
            if tag:
                tags[t.ref()] = tag

    output = tf.nest.flatten(concrete.structured_outputs)[0]
    final = states.get(output.ref())
    if isinstance(final, _Unknown):
        raise TilingError(f"cannot tile this model exactly: {final.why}")
    if final is None:
        raise TilingError("the model's output is not an image")
    out_hw = _hw(output)
    scale = Fraction(out_hw[0], size)
    if scale.denominator != 1 or final.jump * scale != 1:
        raise TilingError(f"output scale {scale} is not a whole number")

    # the strides of everything the output depends on locally (not the pooling
    # chains that feed whole-image statistics: those are exact by alignment)
    stride, todo, seen = 1, [output.op], set()
    while todo:
        op = todo.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        for t in op.outputs:
            state = states.get(t.ref())
            if isinstance(state, _Spatial) and state.jump.denominator == 1:
                stride = _lcm(stride, state.jump.numerator)
        if not (_is_global_reduction(op) and _scope_layer(op, index) is not None):
            todo.extend(t.op for t in op.inputs)

    depth: Dict[int, int] = {}

    def depth_of(i):
        if i not in depth:
            parents = [j for j in range(len(layers)) if deps[i] >> j & 1 and j != i]
            depth[i] = 1 + max((depth_of(j) for j in parents), default=-1)
        return depth[i]

    groups: Dict[int, List[GlobalStatsLayer]] = {}
    core_step = _lcm(stride, size_multiple)
    min_side = max(stride, size_multiple)
    for i, g in enumerate(layers):
        if i not in layer_jump:
            raise TilingError(f"global layer {g.name} is not on the path of the model's input")
        groups.setdefault(depth_of(i), []).append(g)
        jump, layer_channels = layer_jump[i]
        step = jump * g.alignment
        if step.denominator != 1:
            raise TilingError(f"{g.name}: alignment {g.alignment} at 1/{jump} resolution "
                              "is not a whole number of input pixels")
        core_step = _lcm(core_step, step.numerator)
        smallest = g.min_side or g.find_min_side(layer_channels)
        min_side = max(min_side, int(math.ceil(jump * smallest)))

    radius = final.radius
    halo_step = _lcm(stride, size_multiple)
    halo = int(math.ceil(radius / halo_step)) * halo_step
    nbytes = _peak_live_bytes(graph, states)
    return Footprint(
        halo=halo, radius=float(radius), stride=stride, core_step=core_step,
        output_scale=int(scale), groups=tuple(tuple(groups[d]) for d in sorted(groups)),
        bytes_per_pixel=nbytes / float(size * size), size_multiple=size_multiple,
        min_side=min_side)


# ----------------------------------------------------------------------------
# tile layout
# ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Tile:
    """One tile, in input pixels of the (padded) frame.

    ``box`` (y0, x0, y1, x1) is what the model reads; ``core`` what it writes.
    """

    box: Tuple[int, int, int, int]
    core: Tuple[int, int, int, int]

    @property
    def core_in_tile(self) -> Tuple[int, int, int, int]:
        y0, x0 = self.box[:2]
        cy0, cx0, cy1, cx1 = self.core
        return cy0 - y0, cx0 - x0, cy1 - y0, cx1 - x0


def _spans(length: int, core: int, halo: int) -> List[Tuple[int, int, int, int]]:
    """(start, end, core_start, core_end) along one axis."""
    cuts = list(range(0, length, core)) + [length]
    return [(max(0, a - halo), min(length, b + halo), a, b) for a, b in zip(cuts[:-1], cuts[1:])]


def plan_tiles(height: int, width: int, core: int, footprint: Footprint) -> List[Tile]:
    """Tiles covering a ``height`` x ``width`` frame with cores of ``core`` px
    (rounded up to ``footprint.core_step``), row by row."""
    step = footprint.core_step
    core = max(step, -(-int(core) // step) * step)
    rows = _spans(height, core, footprint.halo)
    cols = _spans(width, core, footprint.halo)
    return [Tile((y0, x0, y1, x1), (cy0, cx0, cy1, cx1))
            for y0, y1, cy0, cy1 in rows for x0, x1, cx0, cx1 in cols]


def memory_budget() -> float:
    """Bytes ``tile="auto"`` may spend on activations: 40 % of available memory."""
    import psutil

    return 0.4 * psutil.virtual_memory().available


def auto_core(footprint: Footprint, budget_bytes: Optional[float] = None) -> int:
    """The largest core (input px, a multiple of ``core_step``) whose tile's
    activations fit in ``budget_bytes`` (default :func:`memory_budget`)."""
    budget_bytes = memory_budget() if budget_bytes is None else budget_bytes
    side = math.sqrt(max(budget_bytes, 0) / max(footprint.bytes_per_pixel, 1e-9))
    core = int(side) - 2 * footprint.halo
    return max(footprint.core_step, core // footprint.core_step * footprint.core_step)


# ----------------------------------------------------------------------------
# running
# ----------------------------------------------------------------------------
def copy_weights(source, target) -> None:
    """Copy ``source``'s weights into its tiling variant ``target`` (same
    architecture; ``target``'s extra tiling variables are skipped)."""
    extra = {id(v) for g in global_layers(target) for v in g.tiling_variables()}
    dst = [w for w in target.weights if id(w) not in extra]
    src = list(source.weights)
    if len(src) != len(dst) or any(a.shape != b.shape for a, b in zip(src, dst)):
        raise TilingError("the tiling variant does not have the model's weights "
                          f"({len(src)} vs {len(dst)} tensors): was it built with the same config?")
    for a, b in zip(src, dst):
        b.assign(a)


def pad_to_multiple(frame: np.ndarray, multiple: int) -> np.ndarray:
    """Reflect-pad the bottom and right of (h, w, c) ``frame`` to multiples of ``multiple``."""
    h, w = frame.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    if not ph and not pw:
        return frame
    return np.pad(frame, ((0, ph), (0, pw), (0, 0)), mode="reflect" if min(h, w) > 1 else "edge")


class TiledRunner:
    """Run an image-to-image Keras model on a frame, whole or tile by tile.

    Args:
      model: a functional tf_keras model, input (1, h, w, C) -> (1, s*h, s*w, C').
      size_multiple: frame sides must be multiples of this (``ModelSpec.size_multiple``);
        other frames are reflect-padded and the output cropped.
      rebuild: ``() -> model`` building the same architecture; called inside
        ``tiling_mode()`` to get the tiling variant.  Default
        ``keras.models.clone_model(model)``.

    Call ``runner(frame, tile=...)`` with ``frame`` (h, w, C) float32; ``tile``:
    ``None`` or ``0`` for the whole frame, an int core side in input pixels, or
    ``"auto"``.  The result is (s*h, s*w, C') float32.
    """

    def __init__(self, model, size_multiple: int = 1, rebuild: Optional[Callable] = None):
        self.model = model
        self.size_multiple = int(size_multiple)
        self.channels = int(model.inputs[0].shape[-1])
        self.footprint = analyze(model, self.size_multiple)
        self._rebuild = rebuild
        self._variant = None  # built on the first call that needs more than one tile
        self._tile = None
        self._whole = tf.function(lambda x: model(x, training=False), autograph=False,
                                  input_signature=[tf.TensorSpec([1, None, None, self.channels])])

    @property
    def variant(self):
        """The tiling variant (built, with the model's weights, on first use)."""
        if self._variant is None:
            if global_layers(self.model):
                with tiling_mode():
                    build = self._rebuild or (lambda: keras.models.clone_model(self.model))
                    variant = build()
                copy_weights(self.model, variant)
            else:
                variant = self.model
            self._layers = global_layers(variant)
            if [g.name for g in self._layers] != [g.name for g in global_layers(self.model)]:
                raise TilingError("the tiling variant's global layers differ from the model's")
            self._variant = variant
        return self._variant

    def _tile_fn(self):
        """``fn(tile, core_box, tile_hw) -> (output, terms, counts)`` as one graph.

        Setting the tile's boxes and reading every layer's statistics inside
        the graph saves dozens of eager variable ops per tile.  Statistics
        passes run this same graph (and discard the output): one trace instead
        of one per group, at the price of computing the layers past the group.
        """
        variant = self.variant
        layers = self._layers
        spec = [tf.TensorSpec([1, None, None, self.channels], tf.float32),
                tf.TensorSpec([4], tf.int32), tf.TensorSpec([2], tf.int32)]

        def run(x, core_box, tile_hw):
            for g in layers:
                g.core_box.assign(core_box)
                g.input_hw.assign(tile_hw)
            out = variant(x, training=False)
            return out, [g.terms.read_value() for g in layers], [g.count.read_value() for g in layers]

        return tf.function(run, input_signature=spec, autograph=False)

    # -- public helpers ------------------------------------------------------
    @property
    def min_side(self) -> int:
        """The smallest frame side (input px) the model takes (:attr:`Footprint.min_side`)."""
        return self.footprint.min_side

    def core_for(self, tile: Union[None, int, str]) -> Optional[int]:
        """The core side ``tile`` asks for (``None``: whole frame)."""
        if tile in (None, 0, "0"):
            return None
        if tile == "auto":
            return auto_core(self.footprint)
        tile = int(tile)
        if tile < 0:
            raise InputShapeError(f"tile size must be positive, got {tile}")
        return tile

    def plan(self, height: int, width: int, tile: Union[None, int, str]) -> List[Tile]:
        """The tiles ``__call__`` will run for an (unpadded) ``height`` x ``width`` frame."""
        self._check(height, width)
        mult = self.size_multiple
        h, w = -(-height // mult) * mult, -(-width // mult) * mult
        whole = [Tile((0, 0, h, w), (0, 0, h, w))]
        if tile == "auto" and h * w * self.footprint.bytes_per_pixel <= memory_budget():
            return whole  # fits: tiling would only cost time
        core = self.core_for(tile)
        if core is None:
            return whole
        tiles = plan_tiles(h, w, core, self.footprint)
        return tiles if len(tiles) > 1 else whole

    def steps(self, height: int, width: int, tile) -> int:
        """Model runs ``__call__`` will make (for progress bars)."""
        n = len(self.plan(height, width, tile))
        return 1 if n == 1 else n * self.footprint.passes

    def _check(self, height, width):
        if min(height, width) < self.min_side:
            raise InputShapeError(
                f"input of {height}x{width} px is smaller than one tile of this model "
                f"({self.min_side}x{self.min_side} input px: the least its strides and "
                "whole-image statistics allow)")

    # -- running -------------------------------------------------------------
    def __call__(self, frame: np.ndarray, tile: Union[None, int, str] = None,
                 progress: Optional[Callable[[int], None]] = None) -> np.ndarray:
        frame = np.asarray(frame, dtype=np.float32)
        if frame.ndim != 3 or frame.shape[-1] != self.channels:
            raise InputShapeError(f"expected an (h, w, {self.channels}) frame, got shape {frame.shape}")
        height, width = frame.shape[:2]
        tiles = self.plan(height, width, tile)
        padded = pad_to_multiple(frame, self.size_multiple)
        s = self.footprint.output_scale
        if len(tiles) == 1:
            out = self._whole(padded[np.newaxis]).numpy()[0]
            if progress:
                progress(1)
        else:
            out = self._tiled(padded, tiles, progress)
        return out[: height * s, : width * s]

    def _run_tile(self, frame, tile: Tile):
        if self._tile is None:
            self._tile = self._tile_fn()
        y0, x0, y1, x1 = tile.box
        return self._tile(frame[np.newaxis, y0:y1, x0:x1], np.asarray(tile.core_in_tile, np.int32),
                  np.asarray([y1 - y0, x1 - x0], np.int32))

    def _tiled(self, frame, tiles, progress):
        variant_layers = {g.name: v for g, v in zip(global_layers(self.model), global_layers(self.variant))}
        for g in self._layers:
            g.use_given.assign(0.0)
        index = {id(g): i for i, g in enumerate(self._layers)}
        for model_group in self.footprint.groups:
            group = [variant_layers[g.name] for g in model_group]
            sums = [np.zeros(g.terms.shape, np.float64) for g in group]
            counts = [0.0] * len(group)
            for tile in tiles:
                _, terms, tile_counts = self._run_tile(frame, tile)
                for i, g in enumerate(group):
                    sums[i] += terms[index[id(g)]].numpy()
                    counts[i] += float(tile_counts[index[id(g)]].numpy())
                if progress:
                    progress(1)
            for g, total, count in zip(group, sums, counts):
                if count <= 0:
                    raise InputShapeError(f"{g.name}: the frame is smaller than one pooling window")
                g.given.assign((total / count).astype(g.given.dtype.as_numpy_dtype))
                g.use_given.assign(1.0)
        s = self.footprint.output_scale
        out = None
        for tile in tiles:
            result = self._run_tile(frame, tile)[0].numpy()[0]
            if out is None:
                out = np.empty((frame.shape[0] * s, frame.shape[1] * s, result.shape[-1]), np.float32)
            ty0, tx0, ty1, tx1 = tile.core_in_tile
            cy0, cx0, cy1, cx1 = tile.core
            out[cy0 * s:cy1 * s, cx0 * s:cx1 * s] = result[ty0 * s:ty1 * s, tx0 * s:tx1 * s]
            if progress:
                progress(1)
        return out
