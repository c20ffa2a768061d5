"""The markdown table and the PNG plot of a benchmark's records."""
from __future__ import annotations

import io
import math
from typing import Dict, Iterable, List, Optional


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
    ("psnr_vs_whole_db", "PSNR vs whole dB", 1),
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
        return f"{value}: {str(record['message'])[:80]}".replace("|", "/")
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
    """Latency and peak RAM against megapixels, one line per model + precision (+mode)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from isp_tf.utils import atomic_path

    series: Dict[str, List[Dict]] = {}
    for r in records:
        if r.get("status") != "ok" or r.get("median_s") is None:
            continue
        series.setdefault(series_label(r), []).append(r)
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.8))
    for label, rs in sorted(series.items()):
        rs = sorted(rs, key=lambda r: r["megapixels"])
        mp = [r["megapixels"] for r in rs]
        style = "--" if rs[0].get("kind") == "baseline" else ("-." if rs[0].get("kind") == "reference" else "-")
        ax_t.plot(mp, [r["median_s"] for r in rs], style, marker="o", label=label)
        ax_m.plot(mp, [r.get("peak_rss_mb") or 0 for r in rs], style, marker="o", label=label)
    for ax, title, unit in ((ax_t, "median latency", "s"), (ax_m, "peak RSS above baseline", "MB")):
        ax.set_xlabel("output megapixels")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.set_xscale("log")
        ax.set_yscale("log")
    if series:
        ax_m.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
