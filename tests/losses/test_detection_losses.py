"""RetinaNet losses: focal loss and smooth-L1 on hand-worked values, masking, normalisation, the full loss."""
import math

import numpy as np
import pytest

from isp_tf._keras import tf
from isp_tf.losses.detection import RetinaNetLoss, retinanet_loss_terms, sigmoid_focal_loss, smooth_l1
from isp_tf.models.genisp.detector import AnchorGenerator, assign_targets, encode_boxes, to_pixels


def _logit(p):
    return math.log(p / (1 - p))


def test_focal_loss_hand_values():
    logits = np.array([_logit(0.9), _logit(0.9), _logit(0.2), _logit(0.2)], np.float32)
    targets = np.array([1, 0, 1, 0], np.float32)
    expected = [
        0.25 * 0.1 ** 2 * -math.log(0.9),   # easy positive: p_t 0.9
        0.75 * 0.9 ** 2 * -math.log(0.1),   # confident false positive: p_t 0.1
        0.25 * 0.8 ** 2 * -math.log(0.2),   # hard positive
        0.75 * 0.2 ** 2 * -math.log(0.8),   # easy negative
    ]
    np.testing.assert_allclose(sigmoid_focal_loss(targets, logits).numpy(), expected, rtol=1e-5)
    # gamma 0, no alpha: plain binary cross-entropy
    np.testing.assert_allclose(sigmoid_focal_loss(targets, logits, alpha=-1, gamma=0).numpy(),
                               [-math.log(0.9), -math.log(0.1), -math.log(0.2), -math.log(0.8)], rtol=1e-5)
    # stable for extreme logits
    big = sigmoid_focal_loss(np.array([1.0, 0.0]), np.array([-100.0, 100.0], np.float32)).numpy()
    np.testing.assert_allclose(big, [0.25 * 100, 0.75 * 100], rtol=1e-5)


def test_smooth_l1_hand_values():
    x = np.array([0.5, -2.0, 0.05, 1.0], np.float32)
    np.testing.assert_allclose(smooth_l1(np.zeros(4), x).numpy(), [0.125, 1.5, 0.00125, 0.5], rtol=1e-5)
    np.testing.assert_allclose(smooth_l1(np.zeros(4), x, delta=1 / 9).numpy(),
                               [0.5 - 1 / 18, 2 - 1 / 18, 0.5 * 0.0025 * 9, 1 - 1 / 18], rtol=1e-5)


def test_loss_terms_mask_ignored_and_normalise_by_positives():
    # 4 anchors, 2 classes: positive class 1, background, ignored, positive class 0
    cls_t = np.array([[1, -1, -2, 0]], np.int32)
    logits = np.array([[[_logit(0.3), _logit(0.8)], [_logit(0.6), _logit(0.1)],
                        [50.0, 50.0], [_logit(0.5), _logit(0.5)]]], np.float32)
    box_t = np.array([[[0, 0, 0, 0], [9, 9, 9, 9], [9, 9, 9, 9], [1, 1, 1, 1]]], np.float32)
    box_p = np.array([[[0.5, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 3]]], np.float32)

    def fl(p, y):
        return (0.25 if y else 0.75) * (1 - (p if y else 1 - p)) ** 2 * -math.log(p if y else 1 - p)

    focal = (fl(0.3, 0) + fl(0.8, 1) + fl(0.6, 0) + fl(0.1, 0) + fl(0.5, 1) + fl(0.5, 0))  # anchor 2 left out
    box = 0.125 + (2 - 0.5)                                                                   # positives only
    terms = retinanet_loss_terms(cls_t, box_t, logits, box_p)
    assert float(terms["num_positive"]) == 2
    assert float(terms["classification"]) == pytest.approx(focal / 2, rel=1e-5)
    assert float(terms["box"]) == pytest.approx(box / 2, rel=1e-5)
    # no positives: normalised by 1, box loss 0
    terms = retinanet_loss_terms(np.array([[-1, -1, -2, -1]]), box_t, logits, box_p)
    assert float(terms["box"]) == 0.0
    assert float(terms["classification"]) == pytest.approx(
        fl(0.3, 0) + fl(0.8, 0) + fl(0.6, 0) + fl(0.1, 0) + 2 * fl(0.5, 0), rel=1e-5)


def _perfect_outputs(loss, boxes, labels, shape, num_classes=2):
    cls_t, box_t = loss.targets(boxes, labels, shape)
    logits = np.where(np.eye(num_classes, dtype=bool)[np.maximum(cls_t.numpy(), 0)] & (cls_t.numpy() >= 0)[..., None],
                      30.0, -30.0).astype(np.float32)
    return cls_t.numpy(), {"classification": logits, "regression": box_t.numpy()}


def test_retinanet_loss_from_padded_ground_truth():
    shape = (128, 128)
    anchors = AnchorGenerator()(shape).numpy()
    a = anchors[(3 * 16 + 5) * 9 + 4]                    # a square 40-px P3 anchor
    boxes = np.zeros((2, 3, 4), np.float32)
    labels = np.full((2, 3), -1, np.int32)
    boxes[0, 0] = a / 128.0                              # normalised, as RAW-NOD batches
    labels[0, 0] = 1
    boxes[0, 1] = [0.5, 0.5, 0.9, 0.8]
    labels[0, 1] = 0                                     # image 1: no boxes at all
    loss = RetinaNetLoss()
    cls_t, outputs = _perfect_outputs(loss, boxes, labels, shape)
    terms = loss.terms({"boxes": boxes, "labels": labels}, outputs, image_shape=shape)
    assert float(terms["num_positive"]) == (cls_t >= 0).sum() >= 2
    assert float(terms["loss"]) < 1e-6                   # perfect predictions
    assert (cls_t[0, (3 * 16 + 5) * 9 + 4]) == 1         # the anchor equal to the box is positive, class 1
    assert (cls_t[1] == -1).all()

    # targets are those of assign_targets on pixel boxes
    ref_cls, ref_box = assign_targets(anchors, to_pixels(boxes, shape), labels)
    np.testing.assert_array_equal(cls_t, ref_cls.numpy())

    # ignored anchors never count: wrong logits there change nothing
    ignored = cls_t == -2
    assert ignored.any()
    worse = dict(outputs, classification=np.where(ignored[..., None], 30.0, outputs["classification"]))
    assert float(loss((boxes, labels), worse, shape)) == pytest.approx(float(terms["loss"]), abs=1e-6)
    # a wrong box regression on a positive anchor costs smooth-L1 / num_positive
    moved = outputs["regression"].copy()
    moved[0, (3 * 16 + 5) * 9 + 4, 0] += 3.0
    expected = (3.0 - 0.5) / float(terms["num_positive"])
    assert float(loss((boxes, labels), dict(outputs, regression=moved), shape)) == pytest.approx(expected, rel=1e-4)


def test_retinanet_loss_in_tf_function_with_dynamic_image_shape_and_gradients():
    shape = (64, 96)
    boxes = np.array([[[0.1, 0.1, 0.6, 0.5], [0, 0, 0, 0]]], np.float32)
    labels = np.array([[0, -1]], np.int32)
    n = AnchorGenerator()(shape).shape[0]
    logits = tf.Variable(tf.zeros((1, n, 3)))
    regression = tf.Variable(tf.zeros((1, n, 4)))
    loss = RetinaNetLoss()

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3])])
    def run(images):
        with tf.GradientTape() as tape:
            value = loss({"boxes": boxes, "labels": labels}, (logits, regression), tf.shape(images)[1:3])
        return value, tape.gradient(value, [logits, regression])

    value, grads = run(tf.zeros((1,) + shape + (3,)))
    assert np.isfinite(float(value)) and all(np.isfinite(g.numpy()).all() for g in grads)
    assert float(tf.reduce_sum(tf.abs(grads[1]))) > 0
    with pytest.raises(ValueError, match="image_shape"):
        loss({"boxes": boxes, "labels": labels}, (logits, regression))
    with pytest.raises(tf.errors.InvalidArgumentError, match="one row per anchor"):
        loss({"boxes": boxes, "labels": labels}, (logits, regression), (128, 128))


def test_encoding_used_by_the_loss_is_the_documented_one():
    anchor = np.array([[0.0, 0.0, 20.0, 10.0]])
    box = np.array([[2.0, 1.0, 22.0, 21.0]])    # centre (12, 11) vs (10, 5); 20 x 20 vs 20 x 10
    np.testing.assert_allclose(encode_boxes(box, anchor).numpy(),
                               [[2 / 20 / 0.1, 6 / 10 / 0.1, 0.0, math.log(2) / 0.2]], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(encode_boxes(box, anchor, variances=(1, 1, 1, 1)).numpy(),
                               [[0.1, 0.6, 0.0, math.log(2)]], rtol=1e-6, atol=1e-7)
