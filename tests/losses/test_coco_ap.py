"""COCO AP through pycocotools on hand-worked cases.

COCOeval's AP: for each category and IoU threshold t in 0.50:0.05:0.95, the
precision envelope (precision made non-increasing from the right) read at
101 recall points r = 0, 0.01, ..., 1 (0 where recall r is never reached),
averaged over the points and the thresholds, then over the categories.
"""
import json

import numpy as np
import pytest

from isp_tf.errors import DatasetError, MissingFileError
from isp_tf.losses.coco_ap import CocoEvaluator, coco_ap, load_coco_json

GT = [np.array([[0, 0, 10, 10], [20, 20, 40, 50]], np.float32), np.array([[5, 5, 30, 25]], np.float32)]
GT_LABELS = [np.array([0, 0]), np.array([1])]


def _ap(pred_boxes, pred_scores, pred_labels, **kw):
    return coco_ap(GT, GT_LABELS, pred_boxes, pred_scores, pred_labels, **kw)


def test_perfect_predictions_give_one(capsys):
    r = _ap(GT, [np.array([0.9, 0.8]), np.array([0.7])], GT_LABELS)
    assert r["AP"] == pytest.approx(1.0) and r["AP50"] == pytest.approx(1.0) and r["AP75"] == pytest.approx(1.0)
    assert r["per_class"] == {0: pytest.approx(1.0), 1: pytest.approx(1.0)}
    assert capsys.readouterr().out == ""               # pycocotools' prints are silenced


def test_no_predictions_give_zero():
    empty = [np.zeros((0, 4)), np.zeros((0, 4))]
    r = _ap(empty, [np.zeros(0), np.zeros(0)], [np.zeros(0, int), np.zeros(0, int)])
    assert r["AP"] == 0.0 and r["AP50"] == 0.0 and r["AP75"] == 0.0 and r["AR100"] == 0.0


def test_half_the_objects_found_with_the_top_score():
    # class 0: 2 objects, 1 found (exact box, highest score). Ranked list: TP -> recall 0.5 at precision 1;
    # the recall points 0, 0.01, ..., 0.50 (51 of 101) read precision 1, the 50 above read 0.
    r = coco_ap(GT[:1], GT_LABELS[:1], [GT[0][:1]], [np.array([0.95])], [np.array([0])])
    assert r["AP"] == pytest.approx(51 / 101) and r["AP50"] == pytest.approx(51 / 101)
    assert r["AP75"] == pytest.approx(51 / 101) and r["AR100"] == pytest.approx(0.5)
    # a false positive ranked below the true one does not change it (envelope from the right)
    r = coco_ap(GT[:1], GT_LABELS[:1], [np.array([GT[0][0], [60, 60, 70, 70]])], [np.array([0.9, 0.3])],
                [np.array([0, 0])])
    assert r["AP"] == pytest.approx(51 / 101)
    # ranked above it: precision 1/2 at recall 0.5 -> 51 points at 0.5
    r = coco_ap(GT[:1], GT_LABELS[:1], [np.array([GT[0][0], [60, 60, 70, 70]])], [np.array([0.3, 0.9])],
                [np.array([0, 0])])
    assert r["AP"] == pytest.approx(0.5 * 51 / 101)
    # two classes, one perfect and one missed: mean over categories = exactly 0.5
    r = _ap([GT[0], np.zeros((0, 4))], [np.array([0.9, 0.8]), np.zeros(0)], [np.array([0, 0]), np.zeros(0, int)])
    assert r["AP"] == pytest.approx(0.5) and r["per_class"] == {0: pytest.approx(1.0), 1: 0.0}


def test_iou_thresholds_and_wrong_class():
    # IoU 0.72 (box 10 x 7.2 inside 10 x 10): a match at t = 0.50 ... 0.70 (5 of 10 thresholds)
    gt, lab = [np.array([[0, 0, 10, 10]])], [np.array([0])]
    r = coco_ap(gt, lab, [np.array([[0, 0, 10, 7.2]])], [np.array([0.9])], [np.array([0])])
    assert r["AP"] == pytest.approx(0.5) and r["AP50"] == pytest.approx(1.0) and r["AP75"] == 0.0
    # the right box with the wrong label finds nothing
    r = coco_ap(gt, lab, gt, [np.array([0.9])], [np.array([1])], num_classes=2)
    assert r["AP"] == 0.0 and r["per_class"] == {0: 0.0, 1: -1.0}   # class 1 has no gt: left out


def test_padded_normalised_batches_and_evaluator():
    # the layouts of RAW-NOD batches and of postprocess(): padded, labels -1, boxes normalised
    sizes = np.array([[40, 50], [40, 50]])
    gt_boxes = np.zeros((2, 3, 4), np.float32)
    gt_labels = np.full((2, 3), -1, np.int32)
    for i, (b, lab) in enumerate(zip(GT, GT_LABELS)):
        gt_boxes[i, :len(b)] = b / np.array([40, 50, 40, 50])
        gt_labels[i, :len(b)] = lab
    scores = np.where(gt_labels >= 0, 0.8, 0.0).astype(np.float32)
    r = coco_ap(gt_boxes, gt_labels, gt_boxes, scores, gt_labels, image_sizes=sizes, normalized=True)
    assert r["AP"] == pytest.approx(1.0)
    # areas are in pixels (100, 600, 500 px: all "small", < 32^2), not in normalised units
    assert r["APs"] == pytest.approx(1.0) and r["APm"] == -1.0

    ev = CocoEvaluator(normalized=True)
    ev.update(gt_boxes[:1], gt_labels[:1], gt_boxes[:1], scores[:1], gt_labels[:1], image_sizes=(40, 50))
    ev.update(gt_boxes[1:], gt_labels[1:], np.zeros((1, 3, 4)), np.zeros((1, 3)), np.full((1, 3), -1),
              image_sizes=(40, 50))
    r = ev.result()
    assert r["AP"] == pytest.approx(0.5)             # class 0 perfect, class 1 missed
    with pytest.raises(ValueError, match="image_sizes"):
        coco_ap(gt_boxes, gt_labels, gt_boxes, scores, gt_labels, normalized=True)
    with pytest.raises(ValueError, match="same images"):
        coco_ap(gt_boxes, gt_labels, gt_boxes[:1], scores[:1], gt_labels[:1])
    assert coco_ap([], [], [], [], [])["AP"] == -1.0   # no ground truth at all: COCO's -1


def test_load_coco_json_rawnod_layout(tmp_path):
    coco = {
        "images": [{"id": "DSC01", "file_name": "DSC01.ARW", "width": 60, "height": 40},
                   {"id": "DSC02", "file_name": "raw/DSC02.ARW", "width": 60, "height": 40}],
        "annotations": [
            {"id": 1, "image_id": "DSC01", "category_id": 3, "bbox": [10, 5, 20, 10], "iscrowd": 0},
            {"id": 2, "image_id": "DSC01", "category_id": 1, "bbox": [0, 0, 5, 5]},
            {"id": 3, "image_id": "DSC01", "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 1},
        ],
        "categories": [{"id": 3, "name": "car"}, {"id": 1, "name": "person"}, {"id": 2, "name": "bicycle"}],
    }
    path = tmp_path / "raw_new_Sony_RX100m7_test.json"
    path.write_text(json.dumps(coco))
    ann = load_coco_json(path)
    assert ann.categories == [(1, "person"), (2, "bicycle"), (3, "car")]
    np.testing.assert_array_equal(ann.boxes[0], [[5, 10, 15, 30], [0, 0, 5, 5]])   # yxyx pixels
    np.testing.assert_array_equal(ann.labels[0], [2, 0])                          # crowd box skipped
    assert ann.boxes[1].shape == (0, 4) and ann.labels[1].shape == (0,)
    np.testing.assert_array_equal(ann.image_sizes, [[40, 60], [40, 60]])
    r = coco_ap(ann.boxes, ann.labels, ann.boxes, [np.ones(2), np.zeros(0)], ann.labels, image_sizes=ann.image_sizes)
    assert r["AP"] == pytest.approx(1.0)

    with pytest.raises(MissingFileError, match="not found"):
        load_coco_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DatasetError, match="not a JSON"):
        load_coco_json(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"images": []}))
    with pytest.raises(DatasetError, match="not a COCO detection"):
        load_coco_json(tmp_path / "other.json")
