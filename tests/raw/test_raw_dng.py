"""write_dng: what is written is what rawpy, exifread and read_raw read back."""
import exifread
import numpy as np
import pytest
import rawpy

from isp_tf.errors import InputShapeError, RawWriteError, UnsupportedCFAError
from isp_tf.raw import (CFA_PATTERNS, SRGB_TO_XYZ, Exif, read_raw, write_dng,
                        xyz_to_cam_from_cam_to_xyz)

CAM_TO_SRGB = np.array([[1.6, -0.5, -0.1], [-0.2, 1.5, -0.3], [0.05, -0.45, 1.4]])
EXIF = Exif(iso=400, exposure_time=1 / 125, f_number=2.8, focal_length=35.0)


def metadata(pattern, orientation=1):
    return dict(cfa_pattern=pattern, black_level=[60, 62, 64, 66], white_level=4000,
                wb_gains=[2.25, 1.0, 1.5], cam_to_xyz=SRGB_TO_XYZ @ CAM_TO_SRGB, exif=EXIF,
                orientation=orientation, camera="Testmaker Model 7")


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_round_trip_read_raw(tmp_path, pattern):
    bayer = np.random.default_rng(3).integers(0, 4096, (32, 48)).astype(np.uint16)
    path = tmp_path / "x.dng"
    write_dng(path, bayer, metadata(pattern))
    raw = read_raw(path)
    np.testing.assert_array_equal(raw.bayer, bayer)
    assert raw.bayer.dtype == np.uint16
    assert raw.cfa_pattern == pattern
    np.testing.assert_array_equal(raw.black_level, [60, 62, 64, 66])
    assert raw.white_level == 4000
    np.testing.assert_allclose(raw.wb_gains, [2.25, 1.0, 1.5], rtol=1e-6)
    np.testing.assert_allclose(raw.cam_to_srgb, CAM_TO_SRGB, atol=1e-9)
    np.testing.assert_allclose(raw.cam_to_xyz, SRGB_TO_XYZ @ CAM_TO_SRGB, atol=1e-9)
    assert raw.exif.iso == 400
    assert raw.exif.exposure_time == pytest.approx(1 / 125, rel=1e-6)
    assert raw.exif.f_number == pytest.approx(2.8, rel=1e-6)
    assert raw.exif.focal_length == pytest.approx(35.0, rel=1e-6)
    assert raw.orientation == 1
    assert raw.camera == "Testmaker Model 7"
    assert not list(tmp_path.glob("*.tmp-*"))  # atomic write left no temporary file


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_round_trip_through_rawpy_and_exifread_directly(tmp_path, pattern):
    bayer = np.random.default_rng(4).integers(0, 4096, (22, 24)).astype(np.uint16)
    path = tmp_path / "x.dng"
    write_dng(path, bayer, metadata(pattern))
    with rawpy.imread(str(path)) as rp:
        np.testing.assert_array_equal(rp.raw_image_visible, bayer)
        letters = "".join(rp.color_desc.decode()[c] for c in rp.raw_pattern.ravel())
        assert letters == pattern
        blacks = np.array(rp.black_level_per_channel)[rp.raw_pattern.ravel()]
        np.testing.assert_array_equal(blacks, [60, 62, 64, 66])
        assert rp.white_level == 4000
        wb = np.array(rp.camera_whitebalance[:3])
        np.testing.assert_allclose(wb / wb[1], [2.25, 1, 1.5], rtol=1e-6)
        np.testing.assert_allclose(rp.color_matrix[:, :3], CAM_TO_SRGB, atol=1e-6)
        assert rp.other.iso_speed == 400
        assert rp.other.shutter_speed == pytest.approx(1 / 125, rel=1e-6)
        assert rp.other.aperture == pytest.approx(2.8, rel=1e-6)
        assert rp.other.focal_length == pytest.approx(35, rel=1e-6)
    with open(path, "rb") as f:
        tags = exifread.process_file(f, details=False)
    assert tags["Image CFAPattern"].values == ["RGB".index(c) for c in pattern]
    assert tags["Image BlackLevel"].values == [60, 62, 64, 66]
    assert tags["Image Make"].values == "Testmaker" and tags["Image Model"].values == "Model 7"
    # exifread has no names for the DNG tags: AsShotNeutral 0xC628, ColorMatrix1 0xC621,
    # WhiteLevel 0xC61D
    assert [float(v) for v in tags["Image Tag 0xC628"].values] == \
        pytest.approx([1 / 2.25, 1, 1 / 1.5], rel=1e-6)
    cm1 = np.array([float(v) for v in tags["Image Tag 0xC621"].values]).reshape(3, 3)
    expected = xyz_to_cam_from_cam_to_xyz(SRGB_TO_XYZ @ CAM_TO_SRGB, [2.25, 1.0, 1.5])
    np.testing.assert_allclose(cm1, expected, atol=1e-6)
    assert tags["Image Tag 0xC61D"].values == [4000]
    assert str(tags["EXIF ExposureTime"]) == "1/125"
    assert float(tags["EXIF FNumber"].values[0]) == pytest.approx(2.8)
    assert tags["EXIF ISOSpeedRatings"].values == [400]
    assert float(tags["EXIF FocalLength"].values[0]) == 35.0
    assert tags["Image Orientation"].values == [1]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_round_trip(tmp_path, orientation):
    path = tmp_path / "o.dng"
    write_dng(path, np.zeros((24, 26), np.uint16), metadata("RGGB", orientation))
    assert read_raw(path).orientation == orientation


@pytest.mark.parametrize("key", ["crw", "dng"])
def test_round_trip_of_a_real_file(tmp_path, raw_samples, key):
    src = read_raw(raw_samples[key])
    crop = src.bayer[:64, :96]
    write_dng(tmp_path / "real.dng", crop, src)
    back = read_raw(tmp_path / "real.dng")
    np.testing.assert_array_equal(back.bayer, crop)
    assert back.cfa_pattern == src.cfa_pattern
    np.testing.assert_array_equal(back.black_level, src.black_level)
    assert back.white_level == src.white_level
    np.testing.assert_allclose(back.wb_gains, src.wb_gains, rtol=1e-6)
    np.testing.assert_allclose(back.cam_to_srgb, src.cam_to_srgb, atol=1e-9)
    assert back.camera == src.camera and back.orientation == src.orientation
    for field in ("iso", "exposure_time", "f_number", "focal_length"):
        want = getattr(src.exif, field)
        got = getattr(back.exif, field)
        assert got is None if want is None else got == pytest.approx(want, rel=1e-6)


def test_unknown_exif_is_left_out(tmp_path):
    md = metadata("RGGB")
    md["exif"] = Exif(iso=200)
    write_dng(tmp_path / "e.dng", np.zeros((22, 22), np.uint16), md)
    exif = read_raw(tmp_path / "e.dng").exif
    assert (exif.iso, exif.exposure_time, exif.f_number, exif.focal_length) == \
        (200, None, None, None)


def test_bad_input_is_refused(tmp_path):
    p = tmp_path / "bad.dng"
    ok = np.zeros((22, 22), np.uint16)
    with pytest.raises(RawWriteError, match="non-integer"):
        write_dng(p, np.full((22, 22), 0.5), metadata("RGGB"))
    with pytest.raises(RawWriteError, match=r"\[0, 65535\]"):
        write_dng(p, np.full((22, 22), 70000), metadata("RGGB"))
    with pytest.raises(InputShapeError, match="even"):
        write_dng(p, np.zeros((23, 22), np.uint16), metadata("RGGB"))
    with pytest.raises(InputShapeError, match="at least 22"):
        write_dng(p, np.zeros((20, 22), np.uint16), metadata("RGGB"))
    with pytest.raises(UnsupportedCFAError, match="RGBG"):
        write_dng(p, ok, metadata("RGBG"))
    md = metadata("RGGB")
    md["cam_to_xyz"] = np.eye(3)  # does not map camera neutral to the D65 white
    with pytest.raises(RawWriteError, match="D65"):
        write_dng(p, ok, md)
    md = metadata("RGGB")
    md["exif"] = Exif(exposure_time=1e12)  # beyond any TIFF RATIONAL
    with pytest.raises(RawWriteError, match="RATIONAL"):
        write_dng(p, ok, md)
    md = metadata("RGGB")
    md["white_level"] = 50  # below the black level
    with pytest.raises(RawWriteError, match="white_level"):
        write_dng(p, ok, md)
    assert not p.exists()


@pytest.mark.parametrize("top,left", [(1, 0), (0, 1), (1, 1), (3, 2)])
def test_active_area_margins_shift_the_pattern(tmp_path, top, left):
    """A DNG whose ActiveArea starts at an odd row/column: the visible area's top-left is
    not the sensor's. Every pixel is labelled with its colour (CFAPattern RGGB counted
    from the ActiveArea origin, as the DNG spec says); the pattern read_raw reports must
    give each visible pixel its labelled colour."""
    from isp_tf.raw.dng import BYTE, LONG, SHORT, SRATIONAL, write_tiff

    yy, xx = np.mgrid[0:40, 0:50]
    colour = np.array([[0, 1], [1, 2]])[(yy - top) % 2, (xx - left) % 2]
    full = (1000 * (colour + 1) + yy).astype(np.uint16)
    tags = [(262, SHORT, 32803), (33421, SHORT, [2, 2]), (33422, BYTE, [0, 1, 1, 2]),
            (50706, BYTE, [1, 4, 0, 0]), (50717, LONG, 4095), (50829, LONG, [top, left, 40, 50]),
            (50721, SRATIONAL, [1, 0, 0, 0, 1, 0, 0, 0, 1])]
    write_tiff(tmp_path / "aa.dng", full, tags)
    raw = read_raw(tmp_path / "aa.dng")
    h, w = raw.bayer.shape
    assert h <= 40 - top and w <= 50 - left
    np.testing.assert_array_equal(raw.bayer, full[40 - h:, 50 - w:])
    labels = raw.bayer // 1000 - 1
    for y in (0, 1):
        for x in (0, 1):
            assert np.all(labels[y::2, x::2] == "RGB".index(raw.cfa_pattern[2 * y + x]))
