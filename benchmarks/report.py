"""The markdown table and the PNG plot of a benchmark's records."""
from __future__ import annotations

import io
import math
import re
from typing import Dict, Iterable, List


def _fmt(value, digits=3, unit=""):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "inf" if isinstance(value, float) and value == float("inf") else "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def series_label(record: Dict) -> str:
    """One line of the plot: model + precision (+ mode / runtime when not the default)."""
    label = f"{record['model']} {record['precision']}"
    if record.get("mode", "whole") != "whole":
        label += f" tiled{record.get('tile') or ''}"
    if record.get("runtime") not in (None, "xnnpack"):
        label += f" [{record['runtime']}]"
    return label


COLUMNS = (
    ("model", "model", None), ("precision", "prec.", None), ("resolution", "output", None),
    ("mode", "mode", None), ("runtime", "runtime", None), ("status", "status", None),
    ("median_s", "median s", 3), ("p90_s", "p90 s", 3), ("min_s", "min s", 3), ("first_s", "first s", 3),
    ("init_s", "init s", 2), ("peak_rss_mb", "peak RSS MB", 0), ("size_bytes", "size KB", None),
    ("gmacs", "GMAC", "g"), ("gmacs_nonzero", "GMAC non-zero", "g"), ("gflops", "GFLOP/s", 1), ("peak_fraction", "% of GEMM peak", None),
    ("mac_ratio_vs_whole", "MACs / whole", 2), ("psnr_vs_whole_db", "vs whole frame", 1),
    ("fully_delegated", "fully delegated", None),
    ("speedup_vs_reference", "x faster than ref.", 2), ("memory_vs_reference", "RSS / ref.", 2),
)


def with_reference_ratios(records: Iterable[Dict]) -> List[Dict]:
    """Copies of ``records``, each model row given ``speedup_vs_reference`` (the reference's median over
    this row's) and ``memory_vs_reference`` (this row's peak RSS over the reference's), against the
    reference ``.tflite`` (``--reference``, e.g. the authors' MicroISP) timed in the same run at the same
    frame size, threads and runtime; none where it did not run."""
    records = [dict(r) for r in records]
    refs = {(r.get("resolution_label"), r.get("threads"), r.get("runtime")): r for r in records
            if r.get("kind") == "reference" and r.get("status") == "ok" and r.get("median_s")}
    for r in records:
        ref = refs.get((r.get("resolution_label"), r.get("threads"), r.get("runtime")))
        if r.get("kind") == "model" and ref and r.get("status") == "ok" and r.get("median_s"):
            r["speedup_vs_reference"] = round(ref["median_s"] / r["median_s"], 2)
            if r.get("peak_rss_mb") and ref.get("peak_rss_mb"):
                r["memory_vs_reference"] = round(r["peak_rss_mb"] / ref["peak_rss_mb"], 2)
    return records


def mode_label(record: Dict) -> str:
    """``whole``, or ``tiled C (N tiles x S segments)`` (every op once: the segment executor) /
    ``(N tiles x P passes)`` (the pass executor, which recomputes)."""
    if record.get("mode") != "tiled" or not record.get("tiles"):
        return str(record.get("mode", "whole"))
    if record.get("segments"):
        storage = f", {record['storage']} stores" if record.get("storage") not in (None, "float32") else ""
        if record.get("recomputed"):
            storage += f", {len(record['recomputed'])} stores recomputed"
        return f"tiled {record.get('tile')} ({record['tiles']} tiles x {record['segments']} segments{storage})"
    return f"tiled {record.get('tile')} ({record['tiles']} tiles x {record.get('passes', 1)} passes)"


def comparison(record: Dict) -> str:
    """How the tiled output compares with the whole frame: ``exact`` (bit-equal), the max abs
    difference, or ``not compared`` (no whole frame ran)."""
    diff = record.get("max_abs_diff_vs_whole")
    if record.get("mode") != "tiled" or record.get("status") != "ok":
        return "–"
    if diff is None:
        return "not compared"
    return "exact" if diff == 0 else f"max abs {diff:.1e}"


def status_label(record: Dict) -> str:
    """``ok``; ``not run (predicted ...)`` for configurations a smaller run ruled out; else the status."""
    value = record.get("status")
    message = " ".join(str(record.get("message") or "").split())
    if value == "ok":
        return "ok"
    if message.startswith("not run"):
        mb = re.search(r"predicts (\d+) MB, over the limit of (\d+) MB", message)
        sec = re.search(r"predicts ([\d.]+) s, over --max-seconds ([\d.]+)", message)
        if mb:
            return f"not run (predicted {mb[1]} MB > {mb[2]} MB)"
        if sec:
            return f"not run (predicted {sec[1]} s > {sec[2]} s)"
        return f"not run ({message[len('not run: '):][:70]})"
    return f"{value}: {message[:80]}".replace("|", "/")


def _cell(record, key, digits):
    value = record.get(key)
    if key == "resolution" and value:
        return f"{value[0]}x{value[1]} ({value[0] * value[1] / 1e6:.1f} MP)"
    if key == "size_bytes" and value:
        return f"{value / 1024:.0f}"
    if key == "psnr_vs_whole_db":
        return comparison(record)
    if key == "peak_fraction" and value is not None:
        return f"{100 * value:.0f}%"
    if key == "mode":
        return mode_label(record)
    if key == "status":
        return status_label(record)
    if digits == "g" and isinstance(value, (int, float)):
        return f"{value:.3g}"
    if digits is not None and isinstance(value, (int, float)):
        return _fmt(float(value), digits)
    return _fmt(value)


def markdown(result: Dict) -> str:
    """A markdown document: machine, command, one table row per record."""
    out = io.StringIO()
    machine = result.get("machine", {})
    out.write("# isp_tf benchmark\n\n")
    if result.get("command"):
        out.write(f"Command: `{result['command']}`\n\n")
    if machine:
        parts = [f"{k}: {'/'.join(map(str, v)) if isinstance(v, list) else v}" for k, v in machine.items()
                 if not isinstance(v, dict)]
        out.write("Machine: " + "; ".join(parts) + "\n\n")
    records = with_reference_ratios(result.get("records", []))
    shown = [c for c in COLUMNS if any(r.get(c[0]) is not None for r in records)
             or (c[0] == "psnr_vs_whole_db" and any(r.get("mode") == "tiled" for r in records))]
    out.write("| " + " | ".join(c[1] for c in shown) + " |\n")
    out.write("|" + "|".join("---" for _ in shown) + "|\n")
    for record in records:
        out.write("| " + " | ".join(_cell(record, key, digits) for key, _, digits in shown) + " |\n")
    notes = result.get("notes")
    if notes:
        out.write("\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    return out.getvalue()


def plot(records: Iterable[Dict], path) -> None:
    """Latency and peak RAM against megapixels, one line per model + precision (+ mode, runtime).

    Baselines are dashed, reference models dash-dotted; a configuration that
    ran out of memory is an ``x`` on the top edge of the memory panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    from isp_tf.utils import atomic_path

    records = list(records)
    series: Dict[str, List[Dict]] = {}
    for r in records:
        if r.get("status") == "ok" and r.get("median_s") is not None:
            series.setdefault(series_label(r), []).append(r)
    oom = [r for r in records if r.get("status") == "out_of_memory"]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(13, 5.2))
    colours = plt.get_cmap("tab20").colors
    markers = "os^Dv<>p*h"
    for k, (label, rs) in enumerate(sorted(series.items())):
        rs = sorted(rs, key=lambda r: r["megapixels"])
        mp = [r["megapixels"] for r in rs]
        kind = rs[0].get("kind")
        style = dict(linestyle="--" if kind == "baseline" else ("-." if kind == "reference" else "-"),
                     marker=markers[k % len(markers)], color=colours[k % len(colours)], label=label)
        ax_t.plot(mp, [r["median_s"] for r in rs], **style)
        ax_m.plot(mp, [max(r.get("peak_rss_mb") or 0, 1) for r in rs], **style)
    if oom:
        top = max([r.get("peak_rss_mb") or 0 for rs in series.values() for r in rs] + [1]) * 1.3
        ax_m.scatter([r["megapixels"] for r in oom], [top] * len(oom), marker="x", color="red",
                     label="out of memory (not measured)", zorder=5)
    ticks = sorted({round(r["megapixels"], 1) for r in records if r.get("megapixels")})
    for ax, title, unit in ((ax_t, "median latency per frame", "seconds"),
                            (ax_m, "peak RSS above the process baseline", "MB")):
        ax.set_xlabel("output megapixels")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        if ticks:
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_major_formatter(ScalarFormatter())
    handles, labels = ax_m.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    rows = -(-len(handles) // 3)
    fig.tight_layout(rect=(0, min(0.45, 0.045 * rows + 0.02), 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def compact_markdown(result: Dict) -> str:
    """A short table for a README: model, precision, frame, mode, runtime, median/min s, peak RSS."""
    lines = ["| model | prec. | output | mode | runtime | median s | min s | peak RSS MB | MACs / whole | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result.get("records", []):
        mode = mode_label(r)
        if r.get("status") != "ok":
            note = status_label(r)
        elif r.get("mode") == "tiled":
            note = f"{comparison(r)} vs whole"
        else:
            note = ""
        label = r.get("resolution_label") or "x".join(map(str, r.get("resolution", [])))
        lines.append(" | ".join([
            f"| {r.get('model')}", str(r.get("precision")), label, mode, str(r.get("runtime")),
            _fmt(r.get("median_s"), 2), _fmt(r.get("min_s"), 2), _fmt(r.get("peak_rss_mb"), 0),
            _fmt(r.get("mac_ratio_vs_whole"), 2), note]) + " |")
    return "\n".join(lines) + "\n"


def _readme_cell(r: Dict) -> str:
    if r is None:
        return "–"
    if r.get("status") != "ok":
        return status_label(r)
    cell = f"{r['median_s']:.2f} s, {r['peak_rss_mb']:.0f} MB"
    if r.get("mode") == "tiled":
        cell += f", {comparison(r)}"
        if r.get("mac_ratio_vs_whole"):
            cell += f", {r['mac_ratio_vs_whole']:.2f}x MACs"
    if r.get("speedup_vs_reference"):
        cell += f", **{r['speedup_vs_reference']:.2f}x** ref. speed"
        if r.get("memory_vs_reference"):
            cell += f" at {100 * r['memory_vs_reference']:.0f}% of its RSS"
    return cell


def readme_table(result: Dict) -> str:
    """The README's table: one row per model / precision / mode (/ runtime), one column per frame size;
    cells ``median s, peak RSS MB`` (+ for tiled rows: the comparison with the whole frame and the
    MACs against it; + the speed and memory against the reference where it ran at that size),
    or ``not run (predicted ...)``."""
    records = with_reference_ratios(result.get("records", []))
    sizes = list(dict.fromkeys(r.get("resolution_label") for r in records))
    rows: Dict[tuple, Dict[str, Dict]] = {}
    for r in records:
        key = (r["model"], r["precision"], r.get("mode", "whole"), r.get("runtime"))
        rows.setdefault(key, {})[r.get("resolution_label")] = r
    lines = ["| configuration | " + " | ".join(sizes) + " |", "|---|" + "---|" * len(sizes)]
    for (model, precision, mode, runtime), cells in rows.items():
        tiles = sorted({r["tile"] for r in cells.values() if r.get("tile")})
        mode = f"tiled {'/'.join(map(str, tiles))}".strip() if mode == "tiled" else mode
        label = f"{model} {precision}, {mode}" + (f" [{runtime}]" if runtime not in (None, "xnnpack") else "")
        lines.append(f"| {label} | " + " | ".join(_readme_cell(cells.get(s)) for s in sizes) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    """``python -m benchmarks.report RESULT.json [--plot OUT.png] [--full]``: re-render a result file."""
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(prog="python -m benchmarks.report",
                                     description="Print a benchmark JSON as markdown (compact by default).")
    parser.add_argument("json", help="a file written by python -m benchmarks.run --json")
    parser.add_argument("--full", action="store_true", help="every column, as --markdown writes")
    parser.add_argument("--readme", action="store_true", help="the README's table (one column per frame size)")
    parser.add_argument("--plot", metavar="OUT.png", help="also redraw the plot")
    args = parser.parse_args(argv)
    try:
        with open(args.json) as f:
            result = json.load(f)
    except (OSError, ValueError) as exc:
        print(f"error: {args.json}: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(markdown(result) if args.full else readme_table(result) if args.readme
                     else compact_markdown(result))
    if args.plot:
        plot(result.get("records", []), args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
