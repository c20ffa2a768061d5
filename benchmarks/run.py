"""Latency and peak RAM of isp_tf's models, locally (LiteRT) or on a phone (adb).

One command compares the models with what people use today::

    python -m benchmarks.run --models microisp,pynet:small --precisions fp32,int8 \\
        --resolutions fullhd,12mp,32mp --threads 2 --tile auto \\
        --reference ../shared/reference_weights/microisp_official/MicroISP.tflite \\
        --json out.json --markdown out.md --plot out.png

Every configuration (model x precision x resolution x mode x runtime, and each
baseline) runs in a fresh ``python -m benchmarks.worker`` process, watched by
this one: a child whose RSS would exceed the memory limit (or that the kernel
kills) is recorded as ``out_of_memory`` instead of taking the machine down, and
configurations a smaller run predicts to be too big are not started.

Baselines at the same frame size: the classical renderer
(:func:`isp_tf.raw.render_classical`) and rawpy/LibRaw ``postprocess`` of a
DNG written with :func:`isp_tf.raw.write_dng`.  ``--reference`` adds any
``.tflite`` that takes a packed (1, h, w, 4) frame, resized to each size.

The achieved GFLOP/s (2 x MACs / median latency) is put against the machine's
fp32 GEMM peak, measured in the same run with numpy (one thread and
``--threads``).

``--adb`` runs the same models on an Android phone with TFLite's
``benchmark_model`` instead (see :mod:`benchmarks.adb`).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

import numpy as np

from benchmarks import measure
from benchmarks.config import parse_resolution, round_up
from isp_tf.errors import IspTfError
from isp_tf.models.registry import DEFAULT_MODEL
from isp_tf.runtime.frames import FRAME_SIZES, megapixels

REPO = pathlib.Path(__file__).resolve().parents[1]
MB = measure.MB
DEFAULT_REFERENCE = REPO.parent / "shared" / "reference_weights" / "microisp_official" / "MicroISP.tflite"


# ----------------------------------------------------------------------------
# running one child
# ----------------------------------------------------------------------------
def run_child(spec: Dict, workdir: pathlib.Path, threads: int, limit_mb: float,
              timeout_s: float, name: str) -> Dict:
    """Run ``spec`` in ``python -m benchmarks.worker``; never raises for the child's failures.

    The child is killed (status ``out_of_memory``) when its RSS passes
    ``limit_mb`` or the machine's available memory falls under 256 MB, and
    (status ``timeout``) after ``timeout_s``.
    """
    import psutil

    spec_path = workdir / f"{name}.spec.json"
    result_path = workdir / f"{name}.result.json"
    spec_path.write_text(json.dumps(spec))
    result_path.unlink(missing_ok=True)
    env = dict(os.environ)
    env.update(measure.blas_thread_env(threads))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    log_path = workdir / f"{name}.log"
    with open(log_path, "w") as log:
        child = subprocess.Popen([sys.executable, "-m", "benchmarks.worker", str(spec_path), str(result_path)],
                                 env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
        proc = psutil.Process(child.pid)
        start = time.monotonic()
        killed: Optional[Dict] = None
        max_rss = 0
        while child.poll() is None:
            try:
                rss = proc.memory_info().rss
            except psutil.Error:
                rss = 0
            max_rss = max(max_rss, rss)
            available = psutil.virtual_memory().available
            if rss > limit_mb * MB or available < 256 * MB:
                why = (f"RSS reached {rss / MB:.0f} MB, over the limit of {limit_mb:.0f} MB"
                       if rss > limit_mb * MB else
                       f"the machine ran low on memory ({available / MB:.0f} MB available) at RSS {rss / MB:.0f} MB")
                killed = {"status": "out_of_memory", "message": f"stopped: {why}"}
            elif time.monotonic() - start > timeout_s:
                killed = {"status": "timeout", "message": f"stopped after {timeout_s:.0f} s"}
            if killed:
                child.kill()
                child.wait()
                break
            time.sleep(0.02)
    if killed:
        killed["child_max_rss_mb"] = round(max_rss / MB, 1)
        return killed
    if result_path.exists():
        return json.loads(result_path.read_text())
    tail = log_path.read_text(errors="replace")[-600:].strip() if log_path.exists() else ""
    code = child.returncode
    if code is not None and code < 0:
        sig = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        status = "out_of_memory" if -code == signal.SIGKILL else "crashed"
        last = " ".join(tail[-200:].split())
        return {"status": status, "message": f"the benchmark process died of {sig}"
                + (" (the kernel's OOM killer?)" if status == "out_of_memory" else "") + f"; log: ...{last}"}
    if "MemoryError" in tail or "std::bad_alloc" in tail:
        return {"status": "out_of_memory", "message": tail[-300:]}
    return {"status": "error", "message": f"exit code {code}: {tail}"}


# ----------------------------------------------------------------------------
# the plan
# ----------------------------------------------------------------------------
def _csv(text: str) -> List[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Latency and peak RAM of isp_tf models at FullHD/12MP/32MP with LiteRT (XNNPACK), "
                    "each configuration in a fresh process, against the classical renderer, rawpy and "
                    "reference .tflite files; or on an Android phone over adb.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", default=DEFAULT_MODEL,
                   help="comma-separated registry names; NAME:small for the tiny variant")
    p.add_argument("--small", action="store_true", help="use every model's tiny variant")
    p.add_argument("--weights", action="append", default=[], metavar="[NAME=]PATH",
                   help="weights file (repeatable); NAME=PATH with several models. Random init otherwise "
                        "(speed and memory do not depend on the weights)")
    p.add_argument("--precisions", default="fp32,int8", help="comma-separated: fp32, fp16, int8")
    p.add_argument("--resolutions", default="fullhd,12mp,32mp",
                   help=f"comma-separated output sizes: {', '.join(FRAME_SIZES)} or HxW (e.g. 160x160)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for LiteRT and BLAS")
    p.add_argument("--runs", type=int, default=5, help="timed runs per configuration (after warm-up)")
    p.add_argument("--warmup", type=int, default=0,
                   help="untimed runs after the first one (the first run is always untimed: reported as first_s)")
    p.add_argument("--tile", default=None, metavar="auto|N",
                   help="also run tiled: core side N in packed input pixels (rounded up to the model's core "
                        "step, MicroISP: 81), or auto: the core python -m isp_tf.infer picks (sized for the threads and the "
                        "L2 cache, within --tile-budget-mb; see python -m benchmarks.tile_sweep)")
    p.add_argument("--tile-storage", default="float32", choices=("float32", "float16"),
                   help="how tiled runs keep float tensors between segments (int8 models keep int8)")
    p.add_argument("--store-budget-mb", type=float, default=None, metavar="MB",
                   help="tiled runs: memory the tensors kept between segments may take at once; over it, "
                        "the cheapest of them are recomputed from earlier ones instead of kept (exact; "
                        "more MACs; default: keep them all)")
    p.add_argument("--tile-models", default=None, metavar="M1,M2",
                   help="run tiled only for these --models entries (default: all of them)")
    p.add_argument("--tile-budget-mb", type=float, default=300.0,
                   help="memory budget of one tile's activations for --tile auto (its core: "
                        "isp_tf.tiling.planner.cache_core, by the threads and the L2 cache, within this)")
    p.add_argument("--modes", default=None,
                   help="comma-separated whole,tiled (default: whole, plus tiled when --tile is given)")
    p.add_argument("--runtime", default="xnnpack",
                   help="comma-separated LiteRT CPU runtimes: xnnpack (default interpreter), "
                        "xnnpack-transient (indirection buffers rebuilt per run: far less memory), builtin "
                        "(no delegate)")
    p.add_argument("--reference", action="append", default=[], metavar="FILE.tflite",
                   help="a reference .tflite taking a packed (1,h,w,4) frame (resized), e.g. "
                        f"{DEFAULT_REFERENCE}")
    p.add_argument("--baselines", default="classical,rawpy",
                   help="comma-separated: classical, rawpy; 'none' for no baseline")
    p.add_argument("--max-memory-mb", type=float, default=None,
                   help="kill a configuration past this RSS (default: available memory minus 1 GB)")
    p.add_argument("--timeout-s", type=float, default=1800.0, help="per-configuration time limit")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="do not run a configuration whose latency a smaller frame of it predicts above this "
                        "(seconds per frame, scaled by pixels); recorded as not run with the prediction")
    p.add_argument("--workdir", default=None, help="keep models, logs and outputs here (default: a temp dir)")
    p.add_argument("--json", required=True, metavar="OUT.json", help="write the records here")
    p.add_argument("--markdown", metavar="OUT.md", help="also write a markdown table")
    p.add_argument("--plot", metavar="OUT.png", help="also plot latency and peak RAM vs megapixels")
    adb = p.add_argument_group("Android phone over adb (instead of the local CPU)")
    adb.add_argument("--adb", action="store_true", help="run on a phone with TFLite's benchmark_model")
    adb.add_argument("--serial", default=None, help="adb device serial (when several are attached)")
    adb.add_argument("--benchmark-binary", default=None, metavar="PATH",
                     help="TFLite's benchmark_model built for Android (pushed to /data/local/tmp)")
    adb.add_argument("--delegate", default="nnapi", choices=("nnapi", "gpu", "cpu"),
                     help="benchmark_model delegate")
    return p


def machine_info(threads: int) -> Dict:
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "logical_cpus": psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2 ** 30, 1),
        "threads": threads,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
    }
    for module in ("ai_edge_litert", "numpy", "rawpy"):
        try:
            from importlib.metadata import version

            info[module] = version(module.replace("_", "-")) if module != "ai_edge_litert" else version("ai-edge-litert")
        except Exception:  # noqa: BLE001 - informative only
            pass
    return info


def _precision_of(path) -> str:
    """fp32 / fp16 / int8 of a .tflite, from the dtype of its convolution weights."""
    from isp_tf.export.flatbuffer import read_tflite

    graph = read_tflite(str(path))
    dtypes = {op.inputs[1].dtype for op in graph.operators
              if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and op.inputs[1] is not None}
    if dtypes & {"int8", "uint8"}:
        return "int8"
    if "float16" in dtypes or any(op.name == "DEQUANTIZE" for op in graph.operators):
        return "fp16"
    return "fp32"


class Harness:
    """Holds the plan of one ``benchmarks.run`` call and runs it."""

    def __init__(self, args, workdir: pathlib.Path):
        import psutil

        self.args = args
        self.workdir = workdir
        self.threads = int(args.threads)
        available = psutil.virtual_memory().available / MB
        self.limit_mb = float(args.max_memory_mb) if args.max_memory_mb else max(512.0, available - 1024.0)
        self.records: List[Dict] = []
        self.bytes_per_px: Dict[tuple, float] = {}  # (series) -> peak bytes per output pixel
        self.seconds_per_px: Dict[tuple, tuple] = {}  # (series) -> (s per output pixel, measured s, MP)
        self.machine = machine_info(self.threads)
        self.gemm: Dict[int, float] = {}
        self._count = 0

    # -- helpers ---------------------------------------------------------------
    def child(self, spec: Dict, tag: str) -> Dict:
        self._count += 1
        return run_child(spec, self.workdir, self.threads, self.limit_mb, self.args.timeout_s,
                         f"{self._count:03d}_{tag}")

    def measure_gemm(self):
        for threads in sorted({1, self.threads}):
            spec = {"kind": "gemm", "n": 1024, "seconds": 1.0}
            res = run_child(spec, self.workdir, threads, self.limit_mb, 300, f"gemm_{threads}t")
            self.gemm[threads] = round(float(res.get("gflops", 0.0)), 1)
        self.machine["gemm_peak_gflops_1_thread"] = self.gemm.get(1)
        self.machine[f"gemm_peak_gflops_{self.threads}_threads"] = self.gemm.get(self.threads)

    def add(self, base: Dict, result: Dict) -> Dict:
        record = dict(base)
        record.update({k: v for k, v in result.items() if k not in ("traceback",)})
        record.setdefault("status", "error")
        macs = record.pop("macs", None)
        if macs is not None:
            record["gmacs"] = round(macs / 1e9, 4)
        nonzero = record.pop("macs_nonzero", None)
        if nonzero is not None:
            record["gmacs_nonzero"] = round(nonzero / 1e9, 4)
        useful = record.get("gmacs_nonzero") or record.get("gmacs")
        if record.get("status") == "ok" and useful and record.get("median_s"):
            record["gflops"] = round(2 * useful / record["median_s"], 2)
            peak = self.gemm.get(self.threads)
            if peak:
                record["peak_fraction"] = round(record["gflops"] / peak, 3)
        for key in ("median_s", "p90_s", "first_s", "init_s", "min_s", "mean_s"):
            if isinstance(record.get(key), float):
                record[key] = round(record[key], 6)
        for key in ("median_s", "p90_s", "peak_rss_mb", "size_bytes", "gmacs"):
            record.setdefault(key, None)
        self.records.append(record)
        return record

    def predicted_oom(self, series: tuple, hw) -> Optional[str]:
        slow = self.predicted_slow(series, hw)
        if slow:
            return slow
        per_px = self.bytes_per_px.get(series)
        if per_px is None:
            return None
        if per_px == float("inf"):
            return "not run: a smaller frame of this configuration already ran out of memory"
        estimate = per_px * hw[0] * hw[1] / MB
        if estimate > self.limit_mb:
            return (f"not run: a smaller run of this configuration predicts {estimate:.0f} MB, over the "
                    f"limit of {self.limit_mb:.0f} MB")
        return None

    def predicted_slow(self, series: tuple, hw) -> Optional[str]:
        limit = getattr(self.args, "max_seconds", None)
        known = self.seconds_per_px.get(series)
        if not limit or known is None:
            return None
        estimate = known[0] * hw[0] * hw[1]
        if estimate > limit:
            return (f"not run: a smaller run of this configuration predicts {estimate:.1f} s, over --max-seconds "
                    f"{limit:g} (measured {known[1]:.2f} s at {known[2]:.1f} MP, scaled by pixels)")
        return None

    def learn(self, series: tuple, hw, record: Dict):
        if record.get("status") == "ok" and record.get("median_s"):  # the largest frame measured
            mp = hw[0] * hw[1] / 1e6
            if mp >= self.seconds_per_px.get(series, (0.0, 0.0, 0.0))[2]:
                self.seconds_per_px[series] = (record["median_s"] / (hw[0] * hw[1]), record["median_s"], mp)
        elif record.get("status") == "timeout":  # a lower bound: larger frames are slower still
            limit = float(self.args.timeout_s)
            self.seconds_per_px[series] = (limit / (hw[0] * hw[1]), limit, hw[0] * hw[1] / 1e6)
        if record.get("status") == "ok" and record.get("peak_rss_mb"):
            per_px = record["peak_rss_mb"] * MB / (hw[0] * hw[1])
            self.bytes_per_px[series] = max(per_px, self.bytes_per_px.get(series, 0.0))
        elif record.get("status") == "out_of_memory":
            self.bytes_per_px[series] = float("inf")


# ----------------------------------------------------------------------------
# tiled runs: the harness's side of isp_tf.tiling
# ----------------------------------------------------------------------------
#: more statistics passes than this and the manifest holds segments only (PyNET: 97 passes, each a model
#: file; the segment executor the worker runs needs none of them)
MAX_PASSES = 8


def prepare_tiling(choice, model_in_hw, tile, workdir, exported_whole, budget_mb: float = 300.0,
                   threads: int = 2) -> Dict:
    """What a worker needs to run ``choice`` tiled on a frame of ``model_in_hw`` (packed px).

    Analyses the Keras model's tiling variant (:func:`isp_tf.tiling.analysis.analyze`),
    writes the tile manifest and pass models of the exported ``.tflite``
    (:func:`isp_tf.tiling.manifest.write_manifest`, once per export) and picks
    the core: ``tile="auto"`` (:func:`isp_tf.tiling.planner.cache_core` for
    ``threads``, capped to tiles whose activations fit ``budget_mb``, the core
    ``python -m isp_tf.infer`` runs) or a core side in packed pixels
    (rounded up to the core step).  The worker plans and runs the tiles with
    :class:`isp_tf.tiling.tflite_executor.TiledSession`.
    """
    import dataclasses

    from benchmarks import models as bm
    from isp_tf.tiling.analysis import analyze
    from isp_tf.tiling.manifest import read_manifest, segment_halo, write_manifest
    from isp_tf.tiling.planner import cache_core, round_core

    from isp_tf.models import get_spec

    if get_spec(choice.name).split is not None and choice.direction in (None, "forward"):
        return _prepare_split_tiling(choice, model_in_hw, tile, workdir, exported_whole, budget_mb, threads)
    footprint = analyze(bm.build(choice, tiling=True), choice.spec_direction.size_multiple)
    exported_whole = pathlib.Path(exported_whole)
    manifest_path = pathlib.Path(workdir) / f"{exported_whole.stem}_stats_io.tiling.json"
    if not manifest_path.exists():
        write_manifest(exported_whole, footprint.geometry, manifest_path, core=footprint.core_step,
                       source={"model": choice.label}, max_passes=MAX_PASSES)
    manifest = read_manifest(manifest_path)
    align = int(manifest["geometry"]["align"])
    h, w = int(model_in_hw[0]), int(model_in_hw[1])
    if tile == "auto":  # the boxes the segment executor reads: core + 2 of the largest segment halo
        halo = segment_halo(manifest, footprint.halo)
        core = cache_core(dataclasses.replace(footprint, align=align, halo=halo), threads,
                          budget_bytes=budget_mb * 2 ** 20, frame_hw=(h, w))
    else:
        core = round_core(int(tile), footprint.core_step)
    return {"manifest": str(manifest_path), "core": core, "halo": footprint.halo, "align": align,
            "passes": len(manifest["passes"]), "output_scale": footprint.output_scale, "frame_hw": [h, w]}


def _prepare_split_tiling(choice, model_in_hw, tile, workdir, exported_whole, budget_mb: float = 300.0,
                          threads: int = 2) -> Dict:
    """A model with ``ModelSpec.split`` (GenISP): ``export --tile`` writes its tileable part, the
    per-frame part and the manifest (the export's own path); the worker runs it from the manifest."""
    from isp_tf.export.convert import export_tflite
    from isp_tf.tiling.manifest import manifest_path, read_manifest
    from isp_tf.tiling.planner import round_core

    precision = "int8" if "int8" in pathlib.Path(exported_whole).stem else (
        "fp16" if "fp16" in pathlib.Path(exported_whole).stem else "fp32")
    d = choice.spec_direction
    out = pathlib.Path(workdir) / f"{choice.label}_{precision}_tile.tflite"
    if not manifest_path(out).exists():
        export_tflite(choice.name, str(out), precision=precision, tile=512 * d.output_scale,
                      weights=choice.weights, small=choice.small, allow_cpu_fallback=True, parity=False,
                      progress=False, log=lambda *a, **k: None)
    manifest = read_manifest(manifest_path(out))
    if "per_frame" not in manifest:
        raise IspTfError(f"{choice.label}: the tile export wrote no per-frame part "
                         f"({manifest.get('source', {})})")
    geometry = manifest["geometry"]
    if tile == "auto":  # sized for the caches like every other model: on the split's tileable part
        import dataclasses

        from benchmarks import models as bm
        from isp_tf.layers import tiling_mode
        from isp_tf.models import get_spec
        from isp_tf.tiling.analysis import analyze
        from isp_tf.tiling.planner import cache_core

        with tiling_mode():
            render = get_spec(choice.name).split(bm.build(choice, tiling=True))[1]
        footprint = analyze(render, d.size_multiple)
        core = cache_core(dataclasses.replace(footprint, align=int(geometry["align"])), threads,
                          budget_bytes=budget_mb * 2 ** 20, frame_hw=tuple(int(v) for v in model_in_hw))
    else:
        core = round_core(int(tile), int(geometry["core_step"]))
    return {"manifest": str(manifest_path(out)), "core": core, "halo": int(geometry["halo"]),
            "align": int(geometry["align"]), "passes": len(manifest["segments"]),
            "output_scale": d.output_scale, "frame_hw": [int(model_in_hw[0]), int(model_in_hw[1])]}


# ----------------------------------------------------------------------------
# local runs
# ----------------------------------------------------------------------------
def run_local(args, harness: Harness, choices, resolutions, precisions, modes, runtimes, progress):
    from benchmarks import models as bm

    workdir = harness.workdir
    exported: Dict[tuple, pathlib.Path] = {}
    def model_file(choice, precision):
        """One export per model and precision, traced at the smallest frame and resized by the
        workers; a model whose fixed-shape graph cannot be resized is exported with free sizes (so is one
        that runs tiled: its segments run at tile sizes)."""
        key = (choice, precision)
        if key not in exported:
            d = choice.spec_direction
            mult, scale = d.size_multiple, d.output_scale
            h, w = resolutions[0][1]
            trace_hw = (round_up(h // scale, mult), round_up(w // scale, mult))
            path = bm.export(choice, precision, workdir / f"{choice.label}_{precision}.tflite", trace_hw)
            if (len(resolutions) > 1 or "tiled" in modes) and not bm.resizable(path, trace_hw, mult, scale):
                path = bm.export(choice, precision, path, trace_hw, dynamic=True)
            exported[key] = path
        return exported[key]

    for label, hw in resolutions:
        in_hw = (hw[0] // 2, hw[1] // 2)
        base_res = {"resolution": list(hw), "resolution_label": label, "megapixels": round(megapixels(hw), 2),
                    "threads": harness.threads}
        # baselines
        for baseline in args.baseline_list:
            base = dict(base_res, model=baseline, precision="fp32" if baseline == "classical" else "uint16",
                        mode="whole", runtime="numpy" if baseline == "classical" else "libraw",
                        kind="baseline")
            series = ("baseline", baseline)
            why = harness.predicted_oom(series, hw)
            if why:
                harness.add(base, {"status": _not_run_status(why), "message": why})
            else:
                spec = {"kind": baseline, "output_hw": list(hw), "runs": args.runs, "warmup": args.warmup}
                if baseline == "rawpy":
                    spec["dng_path"] = str(_dng_for(workdir, hw))
                rec = harness.add(base, harness.child(spec, f"{baseline}_{label}"))
                harness.learn(series, hw, rec)
            progress.update(1)
        # references
        for ref in args.reference:
            ref_path = pathlib.Path(ref)
            precision = _precision_of(ref_path)
            for runtime in runtimes:
                base = dict(base_res, model=f"ref:{ref_path.stem}", precision=precision, mode="whole",
                            runtime=runtime, kind="reference", size_bytes=ref_path.stat().st_size,
                            model_input_hw=list(in_hw))
                series = ("ref", str(ref_path), runtime)
                why = harness.predicted_oom(series, hw)
                if why:
                    harness.add(base, {"status": _not_run_status(why), "message": why})
                else:
                    spec = {"kind": "tflite", "model_path": str(ref_path), "input_hw": list(in_hw),
                            "threads": harness.threads, "runs": args.runs, "warmup": args.warmup,
                            "runtime": runtime}
                    rec = harness.add(base, harness.child(spec, f"ref_{ref_path.stem}_{label}_{runtime}"))
                    harness.learn(series, hw, rec)
                progress.update(1)
        # our models
        for choice in choices:
            d = choice.spec_direction
            model_in = (round_up(hw[0] // d.output_scale, d.size_multiple),
                        round_up(hw[1] // d.output_scale, d.size_multiple))
            for precision in precisions:
                try:
                    path = model_file(choice, precision)
                except IspTfError:
                    raise
                except Exception as exc:  # a conversion failure is a result, not a crash
                    for mode in modes:
                        for runtime in runtimes:
                            harness.add(dict(base_res, model=choice.label, precision=precision, mode=mode,
                                             runtime=runtime, kind="model"),
                                        {"status": "error", "message": f"export failed: {exc}"})
                            progress.update(1)
                    continue
                for runtime in runtimes:
                    whole_out = workdir / f"whole_{choice.label}_{precision}_{label}_{runtime}.npy"
                    for mode in modes:
                        if mode == "tiled" and args.tile_models and choice.label not in args.tile_models:
                            continue
                        base = dict(base_res, model=choice.label, precision=precision, mode=mode,
                                    runtime=runtime, kind="model", size_bytes=path.stat().st_size,
                                    model_input_hw=list(model_in))
                        series = ("model", choice, precision, runtime, mode)
                        why = (harness.predicted_oom(series, hw) if mode == "whole"
                               else harness.predicted_slow(series, hw))
                        if why:
                            harness.add(base, {"status": _not_run_status(why), "message": why})
                            progress.update(1)
                            continue
                        spec = {"kind": "tflite", "model_path": str(path), "input_hw": list(model_in),
                                "threads": harness.threads, "runs": args.runs, "warmup": args.warmup,
                                "runtime": runtime, "mode": mode, "output_scale": d.output_scale,
                                "channels": d.image_input.channels, "vectors": per_frame_vectors(d)}
                        if mode == "whole":
                            if "tiled" in modes and (not args.tile_models or choice.label in args.tile_models):
                                spec["save_output"] = str(whole_out)
                        else:
                            try:
                                spec["tiling"] = prepare_tiling(choice, model_in, args.tile, workdir,
                                                                exported_whole=path,
                                                                budget_mb=args.tile_budget_mb,
                                                                threads=harness.threads)
                            except IspTfError as exc:
                                harness.add(base, {"status": "error", "message": str(exc)})
                                progress.update(1)
                                continue
                            spec["tiling"]["storage"] = args.tile_storage
                            spec["tiling"]["store_budget_mb"] = args.store_budget_mb
                            base["tile"] = spec["tiling"]["core"]
                            spec["compare_to"] = str(whole_out)
                        rec = harness.add(base, harness.child(
                            spec, f"{choice.label}_{precision}_{label}_{mode}_{runtime}"))
                        harness.learn(series, hw, rec)
                        progress.update(1)
                    whole_out.unlink(missing_ok=True)


def per_frame_vectors(direction) -> Dict[str, list]:
    """``{port name: values}`` for every per-frame vector input of ``direction``: the port's own
    ``from_raw`` of the synthetic scene's RAW (what inference feeds), else zeros."""
    from benchmarks.scene import synthetic_raw

    vectors = {}
    for port in direction.inputs[1:]:
        if port.from_raw is not None:
            vectors[port.name] = [float(v) for v in np.ravel(port.from_raw(synthetic_raw(64, 64)))]
        else:
            vectors[port.name] = [0.0] * int(port.channels)
    return vectors


def _not_run_status(why: str) -> str:
    """``not_run`` for a configuration predicted too slow, ``out_of_memory`` for one predicted too big."""
    return "not_run" if "--max-seconds" in why else "out_of_memory"


def _dng_for(workdir: pathlib.Path, hw) -> pathlib.Path:
    from benchmarks.scene import synthetic_raw
    from isp_tf.raw import write_dng

    path = workdir / f"synthetic_{hw[0]}x{hw[1]}.dng"
    if not path.exists():
        raw = synthetic_raw(*hw)
        write_dng(path, raw.bayer, raw)
    return path


# ----------------------------------------------------------------------------
# adb runs
# ----------------------------------------------------------------------------
def run_adb(args, harness: Harness, choices, resolutions, precisions, progress):
    from benchmarks import models as bm
    from benchmarks.adb import AdbBenchmark
    from benchmarks.macs import file_macs
    from isp_tf.models import get_spec

    bench = AdbBenchmark(args.benchmark_binary, serial=args.serial)
    serial = bench.connect()
    harness.machine = {"device_serial": serial, "delegate": args.delegate, "threads": harness.threads,
                       "device_model": bench.shell("getprop ro.product.model", check=False).strip() or None,
                       "android_sdk": bench.shell("getprop ro.build.version.sdk", check=False).strip() or None,
                       "date": harness.machine.get("date")}
    for label, hw in resolutions:
        in_hw = (hw[0] // 2, hw[1] // 2)
        for choice in choices:
            model_in = tuple(round_up(v, get_spec(choice.name).size_multiple) for v in in_hw)
            for precision in precisions:
                base = {"model": choice.label, "precision": precision, "resolution": list(hw),
                        "resolution_label": label, "megapixels": round(megapixels(hw), 2), "mode": "whole",
                        "runtime": f"benchmark_model/{args.delegate}", "kind": "model",
                        "threads": harness.threads, "model_input_hw": list(model_in)}
                path = harness.workdir / f"{choice.label}_{precision}_{model_in[0]}x{model_in[1]}.tflite"
                try:  # NNAPI needs fixed shapes: one export per size, integer I/O for INT8
                    bm.export(choice, precision, path, model_in, io="auto")
                except IspTfError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    harness.add(base, {"status": "error", "message": f"export failed: {exc}"})
                    progress.update(1)
                    continue
                parsed = bench.run(path, delegate=args.delegate, threads=harness.threads)
                result = {
                    "status": parsed["status"], "message": parsed.get("message"),
                    "command": parsed["command"], "size_bytes": path.stat().st_size,
                    "init_s": _us(parsed["init_us"]), "first_s": _us(parsed["first_us"]),
                    "median_s": _us(parsed["median_us"] if parsed["median_us"] is not None else parsed["avg_us"]),
                    "mean_s": _us(parsed["avg_us"]), "p90_s": None,
                    "peak_rss_mb": parsed["peak_mb"] if parsed["peak_mb"] is not None else parsed["overall_mb"],
                    "macs": file_macs(path), "fully_delegated": parsed["fully_delegated"],
                    "adb": {k: v for k, v in parsed.items() if k not in ("command", "status", "message")},
                }
                harness.add(base, result)
                progress.update(1)


def _us(value):
    return None if value is None else float(value) / 1e6


# ----------------------------------------------------------------------------
def _check_reference(ref) -> None:
    """Refuse a --reference the worker could not run: not a .tflite, a custom op, no packed 4-channel input."""
    from isp_tf.export.flatbuffer import read_tflite

    graph = read_tflite(str(ref))  # ExportError names the file for a damaged one
    custom = sorted({op.name for op in graph.operators if op.name.startswith("CUSTOM:")})
    if custom:
        raise IspTfError(f"{ref}: custom op(s) {', '.join(custom)}, which LiteRT cannot run without their kernels")
    shape = graph.inputs[0].shape if graph.inputs else ()
    if len(graph.inputs) != 1 or len(shape) != 4 or shape[-1] != 4:
        got = ", ".join(str(tuple(t.shape)) for t in graph.inputs) or "none"
        raise IspTfError(f"{ref}: a reference must take one packed (1, h, w, 4) Bayer frame; its inputs: {got}")


def main(argv=None) -> int:
    from isp_tf.cli import run_command

    parser = build_parser()
    args = parser.parse_args(argv)
    return run_command(lambda: _main(args, argv))


def _main(args, argv) -> int:
    from tqdm import tqdm

    from benchmarks import models as bm
    from isp_tf.runtime.session import RUNTIMES

    if args.threads < 1 or args.runs < 1 or args.warmup < 0:
        raise IspTfError("--threads and --runs must be >= 1 and --warmup >= 0")
    resolutions = sorted((parse_resolution(r) for r in _csv(args.resolutions)), key=lambda r: r[1][0] * r[1][1])
    if not resolutions:
        raise IspTfError("--resolutions needs at least one size")
    precisions = _csv(args.precisions)
    for p in precisions:
        if p not in bm.PRECISIONS:
            raise IspTfError(f"unknown precision {p!r}; choose from {', '.join(bm.PRECISIONS)}")
    runtimes = _csv(args.runtime)
    for r in runtimes:
        if r not in RUNTIMES:
            raise IspTfError(f"unknown runtime {r!r}; choose from {', '.join(RUNTIMES)}")
    modes = _csv(args.modes) if args.modes else (["whole", "tiled"] if args.tile else ["whole"])
    for m in modes:
        if m not in ("whole", "tiled"):
            raise IspTfError(f"unknown mode {m!r}; choose whole and/or tiled")
    if args.store_budget_mb is not None and args.store_budget_mb < 0:
        raise IspTfError(f"--store-budget-mb must be 0 or more, got {args.store_budget_mb}")
    if "tiled" in modes and not args.tile:
        raise IspTfError("--modes tiled needs --tile auto|N")
    if args.tile not in (None, "auto"):
        try:
            if int(args.tile) < 1:
                raise ValueError
        except ValueError:
            raise IspTfError(f"--tile must be 'auto' or a positive number of packed pixels, got {args.tile!r}")
    args.baseline_list = [] if args.baselines.strip().lower() == "none" else _csv(args.baselines)
    for b in args.baseline_list:
        if b not in ("classical", "rawpy"):
            raise IspTfError(f"unknown baseline {b!r}; choose classical, rawpy or none")
    for ref in args.reference:
        if not pathlib.Path(ref).is_file():
            from isp_tf.errors import MissingFileError

            raise MissingFileError(f"{ref}: reference .tflite not found")
        _check_reference(ref)
    for out in (args.json, args.markdown, args.plot):
        if out and not pathlib.Path(out).resolve().parent.is_dir():
            raise IspTfError(f"{out}: its folder does not exist")
    choices = bm.parse_models(args.models, small=args.small, weights=args.weights)
    if args.tile_models:
        labels = {c.label for c in bm.parse_models(args.tile_models, small=args.small)}
        unknown = labels - {c.label for c in choices}
        if unknown:
            raise IspTfError(f"--tile-models {', '.join(sorted(unknown))} not in --models")
        args.tile_models = labels

    command = "python -m benchmarks.run " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    tmp = None
    if args.workdir:
        workdir = pathlib.Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="isp_tf_bench_")
        workdir = pathlib.Path(tmp.name)
    try:
        harness = Harness(args, workdir)
        if args.adb:
            total = len(resolutions) * len(choices) * len(precisions)
            with tqdm(total=total, desc="adb benchmark", unit="config") as progress:
                run_adb(args, harness, choices, resolutions, precisions, progress)
        else:
            tiled_choices = len(args.tile_models) if args.tile_models else len(choices)
            per_res = (len(args.baseline_list) + len(args.reference) * len(runtimes)
                       + (len(choices) * ("whole" in modes) + tiled_choices * ("tiled" in modes))
                       * len(precisions) * len(runtimes))
            with tqdm(total=len(resolutions) * per_res, desc="benchmark", unit="config") as progress:
                harness.measure_gemm()
                run_local(args, harness, choices, resolutions, precisions, modes, runtimes, progress)
        harness.machine["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
        result = {"schema": 1, "command": command, "machine": harness.machine, "records": harness.records,
                  "notes": _notes(harness)}
        write_outputs(result, args)
    finally:
        if tmp is not None:
            tmp.cleanup()
    bad = [r for r in harness.records if r.get("status") != "ok"]
    print(f"{len(harness.records)} configurations, {len(bad)} not ok; results in {args.json}", file=sys.stderr)
    return 0


def _notes(harness) -> List[str]:
    notes = [
        "peak_rss_mb: the most the process's RSS rose above its baseline (imports done, input frame made), "
        "max of ru_maxrss and a 2 ms psutil sampler; each configuration ran in a fresh process.",
        "median_s / p90_s: one whole frame (input copy, inference, output copy; tiled: all tiles of all passes) "
        f"over {harness.args.runs} runs after {1 + harness.args.warmup} untimed one(s) (first_s: the first run); "
        "the machine's load average at start and end is in the machine line: other processes share the CPU.",
        "gmacs: conv / transposed conv / depthwise / fully-connected MACs counted from the .tflite (tiled: every "
        "tile of every pass); gmacs_nonzero counts only products with a non-zero weight (the merged MicroISP's "
        "zero blocks excluded); GFLOP/s = 2 x gmacs_nonzero / median; % of GEMM peak against numpy fp32 "
        "matmul with the same threads, measured at the start of the run.",
    ]
    return notes


def write_outputs(result: Dict, args) -> None:
    from benchmarks import report
    from isp_tf.utils import atomic_write

    with atomic_write(args.json, "w") as f:
        json.dump(result, f, indent=1, default=_jsonable)
    if args.markdown:
        with atomic_write(args.markdown, "w") as f:
            f.write(report.markdown(result))
    if args.plot:
        report.plot(result["records"], args.plot)


def _jsonable(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pathlib.Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


if __name__ == "__main__":
    sys.exit(main())
