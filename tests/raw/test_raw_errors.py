"""Bad input raises the specific isp_tf.errors exception, naming the file and the reason.

The unusual DNGs are written with tifffile (not with our own writer) so that
the reader is checked against an independent encoder. No rawpy exception may
escape: every case below would otherwise surface as a LibRawError.
"""
import numpy as np
import pytest
import tifffile

from isp_tf.errors import (CorruptRawError, InputShapeError, LinearRawError, MissingFileError,
                           NotRawError, RawReadError, UnsupportedCFAError,
                           UnsupportedSensorError)
from isp_tf.raw import read_bayer_array, read_raw

X_TRANS = [1, 1, 0, 1, 1, 2, 1, 1, 2, 1, 1, 0, 2, 0, 1, 0, 2, 1,
           1, 1, 2, 1, 1, 0, 1, 1, 0, 1, 1, 2, 0, 2, 1, 2, 0, 1]


def tiff_dng(path, data, photometric, extra=()):
    """A minimal DNG: DNGVersion, WhiteLevel, Make/Model, ColorMatrix1 (identity)."""
    tags = [(50706, "B", 4, (1, 4, 0, 0), True), (50717, "I", 1, 4095, True),
            (271, "s", 0, "Foo", True), (272, "s", 0, "Bar", True),
            (50721, "2i", 9, [1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1], True)]
    tifffile.imwrite(path, data, photometric=photometric, extratags=tags + list(extra))
    return path


def cfa_tags(dims, codes):
    return [(33421, "H", 2, dims, True), (33422, "B", len(codes), bytes(codes), True)]


@pytest.fixture()
def mosaic():
    return np.random.default_rng(0).integers(0, 4096, (36, 48)).astype(np.uint16)


def _raises(exc_type, path, *words):
    with pytest.raises(exc_type) as info:
        read_raw(path)
    assert type(info.value) is exc_type, type(info.value)
    text = str(info.value)
    assert str(path) in text
    for w in words:
        assert w in text, text
    return info.value


def test_missing_file(tmp_path):
    err = _raises(MissingFileError, tmp_path / "nope.dng", "no such")
    assert isinstance(err, FileNotFoundError)


@pytest.mark.parametrize("name,content,word", [
    ("empty.dng", b"", "empty"),
    ("notes.txt", b"shopping list\n" * 20, "text"),
    ("noise.cr2", bytes(range(256)) * 8, "not a RAW"),
])
def test_not_raw_bytes(tmp_path, name, content, word):
    path = tmp_path / name
    path.write_bytes(content)
    err = _raises(NotRawError, path, word)
    assert isinstance(err, RawReadError) and err.path == str(path)


def test_images_are_not_raw(tmp_path):
    import imageio.v3 as iio

    img = np.zeros((32, 32, 3), np.uint8)
    iio.imwrite(tmp_path / "a.jpg", img)
    iio.imwrite(tmp_path / "a.png", img)
    tifffile.imwrite(tmp_path / "a.tif", img)
    _raises(NotRawError, tmp_path / "a.jpg", "JPEG")
    _raises(NotRawError, tmp_path / "a.png", "PNG")
    _raises(NotRawError, tmp_path / "a.tif", "TIFF image")
    _raises(NotRawError, tmp_path, "directory")


@pytest.mark.parametrize("key", ["dng", "crw"])
@pytest.mark.parametrize("fraction", [0.5, 0.05])
def test_truncated_real_files(tmp_path, raw_samples, key, fraction):
    data = raw_samples[key].read_bytes()
    path = tmp_path / f"cut_{raw_samples[key].name}"
    path.write_bytes(data[:int(len(data) * fraction)])
    _raises(CorruptRawError, path, "truncated")


def test_linear_dng(tmp_path, mosaic):
    path = tiff_dng(tmp_path / "linear.dng", np.stack([mosaic] * 3, axis=-1), 34892)
    _raises(LinearRawError, path, "linear DNG", "demosaiced")


def test_x_trans(tmp_path, mosaic):
    path = tiff_dng(tmp_path / "xtrans.dng", mosaic, 32803, cfa_tags((6, 6), X_TRANS))
    _raises(UnsupportedSensorError, path, "X-Trans")


def test_monochrome(tmp_path, mosaic):
    path = tiff_dng(tmp_path / "mono.dng", mosaic, "minisblack")
    _raises(UnsupportedSensorError, path, "monochrome")


def test_foveon_signature(tmp_path):
    """No Foveon sample exists here: a file with the X3F signature stands in for one."""
    path = tmp_path / "sigma.x3f"
    path.write_bytes(b"FOVb" + bytes(4096))
    _raises(UnsupportedSensorError, path, "Foveon")


@pytest.mark.parametrize("codes,letters", [([0, 1, 1, 1], "RGGG"), ([3, 5, 1, 4], None)])
def test_patterns_outside_the_four(tmp_path, mosaic, codes, letters):
    path = tiff_dng(tmp_path / "odd.dng", mosaic, 32803, cfa_tags((2, 2), codes))
    _raises(UnsupportedCFAError, path, "not one of RGGB, GRBG, GBRG, BGGR", *filter(None, [letters]))


def test_read_bayer_array_errors(tmp_path, raw_samples):
    dump = raw_samples["nikon_raw"]
    kw = dict(cfa_pattern="RGGB", black_level=600, white_level=15520)
    with pytest.raises(NotRawError, match="786432 bytes, but 512x512"):
        read_bayer_array(dump, shape=(512, 512), **kw)
    with pytest.raises(InputShapeError, match="needs shape"):
        read_bayer_array(dump, **kw)
    with pytest.raises(MissingFileError, match="nope.raw"):
        read_bayer_array(tmp_path / "nope.raw", shape=(2, 2), **kw)
    with pytest.raises(UnsupportedCFAError, match="'RGBG'"):
        read_bayer_array(dump, shape=(512, 768), cfa_pattern="RGBG", black_level=600,
                         white_level=15520)
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "rgb.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(NotRawError, match="one channel"):
        read_bayer_array(tmp_path / "rgb.png", **kw)
    with pytest.raises(InputShapeError, match="2-D"):
        read_bayer_array(np.zeros((4, 4, 4)), **kw)


@pytest.mark.parametrize("where", [1 / 4, 1 / 3, 1 / 2])
def test_damaged_compressed_data(tmp_path, raw_samples, where):
    """4 KB of noise inside the CRW's compressed (lossless JPEG-like) pixel data."""
    data = bytearray(raw_samples["crw"].read_bytes())
    at = int(len(data) * where)
    data[at:at + 4096] = np.random.default_rng(7).integers(0, 256, 4096, np.uint8).tobytes()
    path = tmp_path / "damaged.crw"
    path.write_bytes(bytes(data))
    _raises(CorruptRawError, path, "damaged")


def test_damaged_dng_header(tmp_path, raw_samples):
    """Noise over the first IFD: no DNG tags left, but the name says DNG -> corrupt, not 'not RAW'."""
    data = bytearray(raw_samples["dng"].read_bytes())
    data[29:29 + 4096] = np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes()
    path = tmp_path / "damaged.dng"
    path.write_bytes(bytes(data))
    _raises(CorruptRawError, path, "damaged header")
    path.rename(tmp_path / "damaged.tif")  # named like an image: not a RAW file
    _raises(NotRawError, tmp_path / "damaged.tif", "TIFF image")


def test_singular_colour_matrix_does_not_crash(tmp_path, mosaic):
    """A DNG whose ColorMatrix1 is singular: read_raw falls back to the next colour source."""
    singular = [1, 1] * 9  # all ones
    tags = [(50706, "B", 4, (1, 4, 0, 0), True), (50717, "I", 1, 4095, True),
            (271, "s", 0, "Foo", True), (272, "s", 0, "Bar", True),
            (50721, "2i", 9, singular, True)] + cfa_tags((2, 2), [0, 1, 1, 2])
    tifffile.imwrite(tmp_path / "s.dng", mosaic, photometric=32803, extratags=tags)
    raw = read_raw(tmp_path / "s.dng")
    assert np.all(np.isfinite(raw.cam_to_srgb))
    np.testing.assert_allclose(raw.cam_to_srgb.sum(axis=1), 1.0, atol=1e-6)


def test_reading_from_threads_is_safe(raw_samples):
    """tf.data decodes in parallel threads: concurrent reads give identical results."""
    from concurrent.futures import ThreadPoolExecutor

    paths = [raw_samples["dng"], raw_samples["crw"]] * 3
    with ThreadPoolExecutor(4) as pool:
        raws = list(pool.map(read_raw, paths))
    for raw, path in zip(raws, paths):
        ref = raws[paths.index(path)]
        np.testing.assert_array_equal(raw.bayer, ref.bayer)
        np.testing.assert_array_equal(raw.wb_gains, ref.wb_gains)
        assert raw.exif == ref.exif and raw.camera == ref.camera


def _dng_with_preview(path, data, photometric, extra=()):
    """Adobe-converter layout: IFD0 is an RGB preview, the main image is its SubIFD."""
    tags = [(50706, "B", 4, (1, 4, 0, 0), True), (50717, "I", 1, 4095, True),
            (271, "s", 0, "Foo", True), (272, "s", 0, "Bar", True),
            (50721, "2i", 9, [1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1], True)]
    with tifffile.TiffWriter(path) as tw:
        tw.write(np.zeros((8, 12, 3), np.uint8), photometric="rgb", subfiletype=1, subifds=1,
                 extratags=tags)
        tw.write(data, photometric=photometric, subfiletype=0, extratags=list(extra))
    return path


def test_main_image_in_a_subifd(tmp_path, mosaic):
    path = _dng_with_preview(tmp_path / "sub.dng", mosaic, 32803, cfa_tags((2, 2), [1, 0, 2, 1]))
    raw = read_raw(path)
    assert raw.cfa_pattern == "GRBG"
    np.testing.assert_array_equal(raw.bayer, mosaic)
    lin = _dng_with_preview(tmp_path / "lin.dng", np.stack([mosaic] * 3, -1), 34892)
    _raises(LinearRawError, lin, "linear DNG")
    odd = _dng_with_preview(tmp_path / "odd.dng", mosaic, 32803, cfa_tags((2, 2), [0, 1, 1, 1]))
    _raises(UnsupportedCFAError, odd, "'RGGG'")
