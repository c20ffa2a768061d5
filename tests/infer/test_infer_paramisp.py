"""ParamISP through ``python -m isp_tf.infer``: ``--inverse PHOTO --metadata RAW_OR_JSON`` writes a DNG
(camera parameters from the metadata, mosaic in the camera's CFA, tiled == whole), and the LiteRT engine's
cached models re-plan at other frame sizes (the per-frame part fed host-padded frames)."""
import dataclasses
import json
import pathlib

import numpy as np
import pytest

from isp_tf.infer.__main__ import main
from isp_tf.infer.inverse import bayer_to_mosaic, metadata_to_json, read_metadata, read_photo
from isp_tf.raw import read_raw

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def paramisp(tmp_path_factory):
    """A small ParamISP (random weights, both directions) saved as an isp_tf weights file, and a JPEG."""
    from PIL import Image

    from isp_tf.data.photos import load_photo
    from isp_tf.models import create_model, get_spec
    from isp_tf.models.weights import save_weights

    root = tmp_path_factory.mktemp("paramisp")
    model = create_model("paramisp", small=True)
    weights = save_weights(model, root / "paramisp.weights.h5", "paramisp", get_spec("paramisp").small_config)
    jpeg = root / "photo.jpg"
    Image.fromarray(np.rint(load_photo("chelsea")[100:148, 150:214] * 255).astype(np.uint8)).save(jpeg, quality=90)
    return {"root": root, "model": model, "weights": weights, "jpeg": jpeg}


def test_inverse_writes_the_camera_dng_from_a_json_tiled_as_whole(paramisp, tmp_path, monkeypatch):
    from isp_tf.infer import inverse
    from isp_tf.models.paramisp import params_vector_from_raw

    built = []

    class Kept(inverse.InverseRenderer):  # the renderer the command builds, reused below
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(inverse, "InverseRenderer", Kept)

    camera = read_raw(REPO / "sample_RAW_photos" / "coffee.dng")  # GRBG, full EXIF
    meta_json = tmp_path / "camera.json"
    metadata_to_json(camera, meta_json)
    assert set(json.loads(meta_json.read_text())["exif"]) == {"iso", "exposure_time", "f_number", "focal_length"}
    meta = read_metadata(meta_json)
    np.testing.assert_allclose(params_vector_from_raw(meta), params_vector_from_raw(camera), rtol=1e-6)

    out = tmp_path / "out"
    assert main(["--model", "paramisp", "--weights", str(paramisp["weights"]), "--inverse",
                 str(paramisp["jpeg"]), "--metadata", str(meta_json), "--out", str(out), "--tile", "16",
                 "--quiet"]) == 0
    back = read_raw(out / "photo.dng")
    assert back.bayer.shape == (48, 64) and back.cfa_pattern == "GRBG"
    np.testing.assert_allclose(back.black_level, camera.black_level)
    assert back.exif.iso == pytest.approx(400.0)

    (renderer,) = built
    assert renderer.output_kind == "bayer" and renderer.per_frame is not None
    srgb = read_photo(paramisp["jpeg"])
    whole = renderer(srgb, meta, tile=0)
    assert renderer.steps(srgb.shape, 16) > 1
    tiled = renderer(srgb, meta, tile=16)
    assert np.abs(tiled - whole).max() < 1e-5
    assert np.abs(back.bayer.astype(int) - bayer_to_mosaic(whole, meta).astype(int)).max() <= 1
    # the camera's GRBG site (y, x) is the model's RGGB site (y, x + 1) of the photo padded by a column
    rggb = dataclasses.replace(meta, cfa_pattern="RGGB")
    padded = np.pad(srgb, ((0, 0), (1, 1), (0, 0)), mode="reflect")
    np.testing.assert_allclose(whole, renderer(padded, rggb, tile=0)[:, 1:-1], atol=1e-6)


def test_litert_models_replan_at_other_frame_sizes(paramisp):
    from isp_tf.export.conversion import convert_function, fixed_function
    from isp_tf.infer.litert import _resizable
    from isp_tf.models import get_spec
    from isp_tf.runtime.session import LiteRtSession
    from isp_tf.tiling.planner import pad_to_multiple

    split = get_spec("paramisp").split(paramisp["model"])  # (per_frame, render), as the engine exports them
    render, per_frame = (convert_function(fixed_function(m, (40, 40)), "fp32") for m in split[::-1])
    assert _resizable(render, 40, 2) and _resizable(per_frame, 40, 2)  # no size constant (ToneMapping, SubPixelUp)
    x = np.random.default_rng(0).random((45, 51, 4), dtype=np.float32)  # odd: the in-graph pad would differ
    v = np.random.default_rng(1).random((1, 84), dtype=np.float32)
    want = split[0]([x[np.newaxis], v], training=False).numpy()
    got = LiteRtSession(per_frame, threads=1).run(pad_to_multiple(x, 2)[np.newaxis], v)[0]
    assert np.abs(got - want).max() < 1e-4
