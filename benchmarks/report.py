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
    ("psnr_vs_whole_db", "PSNR vs whole dB", 1), ("fully_delegated", "fully delegated", None),
)


def _cell(record, key, digits):
    value = record.get(key)
    if key == "resolution" and value:
        return f"{value[0]}x{value[1]} ({value[0] * value[1] / 1e6:.1f} MP)"
    if key == "size_bytes" and value:
        return f"{value / 1024:.0f}"
    if key == "psnr_vs_whole_db" and value is None and record.get("max_abs_diff_vs_whole") == 0:
        return "exact"
    if key == "peak_fraction" and value is not None:
        return f"{100 * value:.0f}%"
    if key == "mode" and value == "tiled" and record.get("tiles"):
        return f"tiled {record.get('tile')} ({record['tiles']} tiles x {record.get('passes', 1)} passes)"
    if key == "status" and value not in (None, "ok") and record.get("message"):
        return f"{value}: {' '.join(str(record['message']).split())[:80]}".replace("|", "/")
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
    records = result.get("records", [])
    shown = [c for c in COLUMNS if any(r.get(c[0]) is not None for r in records)
             or (c[0] == "psnr_vs_whole_db" and any("max_abs_diff_vs_whole" in r for r in records))]
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
    lines = ["| model | prec. | output | mode | runtime | median s | min s | peak RSS MB | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result.get("records", []):
        mode = r.get("mode", "whole")
        if mode == "tiled" and r.get("tile"):
            mode = f"tiled {r['tile']} ({r.get('tiles', '?')} tiles x {r.get('passes', 1)} passes)"
        note = ""
        if r.get("status") != "ok":
            message = " ".join(str(r.get("message", "")).split())
            predicted = re.search(r"predicts (\d+|inf) MB, over the limit of (\d+) MB", message)
            if predicted and predicted[1] == "inf":
                message = "not run: a smaller frame already ran out of memory"
            elif predicted:
                message = f"not run: predicted {predicted[1]} MB > {predicted[2]} MB limit"
            note = f"{r.get('status')}: {message[:90]}".replace("|", "/")
        elif r.get("max_abs_diff_vs_whole") is not None:
            diff = r["max_abs_diff_vs_whole"]
            note = "exact vs whole" if diff <= 1e-5 else f"max diff {diff:.2g} vs whole"
        label = r.get("resolution_label") or "x".join(map(str, r.get("resolution", [])))
        lines.append(" | ".join([
            f"| {r.get('model')}", str(r.get("precision")), label, mode, str(r.get("runtime")),
            _fmt(r.get("median_s"), 2), _fmt(r.get("min_s"), 2), _fmt(r.get("peak_rss_mb"), 0), note]) + " |")
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
    parser.add_argument("--plot", metavar="OUT.png", help="also redraw the plot")
    args = parser.parse_args(argv)
    try:
        with open(args.json) as f:
            result = json.load(f)
    except (OSError, ValueError) as exc:
        print(f"error: {args.json}: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(markdown(result) if args.full else compact_markdown(result))
    if args.plot:
        plot(result.get("records", []), args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
