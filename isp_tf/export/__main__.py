"""``python -m isp_tf.export``: an isp_tf model -> a fixed-shape .tflite that Android NNAPI 1.2 (API 29) delegates.

(``python export/export_to_tflite.py`` runs this same command.)

    python -m isp_tf.export --model microisp --precision fp32 \\
        --input-size fullhd --out microisp_fullhd_fp32.tflite
    python -m isp_tf.export --model microisp --weights run/microisp.h5 \\
        --precision int8 --input-size 12mp --out microisp_12mp_int8.tflite
    python -m isp_tf.export --model pynet --small --precision fp16 \\
        --input-size 256x256 --out pynet_small.tflite
    python -m isp_tf.export --model microisp --weights qat.h5 --precision int8 \\
        --tile 512 --out microisp_tile512_int8.tflite       # weights of a --qat run

Every export is checked op by op against the NNAPI delegate's API-29 rules and
run under ai-edge-litert on a real RAW photo against the Keras model; a JSON
beside the .tflite records shapes, normalisation, ops, the NNAPI verdict and
the parity figures.

Exit status: 0 written; 1 some op would stay on the CPU (nothing written;
--allow-cpu-fallback writes anyway); 2 bad input (unknown model or precision,
impossible size, weights of another model, unreadable file).
"""
import argparse
import json
import sys

from isp_tf.cli import add_debug_flag, error, run_command
from isp_tf.models.registry import available_models

PRECISIONS = ("fp32", "fp16", "int8")  # isp_tf.export.convert's (not imported: --help stays fast)
IO_TYPES = ("auto", "float32", "uint8", "int8")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m isp_tf.export",
        description="Convert an isp_tf model to a fixed-shape .tflite (FP32, FP16 or full INT8), "
                    "prove every op is delegated by NNAPI 1.2 (Android 10, API 29), check it "
                    "against the Keras model on a real RAW photo, and write a JSON beside it.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="--input-size names the FRAME, the photo in image pixels: fullhd = 1080x1920, "
               "12mp = 3000x4000, 32mp = 4896x6528, or HxW. For a forward direction (RAW -> sRGB) "
               "it is the output image and the model input is the direction's RAW port at "
               "1/output_scale of it (MicroISP, PyNET, ParamISP: packed Bayer (H/2, W/2, 4), "
               "channels [R, G1, G2, B], (raw - black) / (white - black)). For an inverse direction "
               "(sRGB -> RAW: --direction inverse of InvISP, ParamISP) it is the sRGB input image, "
               "(1, H, W, 3), and the RAW output has the same size. Per-frame inputs (camera "
               "parameters of ParamISP, GenISP) are computed from --parity-input for the parity "
               "check; the JSON says how an app computes them.")
    p.add_argument("--model", required=True, choices=available_models(), help="registry name")
    p.add_argument("--weights", metavar="FILE",
                   help="isp_tf weights file (.h5) of this model, or of a --qat training run; "
                        "default: the model's shipped weights if any, else a fresh initialisation")
    p.add_argument("--qat-weights", metavar="FILE",
                   help="weights of a quantization-aware training run (implies --precision int8)")
    p.add_argument("--reference-weights", metavar="FILE",
                   help="float weights of the same model (e.g. what a QAT run started from): the "
                        "parity check also reports PSNR against it")
    p.add_argument("--small", action="store_true", help="the model's tiny test configuration")
    p.add_argument("--direction", metavar="NAME",
                   help="which way through the method (its spec's directions: forward, and inverse "
                        "where the method has one; default forward)")
    p.add_argument("--variant", metavar="NAME",
                   help="another graph of the same function from the model's spec, e.g. microisp's "
                        "'merged' (3 branches in one 12-channel graph)")
    p.add_argument("--xnnpack-prelu", action="store_true",
                   help="INT8 for the CPU (LiteRT/XNNPACK): per-channel PReLUs as LEAKY_RELU, MUL and ADD, "
                        "which XNNPACK runs in int8 (it refuses the PRELU op: each one splits the graph); "
                        "still NNAPI 1.2 ops, but four instead of one: not for a phone's NNAPI")
    p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                   help="override a builder argument (JSON value), e.g. --config width=0.5; "
                        "repeatable; not with --weights (the file fixes the config)")
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="fp32 (default), fp16 (float16 weights) or int8 (full integer)")
    p.add_argument("--io", default="auto", choices=IO_TYPES,
                   help="int8 model input/output type; auto = int8, the only one whose every op "
                        "NNAPI delegates at API 29 (uint8/float32 add QUANTIZE ops it refuses)")
    p.add_argument("--input-size", default="fullhd", metavar="SIZE",
                   help="the frame: a forward direction's output image, an inverse direction's "
                        "sRGB input image; fullhd, 12mp, 32mp or HxW (default: %(default)s)")
    p.add_argument("--tile", type=int, metavar="N",
                   help="export an N x N output tile model for tiled execution instead of a frame")
    p.add_argument("--out", required=True, metavar="FILE.tflite", help="where to write the model")
    p.add_argument("--allow-cpu-fallback", action="store_true",
                   help="write the file even if some ops would run on the CPU (verdict kept in the JSON)")
    p.add_argument("--calibration-data", metavar="LAYOUT:PATH",
                   help="int8 calibration data for isp_tf.data.build_dataset (default: synthetic:8)")
    p.add_argument("--calibration-frames", type=int, default=8, metavar="N",
                   help="calibration inputs, each assembled from crops (default: %(default)s)")
    p.add_argument("--parity-input", metavar="RAWFILE",
                   help="real RAW photo for the parity check (default: sample_RAW_photos/*.dng, "
                        "then ../shared/raw_samples)")
    p.add_argument("--no-parity", action="store_true",
                   help="skip the Keras-vs-TFLite run (for very large frames; the JSON says so)")
    p.add_argument("--api-level", type=int, default=29, help="Android API level to validate for")
    p.add_argument("--seed", type=int, default=0, help="initialisation / calibration seed")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_debug_flag(p)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: _export(args), debug=args.debug)


def _export(args) -> int:
    weights = args.weights
    precision = args.precision or "fp32"
    if args.qat_weights:
        if args.weights:
            error("give --weights or --qat-weights, not both")
            return 2
        if args.precision not in (None, "int8"):
            error("--qat-weights exports int8 only")
            return 2
        weights, precision = args.qat_weights, "int8"

    config = {}
    for item in args.config:
        key, sep, value = item.partition("=")
        if not sep or not key:
            error(f"--config {item!r}: use KEY=VALUE")
            return 2
        try:
            config[key] = json.loads(value)
        except json.JSONDecodeError:
            config[key] = value

    from isp_tf.export.convert import export_tflite
    from isp_tf.models.weights import is_qat_weights

    if args.qat_weights and not is_qat_weights(weights):
        error(f"{weights} is not a QAT weights file (see isp_tf.export.qat)")
        return 2
    result = export_tflite(
        args.model, args.out, precision=precision, input_size=args.input_size, tile=args.tile,
        weights=weights, small=args.small, config=config or None, io=args.io,
        reference_weights=args.reference_weights,
        allow_cpu_fallback=args.allow_cpu_fallback,
        calibration_data=args.calibration_data, calibration_frames_count=args.calibration_frames,
        parity_input=args.parity_input, parity=not args.no_parity, seed=args.seed,
        api_level=args.api_level, progress=not args.quiet, variant=args.variant, direction=args.direction,
        xnnpack_prelu=args.xnnpack_prelu)

    meta = result.metadata
    print(f"wrote {result.tflite_path} ({result.size_bytes / 1024:.1f} KB) and {result.json_path}")
    print(f"  {meta['model']} {meta['precision']} io={meta['io']}  input {meta['input']['shape']} "
          f"{meta['input']['dtype']} -> output {meta['outputs'][0]['shape']} {meta['outputs'][0]['dtype']}")
    print("  ops: " + ", ".join(f"{k} v{v}" for k, v in meta["ops"].items()))
    print("  " + result.report.summary())
    if not result.report.ok:
        print(result.report.format_table())
    par = meta["parity"]
    if par:
        psnr = "inf" if par["psnr_db"] is None else f"{par['psnr_db']:.2f} dB"
        print(f"  parity vs Keras fp32 on {par['input']}: max abs {par['max_abs_error']:.3g}, PSNR {psnr}")
        if "vs_reference_weights" in par:
            ref = par["vs_reference_weights"]
            print(f"  vs --reference-weights: max abs {ref['max_abs_error']:.3g}, PSNR {ref['psnr_db']} dB")
    else:
        print("  parity: skipped (--no-parity)")
    tile = meta.get("tile") or {}
    if tile.get("manifest"):
        print(f"  tiling: {tile['manifest']} ({tile.get('segments', 0)} segments, halo {tile.get('halo')} px, "
              f"core step {tile.get('core_step')} px{', per-frame model ' + tile['per_frame'] if tile.get('per_frame') else ''})")
    elif tile:
        why = tile.get("manifest_error") or tile.get("analysis_error") or "not analysed"
        print(f"warning: no tile manifest (exact tiling of frames larger than the tile is not possible): {why}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
