"""``python -m isp_tf.infer INPUT... --out DIR``: render RAW photos to PNG.

Exit status: 0 when every input was written; 2 for bad arguments, an unknown
model, missing or mismatched weights, or a single input that failed; 1 when
some of several inputs failed (the others are still written).
"""
from __future__ import annotations

import argparse
import sys
import time

from isp_tf.cli import (EXIT_BAD_INPUT, EXIT_SOME_FAILED, add_debug_flag, debug_enabled, resource_hint,
                        run_command)
from isp_tf.errors import InputShapeError, IspTfError, MissingFileError

EPILOG = """\
examples:
  python -m isp_tf.infer sample_RAW_photos/ --out rendered/
  python -m isp_tf.infer photo.dng --out out/ --bits 16 --tile 2048
  python -m isp_tf.infer photo.cr2 --out out/ --model pynet --weights pynet_level0.weights.h5
  python -m isp_tf.infer photo.nef --out out/ --renderer classical
  python -m isp_tf.infer photo.dng --out out/ --engine keras     # TensorFlow instead of LiteRT
  python -m isp_tf.infer dark.dng --out out/ --model genisp --weights runs/genisp/final.weights.h5
  python -m isp_tf.infer dump.raw --out out/ --bayer-shape 512x768 --cfa RGGB \\
      --black 600 --white 15520 --wb 1.95,1,1.34
  python -m isp_tf.infer --model invisp --weights run/final.weights.h5 --inverse photo.jpg \\
      --metadata photo.dng --out raw/          # sRGB -> RAW: writes raw/photo.dng
  python -m isp_tf.infer --model paramisp --weights runs/paramisp/joint --inverse photo.jpg \\
      --metadata camera.json --out raw/        # camera parameters from the JSON (or a RAW file)

Tiled output equals whole-frame output (see isp_tf/tiling/): tiles
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
    from isp_tf.models.registry import DEFAULT_MODEL

    p = argparse.ArgumentParser(
        prog="python -m isp_tf.infer", description="Render RAW photos to sRGB PNGs with a "
        f"neural ISP ({DEFAULT_MODEL} by default) at full resolution, tile by tile.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="RAW files (any format LibRaw reads: DNG, CR2, NEF, ARW...) or folders of them")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the PNGs (OUT/<name>.png)")
    p.add_argument("--model", default=None, choices=available_models(),
                   type=str.lower,
                   help="registry model (default: the one stored in --weights, else the registry's "
                        f"default, {DEFAULT_MODEL})")
    p.add_argument("--weights", default=None, metavar="W",
                   help="weights file written by python -m isp_tf.train (RUN_DIR/final.weights.h5; "
                        "default: the model's shipped weights, isp_tf/models/<model>/weights/)")
    p.add_argument("--renderer", choices=("network", "classical"), default="network",
                   help="'classical': bilinear demosaic + white balance + colour matrix + sRGB curve, "
                        "no network (default: network)")
    p.add_argument("--tile", type=_tile, default="auto", metavar="N|auto|0",
                   help="side of each tile's output region in output pixels, rounded up to the model's "
                        "alignment (MicroISP: 162); 'auto' (default): the whole frame when its activations "
                        "fit in 40%% of free memory, else the largest tiles that do; 0: always the whole "
                        "frame. Tiled output equals whole-frame output")
    p.add_argument("--bits", type=int, choices=(8, 16), default=8, help="PNG bit depth (default 8)")
    p.add_argument("--engine", choices=("litert", "keras"), default="litert",
                   help="'litert' (default): the model exported to FP32 TFLite (once per weights file, "
                        "cached) on LiteRT, tiled by isp_tf.tiling; 'keras': the Keras model on TensorFlow. "
                        "Both give the same PNG")
    p.add_argument("--cache", metavar="DIR", default=None,
                   help="folder of the LiteRT engine's exports (default $ISP_TF_CACHE/infer, else "
                        "~/.cache/isp_tf/infer)")
    p.add_argument("--threads", type=int, default=None, help="LiteRT threads (default: every CPU)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_debug_flag(p)
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
    v = p.add_argument_group(
        "inverse ISP (sRGB -> RAW)", "with --inverse (or --direction inverse), every INPUT is an sRGB photo "
        "(JPEG, PNG, or folders of them) and OUT/<name>.dng its RAW recovered by the model's inverse "
        "direction (InvISP, ParamISP), for the camera --metadata describes, tiled at full resolution "
        "(--tile)")
    v.add_argument("--direction", default=None, metavar="NAME",
                   help="the model direction to run: forward (default, RAW -> sRGB) or inverse")
    v.add_argument("--inverse", action="store_true", help="the same as --direction inverse")
    v.add_argument("--metadata", metavar="RAWFILE_OR_JSON",
                   help="the camera the DNG is for: a RAW file of it (only its metadata is used) or a JSON "
                        "with cfa_pattern, black_level, white_level, wb_gains and optionally cam_to_xyz or "
                        "cam_to_srgb, exif {iso, exposure_time, f_number, focal_length}, orientation, camera "
                        "(isp_tf.infer.inverse.metadata_to_json writes one). A model conditioned on the "
                        "camera (ParamISP) computes its parameters from it: give wb_gains, cam_to_srgb and "
                        "exif")
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


def _load_tensorflow():
    from isp_tf.runtime import quiet_native_stderr

    sys.stderr.flush()
    with quiet_native_stderr():  # oneDNN/CUDA notices logged before absl starts ignore TF_CPP_MIN_LOG_LEVEL
        from isp_tf._keras import tf

        tf.config.list_physical_devices()  # device discovery logs too


def _output_tile(tile, renderer):
    """--tile is in output pixels; the runner wants input (packed) pixels."""
    if tile in ("auto", 0):
        return tile
    if hasattr(renderer, "runner"):
        scale = renderer.runner.footprint.output_scale
    elif hasattr(renderer, "output_scale"):
        scale = renderer.output_scale
    else:
        return tile
    return -(-tile // scale)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.inverse or args.direction not in (None, "forward"):
        return run_command(lambda: _invert_all(args), debug=args.debug)
    return run_command(lambda: _render_all(args), debug=args.debug)


# --------------------------------------------------------------------------- inverse (sRGB -> RAW)
def _inverse_renderer(args):
    from isp_tf.infer.inverse import ClassicalInverse, InverseRenderer

    direction = args.direction or "inverse"
    if args.inverse and direction != "inverse":
        raise InputShapeError(f"--inverse contradicts --direction {direction}")
    if args.bayer_shape is not None:
        raise InputShapeError("--bayer-shape reads RAW dumps; the inverse takes sRGB photos")
    if args.renderer == "classical":
        if args.model or args.weights:
            raise InputShapeError("--renderer classical uses no network: drop --model/--weights")
        return ClassicalInverse()
    _load_tensorflow()
    return InverseRenderer(args.model, args.weights, direction=direction)


def _invert_all(args) -> int:
    from isp_tf.infer.inverse import expand_photos, invert_file, output_paths, read_metadata

    if not args.metadata:
        raise MissingFileError(
            "--inverse needs --metadata RAWFILE_OR_JSON: a photo does not say which camera's RAW to write "
            "(CFA pattern, black and white levels, white balance, colour matrix). Give a RAW file of that "
            "camera (only its metadata is used) or a JSON with cfa_pattern, black_level, white_level, "
            "wb_gains (optional: cam_to_xyz, exif, orientation, camera)")
    inputs = expand_photos(args.inputs)
    if not inputs:
        raise MissingFileError("no photos found in " + ", ".join(args.inputs))
    meta = read_metadata(args.metadata)  # a bad metadata file fails before the model loads
    renderer = _inverse_renderer(args)
    tile = _output_tile(args.tile, renderer)
    return _each_file(args, inputs, output_paths(inputs, args.out),
                      lambda path, out, bar: invert_file(path, meta, out, renderer, tile=tile, bar=bar))


def _renderer(args):
    from isp_tf.infer.pipeline import ClassicalRenderer, NetworkRenderer

    if args.renderer == "classical":
        if args.model or args.weights:
            raise InputShapeError("--renderer classical uses no network: drop --model/--weights")
        return ClassicalRenderer()
    try:
        if args.engine == "litert":
            renderer = _litert_renderer(args)
            if renderer is not None:
                return renderer
        _load_tensorflow()
        return NetworkRenderer(args.model, args.weights)
    except MissingFileError as e:
        raise MissingFileError(f"{e}; or render without a network with --renderer classical") from None


def _litert_renderer(args):
    """The LiteRT engine (``None``: the model cannot be tiled on LiteRT; the Keras engine then)."""
    from tqdm import tqdm

    from isp_tf.infer.litert import load_renderer

    def log(message):
        if not args.quiet:
            tqdm.write(message, file=sys.stderr)

    renderer = load_renderer(args.model, args.weights, tile=args.tile, cache=args.cache, threads=args.threads,
                             log=log, before_tensorflow=_load_tensorflow)
    if (renderer.entry.get("manifest") is None and args.tile != 0) or renderer.entry.get("resizable") is False:
        if not args.quiet:
            tqdm.write(f"{renderer.name}: the LiteRT export cannot be tiled ({renderer.entry.get('manifest_error')}); "
                       "running the Keras model (--engine keras)", file=sys.stderr)
        return None
    return renderer


def _render_all(args) -> int:
    from isp_tf.infer.pipeline import expand_inputs, output_paths, render_file

    inputs = expand_inputs(args.inputs)
    if not inputs:
        raise MissingFileError("no RAW files found in " + ", ".join(args.inputs))
    renderer = _renderer(args)
    tile = _output_tile(args.tile, renderer)

    bayer = _bayer_kwargs(args)
    # the next file is read (rawpy, released GIL) while the network renders this one: 4 sample DNGs
    # on LiteRT took 9.7-11.4 s wall against 11.7-12.5 s one after the other (a loaded 2-core machine)
    from concurrent.futures import ThreadPoolExecutor

    from isp_tf.infer.pipeline import read_input

    reads = {}
    position = iter(range(len(inputs)))

    with ThreadPoolExecutor(1) as reader:
        def work(path, out, bar):
            i = next(position)
            pending = reads.pop(i, None) or reader.submit(read_input, path, bayer)
            if i + 1 < len(inputs):
                reads[i + 1] = reader.submit(read_input, inputs[i + 1], bayer)
            render_file(path, out, renderer, bits=args.bits, tile=tile, bar=bar, raw=pending.result())

        return _each_file(args, inputs, output_paths(inputs, args.out), work)


def _each_file(args, inputs, outputs, work) -> int:
    """Run ``work(path, out, tile_bar)`` per input with progress bars; a failing file is one
    ``error:`` line and the others go on.  Exit 0 all written, 2 the single input failed,
    1 some of several failed."""
    from tqdm import tqdm

    failed = 0
    files = tqdm(list(zip(inputs, outputs)), desc="files", unit="file", disable=args.quiet, position=0)
    tiles = tqdm(desc="tiles", unit="run", disable=args.quiet, position=1, leave=False)
    for path, out in files:
        files.set_postfix_str(path.name)
        start = time.time()
        try:
            work(path, out, tiles)
        except IspTfError as e:
            failed += 1
            message = str(e) if str(path) in str(e) else f"{path}: {e}"
            tqdm.write(f"error: {message}", file=sys.stderr)
        except Exception as e:  # noqa: BLE001  not bad input (out of memory, a bug): say so, go on
            if debug_enabled(args):
                raise
            failed += 1
            first_line = (str(e).strip().splitlines() or [""])[0]
            tqdm.write(f"error: {path}: {type(e).__name__}: {first_line}{resource_hint(e)} "
                       "(run with --debug or ISP_TF_DEBUG=1 for the traceback)", file=sys.stderr)
        else:
            if not args.quiet:
                tqdm.write(f"{path} -> {out} ({time.time() - start:.1f} s)")
    tiles.close()
    files.close()
    if failed:
        return EXIT_BAD_INPUT if len(inputs) == 1 else EXIT_SOME_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
