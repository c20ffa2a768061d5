"""The one table of every figure README.md states.

Each :class:`Figure` holds the exact text the README prints (``text``, found
there by :func:`isp_tf.figures.check.readme_lines`), the value that text
states, the tolerance a recomputation may differ by, and how it is
recomputed: a *measurement group* of :mod:`isp_tf.figures.measure` and the
field of its result.  The README and the checker cannot disagree silently:
a figure whose text is no longer in the README is reported as drifted, and
so is one whose recomputed value is off by more than its tolerance.

Kinds (``Figure.kind``, from the group):

``cheap``
    recomputed by ``--check`` (seconds to a few minutes on a 2-core CPU).
``committed``
    expensive to rerun (benchmark latencies and memory, hours of training):
    compared with the committed results file it was copied from, not rerun.
``expensive``
    rerun only with ``--check --full`` (a training run of minutes to tens of
    minutes); skipped, and said so, otherwise.
``test``
    a bound the README promises that a test asserts; ``field`` is
    ``"path::text"``, the test file and the assertion it must still contain
    (``tolerance``: the bound the test asserts, at most a small margin from
    the stated figure).

Tolerances: the recomputations are deterministic on one machine (same
seeds, same data), so most tolerances only cover the printed rounding plus
float summation order across machines and library versions (e.g. +-0.02 dB
for a figure printed with two decimals); INT8 figures get more (+-0.3 dB),
because the converter's calibration can round a range differently across
TensorFlow versions.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple


@dataclasses.dataclass(frozen=True)
class Figure:
    """One figure of the README.

    Attributes:
      key: unique name, ``group.field`` style (what ``--only`` matches).
      text: the exact README text that states it (must occur in README.md).
      value: the value that text states, in ``unit``.
      tolerance: largest allowed ``|recomputed - value|`` (for ``test``: the bound).
      group: the measurement of :data:`isp_tf.figures.measure.GROUPS` that recomputes it.
      field: the key of the group's result holding the recomputed value.
      unit: for display.
      scale: the recomputed field is multiplied by this before comparing (e.g. 1/1000 for KB).
    """

    key: str
    text: str
    value: float
    tolerance: float
    group: str
    field: str
    unit: str = ""
    scale: float = 1.0


def _f(key, text, value, tolerance, group, field, unit="", scale=1.0) -> Figure:
    return Figure(key, text, float(value), float(tolerance), group, field, unit, scale)


_BENCH = "bench"  # benchmarks/results/cpu_2threads.json


def _bench_cell(key, text, seconds, mb, record, s_tol=0.005, mb_tol=0.5) -> Tuple[Figure, ...]:
    """A 'latency s, RSS MB' cell of the README's benchmark table."""
    return (_f(f"bench.{key}.median_s", text, seconds, s_tol, _BENCH, f"{record}.median_s", "s"),
            _f(f"bench.{key}.peak_rss_mb", text, mb, mb_tol, _BENCH, f"{record}.peak_rss_mb", "MB"))


FIGURES: Tuple[Figure, ...] = (
    # --- model sizes -------------------------------------------------------------------------------
    _f("params.pynet", "47,548,170 parameters", 47_548_170, 0, "params", "pynet"),
    _f("params.invisp", "1,413,760 parameters", 1_413_760, 0, "params", "invisp"),
    _f("params.genisp", "116,015 parameters", 116_015, 0, "params", "genisp"),
    _f("params.invisp_small", "26K parameters", 26, 0.5, "params", "invisp_small", "K", 1e-3),
    # --- RAW reading ---------------------------------------------------------------------------------
    _f("raw.classical_vs_libraw", "at 75.6 dB PSNR on the colour-chart DNG", 75.6, 0.05,
       "classical_vs_libraw", "psnr_db", "dB"),
    # --- MicroISP reference weights: training record and held-out evaluation -----------------------
    _f("microisp_record.steps", "recipe (5000 steps, 30 min;", 5000, 0, "records", "microisp.steps", "steps"),
    _f("microisp_record.minutes", "recipe (5000 steps, 30 min;", 30, 0.5, "records", "microisp.minutes", "min"),
    _f("microisp_eval.model_psnr", "| MicroISP (reference weights) | 23.65 |", 23.65, 0.02, "microisp_eval",
       "model_psnr", "dB"),
    _f("microisp_eval.model_ssim", "| 23.65 | 0.757 | 16 |", 0.757, 0.002, "microisp_eval", "model_ssim"),
    _f("microisp_eval.classical_psnr", "| 19.49 | 0.492 | 16 |", 19.49, 0.02, "microisp_eval",
       "classical_psnr", "dB"),
    _f("microisp_eval.classical_ssim", "| 19.49 | 0.492 | 16 |", 0.492, 0.002, "microisp_eval",
       "classical_ssim"),
    _f("microisp_eval.images", "| 23.65 | 0.757 | 16 |", 16, 0, "microisp_eval", "images", "images"),
    # --- InvISP small ------------------------------------------------------------------------------------
    _f("invisp_record.steps", "(26K parameters, 2,400 steps, 10 min", 2400, 0, "records", "invisp.steps", "steps"),
    _f("invisp_eval.rgb_psnr", "| InvISP small | 22.14 | 31.61 |", 22.14, 0.02, "invisp_eval", "rgb_psnr", "dB"),
    _f("invisp_eval.raw_psnr", "| InvISP small | 22.14 | 31.61 |", 31.61, 0.02, "invisp_eval", "raw_psnr", "dB"),
    _f("invisp_eval.classical_rgb_psnr", "| 19.07 | 34.83 |", 19.07, 0.02, "invisp_eval", "classical_rgb_psnr",
       "dB"),
    _f("invisp_eval.classical_raw_psnr", "| 19.07 | 34.83 |", 34.83, 0.02, "invisp_eval",
       "classical_roundtrip_raw_psnr", "dB"),
    _f("invisp_eval.images", "| held-out (8 images) |", 8, 0, "invisp_eval", "images", "images"),
    # --- export with the authors' MicroISP weights, FullHD, parity on the Canon D30 CRW -------------
    _f("official_export.fp32_kb", "FP32 131.9 KB", 131.9, 0.05, "official_export", "fp32_bytes", "KiB", 1 / 1024),
    _f("official_export.fp32_max_abs", "abs error under 2e-6 against Keras", 1e-6, 1e-6, "official_export",
       "fp32_max_abs_error"),
    _f("official_export.fp16_psnr", "FP16 79.5 dB", 79.5, 0.1, "official_export", "fp16_psnr_db", "dB"),
    _f("official_export.int8_psnr", "INT8 post-training 36.6 dB", 36.6, 0.3, "official_export", "int8_psnr_db",
       "dB"),
    # --- INT8 of the reference weights at 512x512 on the colour chart ---------------------------------
    _f("ptq.vs_fp32", "| post-training quantization | 34.28 dB |", 34.28, 0.3, "ptq", "vs_fp32_db", "dB"),
    _f("ptq.vs_reference", "| 34.28 dB | 34.28 dB |", 34.28, 0.3, "ptq", "vs_reference_db", "dB"),
    _f("qat.vs_fp32", "ranges calibrated first) | 37.18 dB |", 37.18, 0.3, "qat", "vs_fp32_db", "dB"),
    _f("qat.vs_reference", "| 37.18 dB | 34.30 dB |", 34.30, 0.3, "qat", "vs_reference_db", "dB"),
    # --- GenISP low-light experiment --------------------------------------------------------------------
    *(_f(f"genisp_lowlight.{row}.{metric}", f"{text} | {' | '.join(values)} |", float(values[i]), 0.01,
         "genisp_lowlight", f"{name}.{metric}")
      for row, text, name, values in (
          ("well_exposed", "| well-exposed sRGB (upper reference)", "detector(well-exposed sRGB) [reference]",
           ("0.763", "0.899", "0.854")),
          ("classical", "| classical render of the dark RAW", "detector(classical render(raw))",
           ("0.150", "0.249", "0.202")),
          ("rawpy", "| rawpy render of the dark DNG", "detector(rawpy render(DNG))", ("0.109", "0.223", "0.100")),
          ("genisp", "| GenISP(dark RAW)", "detector(GenISP(raw))", ("0.706", "0.843", "0.816")))
      for i, metric in enumerate(("AP", "AP50", "AP75"))),
    # --- benchmarks (committed: benchmarks/results/cpu_2threads.json, the README's table) ------------------
    *_bench_cell("fp32_plain_whole.fullhd", "| 0.51 s, 1853 MB, **1.01x**", 0.51, 1853, "microisp/fp32/whole/fullhd"),
    _f("bench.fp32_plain_whole.12mp.predicted_mb", "not run (predicted 10723 MB > 9000 MB)", 10723, 0.5, _BENCH,
       "microisp/fp32/whole/12mp.predicted_mb", "MB"),
    *_bench_cell("fp32_merged_whole.fullhd", "| 0.26 s, 737 MB, **2.00x** ref. speed at 36% of its RSS", 0.26, 737,
                 "microisp-merged/fp32/whole/fullhd"),
    *_bench_cell("fp32_merged_whole.12mp", "| 1.77 s, 4200 MB |", 1.77, 4200, "microisp-merged/fp32/whole/12mp"),
    _f("bench.fp32_merged_whole.32mp.predicted_mb", "not run (predicted 11367 MB > 9000 MB)", 11367, 0.5, _BENCH,
       "microisp-merged/fp32/whole/32mp.predicted_mb", "MB"),
    *_bench_cell("fp32_merged_tiled.fullhd", "| 0.75 s, 400 MB, max abs 4.8e-07", 0.75, 400,
                 "microisp-merged/fp32/tiled/fullhd"),
    *_bench_cell("fp32_merged_tiled.12mp", "| 2.75 s, 934 MB, max abs 8.9e-07", 2.75, 934,
                 "microisp-merged/fp32/tiled/12mp"),
    *_bench_cell("fp32_merged_tiled.32mp", "| 6.81 s, 1516 MB, not compared", 6.81, 1516,
                 "microisp-merged/fp32/tiled/32mp"),
    *_bench_cell("int8_merged_whole.fullhd", "| 0.56 s, 690 MB, **0.91x**", 0.56, 690, "microisp-merged/int8/whole/fullhd"),
    *_bench_cell("int8_merged_tiled.fullhd", "| 0.84 s, 184 MB, exact", 0.84, 184, "microisp-merged/int8/tiled/fullhd"),
    *_bench_cell("int8_merged_tiled.12mp", "| 4.44 s, 515 MB, exact", 4.44, 515, "microisp-merged/int8/tiled/12mp"),
    *_bench_cell("int8_merged_tiled.32mp", "| 10.91 s, 1073 MB, not compared", 10.91, 1073,
                 "microisp-merged/int8/tiled/32mp"),
    # "exact" only where the tiled output was compared with the whole frame (32 MP: "not compared")
    _f("bench.tiled_max_abs.fp32.fullhd", "| 0.75 s, 400 MB, max abs 4.8e-07", 4.8e-7, 0.05e-7, _BENCH,
       "microisp-merged/fp32/tiled/fullhd.max_abs_diff_vs_whole", "max abs"),
    _f("bench.tiled_max_abs.fp32.12mp", "| 2.75 s, 934 MB, max abs 8.9e-07", 8.9e-7, 0.05e-7, _BENCH,
       "microisp-merged/fp32/tiled/12mp.max_abs_diff_vs_whole", "max abs"),
    _f("bench.tiled_exact.int8.fullhd", "| 0.84 s, 184 MB, exact", 0, 0, _BENCH,
       "microisp-merged/int8/tiled/fullhd.max_abs_diff_vs_whole", "max abs"),
    _f("bench.tiled_exact.int8.12mp", "| 4.44 s, 515 MB, exact", 0, 0, _BENCH,
       "microisp-merged/int8/tiled/12mp.max_abs_diff_vs_whole", "max abs"),
    _f("bench.not_compared.fp32.32mp", "| 6.81 s, 1516 MB, not compared", 0, 0, _BENCH,
       "microisp-merged/fp32/tiled/32mp.compared", "comparisons"),
    _f("bench.not_compared.int8.32mp", "| 10.91 s, 1073 MB, not compared", 0, 0, _BENCH,
       "microisp-merged/int8/tiled/32mp.compared", "comparisons"),
    *_bench_cell("reference_whole.fullhd", "| 0.51 s, 2042 MB |", 0.51, 2042, "ref:MicroISP/fp32/whole/fullhd"),
    _f("bench.reference_whole.12mp.predicted_mb", "not run (predicted 11819 MB > 9000 MB)", 11819, 0.5, _BENCH,
       "ref:MicroISP/fp32/whole/12mp.predicted_mb", "MB"),
    *_bench_cell("classical.fullhd", "| 0.09 s, 135 MB |", 0.09, 135, "classical/fp32/whole/fullhd"),
    *_bench_cell("rawpy.fullhd", "| 0.09 s, 49 MB |", 0.09, 49, "rawpy/uint16/whole/fullhd"),
    *_bench_cell("classical.12mp", "| 1.14 s, 767 MB |", 1.14, 767, "classical/fp32/whole/12mp"),
    *_bench_cell("rawpy.12mp", "| 0.51 s, 198 MB |", 0.51, 198, "rawpy/uint16/whole/12mp"),
    *_bench_cell("classical.32mp", "| 2.58 s, 2043 MB |", 2.58, 2043, "classical/fp32/whole/32mp"),
    *_bench_cell("rawpy.32mp", "| 1.34 s, 490 MB |", 1.34, 490, "rawpy/uint16/whole/32mp"),
    _f("bench.merged_speedup.plain", "FullHD latency from 0.51 s to 0.26 s", 0.51, 0.005, _BENCH,
       "microisp/fp32/whole/fullhd.median_s", "s"),
    _f("bench.merged_speedup.merged", "FullHD latency from 0.51 s to 0.26 s", 0.26, 0.005, _BENCH,
       "microisp-merged/fp32/whole/fullhd.median_s", "s"),
    _f("bench.transient_fullhd_mb", "176 MB at FullHD", 176, 0.5, "bench_runtimes",
       "microisp/fp32/whole/fullhd/xnnpack-transient.peak_rss_mb", "MB"),
    # --- bounds that tests assert: "path::text the test must contain" (the bound, as the test writes it)
    _f("bound.tiled_equals_whole", "<= 1e-4, tested)", 1e-4, 1e-4, "tests",
       "tests/tiling/test_keras_tiling.py::TOL = 1e-4"),
    _f("bound.android_tiled", "3.9e-6 of Keras", 3.9e-6, 1e-5, "tests",
       "tests/android/test_android_core.py::err <= 1e-5"),
    _f("bound.diffjpeg_libjpeg", "within 0.2 dB of libjpeg", 0.2, 0.15, "tests",
       "tests/layers/test_diffjpeg.py::max(abs(v) for v in gaps.values()) < 0.15"),
    _f("bound.invisp_inverse", "inverse to 2e-6", 2e-6, 2e-6, "tests",
       "tests/models/test_invisp.py::(model(x)), x) < 2e-6"),
    _f("bound.classical_vs_libraw", "at 75.6 dB PSNR on the colour-chart DNG", 75.6, 75.5, "tests",
       "tests/raw/test_raw_render.py::psnr(ours, ref) > 75.5"),
)


def figure(key: str) -> Optional[Figure]:
    return next((f for f in FIGURES if f.key == key), None)
