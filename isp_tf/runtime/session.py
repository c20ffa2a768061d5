"""LiteRT (ai-edge-litert) sessions over ``.tflite`` models, numpy only: no TensorFlow.

The benchmark worker measures memory in a process that must not import
TensorFlow (its ~650 MB of RSS would blur the figures), and a phone-side
runner needs nothing more than this either, so everything here imports numpy
and, when a model is opened, ``ai_edge_litert``.

* :func:`quantize` / :func:`dequantize`: the int8/uint8 boundary of a model
  (``q = clip(rint(x / scale + zero_point))``, ``x = (q - zero_point) * scale``),
  written once and used by every runner in isp_tf and the benchmarks.
* :class:`LiteRtSession`: a model ready to run on float32 arrays, any number of
  inputs and outputs, on one of :data:`RUNTIMES`.
* :func:`make_interpreter`, :func:`run_tflite`: the one-shot helpers of the
  export parity check.
"""
from __future__ import annotations

import contextlib
import os
from typing import List, Optional, Union

import numpy as np

from isp_tf.errors import InputShapeError, RuntimeChoiceError

#: LiteRT CPU runtimes: ``xnnpack`` (the default interpreter with the XNNPACK
#: delegate), ``xnnpack-transient`` (CompiledModel, XNNPACK rebuilds its
#: indirection buffers at every run: ~10x less memory, ~1.6-2x slower),
#: ``builtin`` (TFLite's own kernels, no delegate)
RUNTIMES = ("xnnpack", "xnnpack-transient", "builtin")
XNNPACK_FLAG_TRANSIENT_INDIRECTION_BUFFER = 0x20

ModelSource = Union[str, os.PathLike, bytes, bytearray]


# ----------------------------------------------------------------------------
# the quantised boundary
# ----------------------------------------------------------------------------
def _scale_zero(detail):
    scale, zero = detail.get("quantization", (0.0, 0)) or (0.0, 0)
    return float(scale), int(zero)


def quantize(detail: dict, x) -> np.ndarray:
    """``x`` as the tensor described by ``detail`` (a LiteRT input detail) takes it.

    Integer tensors with a scale: ``clip(rint(x / scale + zero_point))`` to the
    dtype's range; anything else is only cast (no copy when already that dtype).
    """
    dtype = np.dtype(detail["dtype"])
    scale, zero = _scale_zero(detail)
    if not np.issubdtype(dtype, np.integer) or not scale:
        return np.asarray(x).astype(dtype, copy=False)
    info = np.iinfo(dtype)
    return np.clip(np.rint(np.asarray(x) / scale + zero), info.min, info.max).astype(dtype)


def dequantize(detail: dict, y) -> np.ndarray:
    """A tensor's value ``y`` as float32: ``(y - zero_point) * scale`` for quantised integer tensors."""
    y = np.asarray(y)
    scale, zero = _scale_zero(detail)
    if not np.issubdtype(y.dtype, np.integer) or not scale:
        return y.astype(np.float32, copy=False)
    return (y.astype(np.float32) - zero) * scale


# ----------------------------------------------------------------------------
# sessions
# ----------------------------------------------------------------------------
@contextlib.contextmanager
def quiet_native_stderr(enabled: bool = True):
    """Silence C++ log lines (``INFO: Created TensorFlow Lite XNNPACK delegate``) on fd 2."""
    if not enabled:
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:  # pragma: no cover
        yield
        return
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _source_kwargs(model: ModelSource) -> dict:
    if isinstance(model, (bytes, bytearray)):
        return {"model_content": bytes(model)}
    return {"model_path": str(model)}


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise RuntimeChoiceError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    return runtime


class LiteRtSession:
    """A ``.tflite`` model (path or bytes) ready to run on float32 arrays.

    ``run(*inputs)`` takes one array per model input, in the model's input
    order (e.g. a (1, h, w, 4) frame and a (1, K) per-frame vector), and
    returns every output as a float32 array; ``session(*inputs)`` returns the
    first output only.  Inputs are re-planned when their shape changes
    (``resize``); quantised integer inputs/outputs are converted here with
    :func:`quantize` / :func:`dequantize` (the cost counts in a timing).

    ``runtime``: one of :data:`RUNTIMES`.  ``quiet``: silence LiteRT's native
    log lines while the model is opened.
    """

    def __init__(self, model: ModelSource, threads: int = 2, runtime: str = "xnnpack",
                 quiet: bool = True):
        self.runtime = check_runtime(runtime)
        from ai_edge_litert import interpreter as litert

        source = _source_kwargs(model)
        if runtime == "xnnpack-transient":
            from ai_edge_litert.compiled_model import CompiledModel
            from ai_edge_litert.cpu_options import CpuOptions
            from ai_edge_litert.hardware_accelerator import HardwareAccelerator
            from ai_edge_litert.options import Options

            options = Options(HardwareAccelerator.CPU, cpu_options=CpuOptions(
                num_threads=int(threads), xnnpack_flags=XNNPACK_FLAG_TRANSIENT_INDIRECTION_BUFFER))
            with quiet_native_stderr(quiet):
                if "model_content" in source:
                    self.compiled = CompiledModel.from_buffer(source["model_content"], options=options)
                else:
                    self.compiled = CompiledModel.from_file(source["model_path"], options=options)
            # a plain interpreter (no delegate, never allocated) only describes the graph
            self.interpreter = litert.Interpreter(
                **source, experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        else:
            resolver = (litert.OpResolverType.AUTO if runtime == "xnnpack"
                        else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            with quiet_native_stderr(quiet):
                self.interpreter = litert.Interpreter(
                    **source, num_threads=int(threads), experimental_op_resolver_type=resolver)
            self.compiled = None
        self.inputs: List[dict] = self.interpreter.get_input_details()
        self.outputs: List[dict] = self.interpreter.get_output_details()
        self.shapes: List[Optional[List[int]]] = [None] * len(self.inputs)
        if self.compiled is not None:
            self._in_order, self._out_order = self._signature_order()

    def _signature_order(self):
        """Positions in ``inputs`` / ``outputs`` of the CompiledModel's buffers (signature order)."""
        identity = list(range(len(self.inputs))), list(range(len(self.outputs)))
        try:
            signature = self.compiled.get_signature_by_index(0)
            runner = self.interpreter.get_signature_runner(signature["key"])
            by_name_in, by_name_out = runner.get_input_details(), runner.get_output_details()
            in_pos = {d["index"]: k for k, d in enumerate(self.inputs)}
            out_pos = {d["index"]: k for k, d in enumerate(self.outputs)}
            ins = [in_pos[by_name_in[name]["index"]] for name in signature["inputs"]]
            outs = [out_pos[by_name_out[name]["index"]] for name in signature["outputs"]]
        except Exception:  # noqa: BLE001 - no signature (e.g. a rewritten graph): graph order
            return identity
        if sorted(ins) != identity[0] or sorted(outs) != identity[1]:
            return identity
        return ins, outs

    # -- description -----------------------------------------------------------
    @property
    def input(self) -> dict:
        """The first input's LiteRT detail."""
        return self.inputs[0]

    @property
    def output(self) -> dict:
        """The first output's LiteRT detail."""
        return self.outputs[0]

    @property
    def input_dtype(self):
        return self.inputs[0]["dtype"]

    @property
    def shape(self) -> Optional[List[int]]:
        """The shape the first input is planned for (``None`` before the first run)."""
        return self.shapes[0]

    # -- running ---------------------------------------------------------------
    def resize(self, *shapes) -> None:
        """Plan the model for inputs of ``shapes`` (the first ones; a no-op when unchanged)."""
        shapes = [[int(d) for d in s] for s in shapes]
        changed = [i for i, s in enumerate(shapes) if s != self.shapes[i]]
        if not changed:
            return
        for i in changed:
            detail = self.inputs[i]
            strict = any(int(d) < 0 for d in detail.get("shape_signature", []))
            if self.compiled is not None:
                self.compiled.resize_input_tensor(self._in_order.index(i), shapes[i], strict=strict)
            else:
                self.interpreter.resize_tensor_input(detail["index"], shapes[i], strict=strict)
            self.shapes[i] = shapes[i]
        if self.compiled is not None:
            self.in_buffers = self.compiled.create_input_buffers(0)
            self.out_buffers = self.compiled.create_output_buffers(0)
        else:
            self.interpreter.allocate_tensors()

    def run(self, *inputs) -> List[np.ndarray]:
        """Every output (float32) for ``inputs`` (float arrays, one per model input)."""
        if len(inputs) != len(self.inputs):
            raise InputShapeError(f"this model takes {len(self.inputs)} input(s) "
                                  f"({', '.join(d['name'] for d in self.inputs)}), got {len(inputs)}")
        arrays = [np.asarray(x) for x in inputs]
        self.resize(*(a.shape for a in arrays))
        arrays = [quantize(d, a) for d, a in zip(self.inputs, arrays)]
        if self.compiled is not None:
            for buffer, k in zip(self.in_buffers, self._in_order):
                buffer.write(np.ascontiguousarray(arrays[k]))
            self.compiled.run_by_index(0, self.in_buffers, self.out_buffers)
            ys = [None] * len(self.outputs)
            for buffer, k in zip(self.out_buffers, self._out_order):
                shape = buffer.get_tensor_details()["shape"]
                ys[k] = buffer.read(int(np.prod(shape)), self.outputs[k]["dtype"]).reshape(shape)
        else:
            for detail, x in zip(self.inputs, arrays):
                self.interpreter.set_tensor(detail["index"], x)
            self.interpreter.invoke()
            ys = [self.interpreter.get_tensor(d["index"]) for d in self.outputs]
        return [dequantize(d, y) for d, y in zip(self.outputs, ys)]

    def __call__(self, *inputs) -> np.ndarray:
        """The first output only (the usual image-to-image model)."""
        return self.run(*inputs)[0]


# ----------------------------------------------------------------------------
# one-shot helpers (export parity)
# ----------------------------------------------------------------------------
def make_interpreter(tflite: ModelSource, num_threads: int = 2):
    """An ai-edge-litert interpreter for a path or bytes, tensors allocated."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(num_threads=num_threads, **_source_kwargs(tflite))
    interp.allocate_tensors()
    return interp


def run_tflite(tflite: ModelSource, x: np.ndarray, num_threads: int = 2) -> np.ndarray:
    """Run a one-input ``.tflite`` at its own input shape on float ``x``; the first output, float32.

    Integer model input/output is quantised / de-quantised at the boundary
    (:func:`quantize`, :func:`dequantize`).  A shape other than the model's
    raises :class:`~isp_tf.errors.InputShapeError`.
    """
    interp = make_interpreter(tflite, num_threads)
    (inp,) = interp.get_input_details()
    out = interp.get_output_details()[0]
    shape = tuple(int(d) for d in inp["shape"])
    if tuple(x.shape) != shape:
        raise InputShapeError(f"input of shape {tuple(x.shape)} for a model that takes {shape}")
    interp.set_tensor(inp["index"], quantize(inp, x))
    interp.invoke()
    return dequantize(out, interp.get_tensor(out["index"]))


__all__ = ["RUNTIMES", "XNNPACK_FLAG_TRANSIENT_INDIRECTION_BUFFER", "LiteRtSession", "RuntimeChoiceError",
           "check_runtime", "dequantize", "make_interpreter", "quantize", "quiet_native_stderr", "run_tflite"]
