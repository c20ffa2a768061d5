"""python -m isp_tf.train.evaluate: held-out PSNR/SSIM of a model next to the classical renderer.

Every pair of the given data specs is processed **whole** (no patches): the
RAW is normalised and packed (:func:`isp_tf.raw.pack_bayer`), the model
renders it, :func:`isp_tf.raw.render_classical` renders the same RAW
(``align_to_packed=True``, the same crop), and both are compared with the
target cropped identically.  The result is a Markdown table (and optionally
JSON) with the mean PSNR / SSIM over the images.

Which data is held out is the caller's business.  The training and README
use synthetic pairs of bundled photos never used in training, e.g.
``--data synthetic:8:chelsea,coffee`` after training on the other photos: on
``rendered:`` pairs the target *is* the classical render, so the renderer's
PSNR there would be infinite and the comparison meaningless.

Example::

    python -m isp_tf.train.evaluate --model microisp \\
        --weights isp_tf/models/microisp/weights/microisp_reference.weights.h5 --data synthetic:8:chelsea,coffee
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Dict, List

import numpy as np

from isp_tf.cli import add_debug_flag, run_command
from isp_tf.errors import IspTfError


def crop_like_packed(image: np.ndarray, cfa_pattern: str, packed_hw) -> np.ndarray:
    """The part of a full-resolution image that ``pack_bayer`` keeps: rows/cols
    from the first red pixel, ``2 * packed size`` of them."""
    from isp_tf.raw import rggb_offset

    dy, dx = rggb_offset(cfa_pattern)
    h, w = packed_hw
    return image[dy:dy + 2 * h, dx:dx + 2 * w]


def evaluate_pairs(model, examples, *, progress: bool = True) -> List[Dict[str, float]]:
    """Per-image metrics of ``model`` and of the classical renderer on ``examples``
    (:class:`isp_tf.data.layouts.PairExample`)."""
    from tqdm import tqdm

    from isp_tf._keras import tf
    from isp_tf.losses import metrics
    from isp_tf.raw import normalize_bayer, pack_bayer, render_classical

    rows = []
    for example in tqdm(examples, desc="images", unit="image", disable=not progress):
        raw, target = example.load()
        packed = pack_bayer(normalize_bayer(raw), raw.cfa_pattern)
        target = crop_like_packed(np.asarray(target, np.float32), raw.cfa_pattern, packed.shape[:2])
        classical = np.asarray(render_classical(raw, align_to_packed=True), np.float32)
        output = model(packed[None], training=False)
        if isinstance(output, (list, tuple)):
            output = output[0]
        output = output.numpy()
        if output.shape[1:3] != target.shape[:2] or classical.shape != target.shape:
            raise IspTfError(f"{example.key}: model output {output.shape[1:3]}, classical render "
                             f"{classical.shape[:2]} and target {target.shape[:2]} differ in size")
        y = tf.constant(target[None])
        row = {"image": example.key, "height": target.shape[0], "width": target.shape[1]}
        for name, pred in (("model", output), ("classical", classical[None])):
            row[f"{name}_psnr"] = float(metrics.psnr(y, pred)[0])
            row[f"{name}_ssim"] = float(metrics.ssim(y, pred)[0])
        rows.append(row)
    return rows


def summarize(rows) -> Dict[str, float]:
    keys = [k for k in rows[0] if k.endswith(("_psnr", "_ssim"))]
    return {k: float(np.mean([r[k] for r in rows])) for k in keys}


def markdown_table(rows, model_label: str, data_label: str) -> str:
    s = summarize(rows)
    lines = [f"| method | PSNR (dB) | SSIM | images |", "|---|---|---|---|",
             f"| {model_label} | {s['model_psnr']:.2f} | {s['model_ssim']:.4f} | {len(rows)} |",
             f"| classical renderer (`isp_tf.raw.render_classical`) | {s['classical_psnr']:.2f} | "
             f"{s['classical_ssim']:.4f} | {len(rows)} |",
             "", f"Held-out data: `{data_label}`, whole images, PSNR/SSIM of outputs clipped to [0, 1]."]
    return "\n".join(lines)


def build_parser():
    from isp_tf.models import available_models

    p = argparse.ArgumentParser(prog="python -m isp_tf.train.evaluate", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help=f"model name: {', '.join(available_models())}")
    p.add_argument("--weights", help="weights file or run folder (default: the model's shipped weights)")
    p.add_argument("--data", action="append", required=True, metavar="LAYOUT:PATH",
                   help="held-out pairs (repeatable), e.g. synthetic:8:chelsea,coffee")
    p.add_argument("--split", default="test", choices=("train", "val", "test"),
                   help="split of --data to read (default test)")
    p.add_argument("--seed", type=int, default=0, help="seed of the dataset specs (synthetic draws)")
    p.add_argument("--per-image", action="store_true", help="also print one row per image")
    p.add_argument("--json", metavar="FILE", help="write per-image rows and means as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_debug_flag(p)
    return p


def _load(model_name, weights):
    from isp_tf.models.weights import resolve_model

    loaded = resolve_model(model_name, weights)
    return loaded.model, pathlib.Path(loaded.weights)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: _evaluate(args), debug=args.debug)


def _evaluate(args) -> int:
    from isp_tf.data.layouts import find_examples

    examples = [e for spec in args.data for e in find_examples(spec, args.split, args.seed)]
    model, path = _load(args.model, args.weights)
    rows = evaluate_pairs(model, examples, progress=not args.quiet)
    data_label = " ".join(f"--data {d}" for d in args.data) + f" (split {args.split}, seed {args.seed})"
    print(markdown_table(rows, f"{args.model} (`{path.name}`)", data_label))
    if args.per_image:
        print("\n| image | size | model PSNR | model SSIM | classical PSNR | classical SSIM |\n|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['image']} | {r['width']}x{r['height']} | {r['model_psnr']:.2f} | {r['model_ssim']:.4f} | "
                  f"{r['classical_psnr']:.2f} | {r['classical_ssim']:.4f} |")
    if args.json:
        from isp_tf.train.trainer import write_json

        write_json(args.json, {"weights": str(path), "data": args.data, "split": args.split,
                               "seed": args.seed, "mean": summarize(rows), "images": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
