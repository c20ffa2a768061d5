"""benchmarks.adb: the benchmark_model parser and the adb orchestration (fake adb, no phone)."""
import json
import os
import pathlib
import stat
import sys

import pytest

from benchmarks import adb
from benchmarks.adb import AdbBenchmark, AdbError, parse_benchmark_output, parse_devices
from isp_tf.errors import IspTfError, MissingFileError

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def fixture(name):
    return (FIXTURES / name).read_text()


# ---------------------------------------------------------------------------
# parser, against the real texts of shared/ADB_SAMPLES.md
# ---------------------------------------------------------------------------
def test_parse_nnapi_run_with_info_prefix_and_delegation():
    r = parse_benchmark_output(fixture("nnapi_adb.txt"))
    assert r["init_us"] == 66002
    assert r["first_us"] == 637079
    assert r["warmup_avg_us"] == 637079
    assert r["avg_us"] == pytest.approx(1885.74)
    assert r["init_mb"] == pytest.approx(7.40234)
    assert r["overall_mb"] == pytest.approx(7.83203)
    assert r["memory_format"] == "delta"
    assert r["peak_mb"] is None and r["vmrss_mb"] is None
    assert (r["count"], r["min_us"], r["max_us"], r["std_us"]) == (520, 1171, 9925, 870)
    assert r["median_us"] is None
    assert r["delegate"] == "TfLiteNnapiDelegate"
    assert (r["nodes_delegated"], r["nodes_total"], r["partitions"]) == (31, 31, 1)
    assert r["fully_delegated"] is True
    assert r["nnapi_accelerators"] == ["synap-npu", "nnapi-reference"]


def test_parse_logcat_prefix_and_scientific_notation():
    r = parse_benchmark_output(fixture("apk_logcat.txt"))
    assert r["init_us"] == 458883
    assert r["first_us"] == 2732148
    assert r["warmup_avg_us"] == pytest.approx(2.73215e6)
    assert r["avg_us"] == pytest.approx(2.71985e6)
    assert r["init_mb"] == pytest.approx(286.73)
    assert r["overall_mb"] == 337
    assert r["count"] == 10
    assert r["median_us"] == 2709263 and r["p5_us"] == 2640862 and r["p95_us"] == 3025403
    assert r["delegate"] is None and r["fully_delegated"] is None


def test_parse_older_build_without_prefix():
    r = parse_benchmark_output(fixture("older_build.txt"))
    assert (r["init_us"], r["first_us"]) == (855, 49060)
    assert r["warmup_avg_us"] == pytest.approx(34825.1)
    assert r["avg_us"] == pytest.approx(33209.4)
    assert r["init_mb"] == 0 and r["overall_mb"] == pytest.approx(12.8672)
    assert r["memory_format"] == "peak"


def test_parse_periodic_peak_memory_and_memory_status():
    r = parse_benchmark_output(fixture("peak_monitoring.txt"))
    assert r["init_mb"] == pytest.approx(2.43359)
    assert r["overall_mb"] == pytest.approx(8.67578)
    assert r["peak_mb"] == pytest.approx(13.1797)
    assert r["vmrss_mb"] == 13
    assert r["avg_us"] is None  # no timing line in that excerpt


def test_parse_partial_delegation_and_every_key_present():
    text = ("INFO: Replacing 12 out of 40 node(s) with delegate (TfLiteGpuDelegateV2) node, "
            "yielding 3 partitions for the whole graph.\n"
            "INFO: Explicitly applied GPU delegate, and the model graph will be partially executed "
            "by the delegate w/ 2 delegate kernels.\n")
    r = parse_benchmark_output(text)
    assert set(r) == set(adb.RESULT_KEYS)
    assert r["fully_delegated"] is False and r["delegate_kernels"] == 2
    assert (r["nodes_delegated"], r["nodes_total"], r["partitions"]) == (12, 40, 3)
    assert r["delegate"] == "TfLiteGpuDelegateV2"


def test_parse_threadtime_logcat_and_warmup_count_line_ignored():
    text = ("07-08 15:34:26.201  5395  5395 I tflite  : count=1 curr=637079\n"
            "07-08 15:34:26.201  5395  5395 I tflite  : count=3 first=5 curr=6 min=4 max=7 avg=5.5e+00 std=1\n"
            "07-08 15:34:26.202  5395  5395 I tflite  : Inference timings in us: Init: 1.5e3, "
            "First inference: 20, Warmup (avg): 2e1, Inference (avg): 5.5\n")
    r = parse_benchmark_output(text)
    assert r["count"] == 3 and r["min_us"] == 4
    assert r["init_us"] == 1500 and r["avg_us"] == 5.5


def test_parse_empty_text_gives_all_none():
    r = parse_benchmark_output("")
    assert all(v is None for v in r.values())


def test_parse_devices():
    text = "List of devices attached\nR58M123\tdevice\nemulator-5554\tunauthorized\n\n"
    assert parse_devices(text) == {"R58M123": "device", "emulator-5554": "unauthorized"}
    assert parse_devices("* daemon started successfully\nList of devices attached\n\n") == {}


# ---------------------------------------------------------------------------
# orchestration against a fake adb
# ---------------------------------------------------------------------------
FAKE_ADB = """\
#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_ADB_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:1] == ["-s"]:
    args = args[2:]
if args[:1] == ["devices"]:
    print("List of devices attached")
    print(os.environ.get("FAKE_ADB_DEVICES", "").replace(";", "\\n"))
    sys.exit(0)
if args[:1] == ["push"]:
    if not os.path.exists(args[1]):
        print("adb: error: cannot stat '%s': No such file or directory" % args[1])
        sys.exit(1)
    print("%s: 1 file pushed." % args[1])
    sys.exit(0)
if args[:1] == ["shell"] and "benchmark_model --graph" in args[1]:
    sys.stdout.write(open(os.environ["FAKE_ADB_REPLAY"]).read())
    sys.exit(0)
sys.exit(0)
"""


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    """A fake ``adb`` first on PATH; returns a function reading the recorded calls."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "adb"
    exe.write_text(FAKE_ADB.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "adb_calls.jsonl"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_ADB_DEVICES", "R58M123\tdevice")
    monkeypatch.setenv("FAKE_ADB_REPLAY", str(FIXTURES / "peak_monitoring.txt"))

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return calls


@pytest.fixture
def binary(tmp_path):
    path = tmp_path / "benchmark_model"
    path.write_bytes(b"\x7fELF fake")
    return path


def test_connect_pushes_binary_and_run_pushes_model_with_flags(fake_adb, binary, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_REPLAY", str(FIXTURES / "nnapi_adb.txt"))
    model = tmp_path / "microisp_fp32_64x64.tflite"
    model.write_bytes(b"TFL3")
    bench = AdbBenchmark(binary)
    assert bench.connect() == "R58M123"
    result = bench.run(model, delegate="nnapi", threads=4)
    assert result["status"] == "ok"
    assert result["avg_us"] == pytest.approx(1885.74)
    assert result["fully_delegated"] is True
    calls = fake_adb()
    assert calls[0] == ["devices"]
    assert ["-s", "R58M123", "push", str(binary), "/data/local/tmp/benchmark_model"] in calls
    assert ["-s", "R58M123", "shell", "chmod +x /data/local/tmp/benchmark_model"] in calls
    assert ["-s", "R58M123", "push", str(model), "/data/local/tmp/microisp_fp32_64x64.tflite"] in calls
    runs = [c[3] for c in calls if c[2:3] == ["shell"] and "--graph" in c[3]]
    assert runs == ["/data/local/tmp/benchmark_model --graph=/data/local/tmp/microisp_fp32_64x64.tflite "
                    "--num_threads=4 --use_nnapi=true --report_peak_memory_footprint=true"]


@pytest.mark.parametrize("delegate, flag", [("gpu", "--use_gpu=true"), ("cpu", None)])
def test_delegate_flags(delegate, flag):
    flags = adb.delegate_flags(delegate, 2)
    assert flags[0] == "--num_threads=2"
    assert (flags[1:] == [flag]) if flag else flags == ["--num_threads=2"]
    with pytest.raises(AdbError, match="unknown delegate 'dsp'"):
        adb.delegate_flags("dsp", 2)


def test_run_reports_error_when_tool_prints_no_timings(fake_adb, binary, tmp_path, monkeypatch):
    crash = tmp_path / "crash.txt"
    crash.write_text("ERROR: Failed to allocate tensors!\nAborted\n")
    monkeypatch.setenv("FAKE_ADB_REPLAY", str(crash))
    model = tmp_path / "m.tflite"
    model.write_bytes(b"TFL3")
    bench = AdbBenchmark(binary)
    bench.connect()
    result = bench.run(model)
    assert result["status"] == "error"
    assert "Failed to allocate tensors" in result["message"]


@pytest.mark.parametrize("devices, message", [
    ("", "no Android device found"),
    ("R58M123\tunauthorized", "R58M123 is unauthorized.*Allow USB debugging"),
    ("R58M123\toffline", "R58M123 is offline"),
    ("A1\tdevice;B2\tdevice", r"several devices attached \(A1, B2\).*--serial"),
])
def test_device_problems_raise_clear_errors(fake_adb, binary, monkeypatch, devices, message):
    monkeypatch.setenv("FAKE_ADB_DEVICES", devices)
    with pytest.raises(AdbError, match=message):
        AdbBenchmark(binary).connect()
    assert not any("push" in c for c in fake_adb())


def test_serial_selects_device_and_unknown_serial_is_named(fake_adb, binary, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_DEVICES", "A1\tdevice;B2\tdevice")
    assert AdbBenchmark(binary, serial="B2").connect() == "B2"
    with pytest.raises(AdbError, match="device 'C3' is not attached"):
        AdbBenchmark(binary, serial="C3").connect()


def test_missing_binary_is_a_missing_file_error(fake_adb, tmp_path):
    with pytest.raises(MissingFileError, match="benchmark_model binary not found"):
        AdbBenchmark(tmp_path / "nope").connect()
    with pytest.raises(MissingFileError, match="--benchmark-binary"):
        AdbBenchmark(None).connect()
    assert fake_adb() == []  # nothing was attempted on the phone


def test_missing_adb_executable(binary, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AdbError, match="adb not found"):
        AdbBenchmark(binary).connect()
    assert issubclass(AdbError, IspTfError)
