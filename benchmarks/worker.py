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
    (TFLite's own kernels, no delegate): :class:`isp_tf.runtime.session.LiteRtSession`.
    ``mode``: ``whole`` or ``tiled`` (exact tiled inference from a tile manifest,
    :class:`isp_tf.tiling.tflite_executor.TiledSession`).
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
from isp_tf.runtime import session as session_mod
from isp_tf.runtime.metrics import psnr

# the LiteRT sessions (one small interface over the Interpreter and CompiledModel, int8 boundary
# included) and the exact tiled session live in the library, which imports no TensorFlow either
RUNTIMES = session_mod.RUNTIMES
LiteRtSession = session_mod.LiteRtSession


# ----------------------------------------------------------------------------
# kinds
# ----------------------------------------------------------------------------
def tiled_macs(session, height: int, width: int, nonzero: bool = False) -> int:
    """MACs of one frame of a tiled session: every call of every model (segment executor:
    each segment's local model over every box, its statistics models over every core;
    pass executor: every tile of every pass)."""
    from benchmarks.macs import tflite_macs

    total = 0
    if hasattr(session, "calls"):
        for model, calls in session.calls(height, width):
            per_shape = {}
            for shapes in calls:
                key = tuple(tuple(s) for s in shapes)
                if key not in per_shape:
                    per_shape[key] = tflite_macs(model, nonzero=nonzero, input_shapes=shapes)
                total += per_shape[key]
        return total
    channels = int(session.inputs[session.image_index]["shape"][-1])
    for model, shapes in session.work(height, width):
        per_shape = {}
        for shape in shapes:
            if shape not in per_shape:
                per_shape[shape] = tflite_macs(model, [1, shape[0], shape[1], channels], nonzero=nonzero)
            total += per_shape[shape]
    return total


def _vector_feeds(session, vectors: dict) -> list:
    """The per-frame vectors (``{port name: values}``) in the order the session takes them
    beside the image (matched by tensor name, else in the order given)."""
    if not vectors:
        return []
    inputs = session.inputs
    if hasattr(session, "vector_indices"):  # a tiled session: run(frame, *vectors in model order)
        per_frame = getattr(session, "per_frame", None)  # a split model fills one vector itself
        details = [inputs[k] for k in session.vector_indices
                   if per_frame is None or inputs[k].get("vector") != per_frame[2]]
    else:  # a whole-frame session: every input in order, the image included
        details = [d for d in inputs if len(d["shape"]) != 4]
    remaining = dict(vectors)
    out = []
    for d in details:
        name = next((n for n in remaining if n in d["name"]), next(iter(remaining), None))
        if name is None:
            raise RuntimeError(f"no per-frame values for input {d['name']}")
        out.append(np.asarray(remaining.pop(name), np.float32).reshape([int(v) for v in d["shape"]]))
    if not hasattr(session, "vector_indices"):
        image = next(k for k, d in enumerate(inputs) if len(d["shape"]) == 4)
        return _ImageAt(image, out)
    return out


class _ImageAt(list):
    """Vectors for a whole-frame session whose image is not its first input."""

    def __init__(self, image: int, vectors):
        super().__init__(vectors)
        self.image = image


def run_tflite(spec: dict) -> dict:
    from benchmarks.macs import tflite_macs
    from benchmarks.scene import synthetic_packed

    h, w = spec["input_hw"]
    frame = synthetic_packed(h, w, spec.get("seed", 0), int(spec.get("channels", 4)))[np.newaxis]
    threads = int(spec.get("threads", 2))
    runtime = spec.get("runtime", "xnnpack")
    result = {}
    with measure.PeakRss() as peak:
        t0 = time.perf_counter()
        tiled = spec.get("mode", "whole") == "tiled"
        if tiled:
            from isp_tf.tiling.tflite_executor import TiledSession

            tiling = spec["tiling"]
            budget = tiling.get("store_budget_mb")
            session = TiledSession.from_manifest(tiling["manifest"], threads, runtime, core=tiling["core"],
                                                 storage=tiling.get("storage", "float32"),
                                                 store_budget=None if budget is None else float(budget) * 2 ** 20)
            session.plan(h, w)
        else:
            session = LiteRtSession(spec["model_path"], threads, runtime)
        vectors = _vector_feeds(session, spec.get("vectors") or {})
        if isinstance(vectors, _ImageAt):  # the model's own input order
            feeds = list(vectors)
            feeds.insert(vectors.image, frame)
        else:
            feeds = [frame] + list(vectors)
        if not tiled:
            session.resize(*(f.shape for f in feeds))
        run = lambda: session(*feeds)  # noqa: E731
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
    if tiled:
        result["macs"], result["macs_nonzero"] = tiled_macs(session, h, w), tiled_macs(session, h, w, True)
    else:
        shapes = [f.shape for f in feeds] if len(feeds) > 1 else None
        result["macs"] = tflite_macs(spec["model_path"], frame.shape, input_shapes=shapes)
        result["macs_nonzero"] = tflite_macs(spec["model_path"], frame.shape, nonzero=True, input_shapes=shapes)
    if spec.get("save_output"):
        np.save(spec["save_output"], y[0])
    if spec.get("compare_to") and os.path.exists(spec["compare_to"]):
        ref = np.load(spec["compare_to"], mmap_mode="r")
        if ref.shape == y[0].shape:
            db = psnr(y[0], ref)
            result["psnr_vs_whole_db"] = None if db == float("inf") else round(db, 2)
            result["max_abs_diff_vs_whole"] = float(np.max(np.abs(y[0] - ref)))
    for key in ("tiles", "passes", "core", "tile_input", "segments", "halos", "storage", "segment_seconds",
                "store_mb"):
        if tiled and hasattr(session, key):
            result[key] = getattr(session, key)
    if tiled and hasattr(session, "recomputed"):
        result["recomputed"] = sorted(int(s) for s in session.recomputed)
    if tiled:  # against the whole frame through the exported model
        whole = tflite_macs(spec["model_path"], frame.shape) if len(feeds) == 1 else None
        result["mac_ratio_vs_whole"] = round(result["macs"] / float(whole), 4) if whole else None
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
