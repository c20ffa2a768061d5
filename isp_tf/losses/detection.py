"""RetinaNet losses: alpha-balanced sigmoid focal loss + smooth-L1, over padded ground truth.

* :func:`sigmoid_focal_loss`: ``-alpha_t (1 - p_t)^gamma log(p_t)`` per
  logit (alpha 0.25, gamma 2; Lin et al. 2017).
* :func:`smooth_l1`: Fast R-CNN's smooth-L1 with threshold ``delta``:
  ``0.5 x^2 / delta`` for ``|x| < delta``, else ``|x| - 0.5 delta``. The
  default ``delta = 1`` (equal to Huber with delta 1) suits the box targets
  of :mod:`isp_tf.models.genisp.detector`, which the variances
  (0.1, 0.1, 0.2, 0.2) scale to about unit size; with unit variances use
  ``delta = 1/9`` (Detectron).
* :func:`retinanet_loss_terms`: both, from anchor targets: the focal loss is
  summed over all classes of all anchors that are not ignored, the
  smooth-L1 over the 4 coordinates of the positive anchors, and both are
  divided by the number of positive anchors in the batch (at least 1).
* :class:`RetinaNetLoss`: targets assigned on the fly
  (:func:`~isp_tf.models.genisp.detector.assign_targets`) from the
  dataset's padded boxes/labels and the model's outputs.
"""
from __future__ import annotations

from typing import Dict

from isp_tf._keras import tf
from isp_tf.models.genisp.detector import (VARIANCES, AnchorGenerator, assign_targets, split_outputs,
                                           to_pixels)

__all__ = ["RetinaNetLoss", "retinanet_loss_terms", "sigmoid_focal_loss", "smooth_l1"]


def sigmoid_focal_loss(targets, logits, alpha: float = 0.25, gamma: float = 2.0):
    """Element-wise focal loss; ``targets`` in {0, 1} with the shape of ``logits``.

    ``alpha`` weighs positives (``1 - alpha`` negatives); ``alpha < 0``
    disables the balancing.
    """
    logits = tf.cast(logits, tf.float32)
    targets = tf.cast(targets, tf.float32)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)  # -log(p_t), stable
    p = tf.sigmoid(logits)
    p_t = targets * p + (1.0 - targets) * (1.0 - p)
    loss = ce * (1.0 - p_t) ** gamma
    if alpha >= 0:
        loss = (targets * alpha + (1.0 - targets) * (1.0 - alpha)) * loss
    return loss


def smooth_l1(targets, predictions, delta: float = 1.0):
    """Element-wise smooth-L1: ``0.5 x^2 / delta`` if ``|x| < delta`` else ``|x| - 0.5 delta``."""
    x = tf.abs(tf.cast(predictions, tf.float32) - tf.cast(targets, tf.float32))
    return tf.where(x < delta, 0.5 * x * x / delta, x - 0.5 * delta)


def retinanet_loss_terms(cls_targets, box_targets, cls_logits, box_predictions, alpha: float = 0.25,
                         gamma: float = 2.0, delta: float = 1.0) -> Dict[str, tf.Tensor]:
    """Focal and box losses from anchor targets (:func:`assign_targets`'s output).

    Args:
      cls_targets: ``(B, N)`` int: class (positive), -1 background, -2 ignored.
      box_targets: ``(B, N, 4)`` encoded boxes (used where positive).
      cls_logits: ``(B, N, C)``; box_predictions: ``(B, N, 4)``.
    Returns ``{"classification", "box", "num_positive"}`` (scalars).
    """
    cls_targets = tf.cast(cls_targets, tf.int32)
    cls_logits = tf.cast(cls_logits, tf.float32)
    positive = cls_targets >= 0
    counted = cls_targets >= -1  # ignored anchors (-2) contribute nothing
    onehot = tf.one_hot(cls_targets, tf.shape(cls_logits)[-1], dtype=tf.float32)  # rows of -1/-2: zeros
    focal = tf.where(counted[..., None], sigmoid_focal_loss(onehot, cls_logits, alpha, gamma), 0.0)
    num_positive = tf.reduce_sum(tf.cast(positive, tf.float32))
    norm = tf.maximum(num_positive, 1.0)
    box = tf.reduce_sum(smooth_l1(box_targets, box_predictions, delta), axis=-1)
    box = tf.where(positive, box, 0.0)
    return {"classification": tf.reduce_sum(focal) / norm, "box": tf.reduce_sum(box) / norm,
            "num_positive": num_positive}


class RetinaNetLoss:
    """Focal + ``box_weight`` x smooth-L1 of a RetinaNet's outputs against padded ground truth.

    ``loss(y_true, y_pred, image_shape)``: ``y_true`` is a dict with
    ``boxes (B, M, 4)`` yxyx (normalised unless ``normalized=False``) and
    ``labels (B, M)`` (-1 pads) -- a RAW-NOD batch works as it is -- or a
    ``(boxes, labels)`` pair; ``y_pred`` the model's output dict or a
    ``(logits, regression)`` pair; ``image_shape`` the ``(H, W)`` of the
    image the detector saw (e.g. ``tf.shape(images)[1:3]``; default the one
    given at construction). :meth:`terms` also returns the parts.
    """

    def __init__(self, anchor_generator: AnchorGenerator = None, alpha: float = 0.25, gamma: float = 2.0,
                 delta: float = 1.0, box_weight: float = 1.0, pos_iou: float = 0.5, neg_iou: float = 0.4,
                 low_quality_matches: bool = True, variances=VARIANCES, image_shape=None,
                 normalized: bool = True):
        self.anchor_generator = anchor_generator or AnchorGenerator()
        self.alpha, self.gamma, self.delta, self.box_weight = alpha, gamma, delta, box_weight
        self.pos_iou, self.neg_iou, self.low_quality_matches = pos_iou, neg_iou, low_quality_matches
        self.variances, self.image_shape, self.normalized = tuple(variances), image_shape, normalized

    def targets(self, boxes, labels, image_shape, anchors=None):
        """``(cls_targets (B, N), box_targets (B, N, 4))`` for padded ground truth."""
        boxes = tf.convert_to_tensor(boxes, tf.float32)
        if self.normalized:
            boxes = to_pixels(boxes, image_shape)
        anchors = self.anchor_generator(image_shape) if anchors is None else anchors
        return assign_targets(anchors, boxes, labels, self.pos_iou, self.neg_iou, self.low_quality_matches,
                              self.variances)

    def terms(self, y_true, y_pred, image_shape=None) -> Dict[str, tf.Tensor]:
        """``{"loss", "classification", "box", "num_positive"}``."""
        image_shape = self.image_shape if image_shape is None else image_shape
        if image_shape is None:
            raise ValueError("RetinaNetLoss needs the (H, W) of the detector's input image: pass "
                             "image_shape=tf.shape(images)[1:3] or give it at construction")
        boxes, labels = (y_true["boxes"], y_true["labels"]) if isinstance(y_true, dict) else y_true
        logits, regression = split_outputs(y_pred)
        labels = tf.convert_to_tensor(labels, tf.int32)
        anchors = self.anchor_generator(image_shape)
        checks = [
            tf.debugging.assert_equal(tf.shape(anchors)[0], tf.shape(logits)[1], message=(
                "RetinaNetLoss: the model's outputs do not have one row per anchor of this image size "
                "(other image_shape, num_anchors or levels than the AnchorGenerator's?)")),
            tf.debugging.assert_less(labels, tf.shape(logits)[-1], message=(
                "RetinaNetLoss: a ground-truth label is >= the model's num_classes")),
        ]
        with tf.control_dependencies(checks):
            cls_targets, box_targets = self.targets(boxes, labels, image_shape, anchors)
        parts = retinanet_loss_terms(cls_targets, box_targets, logits, regression, self.alpha, self.gamma,
                                     self.delta)
        parts["loss"] = parts["classification"] + self.box_weight * parts["box"]
        return parts

    def __call__(self, y_true, y_pred, image_shape=None) -> tf.Tensor:
        return self.terms(y_true, y_pred, image_shape)["loss"]
