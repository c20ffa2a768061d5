"""Read (and write back) a ``.tflite`` flatbuffer without importing TensorFlow.

:func:`read_tflite` turns the file into plain Python objects -- tensors with
their dtype, shape, shape signature, quantisation and constant data, and
operators with their builtin name, version and options -- which is all the
NNAPI validator (:mod:`isp_tf.export.nnapi`), the metadata writer and the
flatbuffer post-passes (:mod:`isp_tf.export.tflite_passes`) need.

The schema comes from ``ai_edge_litert.schema_py_generated`` (TensorFlow's own
copy as a fallback).  Operator codes are read as
``max(builtin_code, deprecated_builtin_code)``: old files only fill the
deprecated byte, new files put codes above 127 only in the int32 field.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from isp_tf.errors import ExportError

try:  # the light, maintained package first (imports no TensorFlow)
    from ai_edge_litert import schema_py_generated as schema
except ImportError:  # pragma: no cover - only without ai-edge-litert
    from tensorflow.lite.python import schema_py_generated as schema

import flatbuffers

BUILTIN_NAMES: Dict[int, str] = {v: k for k, v in vars(schema.BuiltinOperator).items()
                                 if not k.startswith("_")}
TYPE_NAMES: Dict[int, str] = {v: k.lower() for k, v in vars(schema.TensorType).items()
                              if not k.startswith("_")}
_NUMPY_TYPES = {"float32": np.float32, "float16": np.float16, "int32": np.int32,
                "uint8": np.uint8, "int64": np.int64, "bool": np.bool_, "int16": np.int16,
                "int8": np.int8, "float64": np.float64, "uint32": np.uint32,
                "uint16": np.uint16, "uint64": np.uint64}
_IDENTIFIER = b"TFL3"


@dataclasses.dataclass
class Tensor:
    """One tensor of the main subgraph.

    ``constant`` is true for tensors whose values are stored in the file
    (weights, shape and axis operands); ``data`` then holds them as numpy.
    ``scale``/``zero_point`` are empty tuples for float tensors.
    """

    index: int
    name: str
    dtype: str
    shape: Tuple[int, ...]
    signature: Tuple[int, ...]
    constant: bool
    data: Optional[np.ndarray]
    scale: Tuple[float, ...]
    zero_point: Tuple[int, ...]

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def dynamic(self) -> bool:
        """A dimension left open (-1 in the shape signature)."""
        return any(int(d) < 0 for d in self.signature)

    @property
    def quantized(self) -> bool:
        return self.dtype in ("int8", "uint8") and len(self.scale) > 0

    def describe(self) -> str:
        shape = "x".join(str(d) for d in (self.signature or self.shape)) or "scalar"
        return f"{self.name or '#%d' % self.index} ({self.dtype} {shape})"


@dataclasses.dataclass
class Operator:
    """One operator: builtin name (``CONV_2D``...), op version, tensors in and out.

    ``inputs`` may contain ``None`` for an omitted optional operand (index -1).
    ``options`` is the schema's options object (``Conv2DOptionsT``...) or None.
    """

    index: int
    name: str
    version: int
    inputs: List[Optional[Tensor]]
    outputs: List[Tensor]
    options: object

    def input(self, i: int) -> Optional[Tensor]:
        return self.inputs[i] if i < len(self.inputs) else None


@dataclasses.dataclass
class TFLiteGraph:
    """The main subgraph of a ``.tflite`` file (``model`` is the schema object for writing)."""

    tensors: List[Tensor]
    operators: List[Operator]
    inputs: List[Tensor]
    outputs: List[Tensor]
    num_subgraphs: int
    model: object

    def ops_used(self) -> Dict[str, int]:
        """``{op name: highest version used}``, sorted by name."""
        used: Dict[str, int] = {}
        for op in self.operators:
            used[op.name] = max(op.version, used.get(op.name, 0))
        return dict(sorted(used.items()))

    def consumers(self, tensor_index: int) -> List[Operator]:
        return [op for op in self.operators
                if any(t is not None and t.index == tensor_index for t in op.inputs)]


def _load_bytes(src: Union[str, os.PathLike, bytes, bytearray]) -> bytes:
    if isinstance(src, (bytes, bytearray)):
        return bytes(src)
    path = os.fspath(src)
    if not os.path.isfile(path):
        raise ExportError(f"{path}: no such .tflite file")
    with open(path, "rb") as f:
        return f.read()


def _opcode(code) -> int:
    return max(int(code.builtinCode), int(code.deprecatedBuiltinCode))


def _checked_indices(values, size, name, what, optional=False) -> List[int]:
    """``values`` as ints, each a valid index below ``size`` (-1 too where ``optional``), else ExportError."""
    out = [int(i) for i in (values if values is not None else [])]
    for i in out:
        if not (0 <= i < size or (optional and i == -1)):
            raise ExportError(f"{name}: damaged TFLite flatbuffer ({what} refers to tensor {i}, "
                              f"the graph has {size})")
    return out


def read_tflite(src) -> TFLiteGraph:
    """Parse a ``.tflite`` file (path or bytes) into a :class:`TFLiteGraph`.

    Raises :class:`ExportError` for a file that is not a TFLite flatbuffer, or one whose
    tables refer to tensors, operator codes or buffers it does not have (a damaged file).
    """
    buf = _load_bytes(src)
    name = src if not isinstance(src, (bytes, bytearray)) else "<bytes>"
    if len(buf) < 8 or buf[4:8] != _IDENTIFIER:
        raise ExportError(f"{name}: not a TFLite flatbuffer (no 'TFL3' identifier)")
    try:
        model = schema.ModelT.InitFromPackedBuf(buf, 0)
    except Exception as exc:  # damaged flatbuffer: any decode error
        raise ExportError(f"{name}: damaged TFLite flatbuffer ({exc})") from None
    if not model.subgraphs:
        raise ExportError(f"{name}: TFLite file has no subgraph")
    sg = model.subgraphs[0]
    n_tensors = len(sg.tensors or [])
    codes = model.operatorCodes or []
    for k, op in enumerate(sg.operators or []):
        if not 0 <= int(op.opcodeIndex) < len(codes):
            raise ExportError(f"{name}: damaged TFLite flatbuffer (operator {k} uses operator code "
                              f"{op.opcodeIndex}, the file has {len(codes)})")
        _checked_indices(op.inputs, n_tensors, name, f"operator {k}'s input", optional=True)
        if not _checked_indices(op.outputs, n_tensors, name, f"operator {k}'s output"):
            raise ExportError(f"{name}: damaged TFLite flatbuffer (operator {k} has no output)")
    graph_in = _checked_indices(sg.inputs, n_tensors, name, "the graph input")
    graph_out = _checked_indices(sg.outputs, n_tensors, name, "the graph output")
    produced = {int(i) for op in (sg.operators or []) for i in (op.outputs if op.outputs is not None else [])}
    graph_inputs = set(graph_in)

    tensors: List[Tensor] = []
    for i, t in enumerate(sg.tensors or []):
        dtype = TYPE_NAMES.get(int(t.type), f"type{t.type}")
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        sig = tuple(int(d) for d in t.shapeSignature) if t.shapeSignature is not None else shape
        data = None
        buffer = model.buffers[t.buffer] if model.buffers and t.buffer < len(model.buffers) else None
        raw = None
        if buffer is not None:
            if buffer.data is not None and len(buffer.data):
                raw = np.asarray(buffer.data, dtype=np.uint8).tobytes()
            elif buffer.offset > 1 and buffer.size:
                raw = buf[buffer.offset:buffer.offset + buffer.size]
        constant = raw is not None and i not in produced and i not in graph_inputs and not t.isVariable
        if constant and dtype in _NUMPY_TYPES:
            if len(raw) % np.dtype(_NUMPY_TYPES[dtype]).itemsize:
                raise ExportError(f"{name}: damaged TFLite flatbuffer (tensor {i} holds {len(raw)} bytes, not a "
                                  f"whole number of {dtype} values)")
            data = np.frombuffer(raw, dtype=_NUMPY_TYPES[dtype])
            if data.size == int(np.prod(shape)):  # prod(()) == 1: scalars too
                data = data.reshape(shape)
        q = t.quantization
        scale = tuple(float(v) for v in q.scale) if q is not None and q.scale is not None else ()
        zp = tuple(int(v) for v in q.zeroPoint) if q is not None and q.zeroPoint is not None else ()
        tname = t.name.decode("utf-8", "replace") if isinstance(t.name, bytes) else (t.name or "")
        tensors.append(Tensor(i, tname, dtype, shape, sig, constant, data, scale, zp))

    operators: List[Operator] = []
    for k, op in enumerate(sg.operators or []):
        code = model.operatorCodes[op.opcodeIndex]
        opname = BUILTIN_NAMES.get(_opcode(code), f"BUILTIN_{_opcode(code)}")
        if opname == "CUSTOM":
            custom = (code.customCode.decode("utf-8", "replace") if isinstance(code.customCode, bytes)
                      else code.customCode)
            opname = f"CUSTOM:{custom}"
        ins = [tensors[int(j)] if int(j) >= 0 else None for j in (op.inputs if op.inputs is not None else [])]
        outs = [tensors[int(j)] for j in (op.outputs if op.outputs is not None else [])]
        operators.append(Operator(k, opname, int(code.version), ins, outs, op.builtinOptions))

    return TFLiteGraph(tensors, operators, [tensors[i] for i in graph_in], [tensors[i] for i in graph_out],
                       len(model.subgraphs), model)


_BUFFER_ALIGNMENT = 16  # the schema's ``force_align: 16`` on Buffer.data


def _pack_buffer_aligned(self, builder):
    """``BufferT.Pack`` that keeps constant data 16-byte aligned, as the converter writes it
    (the generated Python packer aligns a uint8 vector to 1 byte only)."""
    data = None
    if self.data is not None:
        payload = np.asarray(self.data, dtype=np.uint8).tobytes()
        builder.StartVector(1, len(payload), _BUFFER_ALIGNMENT)
        builder.head = builder.head - len(payload)
        builder.Bytes[builder.head:builder.head + len(payload)] = payload
        builder.vectorNumElems = len(payload)
        data = builder.EndVector()
    schema.BufferStart(builder)
    if data is not None:
        schema.BufferAddData(builder, data)
    schema.BufferAddOffset(builder, self.offset)
    schema.BufferAddSize(builder, self.size)
    return schema.BufferEnd(builder)


def drop_unused(model):
    """``model`` (a schema ``ModelT`` of one subgraph whose operators were pruned) without the
    tensors no operator, input or output names and the buffers no tensor or metadata holds, indices
    renumbered.  A cut of a large graph (PyNET's 190 MB, cut into 97 segments) otherwise carries
    every weight of the whole.  Models of several subgraphs are returned as they are."""
    if len(model.subgraphs or []) != 1:
        return model
    sg = model.subgraphs[0]
    used = sorted({int(t) for op in sg.operators for t in list(op.inputs) + list(op.outputs) if int(t) >= 0}
                  | {int(t) for t in sg.inputs} | {int(t) for t in sg.outputs}
                  | {int(t) for op in sg.operators for t in (op.intermediates if op.intermediates is not None
                                                              else []) if int(t) >= 0})
    new_index = {old: k for k, old in enumerate(used)}
    sg.tensors = [sg.tensors[i] for i in used]
    for op in sg.operators:
        op.inputs = [new_index[int(t)] if int(t) >= 0 else -1 for t in op.inputs]
        op.outputs = [new_index[int(t)] for t in op.outputs]
        if op.intermediates is not None:
            op.intermediates = [new_index[int(t)] if int(t) >= 0 else -1 for t in op.intermediates]
    sg.inputs = [new_index[int(t)] for t in sg.inputs]
    sg.outputs = [new_index[int(t)] for t in sg.outputs]
    buffers = sorted({0} | {int(t.buffer) for t in sg.tensors} | {int(m.buffer) for m in (model.metadata or [])})
    new_buffer = {old: k for k, old in enumerate(buffers)}
    model.buffers = [model.buffers[b] for b in buffers]
    for t in sg.tensors:
        t.buffer = new_buffer[int(t.buffer)]
    for m in model.metadata or []:
        m.buffer = new_buffer[int(m.buffer)]
    return model


def write_tflite(model) -> bytes:
    """Serialise a schema ``ModelT`` (e.g. ``read_tflite(...).model`` after editing) to bytes."""
    if any(b.offset > 1 for b in (model.buffers or [])):
        raise ExportError("write_tflite: models with buffers stored outside the flatbuffer "
                          "(> 2 GB) cannot be rewritten")
    builder = flatbuffers.Builder(1024)
    original = schema.BufferT.Pack
    schema.BufferT.Pack = _pack_buffer_aligned
    try:
        root = model.Pack(builder)
    finally:
        schema.BufferT.Pack = original
    builder.Finish(root, file_identifier=_IDENTIFIER)
    return bytes(builder.Output())
