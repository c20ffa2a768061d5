"""``python -m isp_tf.models.invisp.evaluate --weights W --data SPEC``: InvISP's two figures.

For every evaluation pair (centred ``--size`` crops of the ``test`` split,
``linear_rgb`` inputs with their metadata):

* **RGB PSNR**: ``forward(x)`` (clipped) against the sRGB target;
* **RAW PSNR**: the forward output is saved as a real JPEG
  (``tf.io.encode_jpeg``, quality ``--quality``, 4:2:0), decoded, and the
  inverse model's output compared with ``x`` (white-balanced linear camera
  RGB in [0, 1], the model's input).  ``raw_mosaic_psnr`` compares the
  mosaics instead (white balance undone, each pixel's own CFA colour: what
  the DNG of ``isp_tf.infer --inverse`` stores, normalised), which avoids
  InvISP issue #13 (RAW PSNR measured without undoing the white balance).

Baselines, without a network ("invert the classical renderer"):

* ``classical_roundtrip``: the classical renderer's sRGB (colour matrix,
  clip, sRGB curve) saved as the same JPEG and inverted exactly (inverse
  curve, inverse matrix, clip) -- the best case of a classical ISP whose
  output one can invert;
* ``classical_from_target``: the same inversion applied to the JPEG of the
  sRGB *target* (a camera JPEG "in the wild", which no renderer we know
  made).

PSNR: peak 1, per image, averaged over the images (mean of per-image dB).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Dict, List

import numpy as np

from isp_tf.cli import add_debug_flag, run_command


def _psnr(a, b) -> float:
    from isp_tf.runtime.metrics import psnr

    return float(psnr(np.asarray(a, np.float64), np.asarray(b, np.float64)))


def jpeg_roundtrip(srgb: np.ndarray, quality: int = 90) -> np.ndarray:
    """(H, W, 3) sRGB in [0, 1] -> 8-bit JPEG (tf.io.encode_jpeg, 4:2:0) -> decoded, in [0, 1]."""
    from isp_tf._keras import tf

    u8 = np.rint(np.clip(srgb, 0.0, 1.0) * 255).astype(np.uint8)
    data = tf.io.encode_jpeg(u8, quality=int(quality), chroma_downsampling=True)
    return tf.io.decode_jpeg(data, dct_method="INTEGER_ACCURATE").numpy().astype(np.float32) / 255.0


def mosaic_of(linear: np.ndarray, wb_gains) -> np.ndarray:
    """RGGB mosaic of white-balanced linear RGB with the white balance undone (normalised units)."""
    g = np.asarray(wb_gains, np.float64)
    g = g / g.min()
    m = np.empty(linear.shape[:2], np.float64)
    for y, x, c in ((0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 2)):
        m[y::2, x::2] = np.clip(linear[y::2, x::2, c], 0, 1) / g[c]
    return m


def classical_forward(linear, cam_to_srgb):
    from isp_tf.raw import apply_color_matrix, linear_to_srgb

    return linear_to_srgb(apply_color_matrix(linear, cam_to_srgb))


def classical_inverse(srgb, cam_to_srgb):
    from isp_tf.raw import apply_color_matrix, srgb_to_linear

    lin = srgb_to_linear(np.clip(srgb, 0.0, 1.0))
    return np.clip(apply_color_matrix(lin, np.linalg.inv(np.asarray(cam_to_srgb, np.float64))), 0.0, 1.0)


def evaluate(model, data: str, size: int = 256, quality: int = 90, split: str = "test",
             limit: int = 0) -> Dict[str, float]:
    """Mean figures of the forward InvISP ``model`` over ``data`` (see the module docstring)."""
    from isp_tf.data import build_dataset
    from isp_tf.models import get_spec
    from isp_tf.models.registry import derive_direction

    spec = get_spec("invisp")
    inverse = derive_direction(spec, model, "inverse")
    ds = build_dataset(data, split=split, patch_size=size, batch_size=1, input_kind="linear_rgb",
                       with_metadata=True)
    rows: List[Dict[str, float]] = []
    for meta, y in ds:
        x = meta["raw"].numpy()[0]
        y = y.numpy()[0]
        wb = meta["wb_gains"].numpy()[0]
        m = meta["cam_to_srgb"].numpy()[0].astype(np.float64)
        rgb = np.clip(model(x[None], training=False).numpy()[0], 0, 1)
        rec = np.clip(inverse(jpeg_roundtrip(rgb, quality)[None], training=False).numpy()[0], 0, 1)
        classical = classical_forward(x, m)
        round_trip = classical_inverse(jpeg_roundtrip(classical, quality), m)
        from_target = classical_inverse(jpeg_roundtrip(y, quality), m)
        rows.append({
            "rgb_psnr": _psnr(rgb, y),
            "raw_psnr": _psnr(rec, x),
            "raw_mosaic_psnr": _psnr(mosaic_of(rec, wb), mosaic_of(x, wb)),
            "classical_rgb_psnr": _psnr(classical, y),
            "classical_roundtrip_raw_psnr": _psnr(round_trip, x),
            "classical_roundtrip_raw_mosaic_psnr": _psnr(mosaic_of(round_trip, wb), mosaic_of(x, wb)),
            "classical_from_target_raw_psnr": _psnr(from_target, x),
        })
        if limit and len(rows) >= limit:
            break
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    out["images"] = len(rows)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m isp_tf.models.invisp.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--weights", required=True, help="InvISP weights file or run folder")
    p.add_argument("--data", required=True, help="dataset spec, e.g. synthetic:8:chelsea,grace_hopper")
    p.add_argument("--split", default="test")
    p.add_argument("--size", type=int, default=256, help="centred crop side (default 256)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    p.add_argument("--limit", type=int, default=0, help="at most this many images (0: all)")
    p.add_argument("--json", metavar="FILE", help="also write the figures here")
    add_debug_flag(p)
    args = p.parse_args(argv)

    def body():
        from isp_tf.models.weights import resolve_model
        from isp_tf.utils import atomic_write

        loaded = resolve_model("invisp", args.weights)
        figures = evaluate(loaded.model, args.data, args.size, args.quality, args.split, args.limit)
        figures.update(weights=str(loaded.weights), config=loaded.config, data=args.data, size=args.size,
                       quality=args.quality, split=args.split)
        for k, v in figures.items():
            print(f"{k:40s} {v:.2f}" if isinstance(v, float) else f"{k:40s} {v}")
        if args.json:
            with atomic_write(args.json, "w") as f:
                json.dump(figures, f, indent=2)
                f.write("\n")
        return 0

    return run_command(body, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
