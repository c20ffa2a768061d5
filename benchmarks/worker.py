"""One benchmark configuration, measured in a fresh process.

``python -m benchmarks.worker SPEC.json RESULT.json`` -- started by
:mod:`benchmarks.run`, one process per configuration, because peak RSS only
grows within a process.  Imports numpy, psutil and ai-edge-litert only (no
TensorFlow: importing it costs ~650 MB of RSS that would blur the figures).

Spec kinds (``spec["kind"]``):

``tflite``
    A ``.tflite`` model on a synthetic packed-Bayer frame of ``input_hw``
    with LiteRT.  ``runtime``: ``xnnpack`` (the default interpreter, XNNPACK
    delegate), ``xnnpack-transient`` (LiteRT CompiledModel with XNNPACK's
    transient indirection buffers, flag 0x20: indirection pointers are rebuilt
    at every run instead of kept for the model's lifetime) or ``builtin``
    (TFLite's own kernels, no delegate).  ``mode``: ``whole`` or ``tiled``
    (see :mod:`benchmarks.tiled`).
``classical``
    :func:`isp_tf.raw.render_classical` on a synthetic RawImage of ``output_hw``.
``rawpy``
    rawpy (LibRaw) ``postprocess`` of a DNG of ``output_hw`` (``dng_path``).
``gemm``
    numpy fp32 matmul GFLOP/s (the BLAS thread count comes from the environment).

The baseline of the memory figures is the RSS after imports and after the
input frame exists (the frame is the caller's, it exists anyway); everything
the runtime allocates after that -- interpreter, arena, delegate buffers,
output array -- counts.  Latency is one whole frame: copying the input in,
running, copying the output out (tiled: every tile of every pass).
"""
from __future__ import annotations

import json
import os
import pathlib
import sys
import time
import traceback

import numpy as np

from benchmarks import measure

XNNPACK_FLAG_TRANSIENT_INDIRECTION_BUFFER = 0x20
RUNTIMES = ("xnnpack", "xnnpack-transient", "builtin")


# ----------------------------------------------------------------------------
# LiteRT sessions: one small interface over the Interpreter and CompiledModel
# ----------------------------------------------------------------------------
class LiteRtSession:
    """A ``.tflite`` model ready to run on (1, h, w, c) float32 frames.

    ``resize(shape)`` re-plans the model for a new input size (no-op when
    unchanged); ``run(x)`` returns the first output as a numpy array.  INT8
    models with quantised inputs/outputs get the input quantised and the output
    dequantised here (the cost counts).
    """

    def __init__(self, model_path: str, threads: int, runtime: str = "xnnpack"):
        if runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
        self.runtime = runtime
        self.shape = None
        from ai_edge_litert import interpreter as litert

        if runtime == "xnnpack-transient":
            from ai_edge_litert.compiled_model import CompiledModel
            from ai_edge_litert.cpu_options import CpuOptions
            from ai_edge_litert.hardware_accelerator import HardwareAccelerator
            from ai_edge_litert.options import Options

            options = Options(HardwareAccelerator.CPU, cpu_options=CpuOptions(
                num_threads=threads, xnnpack_flags=XNNPACK_FLAG_TRANSIENT_INDIRECTION_BUFFER))
            with measure.quiet_native_stderr():
                self.compiled = CompiledModel.from_file(str(model_path), options=options)
            # a plain interpreter (no delegate, never allocated) only describes the graph
            self.interpreter = litert.Interpreter(
                model_path=str(model_path),
                experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        else:
            resolver = (litert.OpResolverType.AUTO if runtime == "xnnpack"
                        else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            with measure.quiet_native_stderr():
                self.interpreter = litert.Interpreter(
                    model_path=str(model_path), num_threads=threads,
                    experimental_op_resolver_type=resolver)
            self.compiled = None
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    @property
    def input_dtype(self):
        return self.input["dtype"]

    def resize(self, shape) -> None:
        shape = [int(d) for d in shape]
        if shape == self.shape:
            return
        strict = any(int(d) < 0 for d in self.input.get("shape_signature", []))
        if self.compiled is not None:
            self.compiled.resize_input_tensor(0, shape, strict=strict)
            self.in_buffers = self.compiled.create_input_buffers(0)
            self.out_buffers = self.compiled.create_output_buffers(0)
        else:
            self.interpreter.resize_tensor_input(self.input["index"], shape, strict=strict)
            self.interpreter.allocate_tensors()
        self.shape = shape

    def _quantize(self, x):
        scale, zero = self.input.get("quantization", (0.0, 0))
        if self.input_dtype == np.float32 or not scale:
            return x.astype(self.input_dtype, copy=False)
        info = np.iinfo(self.input_dtype)
        return np.clip(np.rint(x / scale + zero), info.min, info.max).astype(self.input_dtype)

    def _dequantize(self, y):
        scale, zero = self.output.get("quantization", (0.0, 0))
        if y.dtype == np.float32 or not scale:
            return y.astype(np.float32, copy=False)
        return (y.astype(np.float32) - zero) * scale

    def run(self, x: np.ndarray) -> np.ndarray:
        self.resize(x.shape)
        x = self._quantize(x)
        if self.compiled is not None:
            self.in_buffers[0].write(np.ascontiguousarray(x))
            self.compiled.run_by_index(0, self.in_buffers, self.out_buffers)
            shape = self.out_buffers[0].get_tensor_details()["shape"]
            y = self.out_buffers[0].read(int(np.prod(shape)), self.output["dtype"]).reshape(shape)
        else:
            self.interpreter.set_tensor(self.input["index"], x)
            self.interpreter.invoke()
            y = self.interpreter.get_tensor(self.output["index"])
        return self._dequantize(y)

# ----------------------------------------------------------------------------
# kinds
# ----------------------------------------------------------------------------
def _psnr(a: np.ndarray, b: np.ndarray, rows: int = 256) -> float:
    """PSNR (peak 1) of two (H, W, C) images, in row blocks to stay small at 32 MP."""
    total = 0.0
    for y in range(0, a.shape[0], rows):
        d = np.clip(a[y:y + rows], 0, 1).astype(np.float64) - np.clip(b[y:y + rows], 0, 1)
        total += float(np.sum(d * d))
    mse = total / a.size
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def run_tflite(spec: dict) -> dict:
    from benchmarks.macs import tflite_macs
    from benchmarks.scene import synthetic_packed

    h, w = spec["input_hw"]
    frame = synthetic_packed(h, w, spec.get("seed", 0))[np.newaxis]
    threads = int(spec.get("threads", 2))
    runtime = spec.get("runtime", "xnnpack")
    result = {}
    with measure.PeakRss() as peak:
        t0 = time.perf_counter()
        if spec.get("mode", "whole") == "tiled":
            from benchmarks.tiled import TiledSession

            session = TiledSession(spec["tiling"], threads, runtime)
            run = lambda: session.run(frame)  # noqa: E731
        else:
            session = LiteRtSession(spec["model_path"], threads, runtime)
            session.resize(frame.shape)
            run = lambda: session.run(frame)  # noqa: E731
        result["init_s"] = time.perf_counter() - t0
        holder = {}

        def frame_once():
            holder["y"] = run()

        result.update(measure.time_runs(frame_once, int(spec.get("runs", 5)), int(spec.get("warmup", 1))))
    result.update(peak.result())
    y = holder["y"]
    scale = int(spec.get("output_scale", 2))
    if tuple(y.shape[1:3]) != (h * scale, w * scale):
        raise RuntimeError(f"the model gave {tuple(y.shape[1:3])} for a {h}x{w} input, not {scale}x: "
                           "it cannot be resized to this frame (export it at this size)")
    result["output_shape"] = list(y.shape)
    result["output_mean"] = float(np.mean(y))
    if hasattr(session, "macs"):
        result["macs"], result["macs_nonzero"] = session.macs(), session.macs(nonzero=True)
    else:
        result["macs"] = tflite_macs(spec["model_path"], frame.shape)
        result["macs_nonzero"] = tflite_macs(spec["model_path"], frame.shape, nonzero=True)
    if spec.get("save_output"):
        np.save(spec["save_output"], y[0])
    if spec.get("compare_to") and os.path.exists(spec["compare_to"]):
        ref = np.load(spec["compare_to"], mmap_mode="r")
        if ref.shape == y[0].shape:
            psnr = _psnr(y[0], ref)
            result["psnr_vs_whole_db"] = None if psnr == float("inf") else round(psnr, 2)
            result["max_abs_diff_vs_whole"] = float(np.max(np.abs(y[0] - ref)))
    for key in ("tiles", "passes", "core", "tile_input"):
        if hasattr(session, key):
            result[key] = getattr(session, key)
    return result


def run_classical(spec: dict) -> dict:
    from benchmarks.scene import synthetic_raw
    from isp_tf.raw import render_classical

    h, w = spec["output_hw"]
    raw = synthetic_raw(h, w, spec.get("seed", 0))
    result = {}
    with measure.PeakRss() as peak:
        holder = {}
        result.update(measure.time_runs(lambda: holder.update(y=render_classical(raw)),
                                        int(spec.get("runs", 5)), int(spec.get("warmup", 1))))
    result.update(peak.result())
    result["init_s"] = 0.0
    result["output_shape"] = list(holder["y"].shape)
    return result


def run_rawpy(spec: dict) -> dict:
    """rawpy: open the DNG and ``postprocess`` it (camera white balance, 8-bit sRGB), per run."""
    import rawpy

    path = spec["dng_path"]
    result = {}
    kwargs = dict(use_camera_wb=True, no_auto_bright=True, adjust_maximum_thr=0.0, output_bps=8)
    with measure.PeakRss() as peak:
        holder = {}

        def once():
            with rawpy.imread(path) as raw:
                holder["y"] = raw.postprocess(**kwargs)

        result.update(measure.time_runs(once, int(spec.get("runs", 5)), int(spec.get("warmup", 1))))
    result.update(peak.result())
    result["init_s"] = 0.0
    result["output_shape"] = list(holder["y"].shape)
    result["size_bytes"] = os.path.getsize(path)
    return result


def run_gemm(spec: dict) -> dict:
    return {"gflops": measure.gemm_gflops(int(spec.get("n", 1024)), float(spec.get("seconds", 1.0)))}


KINDS = {"tflite": run_tflite, "classical": run_classical, "rawpy": run_rawpy, "gemm": run_gemm}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m benchmarks.worker SPEC.json RESULT.json", file=sys.stderr)
        return 2
    spec = json.loads(pathlib.Path(argv[0]).read_text())
    out = pathlib.Path(argv[1])
    try:
        result = KINDS[spec["kind"]](spec)
        result["status"] = "ok"
    except MemoryError:
        result = {"status": "out_of_memory", "message": "MemoryError in the benchmark process"}
    except Exception as exc:  # reported in the JSON, not as a crash of the whole run
        message = f"{type(exc).__name__}: {exc}"
        if "out of memory" in str(exc).lower() or "failed to allocate" in str(exc).lower():
            result = {"status": "out_of_memory", "message": message}
        else:
            result = {"status": "error", "message": message, "traceback": traceback.format_exc()[-2000:]}
    out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
