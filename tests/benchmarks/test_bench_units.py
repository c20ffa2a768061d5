"""benchmarks: MAC counting, memory/timing helpers, tile geometry, the child watchdog, the report.

No TensorFlow here: every test runs in a second or two.
"""
import json
import pathlib

import numpy as np
import pytest

from benchmarks import macs, measure, report, tiled
from benchmarks.config import RESOLUTIONS, parse_resolution
from benchmarks.run import run_child
from isp_tf.errors import IspTfError

REFERENCE = pathlib.Path(__file__).resolve().parents[3] / "shared" / "reference_weights" / \
    "microisp_official" / "MicroISP.tflite"


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


@pytest.mark.skipif(not REFERENCE.exists(), reason="authors' MicroISP.tflite not in ../shared")
def test_reference_microisp_macs_per_packed_pixel():
    # the authors' model: 6,957 MACs per packed pixel at 1500x2000 (41.7 GFLOP per 12 MP frame)
    assert macs.file_macs(REFERENCE) == 20_871_492_096
    # resized, the strided VALID attention convs make it not exactly proportional
    small = macs.tflite_macs(REFERENCE, [1, 162, 162, 4])
    assert 6900 * 162 * 162 < small < 7000 * 162 * 162


# --- sizes ------------------------------------------------------------------------
def test_parse_resolution():
    assert parse_resolution("12MP") == ("12mp", (3000, 4000))
    assert parse_resolution("fullhd") == ("fullhd", RESOLUTIONS["fullhd"])
    assert parse_resolution("160x320") == ("160x320", (160, 320))
    with pytest.raises(IspTfError, match="must be even"):
        parse_resolution("161x160")
    with pytest.raises(IspTfError, match="unknown resolution 'huge'"):
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


def test_peak_rss_sees_a_touched_allocation():
    with measure.PeakRss() as peak:
        block = np.ones(48 * 1024 * 1024 // 8)  # 48 MB, every page touched
        del block
    result = peak.result()
    assert result["peak_rss_mb"] >= 40
    assert result["peak_rss_sampled_mb"] <= result["peak_rss_mb"]


def test_blas_thread_env():
    env = measure.blas_thread_env(3)
    assert env["OPENBLAS_NUM_THREADS"] == env["OMP_NUM_THREADS"] == "3"


# --- tile geometry ------------------------------------------------------------------
@pytest.mark.parametrize("length, core, halo, align", [(400, 162, 10, 81), (1000, 243, 16, 81), (97, 32, 5, 1)])
def test_axis_spans_cover_once_with_aligned_boxes(length, core, halo, align):
    spans = tiled.axis_spans(length, core, halo, align)
    cores = [(s[2], s[3]) for s in spans]
    assert cores[0][0] == 0 and cores[-1][1] == length
    assert all(a[1] == b[0] for a, b in zip(cores, cores[1:]))  # contiguous, no overlap
    for start, end, c0, c1, final_start in spans:
        assert start % align == 0 and start <= max(0, c0 - halo)
        assert end == min(length, c1 + halo)
        assert final_start == max(0, c0 - halo)
    # interior cores have the asked size; the last one absorbs a thin remainder
    assert all(c1 - c0 == core for c0, c1 in cores[:-1])
    assert core // 2 <= cores[-1][1] - cores[-1][0] < core + core // 2 or len(cores) == 1


def test_plan_is_rows_times_columns():
    tiles = tiled.plan(400, 430, 162, 10, 81)
    assert len(tiles) == 2 * 3
    assert tiles[0] == [0, 0, 172, 172, 0, 0, 162, 162, 0, 0]
    assert tiles[4] == [81, 81, 400, 334, 162, 162, 400, 324, 152, 152]  # aligned box, final box at core - 10


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


def test_plot_writes_a_png(tmp_path):
    out = tmp_path / "plot.png"
    report.plot(RECORDS, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report.series_label(RECORDS[2]) == "microisp fp32 tiled243"


# --- the flatbuffer rewrite for exact tiled LiteRT inference ------------------------------
@pytest.mark.skipif(not REFERENCE.exists(), reason="authors' MicroISP.tflite not in ../shared")
def test_expose_global_stats_on_the_reference_microisp(tmp_path):
    from ai_edge_litert import interpreter as litert

    data, stats = tiled.expose_global_stats(REFERENCE.read_bytes())
    # 12 attentions (3 branches x 2 stages x 2), 4 dependency depths, pooled over 81-px blocks
    assert len(stats) == 12
    assert sorted({s["depth"] for s in stats}) == [0, 1, 2, 3]
    assert all(s["jump"] == 81 for s in stats)
    path = tmp_path / "stats_io.tflite"
    path.write_bytes(data)
    it = litert.Interpreter(model_path=str(path))
    assert len(it.get_input_details()) == 13 and len(it.get_output_details()) == 13
    it.resize_tensor_input(0, [1, 162, 162, 4], strict=False)
    it.allocate_tensors()
    assert "MEAN" not in {op["op_name"] for op in it._get_ops_details()}
    stat_map = it.get_output_details()[stats[0]["map"]]
    assert list(stat_map["shape"]) == [1, 2, 2, 4]  # two 81-px blocks per side

    # pruned pass models: each statistics pass runs only what its maps need, the final pass no pooling
    passes = tiled.pass_models(data, stats)
    assert [len(which) for _, which in passes] == [3, 3, 3, 3, 0]
    per_px = []
    for k, (model, _) in enumerate(passes):
        (tmp_path / f"p{k}.tflite").write_bytes(model)
        per_px.append(macs.tflite_macs(tmp_path / f"p{k}.tflite", [1, 405, 405, 4]) / 405 ** 2)
    assert per_px == sorted(per_px)  # deeper statistics need more of the network
    assert per_px[0] < 0.2 * 6957 and 0.99 * 6957 < per_px[-1] < 6957  # the last one: all but the chains


@pytest.mark.skipif(not REFERENCE.exists(), reason="authors' MicroISP.tflite not in ../shared")
def test_expose_global_stats_refuses_other_spatial_reductions():
    from ai_edge_litert import schema_py_generated as schema

    from isp_tf.export.flatbuffer import read_tflite, write_tflite

    model = read_tflite(REFERENCE.read_bytes()).model
    for code in model.operatorCodes:  # turn every MEAN into a SUM: not a mean of the image any more
        if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.MEAN:
            code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.SUM
    with pytest.raises(IspTfError, match="SUM over spatial axes"):
        tiled.expose_global_stats(write_tflite(model))


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
