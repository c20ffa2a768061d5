"""RetinaNet (Lin et al. 2017, "Focal Loss for Dense Object Detection"): the detector GenISP trains through.

Everything here works on batches with padded ground truth, the layout of
:mod:`isp_tf.data.rawnod`: boxes ``[ymin, xmin, ymax, xmax]`` (normalised to
[0, 1], or pixels where a function says so), labels int32 with ``-1`` rows as
padding.

Model (:func:`build_retinanet`)
    input: sRGB image ``(B, H, W, 3)`` in [0, 1] (what GenISP outputs); the
    model converts it to its backbone's convention itself (``preprocessing``).
    output: ``{"classification": (B, N, C) logits, "regression": (B, N, 4)}``,
    all pyramid levels concatenated P3..P7, each level row-major over the
    feature map (y, then x, then the ``A`` anchors of a cell): the order of
    :class:`AnchorGenerator`. Feature map sizes are ``ceil(H / 2^l)``, so any
    image size works (the top-down path crops its 2x upsampling).

Anchors (:class:`AnchorGenerator`)
    sizes 32, 64, 128, 256, 512 px on P3..P7, scales ``2^(0, 1/3, 2/3)``,
    ratios (height / width) 0.5, 1, 2; ``A = 9`` per cell, in the order
    ratio-major, scale-minor; centres at ``((i + 0.5) * stride, (j + 0.5) * stride)``.

Box coding (:func:`encode_boxes` / :func:`decode_boxes`)
    ``ty = (y - ya) / ha / 0.1``, ``tx = (x - xa) / wa / 0.1``,
    ``th = log(h / ha) / 0.2``, ``tw = log(w / wa) / 0.2`` (centre form):
    variances ``VARIANCES = (0.1, 0.1, 0.2, 0.2)`` bring the targets to unit
    scale, which is what the smooth-L1 ``delta = 1`` of
    :mod:`isp_tf.losses.detection` assumes. Decoding clips ``th, tw`` at
    ``log(1000 / 16)`` (Detectron's guard against ``exp`` overflow).

Target assignment (:func:`assign_targets`)
    IoU >= 0.5: positive (class of the best gt); < 0.4: background
    (``BACKGROUND = -1``); in between: ignored (``IGNORE = -2``). Every valid
    gt also gets the anchor(s) of its highest IoU (if > 0) as positives.

Weights (:func:`load_detector_weights`)
    an h5 file of this model (:func:`save_detector_weights` or
    ``model.save_weights(path, save_format="h5")``), or a Keras ResNet-50
    "notop" h5 for the backbone only; matched by layer and weight name, every
    shape checked before anything is assigned.
"""
from __future__ import annotations

import math
import pathlib
from typing import Dict, List, Sequence, Tuple

import h5py
import numpy as np

from isp_tf._keras import keras, tf
from isp_tf.errors import WeightsMismatchError
from isp_tf.utils import atomic_path

__all__ = [
    "AnchorGenerator", "BACKGROUND", "IGNORE", "ImagePreprocessing", "UpsampleLike", "VARIANCES",
    "assign_targets", "box_iou", "build_retinanet", "decode_boxes", "encode_boxes", "freeze",
    "light_backbone", "load_detector_weights", "postprocess", "resnet50_backbone",
    "save_detector_weights", "split_outputs", "to_normalized", "to_pixels",
]

VARIANCES = (0.1, 0.1, 0.2, 0.2)
SCALES = (1.0, 2.0 ** (1.0 / 3.0), 2.0 ** (2.0 / 3.0))
RATIOS = (0.5, 1.0, 2.0)
BACKGROUND = -1
IGNORE = -2
PRIOR_PROBABILITY = 0.01
_BBOX_CLIP = math.log(1000.0 / 16.0)
_RESNET_C3_C5 = ("conv3_block4_out", "conv4_block6_out", "conv5_block3_out")
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- layers
class ImagePreprocessing(keras.layers.Layer):
    """sRGB in [0, 1] -> a backbone's input convention.

    ``caffe``: x 255, RGB -> BGR, minus the ImageNet BGR mean (Keras
    ResNet-50 weights); ``torch``: ImageNet mean/std normalisation; ``none``.
    """

    MODES = ("caffe", "torch", "none")

    def __init__(self, mode: str = "caffe", **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"preprocessing must be one of {self.MODES}, got {mode!r}")
        self.mode = mode

    def call(self, x):
        if self.mode == "caffe":
            return x[..., ::-1] * 255.0 - tf.constant(_CAFFE_MEAN_BGR, x.dtype)
        if self.mode == "torch":
            return (x - tf.constant(_TORCH_MEAN, x.dtype)) / tf.constant(_TORCH_STD, x.dtype)
        return x

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


class UpsampleLike(keras.layers.Layer):
    """``[x, ref]`` -> ``x`` upsampled 2x (nearest), cropped to ``ref``'s height and width."""

    def call(self, inputs):
        x, ref = inputs
        x = tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)
        shape = tf.shape(ref)
        return x[:, :shape[1], :shape[2], :]

    def compute_output_shape(self, input_shape):
        x, ref = input_shape
        return tuple(ref[:3]) + (x[-1],)


# --------------------------------------------------------------------------- backbones
def resnet50_backbone(image_shape=(None, None, 3)) -> keras.Model:
    """Keras ResNet-50 (no weights) as a model named ``backbone`` returning ``[C3, C4, C5]``.

    Layer names are Keras's (``conv1_conv`` ... ``conv5_block3_3_bn``), so a
    ResNet-50 notop h5 loads into it by name.
    """
    resnet = keras.applications.ResNet50(include_top=False, weights=None, input_shape=tuple(image_shape))
    return keras.Model(resnet.input, [resnet.get_layer(n).output for n in _RESNET_C3_C5], name="backbone")


def _conv_bn_relu(x, filters, stride, name):
    x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def light_backbone(image_shape=(None, None, 3), widths=(16, 32, 64, 96, 128)) -> keras.Model:
    """A small strided conv-BN-ReLU net (tests, CPU) named ``backbone``: ``[C3, C4, C5]`` at strides 8, 16, 32."""
    inputs = keras.Input(tuple(image_shape), name="image")
    x = _conv_bn_relu(inputs, widths[0], 2, "stem")
    x = _conv_bn_relu(x, widths[1], 2, "stage2")
    features = []
    for level, width in zip((3, 4, 5), widths[2:]):
        x = _conv_bn_relu(x, width, 2, f"stage{level}_down")
        x = _conv_bn_relu(x, width, 1, f"stage{level}_conv")
        features.append(x)
    return keras.Model(inputs, features, name="backbone")


# --------------------------------------------------------------------------- model
def _subnet(name, in_channels, outputs, convs, channels, bias_initializer):
    """RetinaNet head shared by all levels: ``convs`` x (conv3x3 + ReLU), then a conv3x3 to ``outputs``."""
    def init():  # one instance per layer: a reused unseeded Keras initializer repeats its values
        return keras.initializers.RandomNormal(stddev=0.01)

    inputs = keras.Input((None, None, in_channels))
    x = inputs
    for i in range(convs):
        x = keras.layers.Conv2D(channels, 3, padding="same", activation="relu", kernel_initializer=init(),
                                name=f"{name}_conv{i}")(x)
    x = keras.layers.Conv2D(outputs, 3, padding="same", kernel_initializer=init(),
                            bias_initializer=bias_initializer, name=f"{name}_output")(x)
    return keras.Model(inputs, x, name=name)


def build_retinanet(num_classes: int, backbone: str = "resnet50", image_shape=(None, None, 3),
                    fpn_channels: int = None, num_anchors: int = 9, head_convs: int = 4,
                    head_channels: int = None, preprocessing: str = None,
                    name: str = "retinanet") -> keras.Model:
    """RetinaNet: backbone C3-C5, FPN P3-P7, class and box subnets shared over levels.

    Args:
      num_classes: sigmoid classes (no background class).
      backbone: ``"resnet50"`` (Keras ResNet-50, ``weights=None``) or ``"light"``.
      image_shape: ``(H, W, 3)``, ``None`` for any size.
      fpn_channels: pyramid width; default 256 (resnet50) or 64 (light).
      num_anchors: anchors per cell; must match the :class:`AnchorGenerator` used.
      head_convs, head_channels: conv3x3+ReLU layers of each subnet (paper: 4)
        and their width (default ``fpn_channels``).
      preprocessing: :class:`ImagePreprocessing` mode; default ``"caffe"``
        for resnet50 (Keras's ImageNet ResNet-50), ``"none"`` for light.

    P6 is a stride-2 conv3x3 on C5 and P7 one on ReLU(P6), as in the paper;
    the class subnet's last bias is ``-log((1 - 0.01) / 0.01)`` (prior 0.01).
    Returns a model ``image -> {"classification": (B, N, num_classes), "regression": (B, N, 4)}``.
    """
    if backbone == "resnet50":
        body = resnet50_backbone(image_shape)
        fpn_channels = fpn_channels or 256
        preprocessing = preprocessing or "caffe"
    elif backbone == "light":
        body = light_backbone(image_shape)
        fpn_channels = fpn_channels or 64
        preprocessing = preprocessing or "none"
    else:
        raise ValueError(f"backbone must be 'resnet50' or 'light', got {backbone!r}")
    if num_classes < 1 or num_anchors < 1:
        raise ValueError("num_classes and num_anchors must be positive")
    head_channels = head_channels or fpn_channels
    f = fpn_channels

    image = keras.Input(tuple(image_shape), name="image")
    c3, c4, c5 = body(ImagePreprocessing(preprocessing, name="preprocessing")(image))
    p5 = keras.layers.Conv2D(f, 1, name="fpn_lateral5")(c5)
    p4 = keras.layers.Add(name="fpn_merge4")([UpsampleLike(name="fpn_upsample5")([p5, c4]),
                                              keras.layers.Conv2D(f, 1, name="fpn_lateral4")(c4)])
    p3 = keras.layers.Add(name="fpn_merge3")([UpsampleLike(name="fpn_upsample4")([p4, c3]),
                                              keras.layers.Conv2D(f, 1, name="fpn_lateral3")(c3)])
    p3 = keras.layers.Conv2D(f, 3, padding="same", name="fpn_p3")(p3)
    p4 = keras.layers.Conv2D(f, 3, padding="same", name="fpn_p4")(p4)
    p5 = keras.layers.Conv2D(f, 3, padding="same", name="fpn_p5")(p5)
    p6 = keras.layers.Conv2D(f, 3, strides=2, padding="same", name="fpn_p6")(c5)
    p7 = keras.layers.Conv2D(f, 3, strides=2, padding="same", name="fpn_p7")(
        keras.layers.ReLU(name="fpn_p6_relu")(p6))

    prior = keras.initializers.Constant(-math.log((1.0 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY))
    class_net = _subnet("class_subnet", f, num_anchors * num_classes, head_convs, head_channels, prior)
    box_net = _subnet("box_subnet", f, num_anchors * 4, head_convs, head_channels, "zeros")
    classes, boxes = [], []
    for level, p in zip(range(3, 8), (p3, p4, p5, p6, p7)):
        classes.append(keras.layers.Reshape((-1, num_classes), name=f"classification_p{level}")(class_net(p)))
        boxes.append(keras.layers.Reshape((-1, 4), name=f"regression_p{level}")(box_net(p)))
    outputs = {"classification": keras.layers.Concatenate(axis=1, name="classification")(classes),
               "regression": keras.layers.Concatenate(axis=1, name="regression")(boxes)}
    return keras.Model(image, outputs, name=name)


def split_outputs(outputs) -> Tuple[tf.Tensor, tf.Tensor]:
    """``(class logits (B, N, C), box regression (B, N, 4))`` from the model's dict or a pair."""
    if isinstance(outputs, dict):
        return outputs["classification"], outputs["regression"]
    classification, regression = outputs
    return classification, regression


# --------------------------------------------------------------------------- anchors and boxes
class AnchorGenerator:
    """RetinaNet anchors ``(N, 4)`` ``[ymin, xmin, ymax, xmax]`` in pixels for an image size.

    Level ``l`` (stride ``2^l``) has a ``ceil(H / 2^l) x ceil(W / 2^l)`` grid;
    anchor size ``base_size * 2^(l - min_level) * scale``, ratio = height / width
    (area kept). Order: level, y, x, ratio, scale (the model's output order).
    """

    def __init__(self, min_level: int = 3, max_level: int = 7, base_size: float = 32.0,
                 scales: Sequence[float] = SCALES, ratios: Sequence[float] = RATIOS):
        self.min_level, self.max_level = int(min_level), int(max_level)
        self.base_size = float(base_size)
        self.scales, self.ratios = tuple(float(s) for s in scales), tuple(float(r) for r in ratios)

    @property
    def levels(self) -> List[int]:
        return list(range(self.min_level, self.max_level + 1))

    @property
    def num_anchors(self) -> int:
        """Anchors per feature-map cell."""
        return len(self.scales) * len(self.ratios)

    def cell_anchors(self, level: int) -> np.ndarray:
        """``(A, 4)`` anchors of one cell of ``level``, centred on (0, 0)."""
        size = self.base_size * 2.0 ** (level - self.min_level)
        out = []
        for ratio in self.ratios:
            for scale in self.scales:
                h, w = size * scale * math.sqrt(ratio), size * scale / math.sqrt(ratio)
                out.append([-h / 2, -w / 2, h / 2, w / 2])
        return np.asarray(out, np.float32)

    def feature_shapes(self, image_shape) -> List[Tuple[tf.Tensor, tf.Tensor]]:
        """``[(ceil(H / 2^l), ceil(W / 2^l)) for each level]`` (int32 tensors)."""
        h, w = tf.cast(image_shape[0], tf.int32), tf.cast(image_shape[1], tf.int32)
        return [((h + 2 ** l - 1) // 2 ** l, (w + 2 ** l - 1) // 2 ** l) for l in self.levels]

    def __call__(self, image_shape) -> tf.Tensor:
        """Anchors for an ``(H, W)`` image (ints or a tensor such as ``tf.shape(images)[1:3]``)."""
        per_level = []
        for level, (fh, fw) in zip(self.levels, self.feature_shapes(image_shape)):
            stride = float(2 ** level)
            ys = (tf.cast(tf.range(fh), tf.float32) + 0.5) * stride
            xs = (tf.cast(tf.range(fw), tf.float32) + 0.5) * stride
            yy, xx = tf.meshgrid(ys, xs, indexing="ij")
            centres = tf.stack([yy, xx, yy, xx], axis=-1)[:, :, None, :]  # (fh, fw, 1, 4)
            per_level.append(tf.reshape(centres + self.cell_anchors(level), [-1, 4]))
        return tf.concat(per_level, axis=0)


def to_pixels(boxes, image_shape):
    """Normalised ``[ymin, xmin, ymax, xmax]`` -> pixels of an ``(H, W)`` image."""
    h, w = tf.cast(image_shape[0], tf.float32), tf.cast(image_shape[1], tf.float32)
    return tf.cast(boxes, tf.float32) * tf.stack([h, w, h, w])


def to_normalized(boxes, image_shape):
    """Pixel ``[ymin, xmin, ymax, xmax]`` -> normalised to an ``(H, W)`` image."""
    h, w = tf.cast(image_shape[0], tf.float32), tf.cast(image_shape[1], tf.float32)
    return tf.cast(boxes, tf.float32) / tf.stack([h, w, h, w])


def _centre_form(boxes):
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    return (ymin + ymax) / 2, (xmin + xmax) / 2, ymax - ymin, xmax - xmin


def encode_boxes(boxes, anchors, variances=VARIANCES):
    """``(ty, tx, th, tw)`` of ``boxes`` relative to ``anchors`` (both yxyx, broadcastable)."""
    boxes, anchors = tf.cast(boxes, tf.float32), tf.cast(anchors, tf.float32)
    by, bx, bh, bw = _centre_form(boxes)
    ay, ax, ah, aw = _centre_form(anchors)
    eps = 1e-8
    ah, aw = tf.maximum(ah, eps), tf.maximum(aw, eps)
    t = tf.stack([(by - ay) / ah, (bx - ax) / aw,
                  tf.math.log(tf.maximum(bh, eps) / ah), tf.math.log(tf.maximum(bw, eps) / aw)], axis=-1)
    return t / tf.constant(variances, tf.float32)


def decode_boxes(deltas, anchors, variances=VARIANCES):
    """Inverse of :func:`encode_boxes`: yxyx boxes from ``(ty, tx, th, tw)`` and anchors."""
    deltas = tf.cast(deltas, tf.float32) * tf.constant(variances, tf.float32)
    ay, ax, ah, aw = _centre_form(tf.cast(anchors, tf.float32))
    ty, tx, th, tw = tf.unstack(deltas, axis=-1)
    cy, cx = ty * ah + ay, tx * aw + ax
    h = tf.exp(tf.minimum(th, _BBOX_CLIP)) * ah
    w = tf.exp(tf.minimum(tw, _BBOX_CLIP)) * aw
    return tf.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1)


def box_iou(a, b):
    """IoU of yxyx boxes ``a (..., N, 4)`` and ``b (..., M, 4)`` -> ``(..., N, M)`` (0 for empty boxes)."""
    a, b = tf.cast(a, tf.float32)[..., :, None, :], tf.cast(b, tf.float32)[..., None, :, :]
    ih = tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
    iw = tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = ih * iw
    area_a = tf.maximum(a[..., 2] - a[..., 0], 0.0) * tf.maximum(a[..., 3] - a[..., 1], 0.0)
    area_b = tf.maximum(b[..., 2] - b[..., 0], 0.0) * tf.maximum(b[..., 3] - b[..., 1], 0.0)
    return inter / tf.maximum(area_a + area_b - inter, 1e-12)


def _assign_one(anchors, gt_boxes, gt_labels, pos_iou, neg_iou, low_quality_matches, variances):
    # One always-invalid row, so images without boxes need no special case.
    gt_boxes = tf.concat([tf.cast(gt_boxes, tf.float32), tf.zeros([1, 4])], axis=0)
    gt_labels = tf.concat([tf.cast(gt_labels, tf.int32), [-1]], axis=0)
    valid = gt_labels >= 0
    iou = tf.where(valid[None, :], box_iou(anchors, gt_boxes), -1.0)  # (N, M + 1)
    max_iou = tf.reduce_max(iou, axis=1)
    matched = tf.argmax(iou, axis=1, output_type=tf.int32)
    positive = max_iou >= pos_iou
    state = tf.where(max_iou < neg_iou, BACKGROUND, IGNORE)
    if low_quality_matches:
        best_per_gt = tf.reduce_max(iou, axis=0)  # (M + 1,)
        is_best = (iou >= best_per_gt[None, :]) & valid[None, :] & (best_per_gt[None, :] > 0.0)
        forced = tf.reduce_any(is_best, axis=1)
        forced_gt = tf.argmax(tf.where(is_best, iou, -1.0), axis=1, output_type=tf.int32)
        matched = tf.where(forced & ~positive, forced_gt, matched)
        positive = positive | forced
    cls_targets = tf.where(positive, tf.gather(gt_labels, matched), state)
    box_targets = encode_boxes(tf.gather(gt_boxes, matched), anchors, variances)
    box_targets = tf.where(positive[:, None], box_targets, 0.0)
    return cls_targets, box_targets


def assign_targets(anchors, gt_boxes, gt_labels, pos_iou: float = 0.5, neg_iou: float = 0.4,
                   low_quality_matches: bool = True, variances=VARIANCES):
    """Anchor targets for padded ground truth.

    Args:
      anchors: ``(N, 4)`` yxyx, same units as ``gt_boxes`` (pixels).
      gt_boxes: ``(B, M, 4)`` (or ``(M, 4)`` for one image); gt_labels ``(B, M)``
        int, ``-1`` = padding.
    Returns:
      ``cls_targets (B, N)`` int32: class of the matched gt (positive),
      ``BACKGROUND`` (-1) or ``IGNORE`` (-2); ``box_targets (B, N, 4)``
      :func:`encode_boxes` of the matched gt (zeros where not positive).
    """
    anchors = tf.cast(anchors, tf.float32)
    gt_boxes = tf.convert_to_tensor(gt_boxes, tf.float32)
    gt_labels = tf.convert_to_tensor(gt_labels, tf.int32)
    args = (pos_iou, neg_iou, low_quality_matches, variances)
    if gt_boxes.shape.rank == 2:
        return _assign_one(anchors, gt_boxes, gt_labels, *args)
    return tf.map_fn(lambda e: _assign_one(anchors, e[0], e[1], *args), (gt_boxes, gt_labels),
                     fn_output_signature=(tf.int32, tf.float32))


def postprocess(outputs, image_shape, anchor_generator: AnchorGenerator = None, anchors=None,
                score_threshold: float = 0.05, iou_threshold: float = 0.5, max_detections: int = 100,
                pre_nms_top_k: int = 1000, max_per_class: int = None, variances=VARIANCES,
                normalized: bool = True) -> Dict[str, tf.Tensor]:
    """Detections from model outputs: decode, sigmoid, top-k, per-class NMS.

    The ``pre_nms_top_k`` anchors of highest class score (over all levels)
    go to ``tf.image.combined_non_max_suppression`` (class-wise NMS at
    ``iou_threshold``, scores below ``score_threshold`` dropped, at most
    ``max_per_class`` (default ``max_detections``) per class and
    ``max_detections`` in all). Boxes are clipped to the image.

    Returns ``boxes (B, K, 4)`` yxyx (normalised if ``normalized``, else
    pixels), ``scores (B, K)``, ``labels (B, K)`` int32 (``-1`` pads),
    ``num_detections (B,)``, with ``K = max_detections``.
    """
    logits, deltas = split_outputs(outputs)
    if anchors is None:
        anchors = (anchor_generator or AnchorGenerator())(image_shape)
    h, w = tf.cast(image_shape[0], tf.float32), tf.cast(image_shape[1], tf.float32)
    boxes = decode_boxes(deltas, anchors, variances)
    boxes = tf.minimum(tf.maximum(boxes, 0.0), tf.stack([h, w, h, w]))
    scores = tf.sigmoid(tf.cast(logits, tf.float32))
    k = tf.minimum(pre_nms_top_k, tf.shape(scores)[1])
    _, index = tf.math.top_k(tf.reduce_max(scores, axis=-1), k=k)
    boxes = tf.gather(boxes, index, batch_dims=1)
    scores = tf.gather(scores, index, batch_dims=1)
    if normalized:
        boxes = boxes / tf.stack([h, w, h, w])
    nms = tf.image.combined_non_max_suppression(
        boxes[:, :, None, :], scores, max_output_size_per_class=max_per_class or max_detections,
        max_total_size=max_detections, iou_threshold=iou_threshold, score_threshold=score_threshold,
        pad_per_class=False, clip_boxes=False)
    keep = tf.range(max_detections)[None, :] < nms.valid_detections[:, None]
    return {"boxes": tf.where(keep[..., None], nms.nmsed_boxes, 0.0),
            "scores": tf.where(keep, nms.nmsed_scores, 0.0),
            "labels": tf.where(keep, tf.cast(nms.nmsed_classes, tf.int32), -1),
            "num_detections": nms.valid_detections}


# --------------------------------------------------------------------------- weights
_LAYOUT = (
    "an HDF5 file written by isp_tf.models.genisp.detector.save_detector_weights (or "
    "model.save_weights(path, save_format='h5')) from build_retinanet(num_classes=..., backbone='resnet50'): "
    "top-level groups 'backbone' (Keras ResNet-50 layer names conv1_conv ... conv5_block3_3_bn), "
    "'fpn_lateral3..5', 'fpn_p3..p7', 'class_subnet' (class_subnet_conv0..3, class_subnet_output: "
    "9 x num_classes outputs), 'box_subnet' (box_subnet_conv0..3, box_subnet_output: 36 outputs), each "
    "weight stored as '<layer>/<kernel|bias|gamma|beta|moving_mean|moving_variance>:0' with Keras shapes "
    "(kernels HWIO). A Keras ResNet-50 notop file (resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5) "
    "loads the backbone only")


def _key(weight_name: str, group: str) -> Tuple[str, str]:
    """``(layer, weight)`` of ``'.../conv1_conv/kernel:0'`` (``group`` when there is no layer part)."""
    parts = weight_name.split(":")[0].split("/")
    return (parts[-2], parts[-1]) if len(parts) >= 2 else (group, parts[-1])


def _model_keys(layer, prefix=None) -> Dict[Tuple[str, str], tf.Variable]:
    """``{(layer name, weight name): variable}`` over the innermost layers of ``layer``."""
    out = {}
    sublayers = getattr(layer, "layers", None)
    if sublayers:  # a nested model: key by its own layers
        for sub in sublayers:
            out.update(_model_keys(sub))
        return out
    for v in layer.weights:
        out[(layer.name, v.name.split(":")[0].split("/")[-1])] = v
    return out


def _file_keys(f) -> Dict[Tuple[str, str], h5py.Dataset]:
    def decode(s):
        return s.decode("utf8") if isinstance(s, bytes) else str(s)

    out = {}
    for group_name in (decode(n) for n in f.attrs["layer_names"]):
        group = f[group_name]
        for weight_name in (decode(n) for n in group.attrs.get("weight_names", [])):
            out[_key(weight_name, group_name)] = group[weight_name]
    return out


def save_detector_weights(model: keras.Model, path) -> pathlib.Path:
    """``model.save_weights`` in the h5 layout :func:`load_detector_weights` reads, written atomically."""
    path = pathlib.Path(path)
    if path.suffix != ".h5":
        raise ValueError(f"weights file name must end in .h5, got {path}")
    with atomic_path(path) as tmp:
        model.save_weights(tmp, save_format="h5")
    return path


def load_detector_weights(model: keras.Model, path) -> str:
    """Load a detector (or backbone-only) h5 into a :func:`build_retinanet` model.

    Returns ``"detector"`` when every weight of the model was in the file,
    ``"backbone"`` when only the backbone's were (e.g. a Keras ResNet-50
    notop file: the FPN and heads keep their initialisation).

    Raises:
      MissingFileError: ``path`` does not exist (the message says where to
        put COCO-trained weights and their layout).
      WeightsMismatchError: not an HDF5 weights file, or weights missing or
        of other shapes (nothing is assigned then).
    """
    from isp_tf.models.weights import open_weights_file

    path = pathlib.Path(path)
    f = open_weights_file(path, expected=_LAYOUT, missing=(
        f"detector weights {path} not found. No weights are downloaded: put COCO-trained RetinaNet "
        f"weights at {path} as {_LAYOUT}"))
    with f:
        if "layer_names" not in f.attrs:
            raise WeightsMismatchError(f"{path} is not a Keras HDF5 weights file (no layer_names); "
                                       f"expected {_LAYOUT}")
        stored = _file_keys(f)
        wanted = _model_keys(model)
        try:
            backbone = _model_keys(model.get_layer("backbone"))
        except ValueError:
            backbone = {}
        head_layers = {layer for layer, _ in wanted} - {layer for layer, _ in backbone}
        is_detector_file = any(layer in head_layers for layer, _ in stored)
        if all(k in stored for k in wanted):
            kind, targets = "detector", wanted
        elif backbone and not is_detector_file and all(k in stored for k in backbone):
            kind, targets = "backbone", backbone
        else:
            missing = [f"{a}/{b}" for a, b in wanted if (a, b) not in stored]
            raise WeightsMismatchError(
                f"{path} does not hold the weights of {model.name!r}: {len(missing)} of {len(wanted)} "
                f"missing (e.g. {', '.join(missing[:4])}); neither a full detector nor its backbone. "
                f"Expected {_LAYOUT}")
        bad = [f"{a}/{b}: file {tuple(stored[(a, b)].shape)}, model {tuple(v.shape)}"
               for (a, b), v in targets.items() if tuple(stored[(a, b)].shape) != tuple(v.shape)]
        if bad:
            raise WeightsMismatchError(
                f"{path} has {len(bad)} weights of other shapes than {model.name!r} (another num_classes, "
                f"num_anchors or fpn_channels?): {'; '.join(bad[:4])}")
        keras.backend.batch_set_value([(v, np.asarray(stored[k])) for k, v in targets.items()])
    return kind


def freeze(model: keras.Model, frozen: bool = True) -> keras.Model:
    """Make every layer of ``model`` non-trainable (``frozen=False`` undoes it).

    Frozen BatchNormalization layers run in inference mode and keep their
    moving statistics, so an optimizer step on a model that contains the
    frozen detector leaves its weights bit-identical while gradients still
    flow through it to the inputs (GenISP). Compile (again) after freezing.
    """
    for layer in model.submodules:
        if isinstance(layer, keras.layers.Layer):
            layer.trainable = not frozen
    model.trainable = not frozen
    return model
