"""Every real camera file in shared/raw_samples decodes with the facts of its SOURCES.md."""
import numpy as np
import pytest
import rawpy
import tifffile

from isp_tf.raw import read_bayer_array, read_raw

NIKON_CM2 = [[.9020, -.2890, -.0715], [-.4535, 1.2436, .2348], [-.0934, .1919, .7086]]


def _assert_colour_consistent(raw, xyz_to_cam):
    """cam_to_srgb rows sum to 1, and xyz_to_cam @ cam_to_xyz is diagonal
    (the file's matrix undone up to the white balance)."""
    np.testing.assert_allclose(raw.cam_to_srgb.sum(axis=1), 1.0, atol=1e-9)
    prod = np.asarray(xyz_to_cam, np.float64) @ raw.cam_to_xyz
    off = prod - np.diag(np.diag(prod))
    assert np.abs(off).max() < 1e-6 * np.abs(prod).max()  # LibRaw keeps float32
    assert np.all(np.diag(prod) > 0)


@pytest.fixture(scope="module")
def dng(raw_samples):
    return read_raw(raw_samples["dng"])


@pytest.fixture(scope="module")
def crw(raw_samples):
    return read_raw(raw_samples["crw"])


def test_dng_geometry_pattern_levels(dng):
    assert dng.bayer.shape == (1156, 1734)
    assert dng.bayer.dtype == np.uint16
    assert dng.cfa_pattern == "RGGB"
    np.testing.assert_array_equal(dng.black_level, [2056] * 4)
    assert dng.white_level == 15000
    assert dng.camera == "Canon EOS Kiss X4"
    assert dng.orientation == 1


def test_dng_visible_area_is_the_active_area(dng, raw_samples):
    """ActiveArea (26, 152, 1182, 1886): bayer is that window of the stored strip."""
    with tifffile.TiffFile(raw_samples["dng"]) as tif:  # 14-bit packed, MSB first
        page = tif.pages[0]
        assert page.bitspersample == 14
        start, size = page.dataoffsets[0], page.databytecounts[0]
    data = np.frombuffer(raw_samples["dng"].read_bytes()[start:start + size], np.uint8)
    bits = np.unpackbits(data).reshape(-1, 14).astype(np.uint16)
    full = (bits << np.arange(13, -1, -1, dtype=np.uint16)).sum(axis=1, dtype=np.uint16)
    full = full.reshape(page.shape)
    np.testing.assert_array_equal(dng.bayer, full[26:1182, 152:1886])


def test_dng_white_balance_from_as_shot_neutral_normalised_by_green(dng):
    # AsShotNeutral = (1, 2.477, 1.462), normalised to R in the file: gains = 1 / neutral, G = 1
    np.testing.assert_allclose(dng.wb_gains, [2.477, 1.0, 2.477 / 1.462], rtol=1e-5)


def test_dng_matrix_comes_from_the_colormatrix1_tag(dng, raw_samples):
    with rawpy.imread(str(raw_samples["dng"])) as rp:
        assert not np.any(rp.rgb_xyz_matrix)  # the fact the fallback exists for
        libraw_rgb_cam = rp.color_matrix[:, :3]  # LibRaw's own camera->sRGB for this DNG
    cm1 = np.array([6461, -1164, -857, -3825, 11597, 2534, -416, 1540, 6039]).reshape(3, 3) / 1e4
    _assert_colour_consistent(dng, cm1)
    np.testing.assert_allclose(dng.cam_to_srgb, libraw_rgb_cam, atol=2e-6)


def test_dng_zero_exif_fields_are_none(dng):
    # the EXIF IFD holds zeros (Magic Lantern did not know them); LibRaw's 1 s / f/1.0 are not facts
    assert (dng.exif.iso, dng.exif.exposure_time, dng.exif.f_number, dng.exif.focal_length) == \
        (None, None, None, None)


def test_crw_facts_and_daylight_fallback(crw, raw_samples):
    assert crw.bayer.shape == (1448, 2176)
    assert crw.cfa_pattern == "RGGB"
    assert crw.white_level == 4095
    assert np.all(np.abs(crw.black_level - 128) <= 1)  # "about 128": measured 127, 128, 128, 128
    assert crw.camera == "Canon EOS D30"
    with rawpy.imread(str(raw_samples["crw"])) as rp:
        assert rp.camera_whitebalance[0] == -1  # invalid as-shot WB ...
        day = np.array(rp.daylight_whitebalance[:3])
    np.testing.assert_allclose(crw.wb_gains, day / day[1], rtol=1e-6)  # ... so daylight
    np.testing.assert_allclose(crw.wb_gains, [2.1024, 1.0, 1.0567], atol=1e-4)
    assert crw.wb_gains[1] == 1.0


def test_crw_matrix_from_libraw_table_and_exif(crw):
    d30 = [[0.9900, -0.2771, -0.1324], [-0.7072, 1.4229, 0.3140], [-0.2790, 0.3344, 0.8861]]
    _assert_colour_consistent(crw, d30)
    assert crw.exif.iso == 100
    assert crw.exif.focal_length == 31
    assert crw.exif.f_number == pytest.approx(5.6, abs=0.01)
    assert crw.exif.exposure_time > 0


def test_nikon_dump_with_given_metadata(raw_samples):
    raw = read_bayer_array(raw_samples["nikon_raw"], shape=(512, 768), cfa_pattern="RGGB",
                           black_level=600, white_level=15520,
                           wb_gains=[1.94921875, 1, 1.34375], color_matrix=NIKON_CM2)
    assert raw.bayer.shape == (512, 768) and raw.bayer.dtype == np.uint16
    first = np.frombuffer(raw_samples["nikon_raw"].read_bytes()[:4], "<u2")
    np.testing.assert_array_equal(raw.bayer[0, :2], first)
    assert raw.bayer.max() <= 2 ** 14 - 1  # 14-bit data
    assert raw.cfa_pattern == "RGGB"
    np.testing.assert_array_equal(raw.black_level, [600] * 4)
    assert raw.white_level == 15520
    np.testing.assert_array_equal(raw.wb_gains, np.float32([1.94921875, 1, 1.34375]))
    _assert_colour_consistent(raw, NIKON_CM2)


def test_zurich_style_16bit_png_equals_the_dump(raw_samples, tmp_path):
    """A single-channel 16-bit Bayer PNG (the Zurich RAW-to-RGB format) reads back
    to the same mosaic as the headerless dump."""
    import imageio.v3 as iio

    kw = dict(cfa_pattern="RGGB", black_level=600, white_level=15520)
    dump = read_bayer_array(raw_samples["nikon_raw"], shape=(512, 768), **kw)
    iio.imwrite(tmp_path / "patch.png", dump.bayer)
    png = read_bayer_array(tmp_path / "patch.png", **kw)
    assert png.bayer.dtype == np.uint16
    np.testing.assert_array_equal(png.bayer, dump.bayer)
    assert png.path == str(tmp_path / "patch.png")
