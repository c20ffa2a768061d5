"""ParamISP training data: the simulated cameras and the data hook (the losses and stages: test_paramisp.py)."""
import numpy as np
import pytest

from isp_tf.data.cameras import (CAMERAS, camera_params_vector, quiet_camera_warnings, select_camera,
                                 synthesize_camera)
from isp_tf.errors import DatasetError


def test_simulated_camera_exif_says_how_the_raw_was_exposed():
    photo = np.random.default_rng(0).random((40, 56, 3))
    cam = CAMERAS["cam_c"]
    pair = synthesize_camera(photo, "cam_c", seed=3, noise=False)
    e, p = pair.raw.exif, pair.params
    bias = np.log2(e.exposure_time * cam.meter * e.iso / e.f_number ** 2)
    assert bias == pytest.approx(p["bias_ev"], abs=0.01)  # t = 2^b N^2 / (K S); ISO rounded in the EXIF
    assert cam.iso_range[0] <= e.iso <= cam.iso_range[1] and e.f_number in cam.f_numbers
    assert pair.raw.cfa_pattern == cam.cfa_pattern and pair.raw.white_level == cam.levels[1]
    # another shot of the same photo: the green sites (no white-balance gain) scale by 2^(b1 - b2)
    other = synthesize_camera(photo, "cam_c", seed=4, noise=False)
    assert abs(p["bias_ev"] - other.params["bias_ev"]) > 0.2

    def greens(raw):  # GRBG: greens at (0, 0) and (1, 1)
        x = (raw.bayer.astype(float) - raw.black_level[0]) / (raw.white_level - raw.black_level[0])
        return np.concatenate([x[0::2, 0::2].ravel(), x[1::2, 1::2].ravel()])

    a, b = greens(pair.raw), greens(other.raw)
    ok = (a > 0.03) & (b > 0.03) & (a < 0.4) & (b < 0.4)  # linear part of the highlight-sparing gain
    assert ok.sum() > 100
    assert np.median(a[ok] / b[ok]) == pytest.approx(2 ** (p["bias_ev"] - other.params["bias_ev"]), rel=0.02)
    with pytest.raises(DatasetError, match="unknown simulated camera"):
        synthesize_camera(photo, "cam_z")
    assert select_camera("cameras:16", "cam_b") == ["cameras:16:cam_b"]
    with pytest.raises(DatasetError, match="not a cameras: dataset"):
        select_camera(["synthetic:8"], "cam_b")


def test_dataset_hook_yields_both_directions_targets_and_the_files_params():
    from isp_tf.data.layouts import find_examples
    from isp_tf.models.paramisp.training import paramisp_dataset

    spec = "cameras:2:cam_a,cam_b:coffee"
    (x, y), = list(paramisp_dataset(spec, split="val", patch_size=32, batch_size=2).take(1))
    packed, params, srgb = (t.numpy() for t in x)
    assert packed.shape == (2, 16, 16, 4) and params.shape == (2, 84) and srgb.shape == (2, 32, 32, 3)
    assert y["bayer"].shape == (2, 32, 32, 1)
    np.testing.assert_array_equal(srgb, y["rgb"].numpy())  # no noise outside training
    raws = [e.load()[0] for e in find_examples(spec, "val")]
    with quiet_camera_warnings():  # cam_b's fastest shutter speeds lie below the encoding's range
        want = np.stack([camera_params_vector(r) for r in raws])
    np.testing.assert_allclose(params, want, rtol=1e-6)
    # training: dequantisation noise and optics dropout, the same for the same (seed, step)
    from isp_tf.models.paramisp.training import to_model_batch

    batch = ({"raw": x[0], "params": x[1]}, y["rgb"])
    a = [t.numpy() for t in to_model_batch(*batch, seed=5, index=3)[0]]
    b = [t.numpy() for t in to_model_batch(*batch, seed=5, index=3)[0]]
    c = [t.numpy() for t in to_model_batch(*batch, seed=5, index=4)[0]]
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert 0 < np.abs(a[0] - packed).max() < 0.01 and not np.array_equal(a[0], c[0])  # N(0, 0.4 / 1023)
    assert 0 < np.abs(a[2] - srgb).max() < 0.02                                        # N(0, 0.4 / 255)
    fields = a[1][:, 24:].reshape(2, 4, 15)
    dropped, kept = np.all(fields == 0, axis=-1), np.all(fields == params[:, 24:].reshape(2, 4, 15), axis=-1)
    assert np.all(dropped | kept)  # a field is dropped whole or kept whole
    np.testing.assert_array_equal(a[1][:, :24], params[:, :24])  # colour terms are never dropped
    many = np.concatenate([to_model_batch(*batch, seed=5, index=i)[0][1].numpy() for i in range(40)])
    assert 0.1 < np.mean(np.all(many[:, 24:].reshape(-1, 4, 15) == 0, axis=-1)) < 0.3  # p = 0.2
