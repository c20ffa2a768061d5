"""The LiteRT engine's export cache of these tests: one fresh folder per test session (never ~/.cache)."""
import pytest


@pytest.fixture(scope="session", autouse=True)
def infer_cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("isp_tf_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ISP_TF_CACHE", str(folder))
        yield folder


MICROISP_SMALL = {"width": 4, "depth": 4}


@pytest.fixture(scope="session")
def microisp_small(tmp_path_factory):
    """``(model, weights file)``: a small MicroISP with weights large enough that the attention matters;
    one file for every test here, so the LiteRT engine exports it once per session."""
    import numpy as np

    from isp_tf.models import create_model
    from isp_tf.models.weights import save_weights

    model = create_model("microisp", **MICROISP_SMALL)
    rng = np.random.default_rng(0)
    for w in model.weights:
        w.assign(rng.normal(0.0, 0.3, w.shape).astype(np.float32))
    path = tmp_path_factory.mktemp("microisp_small") / "microisp.weights.h5"
    save_weights(model, path, "microisp", MICROISP_SMALL)
    return model, path
