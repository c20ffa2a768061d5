"""Decode + classical render time per megapixel, against rawpy's own postprocess.

    python -m benchmarks.decode_speed                        # the shared samples
    python -m benchmarks.decode_speed photo1.NEF photo2.dng --repeat 5 --json out.json

For each RAW file LibRaw reads, times (median of ``--repeat`` runs, after one
warm-up) :func:`isp_tf.raw.read_raw`, :func:`isp_tf.raw.render_classical`,
their sum, and ``rawpy.imread(...).postprocess(...)`` with the settings the
classical renderer mirrors (camera WB, linear demosaic, sRGB, no
auto-brightening, 16-bit output). Prints a markdown table in ms per
megapixel of the visible sensor area. Single process, this machine's CPU;
numpy and LibRaw use as many threads as they like.

Exit status: 0 ok, 2 bad input (no files, unreadable file).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_SAMPLES = pathlib.Path(os.environ.get("ISP_TF_RAW_SAMPLES",
                                              REPO.parent / "shared" / "raw_samples"))
#: extensions skipped when a folder is given: headerless dumps and documents
SKIP_SUFFIXES = {".raw", ".md", ".txt", ".json", ".png", ".jpg", ".jpeg"}


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _median_seconds(fn, repeat, clock="wall"):
    """Median time of ``repeat`` calls after one warm-up (file cache, imports, allocator).

    ``clock="cpu"`` counts this process's CPU time (all threads), which a busy
    shared machine distorts less than wall time.
    """
    now = CLOCKS[clock]
    fn()
    times = []
    for _ in range(repeat):
        t0 = now()
        fn()
        times.append(now() - t0)
    return statistics.median(times)


def rawpy_render(path):
    import rawpy

    with rawpy.imread(str(path)) as rp:
        return rp.postprocess(
            use_camera_wb=True, no_auto_bright=True, output_color=rawpy.ColorSpace.sRGB,
            demosaic_algorithm=rawpy.DemosaicAlgorithm.LINEAR, adjust_maximum_thr=0,
            gamma=(2.4, 12.92), output_bps=16, user_flip=0)


def measure(path, repeat, clock="wall"):
    """One row of the table: timings in seconds and ms per megapixel."""
    from isp_tf.raw import read_raw, render_classical

    raw = read_raw(path)
    mp = raw.height * raw.width / 1e6
    t_read = _median_seconds(lambda: read_raw(path), repeat, clock)
    t_render = _median_seconds(lambda: render_classical(raw), repeat, clock)
    t_rawpy = _median_seconds(lambda: rawpy_render(path), repeat, clock)
    return {
        "file": pathlib.Path(path).name, "height": raw.height, "width": raw.width,
        "megapixels": round(mp, 3), "read_raw_s": t_read, "render_s": t_render,
        "ours_total_s": t_read + t_render, "rawpy_postprocess_s": t_rawpy,
        "read_raw_ms_per_mp": 1e3 * t_read / mp, "render_ms_per_mp": 1e3 * t_render / mp,
        "ours_total_ms_per_mp": 1e3 * (t_read + t_render) / mp,
        "rawpy_ms_per_mp": 1e3 * t_rawpy / mp,
        "ratio_ours_to_rawpy": (t_read + t_render) / t_rawpy,
    }


def markdown_table(rows) -> str:
    head = ("| file | size | MP | read_raw ms/MP | render ms/MP | ours total ms/MP "
            "| rawpy postprocess ms/MP | ours / rawpy |")
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['file']} | {r['height']}x{r['width']} | {r['megapixels']:.2f} "
            f"| {r['read_raw_ms_per_mp']:.1f} | {r['render_ms_per_mp']:.1f} "
            f"| {r['ours_total_ms_per_mp']:.1f} | {r['rawpy_ms_per_mp']:.1f} "
            f"| {r['ratio_ours_to_rawpy']:.2f} |")
    return "\n".join(lines)


def find_files(inputs):
    files = []
    for item in inputs:
        p = pathlib.Path(item)
        if p.is_dir():
            files += sorted(f for f in p.iterdir()
                            if f.is_file() and f.suffix.lower() not in SKIP_SUFFIXES)
        else:
            files.append(p)
    return files


def build_parser():
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.decode_speed",
        description="Time read_raw + render_classical per megapixel against rawpy's "
                    "postprocess and print a markdown table.")
    ap.add_argument("inputs", nargs="*", default=[str(DEFAULT_SAMPLES)],
                    help="RAW files or folders (default: %(default)s; headerless .raw dumps "
                         "in folders are skipped)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="timed runs per measurement, the median is kept (default: 3)")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="wall: elapsed time; cpu: this process's CPU time, steadier on a busy "
                         "machine (default: %(default)s)")
    ap.add_argument("--json", metavar="OUT", help="also write the rows as JSON to OUT")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from tqdm import tqdm

    from isp_tf.errors import IspTfError
    from isp_tf.utils import atomic_write

    if args.repeat < 1:
        print("error: --repeat must be at least 1", file=sys.stderr)
        return 2
    files = find_files(args.inputs)
    missing = [str(f) for f in files if not f.exists()]
    if missing or not files:
        print(f"error: no RAW files found ({', '.join(missing) or ', '.join(args.inputs)})",
              file=sys.stderr)
        return 2
    rows = []
    try:
        for f in tqdm(files, desc="decode_speed", unit="file", file=sys.stderr):
            rows.append(measure(f, args.repeat, args.clock))
    except IspTfError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(markdown_table(rows))
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{args.clock} clock, median of {args.repeat} runs; MP = visible sensor area.")
    if args.json:
        with atomic_write(args.json, "w") as fh:
            json.dump({"repeat": args.repeat, "clock": args.clock, "cpus": os.cpu_count(),
                       "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    if __package__ in (None, ""):  # run as a script: make the repo importable
        sys.path.insert(0, str(REPO))
    sys.exit(main())
