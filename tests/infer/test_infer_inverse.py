"""``python -m isp_tf.infer --inverse``: sRGB photo -> InvISP inverse -> DNG that rawpy reads back."""
import json

import numpy as np
import pytest

from isp_tf.infer.__main__ import main
from isp_tf.infer.inverse import (ClassicalInverse, InverseRenderer, linear_to_mosaic, metadata_to_json,
                                  read_metadata, read_photo, sensor_order)
from isp_tf.raw import apply_orientation, read_raw


@pytest.fixture(scope="module")
def files(tmp_path_factory, invisp_trained_like):
    """Small InvISP weights and a real JPEG (tf.io.encode_jpeg, q 90) of a bundled photo."""
    from isp_tf._keras import tf
    from isp_tf.data.photos import load_photo
    from isp_tf.models import create_model, get_spec
    from isp_tf.models.weights import save_weights

    root = tmp_path_factory.mktemp("inverse")
    model = invisp_trained_like(create_model("invisp", small=True), seed=1)
    weights = save_weights(model, root / "invisp.weights.h5", "invisp", get_spec("invisp").small_config)
    photo = np.rint(load_photo("chelsea")[100:196, 150:278] * 255).astype(np.uint8)  # 96 x 128
    jpeg = root / "photo.jpg"
    jpeg.write_bytes(tf.io.encode_jpeg(photo, quality=90).numpy())
    return {"root": root, "model": model, "weights": weights, "jpeg": jpeg}


def test_inverse_writes_a_dng_with_the_camera_metadata(files, raw_samples, tmp_path):
    import rawpy

    camera = read_raw(raw_samples["crw"])  # Canon EOS D30: has EXIF
    out = tmp_path / "out"
    assert main(["--model", "invisp", "--weights", str(files["weights"]), "--inverse", str(files["jpeg"]),
                 "--metadata", str(raw_samples["crw"]), "--out", str(out), "--quiet"]) == 0
    dng = out / "photo.dng"
    with rawpy.imread(str(dng)) as r:
        mosaic = r.raw_image_visible.copy()
        assert mosaic.shape == (96, 128)
        assert "".join("RGBG"[c] for c in r.raw_pattern.ravel()) == camera.cfa_pattern
        np.testing.assert_allclose(r.black_level_per_channel, camera.black_level)
        assert r.white_level == camera.white_level
        wb = np.asarray(r.camera_whitebalance[:3], np.float64)
        np.testing.assert_allclose(wb / wb[1], camera.wb_gains, rtol=1e-4)
    back = read_raw(dng)
    assert (back.cfa_pattern, back.orientation, back.camera) == (camera.cfa_pattern, 1, camera.camera)
    np.testing.assert_allclose(back.cam_to_xyz, camera.cam_to_xyz, atol=1e-3)
    for name in ("iso", "exposure_time", "f_number", "focal_length"):
        assert getattr(back.exif, name) == pytest.approx(getattr(camera.exif, name), rel=1e-3)
    # the pixels: the model's inverse of the photo, remosaicked (whole frame == what the CLI ran)
    renderer = InverseRenderer("invisp", files["weights"])
    linear = renderer(read_photo(files["jpeg"]), tile=0)
    np.testing.assert_array_equal(mosaic, linear_to_mosaic(linear, camera))
    assert len(np.unique(mosaic)) > 100


def test_json_metadata_other_pattern_and_orientation(files, raw_samples, tmp_path):
    """GBRG and orientation 6: the displayed photo goes back to sensor order; the forward
    pipeline's linear RGB of the DNG gives the recovered linear RGB back at every CFA site."""
    from isp_tf.export.parity import parity_image

    camera = read_raw(raw_samples["dng"])
    camera.cfa_pattern, camera.orientation = "GBRG", 6
    camera.black_level = np.array([2048, 2050, 2052, 2054], np.float32)
    meta_json = metadata_to_json(camera, tmp_path / "camera.json")
    assert json.loads((tmp_path / "camera.json").read_text()) == meta_json
    out = tmp_path / "out"
    assert main(["--model", "invisp", "--weights", str(files["weights"]), "--direction", "inverse",
                 str(files["jpeg"]), "--metadata", str(tmp_path / "camera.json"), "--out", str(out),
                 "--tile", "48", "--quiet"]) == 0
    back = read_raw(out / "photo.dng")
    assert back.bayer.shape == (128, 96) and (back.cfa_pattern, back.orientation) == ("GBRG", 6)
    np.testing.assert_allclose(back.black_level, camera.black_level)
    linear = InverseRenderer("invisp", files["weights"])(sensor_order(read_photo(files["jpeg"]), 6), tile=0)
    again = parity_image(back, "linear_rgb")  # WB on the mosaic, clip, demosaic (the pipeline's)
    step = 1.0 / (camera.white_level - camera.black_level.max())
    g = camera.wb_gains / camera.wb_gains.min()
    for y in (0, 1):
        for x in (0, 1):
            c = "RGB".index("GBRG"[2 * y + x])
            np.testing.assert_allclose(again[y::2, x::2, c], linear[y::2, x::2, c], atol=g[c] * step)
    # the DNG displays as the photo was shown
    assert apply_orientation(back.bayer, back.orientation).shape == read_photo(files["jpeg"]).shape[:2]


def test_without_metadata_the_error_says_what_is_needed(files, tmp_path, capsys):
    assert main(["--model", "invisp", "--weights", str(files["weights"]), "--inverse", str(files["jpeg"]),
                 "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --inverse needs --metadata RAWFILE_OR_JSON")
    assert "CFA pattern, black and white levels, white balance" in err and "Traceback" not in err
    (tmp_path / "bad.json").write_text(json.dumps({"cfa_pattern": "RGGB", "black_level": 0}))
    assert main(["--model", "invisp", "--weights", str(files["weights"]), "--inverse", str(files["jpeg"]),
                 "--metadata", str(tmp_path / "bad.json"), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "lacks white_level, wb_gains" in capsys.readouterr().err
    (tmp_path / "good.json").write_text(json.dumps({"cfa_pattern": "RGGB", "black_level": 0,
                                                    "white_level": 1023, "wb_gains": [2, 1, 1.5]}))
    assert main(["--model", "microisp", "--inverse", str(files["jpeg"]), "--metadata",
                 str(tmp_path / "good.json"), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "microisp has no direction 'inverse'" in capsys.readouterr().err


def test_tiled_inverse_equals_whole_frame(files):
    renderer = InverseRenderer("invisp", keras_model=files["model"])
    photo = read_photo(files["jpeg"])
    assert renderer.steps(photo.shape, 32) > 1
    tiled = renderer(photo, tile=32)
    whole = renderer(photo, tile=0)
    assert tiled.shape == whole.shape == photo.shape
    assert float(np.max(np.abs(tiled - whole))) <= 1e-4


def test_classical_inverse_undoes_the_classical_renderer(raw_samples):
    from isp_tf.export.parity import parity_image
    from isp_tf.raw import render_classical

    raw = read_raw(raw_samples["dng"])
    raw.bayer = raw.bayer[400:528, 600:760]
    linear = parity_image(raw, "linear_rgb")
    recovered = ClassicalInverse()(render_classical(raw), raw)
    srgb_linear = linear @ raw.cam_to_srgb.T
    inside = np.all((srgb_linear > 1e-3) & (srgb_linear < 0.999), axis=-1)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(recovered[inside], linear[inside], atol=1e-4)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_sensor_order_undoes_the_orientation(orientation):
    image = np.arange(6 * 4 * 3).reshape(6, 4, 3)
    np.testing.assert_array_equal(sensor_order(apply_orientation(image, orientation), orientation), image)


def test_metadata_reading(raw_samples, tmp_path):
    meta = read_metadata(raw_samples["dng"])
    assert meta.cfa_pattern == "RGGB" and meta.white_level == 15000
    (tmp_path / "m.json").write_text(json.dumps({"cfa_pattern": "bggr", "black_level": 64, "white_level": 1023,
                                                 "wb_gains": [2, 1, 1.5], "exif": {"iso": 200}}))
    meta = read_metadata(tmp_path / "m.json")
    assert meta.cfa_pattern == "BGGR" and meta.exif.iso == 200 and list(meta.black_level) == [64] * 4
    np.testing.assert_allclose(meta.cam_to_srgb, np.eye(3))
    mosaic = linear_to_mosaic(np.ones((4, 6, 3), np.float32), meta)
    assert mosaic.dtype == np.uint16 and mosaic.max() == 1023  # the smallest gain's channel saturates
    assert mosaic[0, 0] == np.rint(64 + (1023 - 64) / 1.5)    # B site: 1 / (1.5 / 1)


def test_classical_inverse_from_the_command_line(files, raw_samples, tmp_path):
    out = tmp_path / "out"
    assert main(["--renderer", "classical", "--inverse", str(files["jpeg"]), "--metadata",
                 str(raw_samples["dng"]), "--out", str(out), "--quiet"]) == 0
    back = read_raw(out / "photo.dng")
    assert back.bayer.shape == (96, 128) and back.cfa_pattern == "RGGB"
    assert main(["--renderer", "classical", "--model", "invisp", "--inverse", str(files["jpeg"]), "--metadata",
                 str(raw_samples["dng"]), "--out", str(out), "--quiet"]) == 2
