"""Flatbuffer-level export passes: fix what the TFLite converter emits for NNAPI 1.2.

:func:`align_mean_quantization`:
NNAPI's quantized MEAN needs the output scale and zero point equal to the
input's, while the TFLite quantizer calibrates the output on its own.  The pass
gives the output the input's parameters (the mean of values lies in their
range, so nothing clips; the output just keeps the input's resolution),
follows the tensor through same-scale ops (RESHAPE, SQUEEZE...) and re-scales
the int32 bias of a consuming convolution so the integer arithmetic stays
exact.  :func:`fold_requantize` removes the int8 -> int8 QUANTIZE ops (refused
at API 29) the converter inserts before CONCATENATIONs of different scales,
giving the connected tensors one common range.  :func:`shorten_tensor_names` drops the converter's ``;``-joined fused
names (40 % of MicroISP's file; keeps the FP32 model under the paper's 158 KB).

The Keras-level rewrites applied before conversion live in :mod:`isp_tf.export.keras_rewrites`.
"""
from __future__ import annotations

import copy
from typing import Dict, List, Tuple

import numpy as np

from isp_tf.errors import ExportError

__all__ = ["align_mean_quantization", "fold_requantize", "shorten_tensor_names"]


# ---------------------------------------------------------------------------
# Flatbuffer-level pass
# ---------------------------------------------------------------------------
#: one-input, one-output ops whose int8 kernels require output params equal to input params
_SAME_SCALE = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "STRIDED_SLICE", "SLICE",
               "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "GATHER", "TILE", "MAX_POOL_2D", "AVERAGE_POOL_2D",
               "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "PAD"}
#: ops whose int8 kernels derive their multipliers from the input params at prepare time
#: (not CONCATENATION, MAXIMUM, MINIMUM: TFLite's int8 kernels need all params equal)
_RESCALING = {"ADD", "SUB", "MUL", "LOGISTIC", "TANH", "RELU", "RELU6", "RELU_N1_TO_1", "PRELU",
              "LEAKY_RELU", "MEAN", "SUM", "QUANTIZE", "DEQUANTIZE", "HARD_SWISH", "SOFTMAX", "RSQRT"}
#: consumers whose bias is quantized with the input's scale: op -> (input slot, bias slot)
_BIASED = {"CONV_2D": (0, 2), "DEPTHWISE_CONV_2D": (0, 2), "FULLY_CONNECTED": (0, 2),
           "TRANSPOSE_CONV": (2, 3)}


def _plan(graph, tensor_index, plan, seen):
    """Collect what must change if ``tensor_index`` changes its params; False if unsupported."""
    for op in graph.consumers(tensor_index):
        slots = [i for i, t in enumerate(op.inputs) if t is not None and t.index == tensor_index]
        if op.name in _SAME_SCALE:
            out = op.outputs[0]
            if out.index not in seen:
                seen.add(out.index)
                plan["tensors"].append(out.index)
                if not _plan(graph, out.index, plan, seen):
                    return False
        elif op.name in _BIASED:
            act_slot, bias_slot = _BIASED[op.name]
            if slots != [act_slot]:
                return False
            if op.input(bias_slot) is not None:
                plan["biases"].append((op.index, bias_slot, op.input(1).index))
        elif op.name not in _RESCALING:
            return False
    return True


def align_mean_quantization(tflite: bytes) -> Tuple[bytes, List[int]]:
    """Give every quantized MEAN's output its input's scale and zero point.

    Returns the new flatbuffer and the indices of the MEAN ops changed (the
    input bytes unchanged when there are none).  A MEAN whose output feeds an
    op this pass does not know is left alone (the validator will still name it).
    """
    from isp_tf.export.flatbuffer import read_tflite, write_tflite

    graph = read_tflite(tflite)
    model = graph.model
    sg = model.subgraphs[0]
    changed: List[int] = []
    for op in graph.operators:
        if op.name != "MEAN":
            continue
        src, out = op.input(0), op.outputs[0]
        if src is None or not src.quantized or not out.quantized:
            continue
        # current params (an earlier MEAN of a chain, e.g. H then W, may have changed src)
        (new_scale, new_zp), (old_scale, old_zp) = _params(sg, src.index), _params(sg, out.index)
        if (new_scale, new_zp) == (old_scale, old_zp):
            continue
        plan = {"tensors": [out.index], "biases": []}
        if not _plan(graph, out.index, plan, {out.index}):
            continue
        for t_index in plan["tensors"]:
            q = sg.tensors[t_index].quantization
            q.scale = np.array([new_scale], np.float32)
            q.zeroPoint = np.array([new_zp], np.int64)
        for op_index, bias_slot, weight_index in plan["biases"]:
            _rescale_bias(model, sg, sg.operators[op_index], bias_slot, weight_index,
                          old_scale, new_scale)
        changed.append(op.index)
    if not changed:
        return tflite, []
    return write_tflite(model), changed


#: ops whose int8 output params are free (the kernel derives its multiplier from them)
_FREE_OUTPUT = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "ADD", "SUB", "MUL",
                "RELU", "RELU6", "LEAKY_RELU", "PRELU", "MEAN", "SUM", "HARD_SWISH"}


class _Groups:
    """Union-find over tensor indices."""

    def __init__(self):
        self.parent = {}

    def find(self, a):
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a, b):
        self.parent[self.find(a)] = self.find(b)


def _is_requantize(op) -> bool:
    src = op.input(0)
    return (op.name == "QUANTIZE" and src is not None and src.dtype == "int8" and src.quantized
            and op.outputs[0].dtype == "int8" and op.outputs[0].quantized)


def _union_params(tensors, qmin=-128, qmax=127):
    """Scale and zero point whose int8 range covers every tensor's range."""
    lo = min(min(0.0, (qmin - t.zero_point[0]) * t.scale[0]) for t in tensors)
    hi = max(max(0.0, (qmax - t.zero_point[0]) * t.scale[0]) for t in tensors)
    scale = (hi - lo) / (qmax - qmin)
    zp = int(np.clip(round(qmin - lo / scale), qmin, qmax))
    return float(scale), zp


def fold_requantize(tflite: bytes) -> Tuple[bytes, int]:
    """Remove int8 -> int8 QUANTIZE ops (re-quantisations) the converter inserts where
    one tensor feeds CONCATENATIONs of different scales.

    At API 29 NNAPI refuses QUANTIZE with int8 output.  The tensors a
    re-quantisation connects (through CONCATENATION and same-scale ops) are
    given one scale and zero point covering all their ranges, their producers
    (convolutions, activations: ops whose output params are free) write in it,
    consuming convolutions get their bias re-scaled, and the QUANTIZE ops go.
    Groups touching an op whose output scale is fixed (LOGISTIC, TANH, graph
    inputs...) are left alone; graph outputs may change (the JSON and the
    interpreter report the file's final output scale).  Returns ``(new bytes, number of ops removed)``.
    The common range is the union of the calibrated ones, so resolution drops
    slightly where ranges differed; nothing clips.
    """
    from isp_tf.export.flatbuffer import read_tflite, write_tflite

    graph = read_tflite(tflite)
    requant = [op for op in graph.operators if _is_requantize(op)]
    if not requant:
        return tflite, 0
    groups = _Groups()
    for op in graph.operators:
        outs = [t for t in op.outputs if t.dtype == "int8"]
        if not outs:
            continue
        if _is_requantize(op) or op.name in _SAME_SCALE:
            groups.union(op.input(0).index, outs[0].index)
        elif op.name == "CONCATENATION":
            for t in op.inputs:
                groups.union(t.index, outs[0].index)
    producer = {t.index: op for op in graph.operators for t in op.outputs}
    members: Dict[int, List] = {}
    for t in graph.tensors:
        if t.index in groups.parent:
            members.setdefault(groups.find(t.index), []).append(t)
    graph_inputs = {t.index for t in graph.inputs}  # outputs may change: readers use the file's params
    internal = {"CONCATENATION", "QUANTIZE"} | _SAME_SCALE

    model, sg = graph.model, graph.model.subgraphs[0]
    removed = []
    for root, tensors in members.items():
        qs = [op for op in requant if groups.find(op.input(0).index) == root]
        if not qs:
            continue
        ok, biases = True, []
        for t in tensors:
            p = producer.get(t.index)
            if t.index in graph_inputs or not t.quantized or p is None or \
                    (p.name not in _FREE_OUTPUT and p.name not in internal):
                ok = False
                break
            for c in graph.consumers(t.index):
                if c.name in internal and (c.name != "QUANTIZE" or _is_requantize(c)):
                    continue
                if c.name in _RESCALING:
                    continue
                slot = _BIASED.get(c.name)
                if slot and c.input(slot[0]) is t and c.input(slot[1]) is not None:
                    biases.append((c.index, slot[1], c.input(1).index, t.scale[0]))
                    continue
                ok = False
                break
            if not ok:
                break
        if not ok:
            continue
        scale, zp = _union_params(tensors)
        for t in tensors:
            q = sg.tensors[t.index].quantization
            q.scale = np.array([scale], np.float32)
            q.zeroPoint = np.array([zp], np.int64)
        for op_index, bias_slot, weight_index, old in biases:
            _rescale_bias(model, sg, sg.operators[op_index], bias_slot, weight_index, old, scale)
        for q_op in qs:  # consumers of the QUANTIZE output read its input instead
            src, dst = q_op.input(0).index, q_op.outputs[0].index
            for c in graph.consumers(dst):
                ins = np.array(sg.operators[c.index].inputs, copy=True)
                ins[ins == dst] = src
                sg.operators[c.index].inputs = ins
            removed.append(q_op.index)
    if not removed:
        return tflite, 0
    sg.operators = [op for k, op in enumerate(sg.operators) if k not in set(removed)]
    return write_tflite(model), len(removed)


def _params(sg, index) -> Tuple[float, int]:
    """Current (scale, zero point) of tensor ``index`` in a schema subgraph being edited."""
    q = sg.tensors[index].quantization
    return float(np.float32(q.scale[0])), int(q.zeroPoint[0])


def _rescale_bias(model, sg, consumer, bias_slot, weight_index, in_old, in_new):
    """Re-quantise a consumer's int32 bias from input scale ``in_old`` to ``in_new``
    (into a fresh tensor and buffer, since constants may be shared)."""
    from isp_tf.export.flatbuffer import schema

    bias_t = sg.tensors[consumer.inputs[bias_slot]]
    buf = model.buffers[bias_t.buffer]
    if bias_t.type != schema.TensorType.INT32 or buf.data is None:
        raise ExportError("align_mean_quantization: bias is not a constant int32 tensor")
    values = np.frombuffer(np.asarray(buf.data, np.uint8).tobytes(), np.int32).astype(np.float64)
    values = np.clip(np.round(values * (in_old / in_new)), -2 ** 31, 2 ** 31 - 1).astype(np.int32)
    w_scale = np.asarray(sg.tensors[weight_index].quantization.scale, np.float64)
    new_buf = schema.BufferT()
    new_buf.data = np.frombuffer(values.tobytes(), np.uint8)
    model.buffers.append(new_buf)
    new_t = copy.deepcopy(bias_t)
    new_t.buffer = len(model.buffers) - 1
    new_t.quantization.scale = (w_scale * in_new).astype(np.float32)
    new_t.name = (bias_t.name or b"bias") + b"/mean_aligned" if isinstance(bias_t.name, bytes) \
        else f"{bias_t.name or 'bias'}/mean_aligned"
    sg.tensors.append(new_t)
    inputs = np.array(consumer.inputs, copy=True)
    inputs[bias_slot] = len(sg.tensors) - 1
    consumer.inputs = inputs


def shorten_tensor_names(tflite: bytes) -> bytes:
    """Keep only the first of the ``;``-joined names the converter gives fused tensors.

    The converter names a fused tensor after every TF op folded into it
    (``.../conv0/Conv2D;.../conv0/BiasAdd;...``), which for MicroISP is 40 % of
    the file.  The first name still says which layer a tensor belongs to (the
    validator's messages use it); graph inputs and outputs keep their names.
    """
    from isp_tf.export.flatbuffer import read_tflite, write_tflite

    graph = read_tflite(tflite)
    sg = graph.model.subgraphs[0]
    keep = {t.index for t in graph.inputs + graph.outputs}
    changed = False
    for i, t in enumerate(sg.tensors):
        name = t.name.decode("utf-8", "replace") if isinstance(t.name, bytes) else (t.name or "")
        if i in keep or ";" not in name:
            continue
        t.name = name.split(";", 1)[0]
        changed = True
    return write_tflite(graph.model) if changed else tflite
