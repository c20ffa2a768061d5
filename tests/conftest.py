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


def _invisp_trained_like(model, seed=0):
    """Trained-like InvISP weights: small random last convs (zero at init) and perturbed LU factors."""
    import numpy as np

    from isp_tf.models.invisp import flow_parts

    rng = np.random.default_rng(seed)
    for block in flow_parts(model).blocks.blocks:
        for sub in (block.f, block.g, block.h):
            kernel, bias = sub.convs[-1].get_weights()
            sub.convs[-1].set_weights([rng.normal(0, 0.02, kernel.shape).astype(np.float32),
                                       rng.normal(0, 0.01, bias.shape).astype(np.float32)])
        conv = block.invconv
        for var in (conv.lower, conv.upper, conv.log_s):
            var.assign(var + rng.normal(0, 0.1, var.shape).astype(np.float32))
    return model


@pytest.fixture(scope="session")
def invisp_trained_like():
    """``fn(model, seed) -> model`` with trained-like InvISP weights (the inverse is not the identity)."""
    return _invisp_trained_like
