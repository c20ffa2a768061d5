"""Shared fixtures.

The real camera RAW files live outside the project, in ``../shared/raw_samples``
(or wherever ``ISP_TF_RAW_SAMPLES`` points).  Tests that need them use the
``raw_samples`` fixture: without the files they skip on a developer machine
but *fail* under CI (``CI=true``), so a CI run can never pass by skipping.
"""
import os
import pathlib

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
RAW_SAMPLES = pathlib.Path(os.environ.get("ISP_TF_RAW_SAMPLES", REPO.parent / "shared" / "raw_samples"))

SAMPLE_FILES = {
    "dng": "canon_eos550d_colorchart.dng",
    "crw": "canon_eos_d30.crw",
    "nikon_raw": "nikon_dsc1339_768x512_rggb_u16le_14bit.raw",
}


def _need(path: pathlib.Path) -> pathlib.Path:
    if not path.exists():
        msg = (f"real RAW sample {path} is missing: put the files of shared/raw_samples "
               f"there or set ISP_TF_RAW_SAMPLES")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def raw_samples() -> dict:
    """{'dng': Path, 'crw': Path, 'nikon_raw': Path} of the real camera files."""
    return {key: _need(RAW_SAMPLES / name) for key, name in SAMPLE_FILES.items()}


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return REPO
