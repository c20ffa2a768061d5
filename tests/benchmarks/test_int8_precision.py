"""benchmarks.int8_precision: the PSNR, darkest-tenth and quantisation helpers (no export, no TensorFlow)."""
import numpy as np
import pytest

from benchmarks import int8_precision as ip
from isp_tf.runtime.session import dequantize, quantize


def test_psnr_known_values_and_mask():
    a = np.zeros((4, 5, 3))
    b = np.full((4, 5, 3), 0.1)  # MSE 0.01 -> 20 dB at data range 1
    assert ip.psnr(b, a) == pytest.approx(20.0)
    assert ip.psnr(a, a) == float("inf")
    b[0, 0] = 1.0  # one bad pixel, masked out
    mask = np.ones((4, 5), bool)
    mask[0, 0] = False
    assert ip.psnr(b, a, mask) == pytest.approx(20.0)
    assert ip.psnr(b, a) < 20.0


def test_darkest_mask_takes_exactly_the_lowest_tenth():
    values = np.arange(100.0)[::-1].reshape(10, 10)  # 99 .. 0
    mask = ip.darkest_mask(values)
    assert mask.sum() == 10 and set(values[mask]) == set(range(10))
    ties = ip.darkest_mask(np.zeros((4, 5)))  # all equal: the first round(0.1 * 20) = 2 in raster order
    assert ties.ravel().tolist() == [True, True] + [False] * 18
    assert ip.darkest_mask(np.ones(3)).sum() == 1  # never empty


def test_luma_of_grey_is_the_grey_value():
    assert ip.luma(np.full((2, 2, 3), 0.25)) == pytest.approx(np.full((2, 2), 0.25))


def test_input_roundtrip_matches_litert_quantize_and_is_lossy_below_one_step():
    scale, zero = 1.0 / 255.0, -128
    detail = {"dtype": np.int8, "quantization": (scale, zero)}
    x = np.linspace(-0.1, 1.2, 2001, dtype=np.float32)
    y = ip.quantize_roundtrip(x, scale, zero, np.int8)
    np.testing.assert_allclose(y, dequantize(detail, quantize(detail, x)), atol=1e-7)
    inside = (x >= 0) & (x <= 1)
    assert np.max(np.abs(y[inside] - x[inside])) <= scale / 2 + 1e-7
    assert y.min() == pytest.approx(0.0) and y.max() == pytest.approx(1.0)  # clipped to the int8 range
    # a 14-bit dark ramp below one 8-bit step collapses to 0 or 1 code
    dark = np.arange(0, 64) / 16383.0
    assert np.unique(ip.quantize_roundtrip(dark, scale, zero, np.int8)).size <= 2


def test_compare_isolates_the_dark_error():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0.2, 1.0, (20, 20, 3)).astype(np.float32)
    ref[:2] = 0.01  # the 40 darkest pixels = the darkest tenth exactly
    noisy = ref.copy()
    noisy[:2] += 0.01  # error only in the dark rows: MSE there 1e-4 -> 40 dB
    x = np.full((10, 10, 4), 0.5, np.float32)
    rec = ip.compare(ref, noisy, ref, ref, x, 1 / 255, -128)
    assert rec["dark_pixels"] == 40
    assert rec["int8"]["psnr_dark"] == pytest.approx(40.0, abs=1e-3)
    assert rec["int8"]["psnr"] == pytest.approx(50.0, abs=1e-3)  # a tenth of the pixels: 10 dB higher
    assert rec["input_only"]["psnr"] == float("inf")
    assert rec["input"]["dark_distinct_8bit_codes"] == 1


def test_implied_drop():
    assert ip.implied_drop(24.0, 24.0) == pytest.approx(10 * np.log10(2))  # equal errors: 3 dB
    assert ip.implied_drop(24.0 + 5.87, 24.0) == pytest.approx(1.0, abs=0.01)
    assert ip.implied_drop(float("inf"), 24.0) == 0.0


def test_sample_files_skip_unknown_headerless(tmp_path):
    for name in ("a.dng", "b.CRW", "unknown.raw", "notes.md", next(iter(ip.HEADERLESS))):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in ip.sample_files(tmp_path)] == ["a.dng", "b.CRW", next(iter(ip.HEADERLESS))]
