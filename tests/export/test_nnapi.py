"""The NNAPI 1.2 validator: each small model breaks one rule and must be named for it."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from isp_tf._keras import keras, tf
from isp_tf.errors import ExportError
from isp_tf.export.flatbuffer import read_tflite, write_tflite
from isp_tf.export.nnapi import RULES, check_nnapi

pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs:UserWarning")
REPO = pathlib.Path(__file__).resolve().parents[2]
OFFICIAL_MICROISP = REPO.parent / "shared" / "reference_weights" / "microisp_official" / "MicroISP.tflite"


def convert(fn, shape=(1, 8, 8, 4), int8=False, io=None):
    """TFLite bytes of ``fn`` traced at ``shape`` (full-int8 when ``int8``)."""
    f = tf.function(fn, input_signature=[tf.TensorSpec(shape, tf.float32)])
    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    if int8:
        rng = np.random.default_rng(0)
        fixed = [d or 8 for d in shape]
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([rng.random(fixed, dtype=np.float32)] for _ in range(4))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io is not None:
            conv.inference_input_type = conv.inference_output_type = io
    return conv.convert()


def findings_for(report, op):
    return [f for f in report.findings if f.op == op]


def assert_breaks(report, op, rule):
    """The report rejects ``op`` for ``rule`` (and the rule id is documented)."""
    assert rule in RULES
    assert not report.ok
    hits = [f for f in findings_for(report, op) if f.rule == rule]
    assert hits, f"expected {op} to break {rule}; got {[(f.op, f.rule) for f in report.findings]}"
    table = report.format_table()
    assert op in table and rule in table


def edit(tflite, mutate):
    """Re-serialise ``tflite`` after ``mutate(model_t, graph)`` edits the schema object."""
    graph = read_tflite(tflite)
    mutate(graph.model, graph)
    return write_tflite(graph.model)


def allowed_model(x):
    """Only ops of the official MicroISP: conv, PReLU-ish, mean, mul, add, tanh, d2s, concat."""
    k = tf.constant(np.linspace(-0.5, 0.5, 3 * 3 * 4 * 8, dtype=np.float32).reshape(3, 3, 4, 8))
    y = tf.nn.conv2d(x, k, 1, "SAME") + 0.1
    y = tf.nn.relu(y)
    att = tf.sigmoid(tf.reduce_mean(y, axis=[1, 2], keepdims=True))
    y = tf.tanh(y * att + y)
    y = tf.nn.depth_to_space(y, 2)
    return tf.concat([y, y * 0.5], axis=-1)


def test_allowed_ops_pass():
    report = check_nnapi(convert(allowed_model))
    assert report.ok, report.format_table()
    used = report.ops_used()
    assert {"CONV_2D", "MEAN", "LOGISTIC", "TANH", "DEPTH_TO_SPACE", "CONCATENATION"} <= set(used)
    assert report.summary().endswith(f"all {len(report.ops)} ops would be delegated")


@pytest.mark.parametrize("name, fn, op, rule", [
    ("resize half-pixel", lambda x: tf.image.resize(x, [16, 16]), "RESIZE_BILINEAR", "resize-flags"),
    ("elu", tf.nn.elu, "ELU", "unsupported-op"),
    ("gelu", tf.nn.gelu, "GELU", "unsupported-op"),
    ("mirror pad", lambda x: tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT"),
     "MIRROR_PAD", "unsupported-op"),
    ("squared difference", lambda x: tf.math.squared_difference(x, 0.5 * x), "SQUARED_DIFFERENCE",
     "unsupported-op"),
    ("5-D reshape", lambda x: tf.reshape(tf.reshape(x, [1, 8, 8, 2, 2]) * 2.0, [1, 8, 8, 4]),
     "RESHAPE", "rank"),
])
def test_float_rule(name, fn, op, rule):
    assert_breaks(check_nnapi(convert(fn)), op, rule)


def test_elu_names_the_rewrite():
    (f,) = findings_for(check_nnapi(convert(tf.nn.elu)), "ELU")
    assert "API 30" in f.message and "relu(x) + exp(min(x, 0)) - 1" in f.message


def test_dynamic_shape():
    report = check_nnapi(convert(lambda x: tf.nn.relu(x) + 1.0, shape=(1, None, None, 4)))
    assert_breaks(report, "RELU", "dynamic-shape")
    assert "-1" in findings_for(report, "RELU")[0].message


def test_conv_without_bias():
    k = np.ones((3, 3, 4, 4), np.float32)
    good = convert(lambda x: tf.nn.conv2d(x, k, 1, "SAME") + 1.0)
    assert check_nnapi(good).ok

    def drop_bias(model, graph):
        op = model.subgraphs[0].operators[0]
        assert graph.operators[0].name == "CONV_2D" and len(op.inputs) == 3
        op.inputs = op.inputs[:2]

    assert_breaks(check_nnapi(edit(good, drop_bias)), "CONV_2D", "conv-bias")


def test_int8_split():
    fn = lambda x: tf.concat(tf.split(x, 2, axis=3)[::-1], axis=3)  # noqa: E731
    assert check_nnapi(convert(fn)).ok  # float SPLIT is fine at API 29
    report = check_nnapi(convert(fn, int8=True, io=tf.int8))
    assert_breaks(report, "SPLIT", "int8-at-api29")
    assert check_nnapi(convert(fn, int8=True, io=tf.int8), api_level=30).ok


def test_int8_float_io_boundaries():
    report = check_nnapi(convert(lambda x: tf.nn.relu(x * 2.0 - 0.5), int8=True))
    assert_breaks(report, "QUANTIZE", "quantize-output")
    assert_breaks(report, "DEQUANTIZE", "dequantize-zero-point")


def test_int8_io_has_no_boundary_ops():
    report = check_nnapi(convert(lambda x: tf.nn.relu(x * 2.0 - 0.5), int8=True, io=tf.int8))
    assert "QUANTIZE" not in report.ops_used() and "DEQUANTIZE" not in report.ops_used()
    assert report.ok, report.format_table()


def test_int8_mean_quant_params():
    report = check_nnapi(convert(lambda x: tf.reduce_mean(x * 3.0, axis=[1, 2], keepdims=True),
                                 int8=True, io=tf.int8))
    assert_breaks(report, "MEAN", "mean-quant-params")


def test_mul_quant_scale():
    tfl = convert(lambda x: x * (x - 0.5), int8=True, io=tf.int8)

    def shrink_output_scale(model, graph):
        (mul,) = [op for op in graph.operators if op.name == "MUL"]
        out = model.subgraphs[0].tensors[mul.outputs[0].index]
        out.quantization.scale = np.array([1e-6], np.float32)

    assert check_nnapi(tfl).ok
    report = check_nnapi(edit(tfl, shrink_output_scale))
    assert_breaks(report, "MUL", "mul-quant-scale")


def test_concat_fused_activation():
    tfl = convert(lambda x: tf.concat([x, x + 1.0], axis=3))

    def fuse_relu(model, graph):
        (k,) = [op.index for op in graph.operators if op.name == "CONCATENATION"]
        model.subgraphs[0].operators[k].builtinOptions.fusedActivationFunction = 1

    assert_breaks(check_nnapi(edit(tfl, fuse_relu)), "CONCATENATION", "fused-activation")


def test_op_version_too_high():
    tfl = convert(lambda x: tf.nn.relu(x))

    def bump(model, graph):
        model.operatorCodes[0].version = 7

    assert_breaks(check_nnapi(edit(tfl, bump)), "RELU", "op-version")


def test_official_microisp_tflite_passes():
    if not OFFICIAL_MICROISP.exists():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{OFFICIAL_MICROISP} missing")
        pytest.skip(f"{OFFICIAL_MICROISP} missing")
    report = check_nnapi(str(OFFICIAL_MICROISP))
    assert report.ok
    assert set(report.ops_used()) == {"CONV_2D", "PRELU", "MUL", "ADD", "MEAN", "RESHAPE", "LOGISTIC",
                                      "TANH", "DEPTH_TO_SPACE", "CONCATENATION"}


def test_not_a_tflite(tmp_path):
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"hello world, not a flatbuffer")
    with pytest.raises(ExportError, match="not a TFLite flatbuffer"):
        check_nnapi(str(bad))
    with pytest.raises(ExportError, match="no such"):
        check_nnapi(str(tmp_path / "missing.tflite"))


def run_cli(*args):
    return subprocess.run([sys.executable, str(REPO / "export" / "check_nnapi.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_cli_exit_codes(tmp_path):
    good, bad = tmp_path / "good.tflite", tmp_path / "elu.tflite"
    good.write_bytes(convert(allowed_model))
    bad.write_bytes(convert(tf.nn.elu))
    ok = run_cli(good)
    assert ok.returncode == 0, ok.stderr
    assert "would be delegated" in ok.stdout
    fail = run_cli(bad, "--json", tmp_path / "r.json")
    assert fail.returncode == 1
    assert "ELU" in fail.stdout and "unsupported-op" in fail.stdout
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["ok"] is False and data["findings"][0]["op"] == "ELU"
    assert data["ops_used"] == {"ELU": 1}
    (tmp_path / "junk.tflite").write_text("junk")
    junk = run_cli(tmp_path / "junk.tflite")
    assert junk.returncode == 2 and junk.stderr.startswith("error:") and "Traceback" not in junk.stderr
    assert run_cli().returncode == 2
