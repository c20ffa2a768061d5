"""Test helper (not a test module): convert a Keras model and list its TFLite ops.

Shared by tests/layers and tests/models through the ``tflite_ops`` fixture,
which imports this file by path (the test folders are not packages).  The
NNAPI verdict and the LiteRT run are the library's (``isp_tf.export.nnapi``,
``isp_tf.runtime``), so the tests check what the exporter checks.
"""
import numpy as np

from isp_tf._keras import tf


def convert(model, input_shape):
    """FP32 .tflite bytes of ``model`` for a fixed input shape (what NNAPI needs)."""
    fn = tf.function(lambda x: model(x, training=False), autograph=False).get_concrete_function(
        tf.TensorSpec(input_shape, tf.float32))
    return tf.lite.TFLiteConverter.from_concrete_functions([fn], model).convert()


def op_versions(tflite_bytes):
    """{op name: highest version} of a .tflite flatbuffer."""
    from isp_tf.export.nnapi import check_nnapi

    return check_nnapi(bytes(tflite_bytes)).ops_used()


def nnapi12_rejects(tflite_bytes):
    """{op: version} of the ops NNAPI 1.2 (API 29) would not delegate (``isp_tf.export.nnapi``)."""
    from isp_tf.export.nnapi import check_nnapi

    report = check_nnapi(bytes(tflite_bytes), api_level=29)
    return {f.op: f.version for f in report.findings}


def run_tflite(tflite_bytes, x):
    """Run a single-input .tflite on ``x`` (``isp_tf.runtime.run_tflite``)."""
    from isp_tf.runtime import run_tflite

    return run_tflite(bytes(tflite_bytes), np.asarray(x, np.float32))
