"""COCO-style object detection over RAW files (the RAW-NOD layout), for GenISP.

Layout (``rawnod:PATH``): COCO JSON files whose names end in
``_<split>.json`` anywhere under ``PATH`` (RAW-NOD ships
``annotations/Nikon/raw_new_Nikon750_train.json`` and the like), and the RAW
files they name (``images[].file_name``) anywhere under ``PATH``. Image ids
may be strings (RAW-NOD's are). ``iscrowd`` annotations are skipped.

Each element is a dict:

``raw``        ``(h, w, 4)`` float32 packed Bayer [R, G1, G2, B] in [0, 1],
               resized (area) to ``image_size / 2``;
``boxes``      ``(max_boxes, 4)`` float32 ``[ymin, xmin, ymax, xmax]``
               normalised to [0, 1] over ``raw`` (zero rows as padding);
``labels``     ``(max_boxes,)`` int32: index into :func:`categories`
               (sorted by COCO id), ``-1`` as padding;
``num_boxes``  int32;
``cam_to_xyz`` ``(3, 3)`` and ``wb_gains`` ``(3,)``: GenISP's preprocessing
               converts camera RGB to XYZ with the file's own matrix.

Boxes are taken to be in the display frame of the JSON's ``width`` x
``height`` (annotators saw rendered, rotated images), so the mosaic is first
turned by its EXIF orientation; a JSON frame of a different size (for
instance a downscaled render) is scaled to the sensor's.

The image is resized to a fixed size without keeping the aspect ratio, so a
batch is dense; normalised boxes stay exact. The optional augmentation is a
horizontal flip done on the (resized) mosaic, which is then cut one column
in so it is RGGB again before packing: the CFA is never broken by swapping
packed channels, and boxes move by that exact column.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import List, Optional, Tuple, Union

import numpy as np

from isp_tf._keras import tf
from isp_tf.data.layouts import (RAW_EXTENSIONS, SPLITS, _missing, cam_to_xyz_vector, orient_raw, parse_spec,
                                  wb_gains_vector)
from isp_tf.data.batching import batch_and_prefetch, shard_indices
from isp_tf.errors import DatasetError, IspTfError

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True)
class DetectionExample:
    """One annotated RAW file. ``boxes`` are ``[x, y, w, h]`` pixels in a ``width`` x ``height`` frame."""

    key: str
    raw_path: pathlib.Path
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray


def _annotation_files(root: pathlib.Path, split: str) -> List[pathlib.Path]:
    return sorted(p for p in root.rglob(f"*_{split}.json") if p.is_file())


def categories(spec: str, split: str = "train") -> List[Tuple[int, str]]:
    """``[(coco_id, name), ...]`` sorted by id; ``labels`` index this list."""
    root = _root(spec)
    cats = {}
    for f in _annotation_files(root, split):
        for c in json.loads(f.read_text()).get("categories", []):
            cats[int(c["id"])] = str(c.get("name", c["id"]))
    return sorted(cats.items())


def _root(spec: str) -> pathlib.Path:
    layout, rest = parse_spec(spec)
    if layout != "rawnod":
        raise DatasetError(f"{spec}: not a rawnod spec ('rawnod:PATH')")
    root = pathlib.Path(rest).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{spec}: {root} is missing (RAW-NOD layout: COCO JSON *_<split>.json + RAW files)")
    return root


def find_detection_examples(spec: str, split: str = "train") -> List[DetectionExample]:
    """All annotated RAW files of ``spec`` for ``split``, in JSON order."""
    if split not in SPLITS:
        raise DatasetError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    root = _root(spec)
    files = _annotation_files(root, split)
    if not files:
        raise DatasetError(f"{spec}: no COCO annotation file *_{split}.json under {root}")
    raws = {p.name: p for p in root.rglob("*") if p.suffix.lower() in RAW_EXTENSIONS and p.is_file()}
    cat_index = {cid: i for i, (cid, _) in enumerate(categories(spec, split))}
    examples, missing = [], []
    for f in files:
        coco = json.loads(f.read_text())
        for key in ("images", "annotations", "categories"):
            if key not in coco:
                raise DatasetError(f"{f}: not a COCO detection file (no '{key}')")
        per_image = {}
        for a in coco["annotations"]:
            if not a.get("iscrowd", 0):
                per_image.setdefault(a["image_id"], []).append(a)
        for im in coco["images"]:
            name = pathlib.PurePath(im["file_name"]).name
            if name not in raws:
                missing.append(name)
                continue
            anns = per_image.get(im["id"], [])
            boxes = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
            labels = np.array([cat_index[int(a["category_id"])] for a in anns], np.int32)
            examples.append(DetectionExample(f"{f.name}/{im['id']}", raws[name], int(im["width"]),
                                             int(im["height"]), boxes, labels))
    if missing:
        raise DatasetError(f"{spec}: RAW files named in the {split} annotations are missing under {root}: "
                           f"{_missing(missing)}")
    if not examples:
        raise DatasetError(f"{spec}: no images in the {split} annotations")
    return examples


def decode_detection(example: DetectionExample, max_boxes: int):
    """``(packed (h, w, 4), boxes (max_boxes, 4) yxyx normalised, labels, num_boxes, cam_to_xyz, wb)``."""
    from isp_tf.raw import normalize_bayer, pack_bayer, read_raw, rggb_offset

    try:
        raw = orient_raw(read_raw(example.raw_path))
    except IspTfError:
        raise
    except Exception as exc:
        raise DatasetError(f"{example.raw_path}: could not be read ({type(exc).__name__}: {exc})") from exc
    dy, dx = rggb_offset(raw.cfa_pattern)
    packed = pack_bayer(normalize_bayer(raw), raw.cfa_pattern)
    ph, pw = packed.shape[0] * 2, packed.shape[1] * 2  # mosaic extent the packed image covers
    sx, sy = raw.width / example.width, raw.height / example.height
    boxes = np.zeros((max_boxes, 4), np.float32)
    labels = np.full((max_boxes,), -1, np.int32)
    n = min(len(example.boxes), max_boxes)
    if n:
        x, y, w, h = example.boxes[:n].T
        y0, x0 = (y * sy - dy) / ph, (x * sx - dx) / pw
        y1, x1 = ((y + h) * sy - dy) / ph, ((x + w) * sx - dx) / pw
        boxes[:n] = np.clip(np.stack([y0, x0, y1, x1], axis=-1), 0.0, 1.0)
        labels[:n] = example.labels[:n]
    return (packed, boxes, labels, np.int32(n), cam_to_xyz_vector(raw).reshape(3, 3), wb_gains_vector(raw))


def _flip_packed(packed, boxes, flip):
    """Horizontal flip of the Bayer image behind ``packed`` (h, w + 1, 4) -> (h, w, 4).

    The RGGB mosaic is flipped (it becomes GRBG) and cut one column in so it
    is RGGB again, then packed; without a flip the last packed column is
    dropped. Boxes follow in mosaic pixels.
    """
    h, w1 = tf.shape(packed)[0], tf.shape(packed)[1]
    mosaic = tf.nn.depth_to_space(packed[None], 2)[0, ..., 0]  # (2h, 2w + 2) RGGB
    m_w = tf.cast(2 * w1, tf.float32)
    out_w = tf.cast(2 * (w1 - 1), tf.float32)
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)

    def flipped():
        m = tf.reverse(mosaic, axis=[1])[:, 1:1 + 2 * (w1 - 1)]
        nx0 = (m_w * (1.0 - xmax) - 1.0) / out_w
        nx1 = (m_w * (1.0 - xmin) - 1.0) / out_w
        return m, nx0, nx1

    def kept():
        return mosaic[:, :2 * (w1 - 1)], xmin * m_w / out_w, xmax * m_w / out_w

    m, nx0, nx1 = tf.cond(flip, flipped, kept)
    valid = tf.cast(tf.reduce_any(boxes != 0, axis=-1), tf.float32)[:, None]
    new_boxes = tf.clip_by_value(tf.stack([ymin, nx0, ymax, nx1], axis=-1), 0.0, 1.0) * valid
    packed_out = tf.nn.space_to_depth(m[None, ..., None], 2)[0]
    return tf.reshape(packed_out, [h, w1 - 1, 4]), new_boxes


def build_detection_dataset(spec: str, split: str = "train", image_size=(800, 1200), batch_size: int = 8,
                            seed: int = 0, cache: Union[bool, str] = True, augment: Optional[bool] = None,
                            repeat: Optional[bool] = None, max_boxes: int = 100, input_context=None,
                            num_parallel_calls=AUTOTUNE) -> "tf.data.Dataset":
    """Batches of RAW-NOD detection examples (see the module docstring for the element).

    Args:
      image_size: ``(H, W)`` of the sRGB frame the detector sees, even; the
        packed RAW is ``(H/2, W/2, 4)``.
      augment: random horizontal flip (CFA-consistent); default on for ``train``.
      Others as :func:`isp_tf.data.build_dataset`.
    """
    try:
        h, w = (int(v) for v in image_size)
    except (TypeError, ValueError):
        h = w = 0
    if h < 2 or w < 2 or h % 2 or w % 2:
        raise DatasetError(f"image_size must be two even integers (H, W), got {image_size!r}")
    if batch_size < 1 or max_boxes < 1:
        raise DatasetError("batch_size and max_boxes must be positive")
    training = split == "train"
    augment = training if augment is None else bool(augment)
    repeat = training if repeat is None else bool(repeat)
    examples = find_detection_examples(spec, split)
    indices, batch_size = shard_indices(len(examples), batch_size, input_context)
    shard_id = input_context.input_pipeline_id if input_context is not None else 0
    ph, pw = h // 2, w // 2

    def decode(index):
        packed, boxes, labels, n, cam_to_xyz, wb = tf.numpy_function(
            lambda i: decode_detection(examples[int(i)], max_boxes), [index],
            [tf.float32, tf.float32, tf.int32, tf.int32, tf.float32, tf.float32], stateful=False)
        packed = tf.image.resize(tf.ensure_shape(packed, [None, None, 4]), [ph, pw + 1], method="area")
        return dict(raw=packed, boxes=tf.ensure_shape(boxes, [max_boxes, 4]),
                    labels=tf.ensure_shape(labels, [max_boxes]), num_boxes=tf.ensure_shape(n, []),
                    cam_to_xyz=tf.ensure_shape(cam_to_xyz, [3, 3]), wb_gains=tf.ensure_shape(wb, [3]))

    ds = tf.data.Dataset.from_tensor_slices(indices)
    if training and not cache:
        ds = ds.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(decode, num_parallel_calls=num_parallel_calls, deterministic=True)
    if cache:
        ds = ds.cache("" if cache is True else str(cache))
        if training:
            ds = ds.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    base_seed = tf.constant([seed, shard_id], tf.int64)

    def finish(counter, element):
        flip = tf.constant(False)
        if augment:
            s = tf.random.experimental.stateless_fold_in(base_seed, counter)
            flip = tf.random.stateless_uniform([], s, 0, 2, dtype=tf.int32) > 0
        element = dict(element)
        element["raw"], element["boxes"] = _flip_packed(element["raw"], element["boxes"], flip)
        return element

    ds = ds.enumerate().map(finish, num_parallel_calls=num_parallel_calls, deterministic=True)
    return batch_and_prefetch(ds, batch_size, repeat, input_context)
