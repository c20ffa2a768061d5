"""Colour conversions: the sRGB curve and camera matrices."""
import numpy as np
import pytest

from isp_tf.raw import (SRGB_TO_XYZ, apply_color_matrix, cam_to_srgb_from_xyz_to_cam,
                        cam_to_xyz_from_cam_to_srgb, linear_to_srgb, srgb_to_linear,
                        xyz_to_cam_from_cam_to_xyz)


def test_srgb_curve_known_values():
    x = np.float32([0.0, 0.0031308, 0.18, 0.5, 1.0])
    # IEC 61966-2-1: linear segment 12.92 x, then 1.055 x^(1/2.4) - 0.055
    np.testing.assert_allclose(linear_to_srgb(x), [0, 0.04045, 0.461356, 0.735357, 1.0],
                               atol=2e-6)
    assert linear_to_srgb(x).dtype == np.float32
    np.testing.assert_array_equal(linear_to_srgb(np.float32([-1, 2])), [0, 1])  # clipped


def test_srgb_curve_round_trip():
    x = np.linspace(0, 1, 1001, dtype=np.float64)
    np.testing.assert_allclose(srgb_to_linear(linear_to_srgb(x)), x, atol=1e-12)
    np.testing.assert_allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-12)


def test_apply_color_matrix():
    img = np.float32([[[1, 2, 3], [0, 1, 0]]])
    m = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 2]])
    np.testing.assert_allclose(apply_color_matrix(img, m), [[[1, 3, 6], [0, 1, 0]]])
    assert apply_color_matrix(img, m).dtype == np.float32
    with pytest.raises(ValueError, match="3x3"):
        apply_color_matrix(img, np.eye(4))


def test_camera_matrices_keep_white_and_invert():
    xyz_to_cam = np.array([[0.6461, -0.1164, -0.0857], [-0.3825, 1.1597, 0.2534],
                           [-0.0416, 0.1540, 0.6039]])
    c2s = cam_to_srgb_from_xyz_to_cam(xyz_to_cam)
    np.testing.assert_allclose(c2s.sum(axis=1), 1.0, atol=1e-12)  # neutral stays neutral
    c2x = cam_to_xyz_from_cam_to_srgb(c2s)
    np.testing.assert_allclose(c2x @ np.ones(3), SRGB_TO_XYZ @ np.ones(3), atol=1e-12)  # D65
    # back to an XYZ->camera matrix with white balance folded in, and forward again
    back = xyz_to_cam_from_cam_to_xyz(c2x, wb_gains=[2.0, 1.0, 1.5])
    np.testing.assert_allclose(cam_to_srgb_from_xyz_to_cam(back), c2s, atol=1e-12)
    neutral = back @ (SRGB_TO_XYZ @ np.ones(3))  # camera-native response to D65 white
    np.testing.assert_allclose(neutral / neutral.max(), [0.5, 1.0, 1 / 1.5], atol=1e-12)
