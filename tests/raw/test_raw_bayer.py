"""Packing, unpacking, normalising and demosaicing Bayer mosaics, for every CFA pattern."""
import numpy as np
import pytest

from isp_tf.errors import InputShapeError, UnsupportedCFAError
from isp_tf.raw import (CFA_PATTERNS, RawImage, average_greens, demosaic_bilinear,
                        normalize_bayer, pack_bayer, rggb_offset, unpack_bayer)

COLOUR_ID = {"R": 0, "G": 1, "B": 2}


def colour_ids(shape, pattern):
    """(H, W) array of 0/1/2 = R/G/B written directly from the pattern string."""
    h, w = shape
    out = np.empty(shape, int)
    for y in range(h):
        for x in range(w):
            out[y, x] = COLOUR_ID[pattern[2 * (y % 2) + (x % 2)]]
    return out


def make_raw(mosaic, pattern, black=(0, 0, 0, 0), white=1.0):
    return RawImage(bayer=mosaic, cfa_pattern=pattern, black_level=np.float32(black),
                    white_level=white, wb_gains=np.ones(3, np.float32),
                    cam_to_xyz=np.eye(3), cam_to_srgb=np.eye(3))


def test_rggb_offset():
    assert [rggb_offset(p) for p in CFA_PATTERNS] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert rggb_offset("bggr") == (1, 1)
    with pytest.raises(UnsupportedCFAError, match="RGBG"):
        rggb_offset("RGBG")


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_pack_puts_each_colour_in_its_channel(pattern):
    ids = colour_ids((10, 12), pattern)
    dy, dx = rggb_offset(pattern)
    packed = pack_bayer(ids.astype(np.float32), pattern)
    assert packed.dtype == np.float32
    assert packed.shape == ((10 - dy) // 2, (12 - dx) // 2, 4)
    for channel, colour in enumerate("RGGB"):
        assert np.all(packed[..., channel] == COLOUR_ID[colour]), (pattern, channel)


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_pack_unpack_exact(pattern):
    rng = np.random.default_rng(1)
    mosaic = rng.random((9, 14)).astype(np.float32)  # odd height on purpose
    dy, dx = rggb_offset(pattern)
    packed = pack_bayer(mosaic, pattern)
    window = mosaic[dy:dy + 2 * packed.shape[0], dx:dx + 2 * packed.shape[1]]
    np.testing.assert_array_equal(unpack_bayer(packed), window)
    np.testing.assert_array_equal(pack_bayer(unpack_bayer(packed), "RGGB"), packed)
    assert packed[0, 0, 0] == mosaic[dy, dx]          # R
    assert packed[0, 0, 3] == mosaic[dy + 1, dx + 1]  # B


def test_unpack_keeps_leading_batch_axes():
    rng = np.random.default_rng(2)
    packed = rng.random((2, 3, 5, 4)).astype(np.float32)
    out = unpack_bayer(packed)
    assert out.shape == (2, 6, 10)
    np.testing.assert_array_equal(out[1], unpack_bayer(packed[1]))


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_pack_raw_image_normalises_per_site(pattern):
    black = [10, 20, 30, 40]  # per position of the 2x2 block, in reading order
    mosaic = np.tile(np.array([[10, 20], [30, 40]], np.uint16), (4, 4))
    mosaic += np.uint16(55)  # every site 55 above its own black level
    packed = pack_bayer(make_raw(mosaic, pattern, black=black, white=120.0))
    site_black = np.float32(black).reshape(2, 2)
    dy, dx = rggb_offset(pattern)
    for channel, (sy, sx) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        y, x = (dy + sy) % 2, (dx + sx) % 2
        expected = np.float32(55) / (np.float32(120) - site_black[y, x])
        np.testing.assert_allclose(packed[..., channel], expected, rtol=1e-6)


def test_normalize_clips_and_scales():
    mosaic = np.array([[0, 100, 600, 1100], [50, 99, 1000, 2000]], np.uint16)
    out = normalize_bayer(make_raw(mosaic, "RGGB", black=(100, 100, 100, 100), white=1100.0))
    np.testing.assert_allclose(out, [[0, 0, .5, 1], [0, 0, .9, 1]], atol=1e-7)
    assert out.dtype == np.float32


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
@pytest.mark.parametrize("shape", [(8, 8), (7, 11), (2, 2)])
def test_flat_field_stays_flat_through_demosaic(pattern, shape):
    rgb = np.float32([0.7, 0.3, 0.55])
    mosaic = rgb[colour_ids(shape, pattern)]
    out = demosaic_bilinear(mosaic, pattern)
    assert out.shape == shape + (3,) and out.dtype == np.float32
    assert np.abs(out - rgb).max() < 1e-6  # borders included: mirrored, Bayer phase kept


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_demosaic_is_exact_on_linear_ramps_inside(pattern):
    yy, xx = np.mgrid[0:12, 0:16].astype(np.float32)
    planes = np.stack([0.01 * yy + 0.02 * xx, 0.03 * yy - 0.01 * xx + 0.5, 0.2 - 0.005 * yy],
                      axis=-1)
    ids = colour_ids(yy.shape, pattern)
    mosaic = np.take_along_axis(planes, ids[..., None], axis=-1)[..., 0]
    out = demosaic_bilinear(mosaic, pattern)
    np.testing.assert_allclose(out[1:-1, 1:-1], planes[1:-1, 1:-1], atol=1e-6)
    # known samples are kept untouched everywhere
    np.testing.assert_array_equal(np.take_along_axis(out, ids[..., None], -1)[..., 0], mosaic)


def test_demosaic_single_red_impulse_weights():
    mosaic = np.zeros((6, 6), np.float32)
    mosaic[2, 2] = 1.0  # an R site of RGGB
    red = demosaic_bilinear(mosaic, "RGGB")[..., 0]
    assert red[2, 2] == 1.0
    assert red[2, 3] == red[2, 1] == red[1, 2] == red[3, 2] == 0.5
    assert red[1, 1] == red[3, 3] == red[1, 3] == red[3, 1] == 0.25
    assert red.sum() == 4.0


def test_average_greens():
    packed = np.float32([[[0.1, 0.2, 0.4, 0.9]]])
    np.testing.assert_allclose(average_greens(packed), [[[0.1, 0.3, 0.9]]], atol=1e-7)


def test_bad_inputs_raise_named_errors():
    with pytest.raises(InputShapeError, match="2-D"):
        pack_bayer(np.zeros((4, 4, 3)), "RGGB")
    with pytest.raises(UnsupportedCFAError, match="needs its cfa_pattern"):
        pack_bayer(np.zeros((4, 4)))
    with pytest.raises(UnsupportedCFAError, match="XYZW"):
        demosaic_bilinear(np.zeros((4, 4)), "XYZW")
    with pytest.raises(InputShapeError, match=r"\(\.\.\., h, w, 4\)"):
        unpack_bayer(np.zeros((4, 4, 3)))
    with pytest.raises(InputShapeError, match="too small"):
        pack_bayer(np.zeros((2, 3)), "BGGR")


def test_raw_image_coerces_and_validates_fields():
    from isp_tf.errors import RawReadError

    raw = make_raw(np.zeros((4, 4), np.uint16), "bggr", black=5)
    assert raw.cfa_pattern == "BGGR"
    np.testing.assert_array_equal(raw.black_level, [5, 5, 5, 5])
    assert raw.black_level.dtype == np.float32 and raw.wb_gains.dtype == np.float32
    with pytest.raises(UnsupportedCFAError, match="'RGBG'"):
        make_raw(np.zeros((4, 4)), "RGBG")
    with pytest.raises(InputShapeError, match="2-D"):
        make_raw(np.zeros((4, 4, 3)), "RGGB")
    with pytest.raises(RawReadError, match="black_level needs 1 or 4"):
        make_raw(np.zeros((4, 4)), "RGGB", black=(1, 2, 3))
