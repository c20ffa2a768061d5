"""Does ParamISP use its camera parameters?  True vs shuffled parameters on held-out pairs.

``python -m isp_tf.models.paramisp.experiment --weights RUN/pretrain/final.weights.h5
[--data cameras:32::grace_hopper,rocket] [--patch-size 128] [--json OUT.json]``

Reads the ``test`` split of ``--data`` (default: 32 pairs of the simulated
cameras of :mod:`isp_tf.data.cameras` made from two bundled photos that a
training run on the other photos never saw, with the test split's own seeds:
other white balances, exposures, ISOs and noise), one centred crop each, and
runs both directions of the model twice: with each pair's own ``params``
vector, and with the vector of another pair (the list rolled by one, so
another camera, white balance and exposure).  Prints the mean PSNR (outputs
clipped to [0, 1]) of the forward (sRGB) and inverse (RAW mosaic) outputs and
their differences; ``--json`` writes them.  A model that ignores its
parameters scores the same both ways.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

DEFAULT_DATA = "cameras:32::grace_hopper,rocket"


def build_parser():
    p = argparse.ArgumentParser(prog="python -m isp_tf.models.paramisp.experiment",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help="a ParamISP weights file or run folder")
    p.add_argument("--data", default=DEFAULT_DATA, help=f"held-out pairs (default {DEFAULT_DATA})")
    p.add_argument("--patch-size", type=int, default=128, help="centred crop side (full resolution)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--debug", action="store_true")
    return p


def evaluate(model, batches, roll: int = 1):
    """Mean PSNR of both directions with true and with rolled (shuffled) parameters."""
    from isp_tf.models.paramisp.model import inverse_of
    from isp_tf.runtime.metrics import psnr

    packed, params, srgb, rgb, bayer = (np.concatenate(v) for v in zip(*batches))
    inverse = inverse_of(model)
    shuffled = np.roll(params, roll, axis=0)
    out = {}
    for name, p in (("true", params), ("shuffled", shuffled)):
        fwd = np.asarray(model([packed, p], training=False))
        inv = np.asarray(inverse([srgb, p], training=False))
        out[name] = {"forward_psnr": float(np.mean([psnr(np.clip(a, 0, 1), b) for a, b in zip(fwd, rgb)])),
                     "inverse_psnr": float(np.mean([psnr(np.clip(a, 0, 1), b) for a, b in zip(inv, bayer)]))}
    out["gain_db"] = {k: out["true"][k] - out["shuffled"][k] for k in out["true"]}
    out["pairs"] = int(len(packed))
    return out


def run(args):
    from isp_tf.models.paramisp.training import paramisp_dataset
    from isp_tf.models.weights import find_weights, resolve_model

    loaded = resolve_model("paramisp", str(find_weights(args.weights)))
    ds = paramisp_dataset(args.data, split="test", patch_size=args.patch_size, batch_size=8, seed=args.seed)
    batches = [(x[0].numpy(), x[1].numpy(), x[2].numpy(), y["rgb"].numpy(), y["bayer"].numpy()) for x, y in ds]
    result = {"weights": str(args.weights), "data": args.data, "patch_size": args.patch_size,
              **evaluate(loaded.model, batches)}
    t, s, g = result["true"], result["shuffled"], result["gain_db"]
    print(f"{result['pairs']} held-out pairs ({args.data}), {args.patch_size}-px centred crops")
    print("| parameters | forward PSNR (dB) | inverse PSNR (dB) |\n|---|---|---|")
    print(f"| true | {t['forward_psnr']:.2f} | {t['inverse_psnr']:.2f} |")
    print(f"| shuffled | {s['forward_psnr']:.2f} | {s['inverse_psnr']:.2f} |")
    print(f"| true - shuffled | {g['forward_psnr']:+.2f} | {g['inverse_psnr']:+.2f} |")
    if args.json:
        from isp_tf.utils import atomic_write

        with atomic_write(args.json, "w") as f:
            f.write(json.dumps(result, indent=1) + "\n")
    return 0


def main(argv=None) -> int:
    from isp_tf.cli import run_command

    args = build_parser().parse_args(argv)
    return run_command(lambda: run(args), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
