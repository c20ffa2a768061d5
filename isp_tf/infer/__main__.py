"""``python -m isp_tf.infer INPUT... --out DIR``: render RAW photos to PNG.

Exit status: 0 when every input was written; 2 for bad arguments, an unknown
model, missing or mismatched weights, or a single input that failed; 1 when
some of several inputs failed (the others are still written).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

from isp_tf.errors import InputShapeError, IspTfError

EPILOG = """\
examples:
  python -m isp_tf.infer sample_RAW_photos/ --out rendered/
  python -m isp_tf.infer photo.dng --out out/ --bits 16 --tile 2048
  python -m isp_tf.infer photo.cr2 --out out/ --model pynet --weights pynet_level0.weights.h5
  python -m isp_tf.infer photo.nef --out out/ --renderer classical
  python -m isp_tf.infer dump.raw --out out/ --bayer-shape 512x768 --cfa RGGB \\
      --black 600 --white 15520 --wb 1.95,1,1.34

Tiled output equals whole-frame output (see isp_tf/infer/tiling.py): tiles
overlap by the model's receptive field and whole-image statistics (MicroISP's
attention, PyNET's instance norm) are computed over the whole frame first.
"""


def _tile(value: str):
    if value == "auto":
        return "auto"
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"tile size must be >= 0, got {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    from isp_tf.models import available_models

    p = argparse.ArgumentParser(
        prog="python -m isp_tf.infer", description="Render RAW photos to sRGB PNGs with a "
        "neural ISP (MicroISP by default) at full resolution, tile by tile.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="RAW files (any format LibRaw reads: DNG, CR2, NEF, ARW...) or folders of them")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the PNGs (OUT/<name>.png)")
    p.add_argument("--model", default=None, choices=available_models(),
                   type=str.lower,
                   help="registry model (default: the one stored in --weights, else microisp)")
    p.add_argument("--weights", default=None, metavar="W",
                   help="weights file written by python -m isp_tf.train (RUN_DIR/final.weights.h5; "
                        "default: the model's shipped weights in isp_tf/weights/)")
    p.add_argument("--renderer", choices=("network", "classical"), default="network",
                   help="'classical': bilinear demosaic + white balance + colour matrix + sRGB curve, "
                        "no network (default: network)")
    p.add_argument("--tile", type=_tile, default="auto", metavar="N|auto|0",
                   help="side of each tile's output region in output pixels, rounded up to the model's "
                        "alignment (MicroISP: 162); 'auto' (default): the whole frame when its activations "
                        "fit in 40%% of free memory, else the largest tiles that do; 0: always the whole "
                        "frame. Tiled output equals whole-frame output")
    p.add_argument("--bits", type=int, choices=(8, 16), default=8, help="PNG bit depth (default 8)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    g = p.add_argument_group(
        "headerless Bayer dumps", "with --bayer-shape, every INPUT is read as a bare mosaic "
        "(raw uint16 dump, or a single-channel Bayer PNG/TIFF) with the metadata given here")
    g.add_argument("--bayer-shape", type=_shape, metavar="ROWSxCOLS", help="mosaic size, e.g. 512x768")
    g.add_argument("--cfa", default="RGGB", type=str.upper, choices=("RGGB", "GRBG", "GBRG", "BGGR"),
                   help="colour pattern of the top-left 2x2 block (default RGGB)")
    g.add_argument("--black", type=float, default=0.0, help="black level (default 0)")
    g.add_argument("--white", type=float, default=None, help="white level (default: 2^16 - 1)")
    g.add_argument("--wb", type=_floats, default=None, metavar="R,G,B",
                   help="white-balance gains (classical renderer; default 1,1,1)")
    g.add_argument("--dtype", default="<u2", help="numpy dtype of a dump (default <u2: uint16 LE)")
    return p


def _shape(value: str):
    try:
        rows, cols = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ROWSxCOLS, got {value!r}") from None
    return rows, cols


def _floats(value: str):
    try:
        return [float(v) for v in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {value!r}") from None


def _bayer_kwargs(args):
    if args.bayer_shape is None:
        return None
    return {"shape": args.bayer_shape, "cfa_pattern": args.cfa, "black_level": [args.black],
            "white_level": 65535.0 if args.white is None else args.white,
            "wb_gains": args.wb, "dtype": args.dtype}


@contextlib.contextmanager
def _stderr_silenced():
    """Hide what TensorFlow's C++ side prints while it loads (oneDNN and CUDA
    notices logged before absl is initialised ignore TF_CPP_MIN_LOG_LEVEL)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _load_tensorflow():
    with _stderr_silenced():
        from isp_tf._keras import tf

        tf.config.list_physical_devices()  # device discovery logs too


def _output_tile(tile, renderer):
    """--tile is in output pixels; the runner wants input (packed) pixels."""
    if tile in ("auto", 0) or not hasattr(renderer, "runner"):
        return tile
    scale = renderer.runner.footprint.output_scale
    return -(-tile // scale)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from tqdm import tqdm

    from isp_tf.infer.pipeline import (ClassicalRenderer, NetworkRenderer, expand_inputs,
                                       output_paths, render_file)

    inputs = expand_inputs(args.inputs)
    if not inputs:
        print("error: no RAW files found in " + ", ".join(args.inputs), file=sys.stderr)
        return 2
    try:
        if args.renderer == "classical":
            if args.model or args.weights:
                raise InputShapeError("--renderer classical uses no network: drop --model/--weights")
            renderer = ClassicalRenderer()
        else:
            _load_tensorflow()
            renderer = NetworkRenderer(args.model, args.weights)
    except IspTfError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tile = _output_tile(args.tile, renderer)

    failed = 0
    files = tqdm(list(zip(inputs, output_paths(inputs, args.out))), desc="files", unit="file",
                 disable=args.quiet, position=0)
    tiles = tqdm(desc="tiles", unit="run", disable=args.quiet, position=1, leave=False)
    for path, out in files:
        files.set_postfix_str(path.name)
        start = time.time()
        try:
            render_file(path, out, renderer, bits=args.bits, tile=tile, bar=tiles,
                        bayer=_bayer_kwargs(args))
        except IspTfError as e:
            failed += 1
            message = str(e) if str(path) in str(e) else f"{path}: {e}"
            tqdm.write(f"error: {message}", file=sys.stderr)
        except Exception as e:  # noqa: BLE001  not bad input (out of memory, a bug): say so, go on
            if os.environ.get("ISP_TF_DEBUG"):
                raise
            failed += 1
            first_line = (str(e).strip().splitlines() or [""])[0]
            tqdm.write(f"error: {path}: {type(e).__name__}: {first_line} "
                       "(set ISP_TF_DEBUG=1 for the traceback)", file=sys.stderr)
        else:
            if args.quiet:
                continue
            tqdm.write(f"{path} -> {out} ({time.time() - start:.1f} s)")
    tiles.close()
    files.close()
    if failed:
        return 2 if len(inputs) == 1 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
