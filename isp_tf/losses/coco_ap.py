"""COCO box AP (AP, AP50, AP75, ...) through pycocotools' ``COCOeval``, from arrays in memory.

Ground truth and predictions are given per image, as lists of arrays or as
padded batches (labels ``-1`` mark padding, as in :mod:`isp_tf.data.rawnod`
and :func:`isp_tf.models.genisp.detector.postprocess`); boxes are
``[ymin, xmin, ymax, xmax]``, in pixels, or normalised with ``image_sizes``.
The COCO dicts are built in memory (no files) and pycocotools' prints are
silenced. Labels ``0..C-1`` become COCO category ids ``1..C``.

AP is COCOeval's: per category and IoU threshold (0.50:0.05:0.95), the
precision envelope sampled at 101 recall points 0, 0.01, ..., 1 (0 past the
highest recall reached), averaged; then the mean over the categories that
have ground truth. So finding one of two objects with the top score gives
51/101, not 0.5. A category without ground truth is left out (COCOeval's -1);
every value is -1 when there is no ground truth at all.

:func:`load_coco_json` reads a COCO detection JSON (the RAW-NOD layout) into
the same per-image arrays.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import pathlib
from typing import Dict, List, Optional, Tuple

import numpy as np

from isp_tf.errors import DatasetError, MissingFileError

__all__ = ["CocoAnnotations", "CocoEvaluator", "STAT_NAMES", "coco_ap", "load_coco_json"]

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _per_image(values, width=None) -> List[np.ndarray]:
    """A padded batch or a sequence of per-image arrays -> list of numpy arrays."""
    if hasattr(values, "numpy"):
        values = values.numpy()
    out = []
    for v in values:
        v = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
        out.append(v.reshape(-1, width) if width else v.reshape(-1))
    return out


def _sizes(image_sizes, n) -> List[Tuple[float, float]]:
    sizes = np.asarray(image_sizes.numpy() if hasattr(image_sizes, "numpy") else image_sizes, np.float64)
    if sizes.shape == (2,):
        sizes = np.tile(sizes, (n, 1))
    if sizes.shape != (n, 2):
        raise ValueError(f"image_sizes must be (H, W) or one (H, W) per image ({n}), got shape {sizes.shape}")
    return [tuple(s) for s in sizes]


def _xywh(boxes_yxyx, size, normalized):
    b = np.asarray(boxes_yxyx, np.float64).reshape(-1, 4)
    if normalized:
        h, w = size
        b = b * np.array([h, w, h, w])
    y0, x0, y1, x1 = b.T
    return np.stack([x0, y0, np.maximum(x1 - x0, 0.0), np.maximum(y1 - y0, 0.0)], axis=-1)


def coco_ap(gt_boxes, gt_labels, pred_boxes, pred_scores, pred_labels, image_sizes=None,
            normalized: bool = False, num_classes: Optional[int] = None,
            max_detections: int = 100) -> Dict[str, object]:
    """COCO box metrics of ``pred_*`` against ``gt_*``.

    Args:
      gt_boxes: per image ``(n_i, 4)`` yxyx (list, or padded ``(B, M, 4)``);
        gt_labels ``(n_i,)`` int, ``-1`` rows ignored.
      pred_boxes, pred_scores, pred_labels: the same for detections.
      image_sizes: ``(H, W)`` per image (or one for all); needed when
        ``normalized`` (else only stored in the COCO images).
      normalized: boxes are in [0, 1] of their image.
      num_classes: categories ``0..num_classes-1``; default the labels seen.
      max_detections: detections per image counted (COCO: 100).
    Returns:
      ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100",
      "ARs", "ARm", "ARl"}`` floats (COCOeval's ``stats``; AR1/AR10 use 1
      and 10 detections) and ``"per_class": {label: AP}``.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gtb, gtl = _per_image(gt_boxes, 4), _per_image(gt_labels)
    pb, ps, pl = _per_image(pred_boxes, 4), _per_image(pred_scores), _per_image(pred_labels)
    n = len(gtb)
    if not (len(gtl) == len(pb) == len(ps) == len(pl) == n):
        raise ValueError(f"ground truth and predictions must cover the same images: {n} gt box sets, "
                         f"{len(gtl)} gt label sets, {len(pb)}/{len(ps)}/{len(pl)} prediction sets")
    if normalized and image_sizes is None:
        raise ValueError("normalized boxes need image_sizes ((H, W) per image) to become pixels")
    sizes = _sizes(image_sizes, n) if image_sizes is not None else [(1.0, 1.0)] * n

    images = [{"id": i + 1, "height": float(h), "width": float(w)} for i, (h, w) in enumerate(sizes)]
    annotations, results, seen = [], [], set()
    for i in range(n):
        keep = gtl[i] >= 0
        for box, label in zip(_xywh(gtb[i][keep], sizes[i], normalized), gtl[i][keep]):
            seen.add(int(label))
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(label) + 1,
                                "bbox": [float(v) for v in box], "area": float(box[2] * box[3]),
                                "iscrowd": 0})
        keep = pl[i] >= 0
        for box, score, label in zip(_xywh(pb[i][keep], sizes[i], normalized), ps[i][keep], pl[i][keep]):
            seen.add(int(label))
            results.append({"id": len(results) + 1, "image_id": i + 1, "category_id": int(label) + 1,
                            "bbox": [float(v) for v in box], "area": float(box[2] * box[3]),
                            "score": float(score), "iscrowd": 0})
    labels = list(range(num_classes)) if num_classes is not None else sorted(seen)
    categories = [{"id": c + 1, "name": str(c)} for c in labels]
    if not annotations:
        return {**{k: -1.0 for k in STAT_NAMES}, "per_class": {}}

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations, "categories": categories}
        gt.createIndex()
        dt = COCO()  # built like gt.loadRes would, which cannot take an empty list
        dt.dataset = {"images": images, "annotations": results, "categories": categories}
        dt.createIndex()
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.params.catIds = [c["id"] for c in categories]
        ev.params.maxDets = [1, 10, int(max_detections)]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    out: Dict[str, object] = {k: float(v) for k, v in zip(STAT_NAMES, ev.stats)}
    precision = ev.eval["precision"]  # (T, R, K, A, M): area "all" = 0, maxDets[-1]
    per_class = {}
    for k, label in enumerate(labels):
        p = precision[:, :, k, 0, -1]
        per_class[label] = float(p[p > -1].mean()) if (p > -1).any() else -1.0
    out["per_class"] = per_class
    return out


class CocoEvaluator:
    """Collects batches (e.g. RAW-NOD ground truth + :func:`postprocess` output), then :func:`coco_ap`.

    ``update(gt_boxes, gt_labels, pred_boxes, pred_scores, pred_labels, image_sizes=None)``
    takes padded batches (tensors or arrays); ``result()`` evaluates all.
    """

    def __init__(self, normalized: bool = True, num_classes: Optional[int] = None, max_detections: int = 100):
        self.normalized, self.num_classes, self.max_detections = normalized, num_classes, max_detections
        self.reset()

    def reset(self):
        self._gt_boxes, self._gt_labels, self._boxes, self._scores, self._labels, self._sizes = (
            [], [], [], [], [], [])

    def update(self, gt_boxes, gt_labels, pred_boxes, pred_scores, pred_labels, image_sizes=None):
        gtb = _per_image(gt_boxes, 4)
        self._gt_boxes += gtb
        self._gt_labels += _per_image(gt_labels)
        self._boxes += _per_image(pred_boxes, 4)
        self._scores += _per_image(pred_scores)
        self._labels += _per_image(pred_labels)
        if image_sizes is not None:
            self._sizes += _sizes(image_sizes, len(gtb))
        elif self.normalized:
            raise ValueError("CocoEvaluator(normalized=True).update needs image_sizes")

    def result(self) -> Dict[str, object]:
        return coco_ap(self._gt_boxes, self._gt_labels, self._boxes, self._scores, self._labels,
                       image_sizes=self._sizes or None, normalized=self.normalized,
                       num_classes=self.num_classes, max_detections=self.max_detections)


@dataclasses.dataclass
class CocoAnnotations:
    """A COCO detection JSON as arrays: per image ``boxes`` (n, 4) yxyx pixels and ``labels``.

    ``labels`` index ``categories`` (``[(coco id, name)]`` sorted by id, as
    :func:`isp_tf.data.rawnod.categories`); ``images`` keep ``id``,
    ``file_name``, ``width``, ``height``; ``iscrowd`` boxes are skipped.
    """

    images: List[dict]
    boxes: List[np.ndarray]
    labels: List[np.ndarray]
    categories: List[Tuple[int, str]]

    @property
    def image_sizes(self) -> np.ndarray:
        """``(n, 2)`` ``(height, width)`` per image."""
        return np.array([(im["height"], im["width"]) for im in self.images], np.float64).reshape(-1, 2)


def load_coco_json(path) -> CocoAnnotations:
    """Read a COCO-style detection JSON (RAW-NOD: ``annotations/<camera>/..._<split>.json``).

    Raises :class:`MissingFileError` for a missing file and
    :class:`DatasetError` for one that is not COCO detection JSON.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise MissingFileError(f"COCO annotation file {path} not found (RAW-NOD ships "
                               f"annotations/<camera>/raw_new_<camera>_<split>.json)")
    try:
        coco = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(coco, dict) or any(k not in coco for k in ("images", "annotations", "categories")):
        raise DatasetError(f"{path}: not a COCO detection file (needs 'images', 'annotations', 'categories')")
    try:
        categories = sorted((int(c["id"]), str(c.get("name", c["id"]))) for c in coco["categories"])
        index = {cid: i for i, (cid, _) in enumerate(categories)}
        per_image: Dict[object, list] = {}
        for a in coco["annotations"]:
            if not a.get("iscrowd", 0):
                per_image.setdefault(a["image_id"], []).append(a)
        images, boxes, labels = [], [], []
        for im in coco["images"]:
            anns = per_image.get(im["id"], [])
            xywh = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
            x, y, w, h = xywh.T
            boxes.append(np.stack([y, x, y + h, x + w], axis=-1).astype(np.float32))
            labels.append(np.array([index[int(a["category_id"])] for a in anns], np.int32))
            images.append({"id": im["id"], "file_name": im.get("file_name", ""),
                           "width": int(im["width"]), "height": int(im["height"])})
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: malformed COCO detection entry ({type(exc).__name__}: {exc})") from None
    return CocoAnnotations(images, boxes, labels, categories)
