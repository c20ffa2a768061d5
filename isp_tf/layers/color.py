"""Colour operations on image tensors, written with ops NNAPI 1.2 delegates."""
from __future__ import annotations

import numpy as np

from isp_tf._keras import tf

__all__ = ["apply_color_matrix"]


def apply_color_matrix(image, m):
    """``out[..., i] = sum_j m[b, 3 i + j] image[..., j]``: a 3x3 matrix per image of the batch.

    ``image`` is (B, h, w, 3), ``m`` (B, 9) row-major.  As NNAPI 1.2 ops:
    CONCATENATION of the image thrice (channel ``3 i + j`` holds channel
    ``j``), MUL by ``m`` as (B, 1, 1, 9), and one constant 1x1 CONV_2D summing
    each triple (no BATCH_MATMUL, which NNAPI 1.2 never delegates, and no
    per-image kernels).
    """
    tiled = tf.concat([image, image, image], axis=-1)
    products = tiled * tf.reshape(m, [-1, 1, 1, 9])
    kernel = np.zeros((1, 1, 9, 3), np.float32)
    for i in range(3):
        kernel[0, 0, 3 * i:3 * i + 3, i] = 1.0
    return tf.nn.conv2d(products, tf.constant(kernel), 1, "VALID")
