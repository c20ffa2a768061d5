"""benchmarks.tile_sweep's report: the fastest core per thread count, the auto pick beside it."""
import json

import pytest

from benchmarks import tile_sweep


def _result():
    rows = [(1, 81, 4.2), (1, 162, 3.8), (1, 243, 3.7), (2, 81, 3.0), (2, 162, 2.6), (2, 243, 2.5),
            (2, 324, 2.6)]
    return {"command": "python -m benchmarks.tile_sweep", "machine": {"cpu": "x", "logical_cpus": 2},
            "model": "microisp-merged", "precision": "fp32", "resolution": [3000, 4000],
            "resolution_label": "12mp", "storage": "float32", "core_step": 81, "halo": 16,
            "bytes_per_pixel": 384.0, "cpu_caches": {"L2": 2 * 1024 ** 2},
            "records": [{"threads": t, "core": c, "status": "ok", "median_s": s, "peak_rss_mb": 600.0 + c,
                         "tiles": 10} for t, c, s in rows]
            + [{"threads": 2, "core": 648, "status": "out_of_memory", "median_s": None, "peak_rss_mb": None}]}


def test_report_marks_the_fastest_and_the_auto_core(tmp_path):
    result = tile_sweep.with_auto_picks(_result())
    assert tile_sweep.best_cores(result) == {"1": 243, "2": 243}
    assert result["auto_core"] == {"1": 162, "2": 243}
    md = tile_sweep.markdown(result)
    assert "| 243 | 10 | 3.70 / 843 **fastest** | 2.50 / 843 **fastest** auto |" in md
    assert "| 162 | 10 | 3.80 / 762 auto | 2.60 / 762 |" in md
    assert "out_of_memory" in md and "1 thread(s): auto 162 px takes 3.80 s, 1.03x the fastest" in md
    src = tmp_path / "in.json"
    src.write_text(json.dumps(_result()))
    assert tile_sweep.main(["--from-json", str(src), "--json", str(tmp_path / "out.json"),
                            "--markdown", str(tmp_path / "out.md")]) == 0
    assert json.loads((tmp_path / "out.json").read_text())["auto_core"] == {"1": 162, "2": 243}


@pytest.mark.parametrize("bad", ["--cores=0,81", "--cores=a", "--threads=,"])
def test_bad_lists_are_one_clear_error(bad, capsys, tmp_path):
    assert tile_sweep.main([bad, "--json", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --") and "Traceback" not in err
