"""Fixtures of the tiling tests: the toy camera-vector model and its ``.tflite``."""
import pytest


@pytest.fixture(scope="session")
def vector_model():
    from tiling_toy_models import camera_vector_model

    return camera_vector_model()


@pytest.fixture(scope="session")
def vector_tflite(vector_model):
    from tiling_toy_models import to_tflite

    return to_tflite(vector_model)
