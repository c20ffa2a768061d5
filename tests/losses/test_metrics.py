"""Metrics: exact values on hand-made images, agreement with tf.image, no NaN."""
import numpy as np
import pytest

from isp_tf._keras import tf
from isp_tf.errors import InputShapeError
from isp_tf.losses import CompositeLoss, LossConfigError, l1, ms_ssim, ms_ssim_min_side, mse, psnr, ssim


def _images(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random(shape).astype(np.float32)


def test_mse_l1_psnr_exact_values():
    a = np.zeros((2, 4, 4, 3), np.float32)
    b = a.copy()
    b[0] += 0.1          # image 0: constant error 0.1
    b[1, :2] += 0.5      # image 1: half the pixels off by 0.5
    np.testing.assert_allclose(mse(a, b).numpy(), [0.01, 0.125], rtol=1e-5)
    np.testing.assert_allclose(l1(a, b).numpy(), [0.1, 0.25], rtol=1e-5)
    np.testing.assert_allclose(psnr(a, b).numpy(), [20.0, 10 * np.log10(8)], rtol=1e-5)


def test_psnr_clips_prediction_and_is_finite_for_identical_images():
    a = np.full((1, 8, 8, 3), 1.0, np.float32)
    assert psnr(a, a + 0.3).numpy()[0] == pytest.approx(100.0)  # clipped to 1 -> identical
    assert np.isfinite(psnr(a, a).numpy()).all()


def test_ssim_matches_tf_image_and_gradient_is_finite_when_negative():
    a = _images((2, 48, 48, 3))
    b = tf.Variable(1.0 - a)
    with tf.GradientTape() as tape:
        value = ssim(a, b)
    assert (value.numpy() < 0).all()
    np.testing.assert_allclose(value.numpy(), tf.image.ssim(a, 1.0 - a, 1.0).numpy(), atol=1e-6)
    assert np.isfinite(tape.gradient(value, b).numpy()).all()


def test_ms_ssim_equals_tf_image_on_correlated_images():
    a = _images((2, 170, 163, 3), seed=1)  # odd width exercises the symmetric padding
    b = np.clip(a + 0.05 * _images(a.shape, seed=2), 0, 1)
    np.testing.assert_allclose(ms_ssim(a, b).numpy(), tf.image.ssim_multiscale(a, b, 1.0).numpy(),
                               rtol=1e-4)


def test_ms_ssim_and_gradient_never_nan_for_anticorrelated_images():
    a = _images((2, 161, 161, 3), seed=3)
    b = tf.Variable(1.0 - a)
    with tf.GradientTape() as tape:
        value = ms_ssim(a, b)
    grad = tape.gradient(value, b).numpy()
    assert np.isfinite(value.numpy()).all() and (value.numpy() >= 0).all()
    assert np.isfinite(grad).all()
    # tf.image's own version is NaN here -- the reason ours exists
    with tf.GradientTape() as tape:
        ref = tf.image.ssim_multiscale(a, b, 1.0)
    assert np.isnan(tape.gradient(ref, b).numpy()).any()


def test_small_inputs_raise_clear_errors():
    assert ms_ssim_min_side() == 161
    small = _images((1, 160, 200, 3))
    with pytest.raises(InputShapeError, match="at least 161x161.*160x200"):
        ms_ssim(small, small)
    # three scales need (11-1)*4+1 = 41 px
    assert ms_ssim(small[:, :41, :41], small[:, :41, :41], power_factors=(0.2, 0.3, 0.5)).numpy()[0] \
        == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(InputShapeError, match="at least 11x11"):
        ssim(small[:, :8, :8], small[:, :8, :8])
    with pytest.raises(InputShapeError, match="differ in shape"):
        mse(small, small[:, :10])
    with pytest.raises(InputShapeError, match=r"\(B, H, W, C\)"):
        psnr(small[0], small[0])


def test_composite_loss_weights_terms():
    a = np.zeros((2, 16, 16, 3), np.float32)
    b = a + 0.1
    loss = CompositeLoss({"mse": 100, "l1": 2, "ssim": 0})
    assert set(loss.terms(a, b)) == {"mse", "l1"}
    np.testing.assert_allclose(loss(a, b).numpy(), [100 * 0.01 + 2 * 0.1] * 2, rtol=1e-5)
    with pytest.raises(LossConfigError, match="unknown loss term 'perceptual'.*mse"):
        CompositeLoss({"perceptual": 1})
    with pytest.raises(LossConfigError, match="non-numeric"):
        CompositeLoss({"mse": "1"})
