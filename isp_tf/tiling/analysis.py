"""Model analysis for exact tiling: traces a Keras model and reads its graph (needs TensorFlow).

:func:`analyze` traces the model once (a ``tf.function`` graph at a fixed size)
and walks its ops from the image input: every convolution, pooling,
transposed convolution, resize or pad adds its reach to the receptive-field
radius (in model-input pixels, conservative: ``SAME`` padding counts the
larger side), depth-to-space and space-to-depth only change the scale.
Element-wise ops pass it through.  An op it does not know, or a whole-image
pooling outside a :class:`GlobalStatsLayer`, makes :func:`analyze` refuse with
:class:`TilingError` instead of guessing.  The same traced graph tells which
global layer depends on which (data flowing from one layer's whole-image
reductions into another's), which groups the layers into statistics passes.

Extra per-frame inputs (a camera-parameter vector...: any input that is not
the first rank-4 one) are traced at their own shape and carry no position:
ops that mix them with the image broadcast them over every tile alike.  Every
output must be an image on the input's grid at a whole-number scale.

Only the Keras executor (:mod:`isp_tf.tiling.keras_executor`) and the export
(:mod:`isp_tf.export.convert`, for tile manifests) import this module; the
planner and the LiteRT executor do not need TensorFlow.
"""
from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from typing import Dict, List, Optional, Tuple

import numpy as np

from isp_tf._keras import tf
from isp_tf.layers.global_stats import GlobalStatsLayer
from isp_tf.tiling.planner import Footprint, TilingError, lcm

__all__ = ["analyze", "call_model", "global_layers", "image_input_index", "input_specs"]


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




def global_layers(model) -> List[GlobalStatsLayer]:
    """Every :class:`GlobalStatsLayer` in ``model``, nested ones included."""
    found = [m for m in model.submodules if isinstance(m, GlobalStatsLayer)]
    return list(dict.fromkeys(found))  # unique, in tracking order


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
    align = lcm(size_multiple, 16, *(g.alignment for g in global_layers(model)))
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


def image_input_index(model) -> int:
    """Index of the image among ``model.inputs``: the first rank-4 input.

    Every other input is a per-frame tensor (e.g. a camera-parameter vector of
    shape (1, K)): it must have a fixed shape and not be rank 4.
    """
    ranks = [len(t.shape) for t in model.inputs]
    if 4 not in ranks:
        raise TilingError("tiling needs a model with an image input (batch, height, width, channels)")
    image = ranks.index(4)
    for i, t in enumerate(model.inputs):
        if i == image:
            continue
        if ranks[i] == 4:
            raise TilingError(f"input {t.name} is a second image: tiling takes one image input, "
                              "plus per-frame inputs without height and width")
        if any(d is None for d in t.shape[1:]):
            raise TilingError(f"per-frame input {t.name} has an open dimension {tuple(t.shape)}")
    return image


def input_specs(model, image_hw=(None, None)):
    """``tf.TensorSpec`` per model input, batch 1: the image at ``image_hw``, the others at their shape."""
    image = image_input_index(model)
    specs = []
    for i, t in enumerate(model.inputs):
        if i == image:
            specs.append(tf.TensorSpec([1, image_hw[0], image_hw[1], int(t.shape[-1])], tf.float32))
        else:
            specs.append(tf.TensorSpec([1] + [int(d) for d in t.shape[1:]], t.dtype))
    return specs


def call_model(model, inputs, **kwargs):
    """``model(inputs)`` with one tensor or a list, as the model was built."""
    return model(inputs[0] if len(model.inputs) == 1 else list(inputs), **kwargs)


def analyze(model, size_multiple: int = 1) -> Footprint:
    """Receptive field, strides, alignment and statistics groups of ``model``.

    ``model`` is the normal model: the analysis traces it once at a fixed size
    and reads the graph.  A global layer depends on another when data flows from
    the other's whole-image reductions into its own.  The model takes one image
    (its first rank-4 input) and any number of per-frame inputs; every output
    must be an image at a whole-number scale of the input.  Raises
    :class:`TilingError` when the graph has an op the analysis cannot place.
    """
    image = image_input_index(model)
    size = _trace_size(model, size_multiple)
    specs = input_specs(model, (size, size))
    fn = tf.function(lambda *xs: call_model(model, xs, training=False), autograph=False)
    concrete = fn.get_concrete_function(*specs)
    graph = concrete.graph
    layers = global_layers(model)
    index = {g.name: i for i, g in enumerate(layers)}

    states: Dict = {}
    tags: Dict = {}  # tensor -> bit set of the global layers whose statistics it depends on
    deps = [0] * len(layers)
    layer_jump: Dict[int, Tuple[Fraction, int]] = {}  # (resolution, channels) of each layer's input
    source = graph.inputs[image]  # the placeholders come first, in argument order, then captures
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

    outputs = tf.nest.flatten(concrete.structured_outputs)
    scales, radius = [], Fraction(0)
    for k, output in enumerate(outputs):
        what = "the model's output" if len(outputs) == 1 else f"output {k} of the model"
        final = states.get(output.ref())
        if isinstance(final, _Unknown):
            raise TilingError(f"cannot tile this model exactly: {final.why}")
        if final is None:
            raise TilingError(f"{what} is not an image")
        out_hw = _hw(output)
        scale = Fraction(out_hw[0], size)
        if scale.denominator != 1 or final.jump * scale != 1:
            raise TilingError(f"{what}: output scale {scale} is not a whole number")
        scales.append(int(scale))
        radius = max(radius, final.radius)

    # the strides of everything the outputs depend on locally (not the pooling
    # chains that feed whole-image statistics: those are exact by alignment)
    stride, todo, seen = 1, [o.op for o in outputs], set()
    while todo:
        op = todo.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        for t in op.outputs:
            state = states.get(t.ref())
            if isinstance(state, _Spatial) and state.jump.denominator == 1:
                stride = lcm(stride, state.jump.numerator)
        if not (_is_global_reduction(op) and _scope_layer(op, index) is not None):
            todo.extend(t.op for t in op.inputs)

    depth: Dict[int, int] = {}

    def depth_of(i):
        if i not in depth:
            parents = [j for j in range(len(layers)) if deps[i] >> j & 1 and j != i]
            depth[i] = 1 + max((depth_of(j) for j in parents), default=-1)
        return depth[i]

    groups: Dict[int, List[GlobalStatsLayer]] = {}
    core_step = lcm(stride, size_multiple)
    align = stride
    min_side = max(stride, size_multiple)
    for i, g in enumerate(layers):
        if i not in layer_jump:
            raise TilingError(f"global layer {g.name} is not on the path of the model's input")
        groups.setdefault(depth_of(i), []).append(g)
        jump, layer_channels = layer_jump[i]
        step = jump * g.alignment  # input px per position of the layer's positionwise map
        if step.denominator != 1:
            raise TilingError(f"{g.name}: alignment {g.alignment} at 1/{jump} resolution "
                              "is not a whole number of input pixels")
        core_step = lcm(core_step, step.numerator)
        align = lcm(align, step.numerator)
        smallest = g.min_side or g.find_min_side(layer_channels)
        min_side = max(min_side, int(math.ceil(jump * smallest)))

    halo_step = lcm(stride, size_multiple)
    halo = int(math.ceil(radius / halo_step)) * halo_step
    nbytes = _peak_live_bytes(graph, states)
    return Footprint(
        halo=halo, radius=float(radius), stride=stride, core_step=core_step,
        output_scale=scales[0], groups=tuple(tuple(groups[d]) for d in sorted(groups)),
        bytes_per_pixel=nbytes / float(size * size), size_multiple=size_multiple,
        min_side=min_side, align=align, output_scales=tuple(scales))
