"""Tiled latency and peak RAM against tile size and thread count: the measurements behind ``--tile auto``.

::

    python -m benchmarks.tile_sweep --model microisp:merged --precision fp32 --resolution 12mp \\
        --cores 81,162,243,324,486,648 --threads 1,2 --json out.json --markdown out.md --plot out.png

One export, one tile manifest; then each (core side, threads) pair runs the
same frame through :class:`isp_tf.tiling.TiledSession` in a fresh
``benchmarks.worker`` process (as ``benchmarks.run`` does), and the table
puts beside each thread count the core :func:`isp_tf.tiling.planner.cache_core`
picks for this machine's caches, so the rule can be checked against what was
measured.  Latencies are comparable only within one run (a shared machine).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
from typing import Dict, List

from benchmarks.config import parse_resolution, round_up
from isp_tf.errors import IspTfError

DEFAULT_CORES = "81,162,243,324,486,648"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tile_sweep", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="microisp:merged", help="one benchmarks.run --models entry")
    p.add_argument("--weights", default=None, help="weights file (random init otherwise: speed does not "
                                                   "depend on the weights)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"))
    p.add_argument("--resolution", default="12mp", help="output size: fullhd, 12mp, 32mp or HxW")
    p.add_argument("--cores", default=DEFAULT_CORES,
                   help="comma-separated core sides in model-input px (rounded up to the core step)")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--storage", default="float16", choices=("float32", "float16"),
                   help="how float tensors are kept between segments")
    p.add_argument("--runs", type=int, default=3, help="timed runs per configuration")
    p.add_argument("--timeout-s", type=float, default=900.0, help="per-configuration time limit")
    p.add_argument("--workdir", default=None, help="keep the export and the logs here")
    p.add_argument("--from-json", default=None, metavar="IN.json",
                   help="measure nothing: rewrite the report of an earlier sweep with today's auto rule")
    p.add_argument("--json", required=True, metavar="OUT.json")
    p.add_argument("--markdown", default=None, metavar="OUT.md")
    p.add_argument("--plot", default=None, metavar="OUT.png")
    return p


def _ints(text: str, what: str) -> List[int]:
    try:
        values = [int(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        raise IspTfError(f"{what} must be comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise IspTfError(f"{what} must be positive, got {text!r}")
    return values


def sweep(args) -> Dict:
    import psutil

    from benchmarks import models as bm
    from benchmarks.run import machine_info, per_frame_vectors, prepare_tiling, run_child
    from isp_tf.tiling.analysis import analyze
    from isp_tf.tiling.planner import cpu_caches

    choices = bm.parse_models(args.model, weights=[args.weights] if args.weights else ())
    if len(choices) != 1:
        raise IspTfError(f"--model takes one model, got {args.model!r}")
    choice = choices[0]
    label, hw = parse_resolution(args.resolution)
    cores, thread_counts = _ints(args.cores, "--cores"), _ints(args.threads, "--threads")
    workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="isp_tf_tile_sweep_"))
    workdir.mkdir(parents=True, exist_ok=True)
    d = choice.spec_direction
    model_in = (round_up(hw[0] // d.output_scale, d.size_multiple), round_up(hw[1] // d.output_scale,
                                                                             d.size_multiple))
    path = bm.export(choice, args.precision, workdir / f"{choice.label}_{args.precision}.tflite", (256, 256))
    footprint = analyze(bm.build(choice, tiling=True), d.size_multiple)
    limit_mb = psutil.virtual_memory().available / 2 ** 20 - 1024
    records = []
    from tqdm import tqdm

    with tqdm(total=len(cores) * len(thread_counts), desc="tile sweep", unit="config") as progress:
        for threads in thread_counts:
            for core in cores:
                tiling = prepare_tiling(choice, model_in, core, workdir, exported_whole=path)
                tiling["storage"] = args.storage
                spec = {"kind": "tflite", "model_path": str(path), "input_hw": list(model_in), "threads": threads,
                        "runs": args.runs, "warmup": 0, "runtime": "xnnpack", "mode": "tiled",
                        "output_scale": d.output_scale, "channels": d.image_input.channels,
                        "vectors": per_frame_vectors(d), "tiling": tiling}
                res = run_child(spec, workdir, threads, limit_mb, args.timeout_s,
                                f"sweep_{threads}t_core{tiling['core']}")
                records.append({"threads": threads, "core": tiling["core"], "halo": tiling["halo"],
                                "status": res.get("status", "error"), "median_s": res.get("median_s"),
                                "min_s": res.get("min_s"), "peak_rss_mb": res.get("peak_rss_mb"),
                                "tiles": res.get("tiles"), "message": res.get("message"),
                                "segment_seconds": res.get("segment_seconds")})
                progress.update(1)
    caches = cpu_caches()
    return with_auto_picks({"command": "python -m benchmarks.tile_sweep " + " ".join(sys.argv[1:]),
            "machine": machine_info(max(thread_counts)), "model": choice.label, "precision": args.precision,
            "resolution": list(hw), "resolution_label": label, "model_input_hw": list(model_in),
            "storage": args.storage, "core_step": footprint.core_step, "halo": footprint.halo,
            "bytes_per_pixel": footprint.bytes_per_pixel, "cpu_caches": caches, "records": records})


def with_auto_picks(result: Dict) -> Dict:
    """``result`` with ``auto_core``: what :func:`isp_tf.tiling.planner.cache_core` picks per thread
    count for the sweep's model and caches (no memory cap: the sweep is about speed)."""
    from isp_tf.tiling.planner import Footprint, cache_core

    footprint = Footprint(halo=int(result["halo"]), radius=0.0, stride=1, core_step=int(result["core_step"]),
                          output_scale=2, groups=(), bytes_per_pixel=float(result["bytes_per_pixel"]))
    threads = sorted({int(r["threads"]) for r in result["records"]})
    picks = {str(t): cache_core(footprint, t, result["cpu_caches"], budget_bytes=float("inf")) for t in threads}
    return dict(result, auto_core=picks)


def best_cores(result: Dict) -> Dict[str, int]:
    """The measured fastest core per thread count."""
    best: Dict[str, tuple] = {}
    for r in result["records"]:
        if r["status"] == "ok" and r["median_s"]:
            key = str(r["threads"])
            if key not in best or r["median_s"] < best[key][0]:
                best[key] = (r["median_s"], r["core"])
    return {k: v[1] for k, v in best.items()}


def markdown(result: Dict) -> str:
    threads = sorted({r["threads"] for r in result["records"]})
    by = {(r["threads"], r["core"]): r for r in result["records"]}
    cores = sorted({r["core"] for r in result["records"]})
    best, auto = best_cores(result), result["auto_core"]
    m = result["machine"]
    lines = [f"# Tiled {result['model']} {result['precision']} at {result['resolution_label']} "
             f"({result['resolution'][0]}x{result['resolution'][1]}): latency against tile size and threads", "",
             f"Command: `{result['command']}`", "",
             f"Machine: {m.get('cpu')}, {m.get('logical_cpus')} logical CPUs, load average at start "
             f"{m.get('load_average_at_start')}; caches: "
             + ", ".join(f"{k} {v // 1024} KiB" for k, v in result["cpu_caches"].items()) + "; "
             f"halo {result['halo']} px, {result['bytes_per_pixel']:.0f} activation bytes per input px, "
             f"float stores {result['storage']}.", "",
             "| core px | tiles | " + " | ".join(f"{t} thread{'s' if t > 1 else ''}: median s / peak MB"
                                                for t in threads) + " |",
             "|---|---|" + "---|" * len(threads)]
    for core in cores:
        cells = []
        for t in threads:
            r = by.get((t, core))
            if r is None:
                cells.append("–")
            elif r["status"] != "ok":
                cells.append(r["status"])
            else:
                marks = [m for m, hit in (("**fastest**", best.get(str(t)) == core),
                                          ("auto", auto.get(str(t)) == core)) if hit]
                cells.append(" ".join([f"{r['median_s']:.2f} / {r['peak_rss_mb']:.0f}", *marks]))
        tiles = next((by[(t, core)].get("tiles") for t in threads if (t, core) in by), None)
        lines.append(f"| {core} | {tiles if tiles is not None else '–'} | " + " | ".join(cells) + " |")
    lines += ["", "- auto: the core `--tile auto` picks here (isp_tf.tiling.planner.cache_core) for that thread "
              "count; fastest: the measured minimum of this run."]
    for t in threads:
        key = str(t)
        if key in best and key in auto:
            b, a = by[(t, best[key])]["median_s"], by.get((t, auto[key]), {}).get("median_s")
            if a:
                lines.append(f"- {t} thread(s): auto {auto[key]} px takes {a:.2f} s, {a / b:.2f}x the fastest "
                             f"({best[key]} px, {b:.2f} s).")
    return "\n".join(lines) + "\n"


def plot(result: Dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for t in sorted({r["threads"] for r in result["records"]}):
        rows = sorted((r for r in result["records"] if r["threads"] == t and r["status"] == "ok"),
                      key=lambda r: r["core"])
        if not rows:
            continue
        line, = ax_t.plot([r["core"] for r in rows], [r["median_s"] for r in rows], "o-", label=f"{t} threads")
        ax_m.plot([r["core"] for r in rows], [r["peak_rss_mb"] for r in rows], "o-", color=line.get_color(),
                  label=f"{t} threads")
        pick = result["auto_core"].get(str(t))
        hit = [r for r in rows if r["core"] == pick]
        if hit:
            ax_t.plot([pick], [hit[0]["median_s"]], "*", ms=16, color=line.get_color(), label=f"auto, {t} threads")
    ax_t.set(xlabel="tile core side (model-input px)", ylabel="median s per frame",
             title=f"{result['model']} {result['precision']} {result['resolution_label']}")
    ax_m.set(xlabel="tile core side (model-input px)", ylabel="peak RSS MB", title="memory")
    for ax in (ax_t, ax_m):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    from isp_tf.cli import run_command
    from isp_tf.utils import atomic_write

    args = build_parser().parse_args(argv)

    def go():
        if args.from_json:
            with open(args.from_json) as f:
                result = with_auto_picks(json.load(f))
        else:
            result = sweep(args)
        with atomic_write(args.json, "w") as f:
            json.dump(result, f, indent=1)
        if args.markdown:
            with atomic_write(args.markdown, "w") as f:
                f.write(markdown(result))
        if args.plot:
            plot(result, args.plot)
        print(markdown(result))
        return 0

    return run_command(go)


if __name__ == "__main__":
    sys.exit(main())
