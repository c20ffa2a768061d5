"""Multiply-accumulates per frame, counted from a ``.tflite`` graph.

Only the ops that do dense arithmetic are counted (what "MACs" means in
papers): ``CONV_2D``, ``DEPTHWISE_CONV_2D``, ``TRANSPOSE_CONV``,
``FULLY_CONNECTED`` and ``BATCH_MATMUL``.  Element-wise ops (PReLU, add,
multiply...) cost memory traffic, not MACs, and are left out, as is the bias
addition.  Shapes come either from an allocated interpreter (so a graph
exported with free spatial dimensions is counted at the size it was resized
to) or, without running anything, from the static shapes stored in the file.
"""
from __future__ import annotations

from typing import Iterable, Sequence, Tuple

import numpy as np

#: ops counted, and how
COUNTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED", "BATCH_MATMUL")

Shape = Sequence[int]


def op_macs(op_name: str, inputs: Sequence[Shape], outputs: Sequence[Shape]) -> int:
    """MACs of one op given its input and output shapes (``None`` for an omitted input).

    * ``CONV_2D``: filter (O, kh, kw, I/groups), output (N, H, W, O) -> N*H*W*O*kh*kw*I/groups.
    * ``DEPTHWISE_CONV_2D``: filter (1, kh, kw, O) -> N*H*W*O*kh*kw.
    * ``TRANSPOSE_CONV``: inputs (output_shape, filter (O, kh, kw, I), x (N, h, w, I))
      -> N*h*w*I*kh*kw*O (every input pixel scatters a kh x kw x O patch).
    * ``FULLY_CONNECTED``: weights (units, depth) -> rows * units * depth.
    * ``BATCH_MATMUL``: (..., m, k) x (..., k, n) -> prod(batch) * m * k * n.
    Any other op: 0.
    """
    def size(shape):
        return int(np.prod([int(d) for d in shape], dtype=np.int64)) if shape is not None else 0

    if op_name == "CONV_2D":
        filt, out = inputs[1], outputs[0]
        return size(out) * size(filt[1:])
    if op_name == "DEPTHWISE_CONV_2D":
        filt, out = inputs[1], outputs[0]
        return size(out) * int(filt[1]) * int(filt[2])
    if op_name == "TRANSPOSE_CONV":
        filt, x = inputs[1], inputs[2]
        return size(x) * int(filt[0]) * int(filt[1]) * int(filt[2])
    if op_name == "FULLY_CONNECTED":
        x, w = inputs[0], inputs[1]
        units, depth = int(w[0]), int(w[1])
        rows = size(x) // max(depth, 1)
        return rows * units * depth
    if op_name == "BATCH_MATMUL":
        a, out = inputs[0], outputs[0]
        return size(out) * int(a[-1])
    return 0


def count_macs(ops: Iterable[Tuple]) -> int:
    """Sum of :func:`op_macs` over ``(op name, input shapes, output shapes[, weight density])``."""
    total = 0.0
    for op in ops:
        name, ins, outs = op[:3]
        total += op_macs(name, ins, outs) * (op[3] if len(op) > 3 else 1.0)
    return int(round(total))


def nonzero_fraction(weights) -> float:
    """Share of non-zero entries in a weight tensor (quantised zeros are stored as 0 too)."""
    weights = np.asarray(weights)
    return float(np.count_nonzero(weights)) / max(weights.size, 1)


def interpreter_ops(interpreter, nonzero: bool = False):
    """``(name, input shapes, output shapes)`` of an *allocated* LiteRT interpreter's ops.

    Delegate nodes (``DELEGATE``) are skipped: the interpreter keeps listing
    the original ops they replaced.  ``nonzero=True`` yields a fourth item, the
    non-zero fraction of the op's constant weights (input 1), so
    :func:`count_macs` can count only the products with a non-zero weight
    (a block-diagonal kernel computes its zero blocks, but they are no work
    the model needs).
    """
    details = interpreter.get_tensor_details()
    shapes = {t["index"]: tuple(int(d) for d in t["shape"]) for t in details}
    for op in interpreter._get_ops_details():  # noqa: SLF001 - the only way to list ops
        if op["op_name"] == "DELEGATE":
            continue
        ins = [shapes.get(int(i)) if int(i) >= 0 else None for i in op["inputs"]]
        outs = [shapes.get(int(i)) for i in op["outputs"]]
        if not nonzero:
            yield op["op_name"], ins, outs
            continue
        density = 1.0
        if op["op_name"] in COUNTED_OPS and len(op["inputs"]) > 1 and op["op_name"] != "BATCH_MATMUL":
            try:
                density = nonzero_fraction(interpreter.get_tensor(int(op["inputs"][1])))
            except ValueError:  # not a constant
                density = 1.0
        yield op["op_name"], ins, outs, density


def interpreter_macs(interpreter) -> int:
    """MACs of one ``invoke()`` of an allocated interpreter *without delegates*.

    With a delegate (XNNPACK) the interpreter does not propagate shapes through
    the ops the delegate took, so their shapes stay those stored in the file.
    """
    return count_macs(interpreter_ops(interpreter))


#: a graph with free sizes whose shapes are computed while it runs is probed at most this many input pixels
PROBE_PIXELS = 1_000_000


def _runtime_shapes(interpreter) -> bool:
    """Whether some shapes are only known while the graph runs (``SHAPE`` ops feeding sizes)."""
    return any(op["op_name"] == "SHAPE" for op in interpreter._get_ops_details())  # noqa: SLF001


def tflite_macs(path, input_shape=None, nonzero: bool = False, input_shapes=None) -> int:
    """MACs of one run of the ``.tflite`` at ``path`` for an input of ``input_shape``.

    Builds a delegate-free LiteRT interpreter, resizes and allocates it (the
    arena is reserved, not touched, so this costs little RSS) and counts;
    ``nonzero=True`` counts only products with a non-zero weight.  A graph
    exported with free sizes that computes shapes at run time (``SHAPE`` ops,
    e.g. PyNET's transposed convolutions) is run once on zeros to learn them:
    at the real size up to :data:`PROBE_PIXELS` input pixels, above that on a
    frame of the same aspect scaled down to it, and the count scaled by the
    pixel ratio (fully convolutional: MACs per pixel do not depend on size,
    up to borders).  ``input_shapes``: one shape per model input (a segment
    model of :class:`isp_tf.tiling.tflite_executor.TiledSession` takes several
    stored tensors); ``path`` may also be the model's bytes.
    """
    from ai_edge_litert import interpreter as litert

    source = {"model_content": bytes(path)} if isinstance(path, (bytes, bytearray)) else {"model_path": str(path)}

    def build(shape):
        interpreter = litert.Interpreter(
            **source, experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        if input_shapes is not None:
            for detail, s in zip(interpreter.get_input_details(), input_shapes):
                interpreter.resize_tensor_input(detail["index"], [int(d) for d in s], strict=False)
        elif shape is not None:
            detail = interpreter.get_input_details()[0]
            strict = any(int(d) < 0 for d in detail.get("shape_signature", []))
            interpreter.resize_tensor_input(detail["index"], [int(d) for d in shape], strict=strict)
        interpreter.allocate_tensors()
        return interpreter

    try:
        interpreter = build(input_shape)
    except RuntimeError as exc:  # TFLite's own conv kernels refuse frames whose im2col passes 2^31 elements
        if input_shape is None or input_shapes is not None or "exceed" not in str(exc):
            raise
        n, h, w, c = (int(d) for d in input_shape)
        factor = (PROBE_PIXELS / float(h * w)) ** 0.5
        ph, pw = max(16, int(h * factor) // 16 * 16), max(16, int(w * factor) // 16 * 16)
        # fully convolutional: MACs per pixel do not depend on the size, up to borders
        return int(round(tflite_macs(path, [n, ph, pw, c], nonzero) * (h * w) / float(ph * pw)))
    if not _runtime_shapes(interpreter):
        return count_macs(interpreter_ops(interpreter, nonzero=nonzero))
    if input_shapes is not None:  # a segment model: tiles are small, run it once at its size
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
        interpreter.invoke()
        return count_macs(interpreter_ops(interpreter, nonzero=nonzero))
    detail = interpreter.get_input_details()[0]
    n, h, w, c = (int(d) for d in detail["shape"])
    scale = 1.0
    if h * w > PROBE_PIXELS:
        factor = (PROBE_PIXELS / float(h * w)) ** 0.5
        ph, pw = max(16, int(h * factor) // 16 * 16), max(16, int(w * factor) // 16 * 16)
        scale = (h * w) / float(ph * pw)
        interpreter = build([n, ph, pw, c])
        h, w = ph, pw
    interpreter.set_tensor(detail["index"], np.zeros((n, h, w, c), detail["dtype"]))
    interpreter.invoke()
    return int(round(count_macs(interpreter_ops(interpreter, nonzero=nonzero)) * scale))


def file_macs(path) -> int:
    """MACs of a ``.tflite`` with static shapes, read from the file (no interpreter)."""
    from isp_tf.export.flatbuffer import read_tflite

    graph = read_tflite(str(path))
    ops = ((op.name, [None if t is None else t.shape for t in op.inputs], [t.shape for t in op.outputs])
           for op in graph.operators)
    return count_macs(ops)
