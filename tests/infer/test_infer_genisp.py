"""GenISP through ``python -m isp_tf.infer``: vector inputs from the RAW file (``Port.from_raw``), the
per-frame part once per frame, tiled output equal to the whole frame."""
import numpy as np
import pytest

from isp_tf.data.layouts import META_VECTORS, cam_to_xyz_vector
from isp_tf.infer.pipeline import NetworkRenderer
from isp_tf.models import create_model, get_spec
from isp_tf.models.weights import save_weights
from isp_tf.raw import pack_bayer, read_raw, write_dng


def _randomised(model, seed=0):
    rng = np.random.default_rng(seed)
    for w in model.weights:  # away from the identity start, so every part matters
        w.assign((w.numpy() + rng.normal(0.0, 0.2, w.shape)).astype(np.float32))
    return model


@pytest.fixture(scope="module")
def genisp(tmp_path_factory):
    root = tmp_path_factory.mktemp("genisp_infer")
    config = get_spec("genisp").small_config
    model = _randomised(create_model("genisp", **config))
    save_weights(model, root / "genisp.weights.h5", "genisp", config)
    rng = np.random.default_rng(1)
    bayer = rng.integers(200, 3800, (176, 208)).astype(np.uint16)
    write_dng(root / "dark.dng", bayer, {"cfa_pattern": "GBRG", "black_level": [128] * 4, "white_level": 4095,
                                         "wb_gains": [2.1, 1.0, 1.6]})
    return {"root": root, "model": model, "weights": root / "genisp.weights.h5", "dng": root / "dark.dng"}


def test_vector_port_is_computed_by_the_training_pipelines_function(genisp):
    port = get_spec("genisp").inputs[1]
    assert port.from_raw is cam_to_xyz_vector is META_VECTORS["cam_to_xyz"]
    raw = read_raw(genisp["dng"])
    v = port.from_raw(raw)
    assert v.dtype == np.float32 and v.shape == (9,)
    np.testing.assert_array_equal(v, np.asarray(raw.cam_to_xyz, np.float32).ravel())


def test_tiled_genisp_equals_the_whole_model(genisp):
    renderer = NetworkRenderer(weights=genisp["weights"])
    assert renderer.name == "genisp" and renderer.per_frame is not None
    raw = read_raw(genisp["dng"])
    packed = pack_bayer(raw)
    reference = genisp["model"]([packed[None], cam_to_xyz_vector(raw)[None]]).numpy()[0]
    assert renderer.runner.plan(*packed.shape[:2], 32).__len__() > 1
    whole = renderer(raw, tile=0)
    tiled = renderer(raw, tile=32)
    assert whole.shape == tiled.shape == packed.shape[:2] + (3,)
    np.testing.assert_allclose(whole, np.clip(reference, 0, 1), atol=1e-5)
    assert np.max(np.abs(tiled - whole)) <= 1e-4
    assert 0.05 < np.mean((whole > 0) & (whole < 1))  # not all clipped: the comparison means something
