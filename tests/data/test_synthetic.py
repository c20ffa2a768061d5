"""Unprocessing (Brooks et al. 2019): exact inverses, consistent metadata, noise, photos."""
import numpy as np
import pytest

from isp_tf.data import synthetic
from isp_tf.data.photos import BUNDLED_PHOTOS, load_photo, photo_path
from isp_tf.data.synthetic import (CAMERA_XYZ_TO_CAM, SHOT_NOISE_RANGE, inverse_smoothstep, mosaic,
                                   synthesize)
from isp_tf.errors import DatasetError
from isp_tf.raw import CFA_PATTERNS, normalize_bayer, read_raw, write_dng


def test_inverse_smoothstep_inverts_smoothstep():
    y = np.linspace(0, 1, 1001)
    x = inverse_smoothstep(y)
    np.testing.assert_allclose(3 * x ** 2 - 2 * x ** 3, y, atol=1e-12)


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_mosaic_samples_the_right_colour(pattern):
    rgb = np.zeros((4, 6, 3))
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 1.0, 2.0, 3.0
    m = mosaic(rgb, pattern)
    expected = np.array([[1.0, 2.0, 3.0]["RGB".index(c)] for c in pattern]).reshape(2, 2)
    np.testing.assert_array_equal(m, np.tile(expected, (2, 3)))


def test_same_seed_same_raw_other_seed_other_raw():
    image = load_photo("chelsea")[:64, :96]
    a, b, c = synthesize(image, seed=3), synthesize(image, seed=3), synthesize(image, seed=4)
    np.testing.assert_array_equal(a.raw.bayer, b.raw.bayer)
    assert a.raw.cfa_pattern == b.raw.cfa_pattern and a.params["shot_noise"] == b.params["shot_noise"]
    assert not np.array_equal(a.raw.bayer, c.raw.bayer)


def test_metadata_inverts_the_unprocessing_exactly():
    """WB gains, digital gain and cam_to_srgb of the RawImage, then gamma and smoothstep,
    give the photo back (noise off, no highlights): the metadata is the one used."""
    image = load_photo("coffee")[100:164, 200:296] * 0.8  # below the highlight inflection
    pair = synthesize(image, seed=1, noise=False)
    raw = pair.raw
    wb = np.asarray(raw.wb_gains) * pair.params["rgb_gain"]
    linear_srgb = (pair.linear * wb) @ np.asarray(raw.cam_to_srgb).T
    x = np.maximum(linear_srgb, 1e-8) ** (1 / 2.2)
    np.testing.assert_allclose(3 * x ** 2 - 2 * x ** 3, pair.target, atol=1e-5)
    np.testing.assert_allclose(np.asarray(raw.cam_to_srgb).sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(raw.cam_to_xyz, synthetic._SRGB_TO_XYZ @ raw.cam_to_srgb, atol=1e-12)
    # The mosaic is the linear image quantised between the sensor's levels.
    m = normalize_bayer(raw)
    assert np.abs(m - mosaic(pair.linear, raw.cfa_pattern)).max() <= 0.5 / (raw.white_level - raw.black_level[0])


def test_black_and_white_hit_the_sensor_levels():
    black = synthesize(np.zeros((8, 8, 3)), seed=0, levels=(600, 15520), noise=False)
    white = synthesize(np.ones((8, 8, 3)), seed=0, levels=(600, 15520), noise=False)
    assert black.raw.bayer.dtype == np.uint16
    np.testing.assert_array_equal(black.raw.bayer, 600)
    np.testing.assert_array_equal(white.raw.bayer, 15520)  # highlight-safe: white stays saturated
    np.testing.assert_array_equal(black.raw.black_level, [600] * 4)
    assert white.raw.white_level == 15520


def test_noise_variance_follows_shot_and_read():
    flat = np.full((256, 256, 3), 0.5)
    pair = synthesize(flat, seed=2, levels=(0, 65535), cfa_pattern="RGGB")
    clean = synthesize(flat, seed=2, levels=(0, 65535), cfa_pattern="RGGB", noise=False)
    shot, read = pair.params["shot_noise"], pair.params["read_noise"]
    noisy, base = normalize_bayer(pair.raw), normalize_bayer(clean.raw)
    for dy, dx in ((0, 0), (0, 1), (1, 1)):
        x = base[dy::2, dx::2].mean()
        measured = (noisy - base)[dy::2, dx::2].var()
        assert measured == pytest.approx(shot * x + read, rel=0.1)


def test_iso_and_exposure_follow_the_noise():
    image = load_photo("rocket")[:32, :32]
    for seed in range(5):
        pair = synthesize(image, seed=seed)
        shot = pair.params["shot_noise"]
        assert SHOT_NOISE_RANGE[0] <= shot <= SHOT_NOISE_RANGE[1]
        assert pair.raw.exif.iso == max(25, round(6400 * shot / 0.012))
        assert pair.raw.exif.exposure_time == pytest.approx(1 / (1.25 * pair.raw.exif.iso))
    fixed = synthesize(image, seed=0, iso=1600)
    assert fixed.raw.exif.iso == 1600 and fixed.params["shot_noise"] == pytest.approx(0.003)


def test_colour_matrix_is_a_convex_mix_of_the_table():
    pair = synthesize(load_photo("astronaut")[:16, :16], seed=5)
    mats = np.stack(list(CAMERA_XYZ_TO_CAM.values()))
    lo, hi = mats.min(axis=0), mats.max(axis=0)
    m = pair.params["xyz_to_cam"]
    assert np.all(m >= lo - 1e-12) and np.all(m <= hi + 1e-12)


def test_synthetic_raw_survives_a_dng_round_trip(tmp_path):
    pair = synthesize(load_photo("grace_hopper")[:40, :50], seed=9, cfa_pattern="GBRG")
    write_dng(tmp_path / "s.dng", pair.raw.bayer, pair.raw)
    back = read_raw(tmp_path / "s.dng")
    np.testing.assert_array_equal(back.bayer, pair.raw.bayer)
    assert back.cfa_pattern == "GBRG" and back.exif.iso == pair.raw.exif.iso
    np.testing.assert_allclose(back.wb_gains, pair.raw.wb_gains, rtol=1e-5)
    np.testing.assert_allclose(back.cam_to_srgb, pair.raw.cam_to_srgb, atol=1e-4)


def test_bad_inputs():
    with pytest.raises(DatasetError, match="shape"):
        synthesize(np.zeros((8, 8)))
    with pytest.raises(DatasetError, match="CFA pattern"):
        synthesize(np.zeros((8, 8, 3)), cfa_pattern="RGBW")
    with pytest.raises(DatasetError, match="iso"):
        synthesize(np.zeros((8, 8, 3)), iso=0)


def test_bundled_photos_load_without_download():
    for name in BUNDLED_PHOTOS:
        image = load_photo(name)
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.float32
        assert 0 <= image.min() and image.max() <= 1 and image.std() > 0.05
    with pytest.raises(DatasetError, match="need a download"):
        photo_path("eagle")  # scikit-image fetches this one from the network


def test_matrices_of_the_real_samples_join_the_mix(raw_samples):
    table = synthetic.camera_matrices(include_raw_samples=True)
    extra = {k: v for k, v in table.items() if k not in CAMERA_XYZ_TO_CAM}
    assert any(raw_samples["dng"].name in k for k in extra) and any(raw_samples["crw"].name in k for k in extra)
    for m in extra.values():  # XYZ -> camera, D65 white to a neutral whose largest value is 1
        white = m @ synthetic._SRGB_TO_XYZ.sum(axis=1)
        assert m.shape == (3, 3) and white.max() == pytest.approx(1.0)
    pair = synthesize(load_photo("astronaut")[:32, :32], seed=0, matrices=extra)
    assert pair.raw.bayer.shape == (32, 32)
