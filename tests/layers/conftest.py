"""Fixtures of the layer tests."""
import importlib.util
import pathlib

import pytest


def load_tflite_ops():
    """Import tests/layers/tflite_ops.py by path (the test folders are not packages)."""
    path = pathlib.Path(__file__).with_name("tflite_ops.py")
    spec = importlib.util.spec_from_file_location("isp_tf_tests_tflite_ops", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tflite_ops():
    """Convert / list ops / run helpers (see tflite_ops.py)."""
    return load_tflite_ops()
