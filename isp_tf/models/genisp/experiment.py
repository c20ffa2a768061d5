"""A small end-to-end GenISP experiment on synthetic low-light detection data (CPU sized).

``python -m isp_tf.models.genisp.experiment --out DIR [--images N] [--size S] ...``

1. **Data** (RAW-NOD layout under ``DIR/data``): bright coloured shapes
   (classes ``square``, ``disc``, ``triangle``) pasted into random crops of the
   bundled photos (:mod:`isp_tf.data.photos`), unprocessed to RAW with
   :func:`isp_tf.data.synthetic.synthesize` (Brooks et al.; no noise there),
   then darkened (exposure x ``1/8 .. 1/16``) with shot/read noise added on
   the dark signal at a raised (high-ISO) level, quantised and written as DNGs
   (:func:`isp_tf.raw.write_dng`); COCO JSON ``annotations/raw_new_Synth_{train,val}.json``.
   The last ``--held-out`` images are the held-out (``val``) split.
2. **Detector**: the light RetinaNet trained on the well-exposed sRGB
   composites (before unprocessing), resized to the detector's input size
   ``(P, W)`` = :func:`~isp_tf.models.genisp.model.detection_image_size` of
   ``--patch`` / 2 (GenISP's output size), saved with ``save_detector_weights``.
3. **GenISP** (small preset) trained on the dark RAW through the frozen
   detector by the real trainer, ``isp_tf.train`` (``--model genisp --small
   --data rawnod:DIR/data --detector-weights ... --detector-backbone light``),
   run in-process (same code as the command; saves a TensorFlow import).
4. **Evaluation** on the held-out images: COCO AP / AP50 of the detector on
   GenISP(raw), on ``render_classical(raw)``, on rawpy's render of the DNG
   (``postprocess(use_camera_wb=True, no_auto_bright=True)``), all resized to
   the detector's input, and on the well-exposed composite (reference, what
   the detector was trained on). Written to ``DIR/results.md`` and
   ``DIR/results.json`` and printed.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

CLASSES = ("square", "disc", "triangle")
COLOURS = ((1.0, 0.15, 0.1), (0.1, 1.0, 0.2), (0.15, 0.3, 1.0), (1.0, 0.95, 0.1), (1.0, 0.2, 0.9),
           (0.1, 0.95, 1.0), (1.0, 1.0, 1.0))


# --------------------------------------------------------------------------- data
def atomic_write(path, text):
    from isp_tf.utils import atomic_write as _atomic

    with _atomic(path, "w") as f:
        f.write(text)


def _crop(rng, size):
    """A random square crop of a bundled photo, ``size x size`` float sRGB."""
    from isp_tf.data.photos import BUNDLED_PHOTOS, load_photo

    names = sorted(BUNDLED_PHOTOS)
    photo = load_photo(names[int(rng.integers(len(names)))])
    h, w = photo.shape[:2]
    side = int(rng.integers(min(h, w) // 2, min(h, w) + 1))
    y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = photo[y0:y0 + side, x0:x0 + side]
    # box-filter resize to size x size (nearest index of area cells; enough for backgrounds)
    idx = (np.arange(size) * side / size).astype(int)
    return np.ascontiguousarray(crop[idx][:, idx]).astype(np.float64)


def _paste_shapes(rng, image, max_objects):
    """Paste 1..max_objects non-overlapping shapes; returns boxes ``[x, y, w, h]`` and class indices."""
    size = image.shape[0]
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    boxes, labels = [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            side = int(rng.integers(max(8, size // 5), max(9, size // 2.2)))
            x0, y0 = int(rng.integers(0, size - side)), int(rng.integers(0, size - side))
            if all(x0 >= bx + bw or bx >= x0 + side or y0 >= by + bh or by >= y0 + side
                   for bx, by, bw, bh in boxes):
                break
        else:
            continue
        c = int(rng.integers(len(CLASSES)))
        u, v = (xx - x0) / side, (yy - y0) / side  # in [0, 1] over the box
        if CLASSES[c] == "square":
            mask = (u >= 0) & (u < 1) & (v >= 0) & (v < 1)
        elif CLASSES[c] == "disc":
            mask = (u - 0.5) ** 2 + (v - 0.5) ** 2 < 0.25
        else:  # triangle, apex up
            mask = (v >= 0) & (v < 1) & (np.abs(u - 0.5) < v / 2)
        colour = np.asarray(COLOURS[int(rng.integers(len(COLOURS)))]) * rng.uniform(0.85, 1.0)
        image[mask] = colour
        boxes.append((x0, y0, side, side))
        labels.append(c)
    return boxes, labels


def darken(raw, factor, shot, read, rng):
    """The RawImage ``raw`` (clean) at ``factor`` of its exposure, with shot/read noise of a high ISO."""
    import dataclasses

    from isp_tf.data.synthetic import add_noise, exif_for_noise

    black, white = float(raw.black_level[0]), float(raw.white_level)
    x = (raw.bayer.astype(np.float64) - black) / (white - black)
    x = add_noise(x * factor, shot, read, rng)
    bayer = np.clip(np.round(black + x * (white - black)), 0, white).astype(np.uint16)
    exif = exif_for_noise(shot, rng)
    exif = dataclasses.replace(exif, exposure_time=float(exif.exposure_time * factor))
    return dataclasses.replace(raw, bayer=bayer, exif=exif)


def make_dataset(root, images, size, held_out, seed=0, max_objects=3, darken_range=(1 / 16, 1 / 8),
                 shot_range=(5e-4, 4e-3), progress=None):
    """Write the RAW-NOD-layout set under ``root``; returns per-image records (also in ``root/meta.json``)."""
    from isp_tf.data.synthetic import READ_NOISE_INTERCEPT, READ_NOISE_SLOPE, synthesize
    from isp_tf.raw import write_dng
    root = pathlib.Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    (root / "well_exposed").mkdir(exist_ok=True)
    rng = np.random.default_rng([seed, 1])
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]
    records = []
    per_split = {"train": ([], []), "val": ([], [])}
    for i in range(images):
        split = "val" if i >= images - held_out else "train"
        image = _crop(rng, size)
        boxes, labels = _paste_shapes(rng, image, max_objects)
        pair = synthesize(image, seed=(seed, i), cfa_pattern="RGGB", noise=False)
        factor = float(np.exp(rng.uniform(np.log(darken_range[0]), np.log(darken_range[1]))))
        shot = float(np.exp(rng.uniform(np.log(shot_range[0]), np.log(shot_range[1]))))
        read = float(np.exp(READ_NOISE_SLOPE * np.log(shot) + READ_NOISE_INTERCEPT))
        dark = darken(pair.raw, factor, shot, read, rng)
        name = f"synth_{i:04d}"
        write_dng(root / "images" / f"{name}.dng", dark.bayer, dark)
        np.save(root / "well_exposed" / f"{name}.npy", (pair.target * 255).round().astype(np.uint8))
        h, w = dark.bayer.shape
        ims, anns = per_split[split]
        ims.append({"id": name, "file_name": f"{name}.dng", "width": int(w), "height": int(h)})
        for (x0, y0, bw, bh), c in zip(boxes, labels):
            anns.append({"id": sum(len(a) for _, a in per_split.values()) + 1, "image_id": name,
                         "category_id": c + 1, "iscrowd": 0, "bbox": [x0, y0, bw, bh], "area": bw * bh})
        records.append({"name": name, "split": split, "width": int(w), "height": int(h),
                        "boxes": [list(map(int, b)) for b in boxes], "labels": labels,
                        "exposure": factor, "shot_noise": shot, "read_noise": read})
        if progress is not None:
            progress.update(1)
    for split, (ims, anns) in per_split.items():
        atomic_write(root / "annotations" / f"raw_new_Synth_{split}.json",
                     json.dumps({"images": ims, "annotations": anns, "categories": cats}))
    atomic_write(root / "meta.json", json.dumps(records, indent=1))
    return records


# --------------------------------------------------------------------------- helpers
def _resize(image, hw):
    from isp_tf._keras import tf

    return tf.image.resize(np.asarray(image, np.float32)[None], hw, method="area")[0].numpy()


def _norm_boxes(record):
    """yxyx normalised boxes and labels of a record (frame ``height x width``)."""
    h, w = record["height"], record["width"]
    b = np.array([[y / h, x / w, (y + bh) / h, (x + bw) / w] for x, y, bw, bh in record["boxes"]],
                 np.float32).reshape(-1, 4)
    return b, np.asarray(record["labels"], np.int32)


def _padded(records, max_boxes=16):
    boxes = np.zeros((len(records), max_boxes, 4), np.float32)
    labels = np.full((len(records), max_boxes), -1, np.int32)
    for k, r in enumerate(records):
        b, l = _norm_boxes(r)
        boxes[k, :len(b)], labels[k, :len(l)] = b, l
    return boxes, labels


# --------------------------------------------------------------------------- detector
def train_detector(root, records, hw, steps, batch_size=8, lr=1e-3, seed=0, progress=None):
    """The light RetinaNet trained on the well-exposed composites at ``hw``; returns the model."""
    from isp_tf._keras import keras, tf
    from isp_tf.losses.detection import RetinaNetLoss
    from isp_tf.models.genisp.detector import build_retinanet

    keras.utils.set_random_seed(seed)
    train = [r for r in records if r["split"] == "train"]
    x = np.stack([_resize(np.load(root / "well_exposed" / f"{r['name']}.npy") / 255.0, hw) for r in train])
    boxes, labels = _padded(train)
    detector = build_retinanet(len(CLASSES), backbone="light")
    loss = RetinaNetLoss()
    optimizer = keras.optimizers.Adam(lr)
    rng = np.random.default_rng([seed, 2])

    @tf.function
    def step(images, b, l):
        with tf.GradientTape() as tape:
            terms = loss.terms({"boxes": b, "labels": l}, detector(images, training=True),
                               image_shape=tf.shape(images)[1:3])
            total = terms["classification"] + terms["box"]
        grads = tape.gradient(total, detector.trainable_variables)
        optimizer.apply_gradients(zip(grads, detector.trainable_variables))
        return total

    history = []
    for s in range(steps):
        pick = rng.integers(0, len(train), min(batch_size, len(train)))
        imgs, b = x[pick].copy(), boxes[pick].copy()
        flip = rng.random(len(pick)) < 0.5  # horizontal flips
        imgs[flip] = imgs[flip][:, :, ::-1]
        valid = labels[pick] >= 0
        fb = b[flip]
        fb[..., 1], fb[..., 3] = 1.0 - b[flip][..., 3], 1.0 - b[flip][..., 1]
        b[flip] = np.where(valid[flip][..., None], fb, 0.0)
        imgs = imgs * rng.uniform(0.7, 1.3, (len(pick), 1, 1, 1)).astype(np.float32)  # exposure jitter
        history.append(float(step(tf.constant(imgs), tf.constant(b), tf.constant(labels[pick]))))
        if progress is not None:
            progress.update(1)
            progress.set_postfix(detector_loss=f"{history[-1]:.3f}")
    return detector, history


def detect_ap(detector, images, records, score_threshold=0.05):
    """COCO metrics of ``detector`` on ``images`` (N, H, W, 3) against the records' boxes."""
    from isp_tf.losses.coco_ap import coco_ap
    from isp_tf.models.genisp.detector import postprocess

    boxes, labels = _padded(records)
    return _ap(detector, np.asarray(images, np.float32), boxes, labels, score_threshold, coco_ap, postprocess)


def _ap(detector, images, gt_boxes, gt_labels, score_threshold, coco_ap, postprocess):
    from isp_tf._keras import tf

    pb, ps, pl = [], [], []
    for k in range(0, len(images), 8):
        batch = tf.constant(images[k:k + 8])
        det = postprocess(detector(batch, training=False), tf.shape(batch)[1:3], score_threshold=score_threshold)
        pb.append(det["boxes"].numpy()), ps.append(det["scores"].numpy()), pl.append(det["labels"].numpy())
    hw = images.shape[1:3]
    result = coco_ap(gt_boxes, gt_labels, np.concatenate(pb), np.concatenate(ps), np.concatenate(pl),
                     image_sizes=hw, normalized=True, num_classes=len(CLASSES))
    return {"AP": result["AP"], "AP50": result["AP50"], "AP75": result["AP75"],
            "per_class": {CLASSES[int(c)]: v for c, v in result["per_class"].items()}}


# --------------------------------------------------------------------------- evaluation
def evaluate(root, records, detector, genisp_weights, patch, hw):
    """AP of the detector on each render of the held-out images."""
    import rawpy

    from isp_tf.losses.coco_ap import coco_ap
    from isp_tf.models.genisp.detector import postprocess
    from isp_tf.models.genisp.model import genisp_dataset
    from isp_tf.models.weights import load_model
    from isp_tf.raw import read_raw, render_classical

    held = [r for r in records if r["split"] == "val"]
    out = {}
    well = np.stack([_resize(np.load(root / "well_exposed" / f"{r['name']}.npy") / 255.0, hw) for r in held])
    out["detector(well-exposed sRGB) [reference]"] = detect_ap(detector, well, held)

    classical = np.stack([_resize(render_classical(read_raw(root / "images" / f"{r['name']}.dng")), hw)
                          for r in held])
    out["detector(classical render(raw))"] = detect_ap(detector, classical, held)

    def rawpy_render(path):
        with rawpy.imread(str(path)) as raw:
            return raw.postprocess(use_camera_wb=True, no_auto_bright=True).astype(np.float32) / 255.0

    rp = np.stack([_resize(rawpy_render(root / "images" / f"{r['name']}.dng"), hw) for r in held])
    out["detector(rawpy render(DNG))"] = detect_ap(detector, rp, held)

    # GenISP: the trainer's own held-out pipeline (same resize and boxes it validated on)
    model, _, _ = load_model(genisp_weights)
    ds = genisp_dataset(f"rawnod:{root}", split="val", patch_size=patch, batch_size=8, augment=False,
                        repeat=False, cache=False)
    rgbs, gtb, gtl = [], [], []
    for x, y in ds:
        rgbs.append(model(x, training=False).numpy())
        gtb.append(y["boxes"].numpy()), gtl.append(y["labels"].numpy())
    rgb = np.concatenate(rgbs)
    out["detector(GenISP(raw))"] = _ap(detector, rgb, np.concatenate(gtb), np.concatenate(gtl), 0.05, coco_ap,
                                       postprocess)
    return out


def _fmt(v):
    return "n/a (no gt)" if v < 0 else f"{v:.3f}"


def results_table(results, header):
    lines = [header, "", "| input to the detector | AP | AP50 | AP75 | " + " | ".join(f"AP {c}" for c in CLASSES) + " |",
             "|---|---|---|---|" + "---|" * len(CLASSES)]
    for name, r in results.items():
        per = [_fmt(r["per_class"].get(c, -1.0)) for c in CLASSES]
        lines.append(f"| {name} | {_fmt(r['AP'])} | {_fmt(r['AP50'])} | {_fmt(r['AP75'])} | " + " | ".join(per) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- command
def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m isp_tf.models.genisp.experiment",
        description="Synthetic low-light detection: light RetinaNet on well-exposed renders, GenISP (small) "
                    "trained through it on dark RAW, COCO AP of GenISP vs classical vs rawpy renders.")
    p.add_argument("--out", required=True, help="output folder (data, weights, run, results.md/json)")
    p.add_argument("--images", type=int, default=96, help="images in all (default 96)")
    p.add_argument("--held-out", type=int, default=None, help="held-out images (default: a quarter, >= 1)")
    p.add_argument("--size", type=int, default=256, help="side of the square RAW mosaic in pixels (default 256)")
    p.add_argument("--patch", type=int, default=None,
                   help="trainer --patch-size; the detector sees (patch/2, ~patch/2*1.67) images "
                        "(default: --size / 2)")
    p.add_argument("--detector-steps", type=int, default=1500, help="detector training steps (default 1500)")
    p.add_argument("--genisp-steps", type=int, default=600, help="GenISP training steps (default 600)")
    p.add_argument("--batch-size", type=int, default=8, help="batch size of both trainings (default 8)")
    p.add_argument("--detector-lr", type=float, default=1e-3)
    p.add_argument("--genisp-lr", type=float, default=None, help="GenISP learning rate (default: the recipe's)")
    p.add_argument("--max-objects", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    return p


def run(args) -> dict:
    from tqdm import tqdm

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    size = int(args.size) // 2 * 2
    if size < 32:
        raise SystemExit("--size must be at least 32")
    held_out = args.held_out if args.held_out is not None else max(1, args.images // 4)
    if not 1 <= held_out < args.images:
        raise SystemExit("need at least one training and one held-out image")
    patch = int(args.patch or size // 2) // 2 * 2
    from isp_tf.models.genisp.model import detection_image_size

    hw = tuple(v // 2 for v in detection_image_size(patch))  # GenISP's output size = the detector's input
    timings = {}
    total = args.images + args.detector_steps + 2
    with tqdm(total=total, desc="genisp experiment", unit="step", file=sys.stderr) as bar:
        t = time.time()
        bar.set_description("data")
        records = make_dataset(data, args.images, size, held_out, seed=args.seed, max_objects=args.max_objects,
                               progress=bar)
        timings["data_s"] = time.time() - t

        t = time.time()
        bar.set_description("detector")
        from isp_tf.models.genisp.detector import save_detector_weights

        detector, det_history = train_detector(data, records, hw, args.detector_steps, args.batch_size,
                                               args.detector_lr, args.seed, progress=bar)
        weights = save_detector_weights(detector, out / "detector_light.h5")
        timings["detector_s"] = time.time() - t

        t = time.time()
        bar.set_description("genisp (isp_tf.train)")
        argv = ["--model", "genisp", "--small", "--data", f"rawnod:{data}", "--out", str(out / "genisp_run"),
                "--detector-weights", str(weights), "--detector-backbone", "light",
                "--detector-classes", str(len(CLASSES)), "--epochs", "1",
                "--steps-per-epoch", str(args.genisp_steps), "--batch-size", str(args.batch_size),
                "--patch-size", str(patch), "--validation-steps", "2",
                "--checkpoint-every", str(max(args.genisp_steps, 1)), "--seed", str(args.seed), "--quiet"]
        if args.genisp_lr is not None:
            argv += ["--lr", str(args.genisp_lr)]
        from isp_tf.train.__main__ import main as train_main

        code = train_main(argv)
        if code != 0:
            raise SystemExit(f"python -m isp_tf.train {' '.join(argv)} failed with exit status {code}")
        bar.update(1)
        timings["genisp_s"] = time.time() - t

        t = time.time()
        bar.set_description("evaluation")
        from isp_tf.models.genisp.detector import build_retinanet, freeze, load_detector_weights

        frozen = build_retinanet(len(CLASSES), backbone="light")
        load_detector_weights(frozen, weights)
        results = evaluate(data, records, freeze(frozen), out / "genisp_run" / "final.weights.h5", patch, hw)
        bar.update(1)
        timings["evaluation_s"] = time.time() - t

    n_train = args.images - held_out
    header = (f"## GenISP on synthetic low-light RAW ({n_train} train / {held_out} held-out images, "
              f"{size}x{size} mosaic, exposure x1/16..x1/8, detector input {hw[0]}x{hw[1]}, "
              f"light RetinaNet {args.detector_steps} steps, GenISP small {args.genisp_steps} steps, "
              f"seed {args.seed})\n\nCOCO box AP on the held-out images (-1 / n/a: no ground truth).")
    table = results_table(results, header)
    history = json.loads((out / "genisp_run" / "history.json").read_text())
    summary = {"command": "python -m isp_tf.models.genisp.experiment " + " ".join(
                   f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
               "train_command": "python -m isp_tf.train " + " ".join(argv),
               "images": args.images, "held_out": held_out, "size": size, "patch": patch,
               "detector_input": list(hw), "classes": list(CLASSES), "results": results,
               "detector_loss_first_last": [det_history[0], det_history[-1]] if det_history else None,
               "genisp_history": history, "timings_s": timings}
    atomic_write(out / "results.md", table)
    atomic_write(out / "results.json", json.dumps(summary, indent=1))
    print(table)
    return summary


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
