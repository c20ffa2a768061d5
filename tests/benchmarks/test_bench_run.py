"""``python -m benchmarks.run`` end to end on a tiny model and frame, and its bad-input exits."""
import json
import os
import pathlib
import stat
import sys

import pytest

from benchmarks import run

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
REQUIRED = ("model", "precision", "resolution", "mode", "median_s", "p90_s", "peak_rss_mb", "size_bytes",
            "gmacs", "status")


@pytest.fixture(scope="module")
def strong_weights(tmp_path_factory):
    """Small-MicroISP weights large enough that the attention's whole-image statistics matter."""
    import numpy as np

    from isp_tf.models import create_model, get_spec
    from isp_tf.models.weights import save_weights

    model = create_model("microisp", small=True)
    rng = np.random.default_rng(0)
    for w in model.weights:
        w.assign(rng.normal(0.0, 0.3, w.shape).astype(np.float32))
    path = tmp_path_factory.mktemp("weights") / "microisp_small.h5"
    save_weights(model, path, "microisp", get_spec("microisp").small_config)
    return path


def test_local_run_whole_tiled_and_baselines(tmp_path, strong_weights):
    out = tmp_path / "bench.json"
    work = tmp_path / "work"
    code = run.main([
        "--models", "microisp:small", "--weights", str(strong_weights), "--precisions", "fp32",
        "--resolutions", "500x180", "--tile", "auto", "--tile-budget-mb", "1", "--runs", "1", "--threads", "1",
        "--baselines", "classical,rawpy", "--workdir", str(work), "--json", str(out),
        "--markdown", str(tmp_path / "bench.md"), "--plot", str(tmp_path / "bench.png"),
    ])
    assert code == 0
    result = json.loads(out.read_text())
    records = result["records"]
    assert result["machine"]["gemm_peak_gflops_1_thread"] > 0
    by = {(r["model"], r["mode"]): r for r in records}
    assert set(by) == {("classical", "whole"), ("rawpy", "whole"), ("microisp-small", "whole"),
                       ("microisp-small", "tiled")}
    for r in records:
        assert all(key in r for key in REQUIRED), r
        assert r["status"] == "ok", r
        assert r["resolution"] == [500, 180]
        assert r["median_s"] > 0 and r["p90_s"] >= r["median_s"]
        assert r["peak_rss_mb"] >= 0
    whole, tiles = by[("microisp-small", "whole")], by[("microisp-small", "tiled")]
    tiles_record = tiles
    assert whole["output_shape"] == [1, 500, 180, 3]
    assert whole["size_bytes"] > 10_000
    # small MicroISP: 3 branches x 2 stages x 5 full-resolution 3x3 convs 4->4 (144 MACs per pixel each)
    # plus the strided attention chains, on 250 x 90 packed pixels
    assert 30 * 144 <= whole["gmacs"] * 1e9 / (250 * 90) <= 31 * 144
    # auto with a 1 MB budget: the smallest core, one 81-px pooling block; 3 tiles (the 250 - 162 rows
    # left make the last core), 2 statistics depths + the final pass
    assert (tiles["tile"], tiles["tiles"], tiles["passes"]) == (81, 3, 3)
    # every op once per tile (the segment executor), halos included: close to the whole frame
    assert tiles["segments"] == 3 and whole["gmacs"] < tiles["gmacs"] <= 1.25 * whole["gmacs"]
    assert tiles["mac_ratio_vs_whole"] == pytest.approx(tiles["gmacs"] / whole["gmacs"], rel=1e-3)
    assert tiles["max_abs_diff_vs_whole"] <= 1e-5  # exact: the same picture as the whole frame

    # ...whereas the same tiles with their own local statistics give another picture
    import numpy as np

    from benchmarks.scene import synthetic_packed
    from isp_tf.runtime.session import LiteRtSession
    from isp_tf.tiling.planner import Geometry, plan_tiles

    model = LiteRtSession(str(work / "microisp-small_fp32.tflite"), threads=1)
    frame = synthetic_packed(250, 90)[np.newaxis]
    reference = model(frame)
    local = np.empty_like(reference)
    tiles = plan_tiles(250, 90, 81, Geometry(halo=10, stride=1, core_step=81, align=81))
    assert len(tiles) == tiles_record["tiles"]
    for tile in tiles:
        y0, x0, y1, x1 = tile.stats_box
        cy0, cx0, cy1, cx1 = tile.core
        y = model(frame[:, y0:y1, x0:x1])
        local[:, 2 * cy0:2 * cy1, 2 * cx0:2 * cx1] = y[:, 2 * (cy0 - y0):2 * (cy1 - y0), 2 * (cx0 - x0):2 * (cx1 - x0)]
    assert np.abs(local - reference).max() > 1e-3

    assert "| microisp-small |" in (tmp_path / "bench.md").read_text()
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_tiled_run_recomputes_stores_over_its_budget(tmp_path):
    """``--store-budget-mb 0``: GenISP (small) keeps none of its instance norms' tensors between
    segments but recomputes them: the same picture as the whole frame, more MACs, no stores."""
    runs = {}
    for budget in (None, "0"):
        out = tmp_path / f"bench_{budget}.json"
        code = run.main([
            "--models", "genisp:small", "--precisions", "fp32", "--resolutions", "96x80", "--tile", "32",
            "--runs", "1", "--threads", "1", "--baselines", "none", "--workdir", str(tmp_path / "work"),
            "--json", str(out), "--markdown", str(tmp_path / "bench.md"),
            *(["--store-budget-mb", budget] if budget else [])])
        assert code == 0
        runs[budget] = {r["mode"]: r for r in json.loads(out.read_text())["records"]}
    kept, recomputed = runs[None]["tiled"], runs["0"]["tiled"]
    assert kept["status"] == recomputed["status"] == "ok", (kept, recomputed)
    assert not kept["recomputed"] and kept["store_mb"] > 0
    assert recomputed["recomputed"] and recomputed["store_mb"] == 0
    assert recomputed["max_abs_diff_vs_whole"] <= 1e-5 and recomputed["gmacs"] > 1.25 * kept["gmacs"]
    assert "stores recomputed" in (tmp_path / "bench.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--store-budget-mb", "-1"], "--store-budget-mb must be 0 or more"),
    (["--models", "nosuchnet"], "unknown model 'nosuchnet'"),
    (["--resolutions", "161x160"], "must be even"),
    (["--precisions", "int4"], "unknown precision 'int4'"),
    (["--runtime", "gpu"], "unknown runtime 'gpu'"),
    (["--modes", "tiled"], "--modes tiled needs --tile"),
    (["--tile", "zero"], "--tile must be 'auto' or a positive number"),
    (["--reference", "/nonexistent/ref.tflite"], "reference .tflite not found"),
    (["--tile", "81", "--tile-models", "pynet"], "--tile-models pynet not in --models"),
    (["--models", "pynet:merged"], "pynet has no variants"),
    (["--models", "microisp:tiny"], "unknown option"),
])
def test_bad_input_exits_2_with_a_message(argv, message, tmp_path, capsys):
    assert run.main(argv + ["--json", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not (tmp_path / "o.json").exists()


def test_help_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run.main(["--help"])
    assert exit_info.value.code == 0
    assert "--benchmark-binary" in capsys.readouterr().out


# --- --adb, against a fake adb on PATH ---------------------------------------------------
@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "adb"
    exe.write_text(f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
open(os.environ["FAKE_ADB_LOG"], "a").write(json.dumps(args) + "\\n")
if args[:1] == ["-s"]:
    args = args[2:]
if args[:1] == ["devices"]:
    print("List of devices attached")
    print(os.environ["FAKE_ADB_DEVICES"])
elif args[:1] == ["shell"] and "--graph=" in args[1]:
    sys.stdout.write(open(os.environ["FAKE_ADB_REPLAY"]).read())
elif args[:1] == ["shell"] and "getprop ro.product.model" in args[1]:
    print("Pixel 4a")
""")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_LOG", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("FAKE_ADB_DEVICES", "0A1B2C\tdevice")
    monkeypatch.setenv("FAKE_ADB_REPLAY", str(FIXTURES / "apk_logcat.txt"))
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF")
    return binary


@pytest.mark.parametrize("devices, message", [
    ("", "no Android device found"),
    ("0A1B2C\tunauthorized", "0A1B2C is unauthorized"),
])
def test_adb_device_problems_exit_2(fake_adb, monkeypatch, tmp_path, capsys, devices, message):
    monkeypatch.setenv("FAKE_ADB_DEVICES", devices)
    code = run.main(["--adb", "--benchmark-binary", str(fake_adb), "--models", "microisp:small",
                     "--resolutions", "160x160", "--json", str(tmp_path / "o.json")])
    assert code == 2
    assert message in capsys.readouterr().err


def test_adb_missing_binary_exits_2(fake_adb, tmp_path, capsys):
    code = run.main(["--adb", "--benchmark-binary", str(tmp_path / "nope"), "--json", str(tmp_path / "o.json")])
    assert code == 2
    assert "benchmark_model binary not found" in capsys.readouterr().err
    code = run.main(["--adb", "--json", str(tmp_path / "o.json")])
    assert code == 2
    assert "--adb needs --benchmark-binary" in capsys.readouterr().err


def test_adb_run_parses_into_the_same_records(fake_adb, tmp_path):
    out = tmp_path / "adb.json"
    code = run.main(["--adb", "--benchmark-binary", str(fake_adb), "--models", "microisp:small",
                     "--precisions", "fp32", "--resolutions", "160x160", "--delegate", "gpu", "--threads", "4",
                     "--workdir", str(tmp_path / "work"), "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["machine"]["device_model"] == "Pixel 4a"
    (record,) = result["records"]
    assert all(key in record for key in REQUIRED)
    assert record["status"] == "ok"
    assert record["median_s"] == pytest.approx(2.709263)  # the replayed median, in seconds
    assert record["mean_s"] == pytest.approx(2.71985)
    assert record["init_s"] == pytest.approx(0.458883)
    assert record["peak_rss_mb"] == 337  # overall footprint (no periodic-monitoring line in that output)
    assert record["gmacs"] > 0 and record["size_bytes"] > 10_000
    calls = [json.loads(line) for line in pathlib.Path(os.environ["FAKE_ADB_LOG"]).read_text().splitlines()]
    runs = [c[3] for c in calls if c[2:3] == ["shell"] and "--graph=" in c[3]]
    assert runs == ["/data/local/tmp/benchmark_model --graph=/data/local/tmp/microisp-small_fp32_80x80.tflite "
                    "--num_threads=4 --use_gpu=true --report_peak_memory_footprint=true"]
