"""Test helper (not a test module): convert a Keras model and list its TFLite ops.

Shared by tests/layers and tests/models through the ``tflite_ops`` fixture,
which imports this file by path (the test folders are not packages).
"""
import numpy as np

from isp_tf._keras import tf

# op -> highest TFLite op version the NNAPI delegate accepts at Android API 29
# (NNAPI 1.2), from ../shared/NNAPI12.md; ops absent here are not delegated.
NNAPI12_MAX_VERSION = {
    "CONV_2D": 5, "DEPTHWISE_CONV_2D": 3, "TRANSPOSE_CONV": 3, "DEPTH_TO_SPACE": 2,
    "SPACE_TO_DEPTH": 2, "CONCATENATION": 2, "ADD": 2, "MUL": 2, "SUB": 3, "DIV": 1,
    "RELU": 2, "RELU6": 2, "RELU_N1_TO_1": 2, "LOGISTIC": 2, "TANH": 2, "LEAKY_RELU": 1,
    "PRELU": 1, "HARD_SWISH": 1, "RESIZE_BILINEAR": 3, "RESIZE_NEAREST_NEIGHBOR": 3,
    "MEAN": 2, "SUM": 1, "REDUCE_MAX": 2, "AVERAGE_POOL_2D": 2, "MAX_POOL_2D": 2, "PAD": 2,
    "PADV2": 2, "RESHAPE": 1, "TRANSPOSE": 2, "STRIDED_SLICE": 2, "SLICE": 2, "SPLIT": 3,
    "GATHER": 2, "FULLY_CONNECTED": 5, "RSQRT": 1, "SQRT": 1, "POW": 1, "EXP": 1, "LOG": 1,
    "ABS": 1, "MAXIMUM": 3, "MINIMUM": 3, "CAST": 1, "L2_NORMALIZATION": 2, "SOFTMAX": 2,
    "BATCH_TO_SPACE_ND": 2, "SPACE_TO_BATCH_ND": 2, "TILE": 1, "FLOOR": 1,
}


def convert(model, input_shape):
    """FP32 .tflite bytes of ``model`` for a fixed input shape (what NNAPI needs)."""
    fn = tf.function(lambda x: model(x, training=False), autograph=False).get_concrete_function(
        tf.TensorSpec(input_shape, tf.float32))
    return tf.lite.TFLiteConverter.from_concrete_functions([fn], model).convert()


def op_versions(tflite_bytes):
    """{op name: highest version} of a .tflite flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(tflite_bytes, 0))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    ops = {}
    for code in model.operatorCodes:
        name = names[max(code.builtinCode, code.deprecatedBuiltinCode)]
        ops[name] = max(ops.get(name, 0), code.version)
    return ops


def nnapi12_rejects(ops):
    """The ops (with versions) of ``ops`` that NNAPI 1.2 would not delegate."""
    return {op: v for op, v in ops.items() if v > NNAPI12_MAX_VERSION.get(op, 0)}


def run_tflite(tflite_bytes, x):
    """Run a single-input .tflite on ``x`` with ai_edge_litert."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=tflite_bytes)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.asarray(x, np.float32))
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
