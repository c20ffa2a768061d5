"""benchmarks: MAC counting, memory/timing helpers, the child watchdog, the report.

No TensorFlow here: every test runs in a second or two.  Tile geometry and the
LiteRT tiling rewrite are tested with the library, in tests/tiling.
"""
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest

from benchmarks import macs, measure, report
from benchmarks.config import parse_resolution
from benchmarks.run import run_child
from isp_tf.errors import FrameSizeError
from isp_tf.runtime.frames import FRAME_SIZES

REPO = pathlib.Path(__file__).resolve().parents[2]

REFERENCE = pathlib.Path(__file__).resolve().parents[3] / "shared" / "reference_weights" / \
    "microisp_official" / "MicroISP.tflite"


def _need_reference(path: pathlib.Path = REFERENCE) -> pathlib.Path:
    """The reference .tflite: skip without it on a developer machine, *fail* under CI (``CI=true``)."""
    if not path.exists():
        msg = f"authors' MicroISP.tflite is missing: expected at {path} (../shared/reference_weights)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def test_missing_reference_fails_under_ci_and_skips_otherwise(tmp_path, monkeypatch):
    missing = tmp_path / "absent.tflite"
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="missing"):
        _need_reference(missing)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="missing"):
        _need_reference(missing)
    present = tmp_path / "present.tflite"
    present.write_bytes(b"x")
    monkeypatch.setenv("CI", "true")
    assert _need_reference(present) == present


# --- MACs ---------------------------------------------------------------------
def test_op_macs_of_each_counted_op():
    # conv 3x3, 4 -> 8 channels, output 1x10x20x8: 10*20*8 outputs x 3*3*4 MACs each
    assert macs.op_macs("CONV_2D", [(1, 10, 20, 4), (8, 3, 3, 4), (8,)], [(1, 10, 20, 8)]) == 1600 * 36
    # depthwise 3x3 over 6 channels
    assert macs.op_macs("DEPTHWISE_CONV_2D", [(1, 5, 5, 6), (1, 3, 3, 6)], [(1, 5, 5, 6)]) == 150 * 9
    # transpose conv: every input pixel scatters kh*kw*O
    assert macs.op_macs("TRANSPOSE_CONV", [(4,), (16, 2, 2, 32), (1, 7, 9, 32)], [(1, 14, 18, 16)]) == \
        7 * 9 * 32 * 2 * 2 * 16
    # fully connected: rows x units x depth
    assert macs.op_macs("FULLY_CONNECTED", [(3, 64), (10, 64)], [(3, 10)]) == 3 * 10 * 64
    assert macs.op_macs("BATCH_MATMUL", [(2, 5, 7), (2, 7, 3)], [(2, 5, 3)]) == 2 * 5 * 3 * 7
    assert macs.op_macs("PRELU", [(1, 10, 10, 4), (1, 1, 4)], [(1, 10, 10, 4)]) == 0
    assert macs.count_macs([("CONV_2D", [(1, 2, 2, 1), (1, 1, 1, 1)], [(1, 2, 2, 1)]),
                            ("ADD", [(1, 2, 2, 1)] * 2, [(1, 2, 2, 1)])]) == 4


def test_reference_microisp_macs_per_packed_pixel():
    _need_reference()
    # the authors' model: 6,957 MACs per packed pixel at 1500x2000 (41.7 GFLOP per 12 MP frame)
    assert macs.file_macs(REFERENCE) == 20_871_492_096
    # resized, the strided VALID attention convs make it not exactly proportional
    small = macs.tflite_macs(REFERENCE, [1, 162, 162, 4])
    assert 6900 * 162 * 162 < small < 7000 * 162 * 162


def test_macs_of_a_frame_too_large_for_tflites_own_conv_kernels():
    """TFLite's reference conv refuses an im2col over 2^31 elements (InvISP at 12 MP): the count is
    then made on a smaller frame of the same aspect and scaled by the pixel ratio."""
    from isp_tf._keras import keras, tf

    x = keras.Input((None, None, 64), batch_size=1)
    model = keras.Model(x, keras.layers.Conv2D(2, 3, padding="same", use_bias=False)(x))
    fn = tf.function(model, input_signature=[tf.TensorSpec([1, None, None, 64], tf.float32)])
    data = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], model).convert()
    h, w = 2000, 2400  # 2000 x 2400 x 9 x 64 im2col elements > 2^31
    assert macs.tflite_macs(data, [1, h, w, 64]) == pytest.approx(h * w * 9 * 64 * 2, rel=1e-3)


# --- sizes ------------------------------------------------------------------------
def test_parse_resolution():
    assert parse_resolution("12MP") == ("12mp", (3000, 4000))
    assert parse_resolution("fullhd") == ("fullhd", FRAME_SIZES["fullhd"])
    assert parse_resolution("4k") == ("4k", (2160, 3840))
    assert parse_resolution("160x320") == ("160x320", (160, 320))
    with pytest.raises(FrameSizeError, match="must be even"):
        parse_resolution("161x160")
    with pytest.raises(FrameSizeError, match="unknown frame size 'huge'"):
        parse_resolution("huge")


# --- measurement helpers ------------------------------------------------------------
def test_time_runs_counts_calls_and_orders_stats():
    calls = []
    stats = measure.time_runs(lambda: calls.append(1), runs=5, warmup=2)
    assert len(calls) == 1 + 2 + 5
    assert len(stats["runs_s"]) == 5
    assert stats["min_s"] <= stats["median_s"] <= stats["p90_s"]
    with pytest.raises(ValueError):
        measure.time_runs(lambda: None, runs=0)


_PEAK_OF_A_BLOCK = """
import json, time
import numpy as np
from benchmarks import measure
with measure.PeakRss() as peak:
    block = np.ones(48 * 1024 * 1024 // 8)  # 48 MB, every page touched
    time.sleep(0.1)  # many 2 ms sampling intervals
    del block
print(json.dumps(peak.result()))
"""


def test_peak_rss_sees_a_touched_allocation():
    # in a fresh process, as every benchmark configuration runs: a long-lived one (this test session)
    # may hand the block pages it already holds, and its RSS need not rise at all
    out = subprocess.run([sys.executable, "-c", _PEAK_OF_A_BLOCK], cwd=REPO, capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["peak_rss_mb"] >= 40
    assert result["peak_rss_sampled_mb"] <= result["peak_rss_mb"]


def test_blas_thread_env():
    env = measure.blas_thread_env(3)
    assert env["OPENBLAS_NUM_THREADS"] == env["OMP_NUM_THREADS"] == "3"


# --- the child process and its watchdog -------------------------------------------------
def test_child_over_the_memory_limit_is_reported_not_crashed(tmp_path):
    spec = {"kind": "classical", "output_hw": [2400, 2400], "runs": 1, "warmup": 0}
    result = run_child(spec, tmp_path, threads=1, limit_mb=60, timeout_s=120, name="oom")
    assert result["status"] == "out_of_memory"
    assert "over the limit of 60 MB" in result["message"]


def test_child_error_is_reported_with_its_message(tmp_path):
    spec = {"kind": "tflite", "model_path": str(tmp_path / "missing.tflite"), "input_hw": [8, 8]}
    result = run_child(spec, tmp_path, threads=1, limit_mb=4000, timeout_s=120, name="bad")
    assert result["status"] == "error"
    assert "missing.tflite" in result["message"]


def test_child_gemm_reports_gflops(tmp_path):
    result = run_child({"kind": "gemm", "n": 256, "seconds": 0.1}, tmp_path, threads=1, limit_mb=4000,
                       timeout_s=120, name="gemm")
    assert result["status"] == "ok" and result["gflops"] > 0.1


# --- report -------------------------------------------------------------------------
RECORDS = [
    {"model": "microisp", "precision": "fp32", "resolution": [1080, 1920], "megapixels": 2.07, "mode": "whole",
     "runtime": "xnnpack", "status": "ok", "median_s": 0.25, "p90_s": 0.3, "peak_rss_mb": 900.0,
     "size_bytes": 160000, "gmacs": 3.6, "kind": "model"},
    {"model": "microisp", "precision": "fp32", "resolution": [3000, 4000], "megapixels": 12.0, "mode": "whole",
     "runtime": "xnnpack", "status": "ok", "median_s": 1.5, "p90_s": 1.6, "peak_rss_mb": 5000.0,
     "size_bytes": 160000, "gmacs": 20.9, "kind": "model"},
    {"model": "microisp", "precision": "fp32", "resolution": [3000, 4000], "megapixels": 12.0, "mode": "tiled",
     "tile": 243, "tiles": 63, "passes": 5, "runtime": "xnnpack", "status": "ok", "median_s": 3.0,
     "p90_s": 3.1, "peak_rss_mb": 300.0, "psnr_vs_whole_db": None, "max_abs_diff_vs_whole": 0.0,
     "kind": "model"},
    {"model": "classical", "precision": "fp32", "resolution": [4896, 6528], "megapixels": 32.0, "mode": "whole",
     "runtime": "numpy", "status": "out_of_memory", "message": "stopped: RSS reached 900 MB", "kind": "baseline"},
]


def test_markdown_has_one_row_per_record():
    text = report.markdown({"command": "python -m benchmarks.run", "machine": {"cpu": "x"}, "records": RECORDS})
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + len(RECORDS)
    assert "3000x4000 (12.0 MP)" in text
    assert "tiled 243 (63 tiles x 5 passes)" in text
    assert "exact" in text
    assert "out_of_memory: stopped: RSS reached 900 MB" in text


def test_speed_and_memory_against_the_reference_where_it_ran():
    """The authors' file ran at FullHD only: model rows there get its speed and memory ratios, rows at
    12 MP (where it could not run) none; the README cell says both."""
    ref = {"model": "ref:MicroISP", "precision": "fp32", "resolution": [1080, 1920], "resolution_label": "fullhd",
           "mode": "whole", "runtime": "xnnpack", "threads": 2, "status": "ok", "median_s": 0.5,
           "peak_rss_mb": 2000.0, "kind": "reference"}
    records = [ref] + [dict(r, threads=2, resolution_label="fullhd" if r["megapixels"] < 3 else "12mp")
                       for r in RECORDS]
    rows = report.with_reference_ratios(records)
    assert (rows[1]["speedup_vs_reference"], rows[1]["memory_vs_reference"]) == (2.0, 0.45)
    assert all("speedup_vs_reference" not in r for r in rows[2:]) and "speedup_vs_reference" not in rows[0]
    assert "speedup_vs_reference" not in records[1]  # copies: the records are left as they were
    assert "x faster than ref." in report.markdown({"records": records})
    assert "0.25 s, 900 MB, **2.00x** ref. speed at 45% of its RSS" in report.readme_table({"records": records})


def test_plot_writes_a_png(tmp_path):
    out = tmp_path / "plot.png"
    report.plot(RECORDS, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report.series_label(RECORDS[2]) == "microisp fp32 tiled243"


def test_compact_markdown_and_report_command(tmp_path, capsys):
    text = report.compact_markdown({"records": RECORDS})
    assert len(text.strip().splitlines()) == 2 + len(RECORDS)
    assert "exact vs whole" in text and "out_of_memory: stopped: RSS reached 900 MB" in text
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"records": RECORDS}))
    assert report.main([str(path), "--plot", str(tmp_path / "p.png")]) == 0
    assert "| microisp | fp32 |" in capsys.readouterr().out
    assert (tmp_path / "p.png").exists()
    assert report.main([str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err


def test_model_choices_take_presets_variants_and_directions_from_the_spec():
    from benchmarks.models import parse_models
    from isp_tf.errors import IspTfError

    merged, inverse = parse_models("microisp:small+merged,invisp:small+inverse")
    assert (merged.small, merged.variant, merged.direction, merged.label) == (True, "merged", None,
                                                                           "microisp-small-merged")
    assert (inverse.direction, inverse.label) == ("inverse", "invisp-small-inverse")
    assert inverse.spec_direction.image_input.kind == "srgb" and inverse.spec_direction.output_scale == 1
    with pytest.raises(IspTfError, match="unknown option"):
        parse_models("microisp:inverse")


def test_report_says_segments_exact_not_compared_and_predicted():
    seg = dict(RECORDS[2], tiles=30, segments=5, passes=5, tile=324, mac_ratio_vs_whole=1.04,
               max_abs_diff_vs_whole=2e-6)
    alone = dict(seg, max_abs_diff_vs_whole=None)
    slow = {"model": "pynet", "precision": "fp32", "resolution": [4896, 6528], "mode": "whole",
            "runtime": "xnnpack", "status": "not_run", "kind": "model",
            "message": "not run: a smaller run of this configuration predicts 95.2 s, over --max-seconds 60 "
                       "(measured 31.10 s at 12.0 MP, scaled by pixels)"}
    text = report.markdown({"records": [seg, alone, slow]})
    assert "tiled 324 (30 tiles x 5 segments)" in text and "max abs 2.0e-06" in text
    assert "not compared" in text and "exact" not in text
    assert "not run (predicted 95.2 s > 60 s)" in text and "| 1.04 |" in text


def test_harness_predicts_time_from_a_smaller_frame():
    from types import SimpleNamespace

    from benchmarks.run import Harness, _not_run_status

    harness = Harness.__new__(Harness)
    harness.args = SimpleNamespace(max_seconds=10.0)
    harness.seconds_per_px, harness.bytes_per_px, harness.limit_mb = {}, {}, 1e9
    harness.learn(("m",), (1000, 1000), {"status": "ok", "median_s": 2.0})
    assert harness.predicted_oom(("m",), (2000, 2000)) is None  # 8 s
    why = harness.predicted_oom(("m",), (3000, 4000))  # 24 s
    assert "predicts 24.0 s, over --max-seconds 10 (measured 2.00 s at 1.0 MP" in why
    assert _not_run_status(why) == "not_run"
