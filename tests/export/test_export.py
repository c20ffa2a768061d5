"""export_tflite / export_to_tflite.py: MicroISP and PyNET at FP32, FP16, INT8.

Sizes are tiny (MicroISP 160x160 output: its attention needs 79 packed pixels;
PyNET small 32x32) so the whole file runs in about a minute.  Floors asserted
(measured on the Canon DNG sample with the official MicroISP weights): FP32
max abs error <= 1e-4, FP16 PSNR >= 72.5 dB (measured 72.8 dB), post-training INT8
PSNR >= 32 dB (measured 33.0-33.3 dB: the calibration crops, hence the figure,
depend on TensorFlow's global seed state, i.e. on the tests that ran before).
"""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from isp_tf.errors import ExportError, FrameSizeError, InputShapeError, NNAPIValidationError, WeightsMismatchError
from isp_tf.export.convert import export_tflite
from isp_tf.export.sizes import model_input_hw
from isp_tf.runtime.frames import parse_frame_size
from isp_tf.export.flatbuffer import read_tflite
from isp_tf.export.nnapi import check_nnapi
from isp_tf.models import create_model, get_spec
from isp_tf.models.weights import save_weights

REPO = pathlib.Path(__file__).resolve().parents[2]
OFFICIAL = REPO.parent / "shared" / "reference_weights" / "microisp_official"
MICRO_HW = "160x160"
PYNET_HW = "32x32"


def _need_official():
    if not (OFFICIAL / "MicroISP.ckpt.index").exists():
        msg = f"official MicroISP checkpoint missing in {OFFICIAL}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="module")
def microisp(tmp_path_factory):
    """The published MicroISP with the authors' weights, and those weights as an isp_tf file."""
    _need_official()
    from isp_tf.models.microisp import load_official_checkpoint

    model = load_official_checkpoint(create_model("microisp"), OFFICIAL)
    path = tmp_path_factory.mktemp("w") / "microisp_official.weights.h5"
    save_weights(model, path, "microisp", dict(get_spec("microisp").default_config))
    return model, str(path)


@pytest.fixture(scope="module")
def micro_exports(microisp, raw_samples, tmp_path_factory):
    model, weights = microisp
    out = tmp_path_factory.mktemp("micro")
    results = {}
    for precision in ("fp32", "fp16", "int8"):
        results[precision] = export_tflite(
            "microisp", out / f"microisp_{precision}.tflite", precision=precision,
            input_size=MICRO_HW, keras_model=model, weights=weights,
            config=dict(get_spec("microisp").default_config), parity_input=str(raw_samples["dng"]),
            calibration_frames_count=4, progress=False, log=lambda *a: None)
    return results


def test_microisp_fp32(micro_exports, raw_samples):
    r = micro_exports["fp32"]
    assert r.report.ok, r.report.format_table()
    assert set(r.report.ops_used()) <= {"CONV_2D", "PRELU", "MUL", "ADD", "MEAN", "RESHAPE", "LOGISTIC",
                                        "TANH", "DEPTH_TO_SPACE", "CONCATENATION"}
    assert r.size_bytes <= 160 * 1024  # the paper's 158 KB model
    meta = json.loads(pathlib.Path(r.json_path).read_text())
    assert pathlib.Path(r.tflite_path).read_bytes() == r.tflite
    assert meta["model"] == "microisp" and meta["precision"] == "fp32" and meta["io"] == "float32"
    assert meta["input"]["shape"] == [1, 80, 80, 4] and meta["outputs"][0]["shape"] == [1, 160, 160, 3]
    assert meta["nnapi"] == {"api_level": 29, "ok": True, "rejected_ops": [], "rules_broken": [],
                             "findings": []}
    assert meta["parity"]["input"] == str(raw_samples["dng"])
    assert meta["parity"]["max_abs_error"] <= 1e-4
    assert meta["weights_sha256"] and meta["file_bytes"] == r.size_bytes
    # no open dimension anywhere
    assert not any(t.dynamic for t in read_tflite(r.tflite).tensors)


def test_microisp_fp16(micro_exports):
    r = micro_exports["fp16"]
    assert r.report.ok, r.report.format_table()
    assert "DEQUANTIZE" in r.report.ops_used()  # fp16 weights, folded by the delegate
    assert r.metadata["io"] == "float32"
    assert r.metadata["parity"]["psnr_db"] >= 72.5


def test_microisp_int8(micro_exports):
    r = micro_exports["int8"]
    assert r.report.ok, r.report.format_table()
    ops = r.report.ops_used()
    assert "QUANTIZE" not in ops and "DEQUANTIZE" not in ops
    inp = r.metadata["input"]
    assert inp["dtype"] == "int8" and r.metadata["outputs"][0]["dtype"] == "int8"
    assert inp["scale"] == pytest.approx(1 / 255, rel=0.05)  # calibrated on [0, 1] inputs
    assert r.metadata["parity"]["psnr_db"] >= 32.0
    assert r.metadata["calibration"] == "synthetic:8"


def test_int8_uint8_io_is_refused_at_api29(microisp, raw_samples):
    model, weights = microisp
    with pytest.raises(NNAPIValidationError) as info:
        export_tflite("microisp", None, precision="int8", io="uint8", input_size=MICRO_HW,
                      keras_model=model, parity=False, calibration_frames_count=1, progress=False)
    assert {f.rule for f in info.value.report.findings} == {"quantize-output"}
    assert "QUANTIZE" in str(info.value) and "--allow-cpu-fallback" in str(info.value)


@pytest.fixture(scope="module")
def pynet_model():
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    return create_model("pynet", small=True)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_pynet_small_float(pynet_model, raw_samples, precision):
    r = export_tflite("pynet", None, precision=precision, input_size=PYNET_HW, keras_model=pynet_model,
                      config=dict(get_spec("pynet").small_config), parity_input=str(raw_samples["dng"]),
                      progress=False)
    assert r.report.ok, r.report.format_table()
    assert "TRANSPOSE_CONV" in r.report.ops_used() and "SQUARED_DIFFERENCE" not in r.report.ops_used()
    assert r.metadata["input"]["shape"] == [1, 16, 16, 4]
    if precision == "fp32":
        assert r.metadata["parity"]["max_abs_error"] <= 1e-4


def test_pynet_small_int8_names_what_stays_on_cpu(pynet_model, raw_samples, tmp_path):
    """Instance norm needs RSQRT, which NNAPI 1.2 has for float32 only: PyNET INT8 cannot be
    fully delegated at API 29.  The export says so (without --allow-cpu-fallback it raises,
    as test_int8_uint8_io_is_refused_at_api29 shows) and records the verdict in the JSON."""
    r = export_tflite("pynet", tmp_path / "p.tflite", precision="int8", input_size=PYNET_HW,
                      keras_model=pynet_model, config=dict(get_spec("pynet").small_config),
                      calibration_frames_count=2, parity_input=str(raw_samples["dng"]),
                      allow_cpu_fallback=True, progress=False)
    rsqrt = [f for f in r.report.findings if f.op == "RSQRT"]
    assert rsqrt and "int8-at-api29" in {f.rule for f in rsqrt}
    meta = json.loads((tmp_path / "p.json").read_text())
    assert meta["nnapi"]["ok"] is False and "RSQRT" in {f["op"] for f in meta["nnapi"]["findings"]}
    assert meta["input"]["dtype"] == "int8" and meta["parity"]["psnr_db"] > 0


def test_pynet_small_int8_without_instance_norm_is_fully_delegated(raw_samples):
    """Without instance norm PyNET INT8 passes: the re-quantisations the converter puts before
    its skip concatenations are folded away (isp_tf.export.tflite_passes.fold_requantize)."""
    config = dict(get_spec("pynet").small_config, instance_norm=False)
    r = export_tflite("pynet", None, precision="int8", input_size=PYNET_HW, config=config,
                      calibration_frames_count=2, parity_input=str(raw_samples["dng"]), progress=False)
    assert r.report.ok, r.report.format_table()
    assert r.metadata["export_rewrites"]["requantize_ops_folded"] > 0
    assert "QUANTIZE" not in r.report.ops_used()


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------
def test_unknown_precision():
    with pytest.raises(ExportError, match="unknown precision 'int4'.*fp32, fp16, int8"):
        export_tflite("microisp", None, precision="int4", input_size=MICRO_HW, small=True)


def test_sizes():
    assert parse_frame_size("fullhd") == (1080, 1920)
    assert parse_frame_size("12MP") == (3000, 4000)
    assert parse_frame_size("32mp") == (4896, 6528)
    assert parse_frame_size("64x48") == (64, 48)
    assert parse_frame_size("4k") == (2160, 3840)
    with pytest.raises(FrameSizeError, match="HxW"):
        parse_frame_size("huge")
    pynet = get_spec("pynet")
    assert model_input_hw(pynet, (64, 96)) == (32, 48)
    with pytest.raises(InputShapeError, match="odd.*packed Bayer"):
        model_input_hw(get_spec("microisp"), (161, 160))
    # FullHD: 1080 / 2 = 540 is not a multiple of 16
    with pytest.raises(InputShapeError, match=r"540, not a multiple of 16.*1056 or 1088"):
        model_input_hw(pynet, parse_frame_size("fullhd"))
    with pytest.raises(InputShapeError, match="odd"):
        export_tflite("pynet", None, input_size="33x32", small=True)
    with pytest.raises(ExportError, match="end in .tflite"):
        export_tflite("microisp", "model.tfl", input_size=MICRO_HW, small=True)


def test_too_small_for_microisp_attention():
    with pytest.raises(InputShapeError, match="79"):
        export_tflite("microisp", None, input_size="64x64", small=True, parity=False)


def test_fp32_parity_failure_is_an_error():
    from isp_tf._keras import tf
    from isp_tf.export.conversion import convert_function
    from isp_tf.export.parity import run_parity

    spec = tf.TensorSpec([1, 4, 4, 4], tf.float32)
    exact = tf.function(lambda x: x * 0.5, input_signature=[spec]).get_concrete_function()
    off = tf.function(lambda x: x * 0.5 + 1e-3, input_signature=[spec]).get_concrete_function()
    tflite = convert_function(exact, "fp32")
    x = np.random.default_rng(0).random((1, 4, 4, 4), dtype=np.float32)
    info = run_parity(exact, tflite, x, "x", "fp32")
    assert info["max_abs_error"] <= 1e-6 and info["tolerance"] == 1e-4
    with pytest.raises(ExportError, match="FP32 parity failed"):
        run_parity(off, tflite, x, "x", "fp32")
    assert run_parity(off, tflite, x, "x", "fp16")["psnr_db"] == pytest.approx(60.0, abs=0.1)


def test_weights_of_another_model(tmp_path, pynet_model):
    path = tmp_path / "pynet.weights.h5"
    save_weights(pynet_model, path, "pynet", dict(get_spec("pynet").small_config))
    with pytest.raises(WeightsMismatchError, match="'pynet'.*not of 'microisp'"):
        export_tflite("microisp", None, input_size=MICRO_HW, weights=str(path))


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------
def cli(*args):
    return subprocess.run([sys.executable, str(REPO / "export" / "export_to_tflite.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_cli_export_and_check(tmp_path, raw_samples):
    out = tmp_path / "m.tflite"
    done = cli("--model", "microisp", "--small", "--precision", "fp32", "--tile", 162,
               "--out", out, "--parity-input", raw_samples["dng"], "--quiet")
    assert done.returncode == 0, done.stderr
    assert "all" in done.stdout and "would be delegated" in done.stdout and "parity" in done.stdout
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["nnapi"]["ok"] is True and meta["frame"] is None
    assert meta["input"]["shape"] == [1, 81, 81, 4]
    tile = meta["tile"]  # from isp_tf.tiling.analysis.analyze: MicroISP pools 81-pixel blocks
    assert tile["side"] == 162 and tile["core_step"] == 81 and tile["halo"] > 0
    # beside it, what a phone needs for exact tiling: the tile manifest and one model per pass
    assert tile["manifest"] == "m.tiling.json" and (tmp_path / "m.tiling.json").exists()
    assert all((tmp_path / name).exists() for name in tile["passes"]) and len(tile["passes"]) == 3
    assert check_nnapi(str(out)).ok
    checked = subprocess.run([sys.executable, str(REPO / "export" / "check_nnapi.py"), str(out)],
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0


def test_cli_bad_input_exit_2(tmp_path):
    bad = cli("--model", "microisp", "--precision", "int4", "--out", tmp_path / "x.tflite")
    assert bad.returncode == 2 and "invalid choice: 'int4'" in bad.stderr
    odd = cli("--model", "pynet", "--small", "--input-size", "fullhd", "--out", tmp_path / "x.tflite")
    assert odd.returncode == 2 and "\nerror: pynet" in "\n" + odd.stderr and "multiple of 16" in odd.stderr
    assert "Traceback" not in odd.stderr
    unknown = cli("--model", "nope", "--out", tmp_path / "x.tflite")
    assert unknown.returncode == 2
