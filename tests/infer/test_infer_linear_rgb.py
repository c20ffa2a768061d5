"""The network renderer builds each model's own input kind from a RAW photo (InvISP: linear RGB)."""
import pathlib

import numpy as np

from isp_tf.infer.__main__ import main
from isp_tf.infer.pipeline import linear_rgb_input
from isp_tf.infer.png import read_png
from isp_tf.raw import pack_bayer, read_raw, unpack_bayer


def test_linear_rgb_input_equals_the_training_pipelines(raw_samples):
    from isp_tf.data.pipeline import linear_rgb_from_rggb

    raw = read_raw(raw_samples["dng"])
    ours = linear_rgb_input(raw)
    mosaic = unpack_bayer(pack_bayer(raw))
    ref = linear_rgb_from_rggb(mosaic, np.asarray(raw.wb_gains, np.float32)).numpy()
    assert ours.shape == ref.shape == mosaic.shape + (3,)
    assert np.max(np.abs(ours - ref)) < 1e-6


def test_infer_renders_a_raw_file_with_a_linear_rgb_model(tmp_path, capsys):
    from isp_tf.models import create_model, get_spec
    from isp_tf.models.weights import save_weights

    weights = save_weights(create_model("invisp", small=True), tmp_path / "invisp.weights.h5", "invisp",
                           get_spec("invisp").small_config)
    dng = sorted((pathlib.Path(__file__).resolve().parents[2] / "sample_RAW_photos").glob("*.dng"))[0]
    assert main([str(dng), "--out", str(tmp_path / "out"), "--weights", str(weights), "--quiet",
                 "--engine", "keras"]) == 0  # the LiteRT engine is model-agnostic (test_infer_litert.py)
    png = read_png(tmp_path / "out" / (dng.stem + ".png"))
    raw = read_raw(dng)
    expected = pack_bayer(raw).shape[:2]
    assert sorted(png.shape[:2]) == sorted((2 * expected[0], 2 * expected[1]))  # oriented for display
