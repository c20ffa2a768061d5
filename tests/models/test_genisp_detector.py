"""GenISP's RetinaNet: anchors, box coding, target assignment, NMS, model shapes, training, freezing, weights."""
import math

import h5py
import numpy as np
import pytest

from isp_tf._keras import keras, tf
from isp_tf.errors import MissingFileError, WeightsMismatchError
from isp_tf.losses.detection import RetinaNetLoss
from isp_tf.models.genisp.detector import (BACKGROUND, IGNORE, AnchorGenerator, assign_targets, box_iou,
                                           build_retinanet, decode_boxes, encode_boxes, freeze,
                                           load_detector_weights, postprocess, save_detector_weights)

LIGHT = dict(backbone="light", fpn_channels=32, head_convs=2)


# --------------------------------------------------------------------------- anchors
def test_anchor_count_and_positions_for_128x128():
    gen = AnchorGenerator()
    anchors = gen((128, 128)).numpy()
    # P3..P7 grids 16, 8, 4, 2, 1; 9 anchors a cell
    assert gen.num_anchors == 9
    assert anchors.shape == (9 * (16 ** 2 + 8 ** 2 + 4 ** 2 + 2 ** 2 + 1), 4) == (3069, 4)
    # first: P3 cell (0, 0), centre (4, 4), ratio h/w 0.5, scale 1, size 32
    h, w = 32 * math.sqrt(0.5), 32 / math.sqrt(0.5)
    np.testing.assert_allclose(anchors[0], [4 - h / 2, 4 - w / 2, 4 + h / 2, 4 + w / 2], rtol=1e-6)
    # the square scale-1 anchor of P3 cell (y=1, x=2): centre (12, 20)
    np.testing.assert_allclose(anchors[(1 * 16 + 2) * 9 + 3], [12 - 16, 20 - 16, 12 + 16, 20 + 16], rtol=1e-6)
    # last: P7's only cell, centre (64, 64), ratio 2, scale 2^(2/3), size 512
    s = 512 * 2 ** (2 / 3)
    h, w = s * math.sqrt(2), s / math.sqrt(2)
    np.testing.assert_allclose(anchors[-1], [64 - h / 2, 64 - w / 2, 64 + h / 2, 64 + w / 2], rtol=1e-5)
    # every anchor keeps its area size^2 * scale^2
    areas = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
    np.testing.assert_allclose(areas[:3], [32 ** 2, (32 * 2 ** (1 / 3)) ** 2, (32 * 2 ** (2 / 3)) ** 2], rtol=1e-5)
    # grids are ceil(H / stride): 100 x 140 -> 13x18, 7x9, 4x5, 2x3, 1x2
    assert gen((100, 140)).shape[0] == 9 * (13 * 18 + 7 * 9 + 4 * 5 + 2 * 3 + 1 * 2)


# --------------------------------------------------------------------------- box coding
def test_encode_hand_value_and_round_trip():
    anchor = np.array([[34.0, 34.0, 66.0, 66.0]])   # centre (50, 50), 32 x 32
    box = np.array([[40.0, 30.0, 72.0, 94.0]])      # centre (56, 62), 32 x 64
    t = encode_boxes(box, anchor).numpy()
    np.testing.assert_allclose(t, [[6 / 32 / 0.1, 12 / 32 / 0.1, 0.0, math.log(2) / 0.2]], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(decode_boxes(t, anchor).numpy(), box, rtol=1e-6)

    rng = np.random.default_rng(0)
    anchors = AnchorGenerator()((128, 128))
    y0, x0 = rng.uniform(0, 100, (2, 3069)), rng.uniform(0, 100, (2, 3069))
    boxes = np.stack([y0, x0, y0 + rng.uniform(2, 80, y0.shape), x0 + rng.uniform(2, 80, x0.shape)], -1)
    np.testing.assert_allclose(decode_boxes(encode_boxes(boxes, anchors), anchors).numpy(), boxes,
                               rtol=1e-4, atol=1e-3)


def test_box_iou_hand_values():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], np.float32)
    b = np.array([[0, 0, 10, 5], [5, 5, 15, 15], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(box_iou(a, b).numpy(), [[0.5, 25 / 175, 0.0], [0, 0, 0]], rtol=1e-6)


# --------------------------------------------------------------------------- target assignment
def test_target_assignment_on_hand_made_case():
    anchors = np.array([
        [0, 0, 10, 10],      # IoU 1 with gt0 -> positive, class 0
        [0, 0, 10, 6],       # IoU 0.6 with gt0 -> positive, class 0
        [0, 0, 10, 4.5],     # IoU 0.45 -> ignored
        [0, 0, 10, 3],       # IoU 0.3 -> background
        [20, 20, 30, 30],    # IoU 100/130 with gt1 -> positive, class 2
        [50, 50, 60, 60],    # IoU 0.2 with gt2, but its best anchor -> positive, class 1
        [80, 80, 90, 90],    # nothing -> background
    ], np.float32)
    gt = np.array([[[0, 0, 10, 10], [20, 20, 30, 33], [50, 50, 60, 52], [0, 0, 0, 0]],
                   [[0, 0, 10, 10], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]], np.float32)
    labels = np.array([[0, 2, 1, -1], [1, -1, -1, -1]], np.int32)
    cls, box = assign_targets(anchors, gt, labels)
    np.testing.assert_array_equal(cls.numpy()[0], [0, 0, IGNORE, BACKGROUND, 2, 1, BACKGROUND])
    # image 1 (one gt, padding ignored): only the first two anchors are positive
    np.testing.assert_array_equal(cls.numpy()[1], [1, 1, IGNORE, BACKGROUND, BACKGROUND, BACKGROUND,
                                                   BACKGROUND])
    # anchor 1 centre (5, 3), 10 x 6 -> gt0 centre (5, 5), 10 x 10
    np.testing.assert_allclose(box.numpy()[0, 1], [0.0, 2 / 6 / 0.1, 0.0, math.log(10 / 6) / 0.2], atol=1e-6)
    np.testing.assert_array_equal(box.numpy()[0, [2, 3, 6]], 0.0)
    # the forced match encodes its own gt
    np.testing.assert_allclose(box.numpy()[0, 5], encode_boxes(gt[0, 2:3], anchors[5:6]).numpy()[0], atol=1e-6)

    # no ground truth at all: every anchor background
    cls, _ = assign_targets(anchors, np.zeros((1, 0, 4), np.float32), np.zeros((1, 0), np.int32))
    np.testing.assert_array_equal(cls.numpy(), BACKGROUND)
    # the low-quality rule can be switched off
    cls, _ = assign_targets(anchors, gt[:1], labels[:1], low_quality_matches=False)
    assert cls.numpy()[0, 5] == BACKGROUND


# --------------------------------------------------------------------------- postprocess
def test_postprocess_decodes_and_applies_per_class_nms():
    gen = AnchorGenerator()
    anchors = gen((128, 128)).numpy()
    n = anchors.shape[0]
    logits = np.full((1, n, 2), -10.0, np.float32)
    i, j = (2 * 16 + 2) * 9 + 3, (2 * 16 + 3) * 9 + 3   # neighbouring square 32-px anchors, IoU 0.6
    assert box_iou(anchors[i:i + 1], anchors[j:j + 1]).numpy()[0, 0] == pytest.approx(0.6, abs=1e-6)
    logits[0, i, 0], logits[0, j, 0], logits[0, j, 1] = 3.0, 2.0, 1.0
    deltas = np.zeros((1, n, 4), np.float32)
    out = postprocess({"classification": logits, "regression": deltas}, (128, 128), gen, max_detections=5)
    assert out["boxes"].shape == (1, 5, 4) and int(out["num_detections"][0]) == 2
    sig = 1 / (1 + np.exp(-np.array([3.0, 1.0])))
    np.testing.assert_allclose(out["scores"].numpy()[0, :2], sig, rtol=1e-6)   # class 0 of j suppressed
    np.testing.assert_array_equal(out["labels"].numpy()[0], [0, 1, -1, -1, -1])
    np.testing.assert_allclose(out["boxes"].numpy()[0, 0], anchors[i] / 128, rtol=1e-6)
    np.testing.assert_allclose(out["boxes"].numpy()[0, 1], anchors[j] / 128, rtol=1e-6)
    pixels = postprocess((logits, deltas), (128, 128), gen, max_detections=5, normalized=False)
    np.testing.assert_allclose(pixels["boxes"].numpy()[0, 0], anchors[i], rtol=1e-6)


# --------------------------------------------------------------------------- models
def test_light_retinanet_shapes_and_prior():
    keras.utils.set_random_seed(0)
    model = build_retinanet(3, **LIGHT)
    out = model(tf.zeros((2, 128, 128, 3)))
    assert out["classification"].shape == (2, 3069, 3) and out["regression"].shape == (2, 3069, 4)
    bias = model.get_layer("class_subnet").get_layer("class_subnet_output").bias.numpy()
    np.testing.assert_allclose(bias, -math.log(99.0), rtol=1e-6)
    assert abs(float(tf.reduce_mean(tf.sigmoid(out["classification"]))) - 0.01) < 1e-3
    # any size: one output row per anchor
    odd = model(tf.zeros((1, 100, 140, 3)))
    assert odd["classification"].shape[1] == AnchorGenerator()((100, 140)).shape[0]


def test_resnet50_retinanet_shapes_and_notop_weights(tmp_path):
    model = build_retinanet(80, backbone="resnet50")
    assert model.count_params() == 38_048_372
    c3, c4, c5 = model.get_layer("backbone").outputs
    assert (c3.shape[-1], c4.shape[-1], c5.shape[-1]) == (512, 1024, 2048)
    out = model(tf.zeros((1, 96, 160, 3)))
    n = AnchorGenerator()((96, 160)).shape[0]
    assert out["classification"].shape == (1, n, 80) and out["regression"].shape == (1, n, 4)

    # a Keras ResNet-50 notop file (what keras.applications saves) loads the backbone only
    notop = keras.applications.ResNet50(include_top=False, weights=None)
    notop.save_weights(tmp_path / "resnet50_notop.h5", save_format="h5")
    head = model.get_layer("box_subnet").weights[0].numpy().copy()
    assert load_detector_weights(model, tmp_path / "resnet50_notop.h5") == "backbone"
    for name in ("conv1_conv", "conv3_block2_2_bn", "conv5_block3_3_conv"):
        for a, b in zip(notop.get_layer(name).weights, model.get_layer("backbone").get_layer(name).weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(model.get_layer("box_subnet").weights[0].numpy(), head)
    with pytest.raises(WeightsMismatchError, match="neither a full detector nor its backbone"):
        load_detector_weights(build_retinanet(2, **LIGHT), tmp_path / "resnet50_notop.h5")


def _squares(n=4, size=128, seed=0):
    rng = np.random.default_rng(seed)
    images = np.full((n, size, size, 3), 0.05, np.float32)
    boxes = np.zeros((n, 3, 4), np.float32)
    labels = np.full((n, 3), -1, np.int32)
    for k in range(n):
        side = int(rng.integers(28, 48))
        y, x = rng.integers(4, size - side - 4, 2)
        images[k, y:y + side, x:x + side] = 0.9
        boxes[k, 0] = np.array([y, x, y + side, x + side]) / size
        labels[k, 0] = 0
    return images, boxes, labels


def test_light_detector_training_lowers_the_loss():
    keras.utils.set_random_seed(1)
    images, boxes, labels = _squares()
    model = build_retinanet(1, **LIGHT)
    loss_fn = RetinaNetLoss(image_shape=(128, 128))
    opt = keras.optimizers.Adam(1e-3)

    @tf.function
    def step(x, b, lab):
        with tf.GradientTape() as tape:
            terms = loss_fn.terms({"boxes": b, "labels": lab}, model(x, training=True))
        grads = tape.gradient(terms["loss"], model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return terms

    losses = []
    for i in range(12):
        k = (2 * i) % 4
        terms = step(images[k:k + 2], boxes[k:k + 2], labels[k:k + 2])
        assert float(terms["num_positive"]) >= 2  # every square has at least its best anchor
        losses.append(float(terms["loss"]))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses


def test_freeze_keeps_detector_bit_identical_through_an_optimizer_step():
    keras.utils.set_random_seed(2)
    detector = build_retinanet(2, **LIGHT)
    freeze(detector)
    raw = keras.Input((64, 64, 3))
    isp = keras.layers.Conv2D(3, 3, padding="same", name="isp_conv")
    wrapper = keras.Model(raw, detector(isp(raw)))
    assert [v.name for v in wrapper.trainable_variables] == [v.name for v in isp.weights]
    before = [v.numpy().copy() for v in detector.weights]
    isp_before = isp.kernel.numpy().copy()
    images, boxes, labels = _squares(2, 64)
    loss_fn = RetinaNetLoss(image_shape=(64, 64))
    opt = keras.optimizers.SGD(0.1)
    with tf.GradientTape() as tape:
        loss = loss_fn({"boxes": boxes, "labels": labels}, wrapper(images, training=True))
    grads = tape.gradient(loss, wrapper.trainable_variables)
    opt.apply_gradients(zip(grads, wrapper.trainable_variables))
    assert not np.array_equal(isp.kernel.numpy(), isp_before)   # gradients reach the ISP
    for b, v in zip(before, detector.weights):                   # BN moving stats included
        assert np.array_equal(b, v.numpy()), v.name
    freeze(detector, frozen=False)
    assert len(detector.trainable_weights) > 0


# --------------------------------------------------------------------------- weights
def test_weights_round_trip_and_backbone_only(tmp_path):
    keras.utils.set_random_seed(3)
    x = np.random.default_rng(0).random((1, 64, 64, 3)).astype(np.float32)
    a = build_retinanet(2, **LIGHT)
    path = save_detector_weights(a, tmp_path / "det.h5")
    b = build_retinanet(2, **LIGHT)
    assert load_detector_weights(b, path) == "detector"
    for k in ("classification", "regression"):
        np.testing.assert_array_equal(a(x)[k].numpy(), b(x)[k].numpy())
    # a file holding only the backbone (as a Keras ResNet-50 notop file does)
    a.get_layer("backbone").save_weights(tmp_path / "backbone.h5", save_format="h5")
    c = build_retinanet(2, **LIGHT)
    head = c.get_layer("class_subnet").weights[0].numpy().copy()
    assert load_detector_weights(c, tmp_path / "backbone.h5") == "backbone"
    for va, vc in zip(a.get_layer("backbone").weights, c.get_layer("backbone").weights):
        np.testing.assert_array_equal(va.numpy(), vc.numpy())
    np.testing.assert_array_equal(c.get_layer("class_subnet").weights[0].numpy(), head)


def test_weights_errors_are_clear(tmp_path):
    model = build_retinanet(2, **LIGHT)
    with pytest.raises(MissingFileError, match="COCO-trained"):
        load_detector_weights(model, tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not weights")
    with pytest.raises(WeightsMismatchError, match="not an HDF5"):
        load_detector_weights(model, tmp_path / "text.h5")
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(WeightsMismatchError, match="layer_names"):
        load_detector_weights(model, tmp_path / "plain.h5")
    other = build_retinanet(3, **LIGHT)            # other num_classes: head shapes differ
    save_detector_weights(other, tmp_path / "three.h5")
    before = [v.numpy().copy() for v in model.weights]
    with pytest.raises(WeightsMismatchError, match="class_subnet_output/kernel"):
        load_detector_weights(model, tmp_path / "three.h5")
    for b, v in zip(before, model.weights):       # nothing half-loaded
        assert np.array_equal(b, v.numpy())
    wide = build_retinanet(2, backbone="light", fpn_channels=16, head_convs=3)   # other structure
    save_detector_weights(wide, tmp_path / "wide.h5")
    with pytest.raises(WeightsMismatchError):
        load_detector_weights(build_retinanet(2, backbone="light", fpn_channels=16, head_convs=4),
                              tmp_path / "wide.h5")
