"""Fixtures of the model tests."""
import importlib.util
import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
OFFICIAL_MICROISP = pathlib.Path(os.environ.get(
    "ISP_TF_MICROISP_OFFICIAL", REPO.parent / "shared" / "reference_weights" / "microisp_official"))
OFFICIAL_FILES = ("MicroISP.ckpt.index", "MicroISP.ckpt.data-00000-of-00001", "MicroISP.tflite")


@pytest.fixture(scope="session")
def microisp_official() -> pathlib.Path:
    """Folder with the authors' MicroISP.ckpt.* and MicroISP.tflite (github.com/aiff22/MicroISP).

    Read from ``../shared/reference_weights/microisp_official`` (or
    ``ISP_TF_MICROISP_OFFICIAL``), never copied into the repo.  Missing files
    skip the test on a developer machine and fail it under CI (``CI=true``).
    """
    missing = [name for name in OFFICIAL_FILES if not (OFFICIAL_MICROISP / name).exists()]
    if missing:
        msg = (f"official MicroISP files {missing} missing in {OFFICIAL_MICROISP}: put "
               f"pretrained_weights/MicroISP.ckpt.* and tflite_model/MicroISP.tflite of "
               f"github.com/aiff22/MicroISP there or set ISP_TF_MICROISP_OFFICIAL")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    return OFFICIAL_MICROISP


@pytest.fixture(scope="session")
def tflite_ops():
    """The helpers of tests/layers/tflite_ops.py (imported by path: test folders are not packages)."""
    path = REPO / "tests" / "layers" / "tflite_ops.py"
    spec = importlib.util.spec_from_file_location("isp_tf_tests_tflite_ops", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
