"""What a full-integer MicroISP loses by quantising its packed RAW input to 8 bits.

A camera RAW carries 12-14 bits; a full-INT8 ``.tflite`` (int8 I/O, as the
phone export writes it) rounds the packed, black-subtracted input in [0, 1] to
one of 256 codes with the scale and zero point its calibration chose.  Per real
RAW file this measures, against the FP32 export's output on the same input:

* ``int8``: the full INT8 model (8-bit input, int8 weights and activations,
  8-bit output);
* ``input_only``: the FP32 model fed the input quantised and de-quantised with
  the INT8 model's input scale / zero point (the cost of the 8-bit input alone);
* ``output_only``: the FP32 output rounded with the INT8 model's output scale /
  zero point (the floor that 8-bit output sets on any INT8 model).

Each as PSNR (numpy, float64, data range 1.0, outputs clipped to [0, 1] as the
renderer does) over the whole frame and over its darkest tenth: the
``round(0.1 * N)`` output pixels with the lowest FP32-output luma
``0.2126 R + 0.7152 G + 0.0722 B`` (on the sRGB-encoded values; ties broken by
position), all three channels of those pixels.

Both models are exported once with the registry's shipped MicroISP weights
(:func:`benchmarks.models.export`, INT8 calibrated by the export itself),
traced at ``--trace`` packed pixels and resized per frame with LiteRT::

    python -m benchmarks.int8_precision --json benchmarks/results/int8_precision.json \\
        --markdown benchmarks/results/int8_precision.md --plot benchmarks/results/int8_precision.png
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shlex
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from isp_tf.utils import file_sha256

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_SAMPLES = REPO.parent / "shared" / "raw_samples"
LUMA = np.array([0.2126, 0.7152, 0.0722])
DARK_FRACTION = 0.1
#: headerless dumps in ../shared/raw_samples: their metadata, from its SOURCES.md
HEADERLESS = {
    "nikon_dsc1339_768x512_rggb_u16le_14bit.raw": dict(
        shape=(512, 768), cfa_pattern="RGGB", black_level=600, white_level=15520,
        wb_gains=(1.94921875, 1.0, 1.34375),
        color_matrix=[[.9020, -.2890, -.0715], [-.4535, 1.2436, .2348], [-.0934, .1919, .7086]]),
}
RAW_SUFFIXES = (".dng", ".crw", ".cr2", ".nef", ".arw", ".raw")
#: a MicroISP's PSNR against ground truth, for the implied drop (the shipped weights' held-out evaluation)
HELD_OUT_JSON = REPO / "isp_tf" / "models" / "microisp" / "weights" / "microisp_reference.json"


# ----------------------------------------------------------------------------
# pure helpers (tested without TensorFlow)
# ----------------------------------------------------------------------------
def psnr(a, b, mask: Optional[np.ndarray] = None) -> float:
    """PSNR in dB of ``a`` against ``b`` (:func:`isp_tf.runtime.metrics.psnr`: peak 1, clipped, float64),
    over all channels of the pixels a boolean (H, W) ``mask`` selects; ``inf`` when identical."""
    from isp_tf.runtime.metrics import psnr as whole_psnr

    if mask is None:
        return whole_psnr(a, b)
    mask = np.asarray(mask, bool)
    return whole_psnr(np.asarray(a)[mask], np.asarray(b)[mask])


def luma(rgb) -> np.ndarray:
    """Rec. 709 luma of (H, W, 3) values as they are (sRGB-encoded here)."""
    return np.asarray(rgb, np.float64) @ LUMA


def darkest_mask(values, fraction: float = DARK_FRACTION) -> np.ndarray:
    """Boolean mask of exactly ``max(1, round(fraction * N))`` lowest ``values`` (ties: first in raster order)."""
    values = np.asarray(values)
    k = max(1, int(round(fraction * values.size)))
    order = np.argsort(values, axis=None, kind="stable")
    mask = np.zeros(values.size, bool)
    mask[order[:k]] = True
    return mask.reshape(values.shape)


def quant_params(detail: dict):
    """``(scale, zero_point, dtype)`` of a LiteRT tensor detail."""
    scale, zero = detail.get("quantization", (0.0, 0)) or (0.0, 0)
    return float(scale), int(zero), np.dtype(detail["dtype"])


def quantize_roundtrip(x, scale: float, zero_point: int, dtype=np.int8) -> np.ndarray:
    """``x`` as an integer tensor of that scale/zero point would carry it, back in float32:
    ``(clip(rint(x / scale + zp), dtype range) - zp) * scale`` (LiteRT's QUANTIZE / DEQUANTIZE)."""
    info = np.iinfo(dtype)
    q = np.clip(np.rint(np.asarray(x, np.float64) / scale + zero_point), info.min, info.max)
    return ((q - zero_point) * scale).astype(np.float32)


def implied_drop(psnr_vs_fp32: float, model_psnr: float) -> float:
    """PSNR (dB) an FP32 model of ``model_psnr`` against ground truth would lose when its output moves by
    an error of ``psnr_vs_fp32``, if the two errors are uncorrelated: ``10 log10(1 + 10^((Q - P) / 10))``."""
    if not np.isfinite(psnr_vs_fp32):
        return 0.0
    return float(10.0 * np.log10(1.0 + 10.0 ** ((model_psnr - psnr_vs_fp32) / 10.0)))


def compare(ref, full, input_only, output_only, x, in_scale: float, in_zero: int) -> Dict:
    """The record of one frame: PSNR of each variant against ``ref`` (FP32 output), whole and darkest tenth."""
    ref, full, input_only, output_only = (np.clip(np.asarray(a, np.float32), 0.0, 1.0)
                                          for a in (ref, full, input_only, output_only))
    dark = darkest_mask(luma(ref))
    rec = {"output_hw": list(ref.shape[:2]), "dark_pixels": int(dark.sum()),
           "dark_luma_max": float(luma(ref)[dark].max()), "dark_luma_mean": float(luma(ref)[dark].mean())}
    for name, y in (("int8", full), ("input_only", input_only), ("output_only", output_only)):
        rec[name] = {"psnr": psnr(y, ref), "psnr_dark": psnr(y, ref, dark)}
    # the input pixels under the dark output pixels (MicroISP: each input pixel -> a 2x2 output block)
    s = ref.shape[0] // x.shape[0]
    dark_in = x[dark[::s, ::s][:x.shape[0], :x.shape[1]]]
    codes = np.rint(dark_in / in_scale + in_zero)
    rec["input"] = {"mean": float(x.mean()), "p10": float(np.percentile(x, 10)),
                    "dark_input_mean": float(dark_in.mean()),
                    "dark_distinct_8bit_codes": int(np.unique(codes).size),
                    "dark_share_at_zero_code": float(np.mean(codes <= in_zero))}
    return rec


# ----------------------------------------------------------------------------
# inputs and models
# ----------------------------------------------------------------------------
def sample_files(folder) -> List[pathlib.Path]:
    """The RAW files directly in ``folder`` (headerless ones only when :data:`HEADERLESS` knows them)."""
    files = sorted(p for p in pathlib.Path(folder).iterdir() if p.suffix.lower() in RAW_SUFFIXES)
    return [p for p in files if p.suffix.lower() != ".raw" or p.name in HEADERLESS]


def read_sample(path: pathlib.Path):
    """The :class:`~isp_tf.raw.RawImage` of ``path``: LibRaw, or :data:`HEADERLESS` metadata for a bare dump."""
    from isp_tf.raw import read_bayer_array, read_raw

    path = pathlib.Path(path)
    if path.name in HEADERLESS:
        return read_bayer_array(path, **HEADERLESS[path.name])
    return read_raw(path)


def export_models(workdir: pathlib.Path, trace: int) -> Dict[str, pathlib.Path]:
    """FP32 and full-INT8 (int8 I/O, the phone's) ``.tflite`` of MicroISP with its shipped weights."""
    from benchmarks import models as bm

    choice = bm.parse_models("microisp")[0]
    return {"fp32": bm.export(choice, "fp32", workdir / "microisp_fp32.tflite", (trace, trace)),
            "int8": bm.export(choice, "int8", workdir / "microisp_int8.tflite", (trace, trace), io="int8")}


def measure_file(raw, fp32, int8) -> Dict:
    """Run both sessions on ``raw``'s packed input (as :class:`isp_tf.infer.pipeline.NetworkRenderer` builds it)."""
    from isp_tf.errors import IspTfError
    from isp_tf.raw import pack_bayer

    x = pack_bayer(raw)[np.newaxis]
    in_scale, in_zero, in_dtype = quant_params(int8.input)
    out_scale, out_zero, out_dtype = quant_params(int8.output)
    ref = fp32(x)[0]
    if ref.shape[:2] != (2 * x.shape[1], 2 * x.shape[2]):
        raise IspTfError(f"the resized FP32 model gave {ref.shape} for input {x.shape}: not resizable")
    full = int8(x)[0]
    input_only = fp32(quantize_roundtrip(x, in_scale, in_zero, in_dtype))[0]
    output_only = quantize_roundtrip(ref, out_scale, out_zero, out_dtype)
    rec = compare(ref, full, input_only, output_only, x[0], in_scale, in_zero)
    rec.update(input_hw=list(x.shape[1:3]), white_level=float(raw.white_level),
               black_level=[float(b) for b in np.ravel(raw.black_level)])
    span = raw.white_level - float(np.mean(raw.black_level))
    rec["input"]["step_raw_dn"] = float(in_scale * span)  # one 8-bit input step in sensor counts
    return rec


def summary(files: Sequence[Dict], model_psnr: Optional[float]) -> Dict:
    """Mean and worst (minimum) PSNR over the files, and the implied drop of the mean."""
    out = {}
    for name in ("int8", "input_only", "output_only"):
        for key in ("psnr", "psnr_dark"):
            vals = [f[name][key] for f in files]
            out[f"{name}.{key}"] = {"mean": float(np.mean(vals)), "min": float(np.min(vals))}
            if model_psnr is not None:
                out[f"{name}.{key}"]["implied_drop_db"] = implied_drop(float(np.min(vals)), model_psnr)
    return out


# ----------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------
def _db(v: float) -> str:
    return "inf" if not np.isfinite(v) else f"{v:.2f}"


def markdown(result: Dict) -> str:
    """The per-file table, the summary and the definitions."""
    q = result["quantization"]
    lines = [f"# INT8 input precision: {result['model']} (shipped weights), INT8 vs FP32 output PSNR", "",
             f"Command: `{result['command']}`", "",
             f"INT8 input: {q['input_dtype']} scale {q['input_scale']:.6g}, zero point {q['input_zero_point']} "
             f"(values {q['input_range'][0]:.4f}..{q['input_range'][1]:.4f} of the [0, 1] packed input); "
             f"output scale {q['output_scale']:.6g}, zero point {q['output_zero_point']}.", "",
             "| file | camera bits | input px | 1 input step (DN) | full INT8 | full INT8, dark 10% "
             "| 8-bit input only | 8-bit input only, dark 10% | 8-bit output only | 8-bit output only, dark 10% "
             "| dark 10%: 8-bit codes | dark 10% at code <= zp |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for f in result["files"]:
        i = f["input"]
        lines.append(
            f"| {f['file']} | {f['bits']} | {f['input_hw'][0]}x{f['input_hw'][1]} | {i['step_raw_dn']:.1f} "
            f"| {_db(f['int8']['psnr'])} | {_db(f['int8']['psnr_dark'])} "
            f"| {_db(f['input_only']['psnr'])} | {_db(f['input_only']['psnr_dark'])} "
            f"| {_db(f['output_only']['psnr'])} | {_db(f['output_only']['psnr_dark'])} "
            f"| {i['dark_distinct_8bit_codes']} | {100 * i['dark_share_at_zero_code']:.0f}% |")
    lines += ["", "| summary over files | mean dB | worst dB | implied drop of the worst (dB) |", "|---|---|---|---|"]
    for key, s in result["summary"].items():
        lines.append(f"| {key} | {_db(s['mean'])} | {_db(s['min'])} | {s.get('implied_drop_db', float('nan')):.2f} |")
    lines += ["", "Definitions:"] + [f"- {k}: {v}" for k, v in result["definitions"].items()]
    lines += ["", f"Files: {', '.join(f['file'] for f in result['files'])}. {result['excluded']}",
              f"Run: {result['seconds']:.0f} s wall ({result['export_seconds']:.0f} s export) on "
              f"{result['machine']}, LiteRT {result['threads']} thread(s)."]
    return "\n".join(lines) + "\n"


def plot(result: Dict, path) -> None:
    """Grouped bars: per file, PSNR vs FP32 of the full INT8 model and of the 8-bit input alone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from isp_tf.utils import atomic_write

    bars = [("int8", "psnr", "full INT8"), ("int8", "psnr_dark", "full INT8, dark 10%"),
            ("input_only", "psnr", "8-bit input only"), ("input_only", "psnr_dark", "8-bit input only, dark 10%")]
    files = result["files"]
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(bars)
    for k, (name, key, label) in enumerate(bars):
        vals = [min(f[name][key], 99.0) for f in files]
        ax.bar(np.arange(len(files)) + (k - (len(bars) - 1) / 2) * width, vals, width, label=label)
    ax.set_xticks(np.arange(len(files)), [f["file"].rsplit(".", 1)[0][:24] for f in files])
    ax.set(ylabel="PSNR vs FP32 output (dB)", title=f"{result['model']}: 8-bit cost on real RAWs")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="lower center")
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.int8_precision",
        description="PSNR of MicroISP's full-INT8 .tflite against its FP32 .tflite on real camera RAWs, over the "
                    "whole frame and its darkest tenth, and of the 8-bit input quantisation alone (FP32 model fed "
                    "the input rounded with the INT8 model's input scale/zero point).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--samples", default=str(DEFAULT_SAMPLES),
                   help="folder of real camera RAWs (.dng/.crw/...; headerless .raw only those with known metadata)")
    p.add_argument("--trace", type=int, default=256, help="packed input side the models are exported at")
    p.add_argument("--threads", type=int, default=1, help="LiteRT and TensorFlow threads")
    p.add_argument("--workdir", default=None, help="keep the .tflite files here (none: a temp dir)")
    p.add_argument("--json", required=True, metavar="OUT.json", help="write the records here")
    p.add_argument("--markdown", metavar="OUT.md", help="also write a markdown table")
    p.add_argument("--plot", metavar="OUT.png", help="also write a bar plot")
    return p


def _held_out_psnr() -> Optional[float]:
    try:
        return float(json.loads(HELD_OUT_JSON.read_text())["held_out_evaluation"]["mean"]["model_psnr"])
    except (OSError, KeyError, ValueError):
        return None


def run(args, argv) -> Dict:
    from tqdm import tqdm

    from isp_tf.errors import MissingFileError
    from isp_tf.runtime.session import LiteRtSession

    start = time.monotonic()
    files = sample_files(args.samples) if pathlib.Path(args.samples).is_dir() else []
    if not files:
        raise MissingFileError(f"{args.samples}: no real RAW files there (--samples)")
    from isp_tf._keras import tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = pathlib.Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        with tqdm(total=2 + len(files), desc="int8 precision", unit="step") as bar:
            bar.set_postfix_str("exporting fp32 + int8")
            paths = export_models(workdir, args.trace)
            export_s = time.monotonic() - start
            bar.update(2)
            fp32 = LiteRtSession(paths["fp32"], threads=args.threads)
            int8 = LiteRtSession(paths["int8"], threads=args.threads)
            records = []
            for path in files:
                bar.set_postfix_str(path.name)
                raw = read_sample(path)
                rec = {"file": path.name, "sha256": file_sha256(path)[:16],
                       "bits": int(np.ceil(np.log2(raw.white_level + 1)))}
                rec.update(measure_file(raw, fp32, int8))
                records.append(rec)
                bar.update(1)
        sizes = {k: p.stat().st_size for k, p in paths.items()}
    in_scale, in_zero, in_dtype = quant_params(int8.input)
    out_scale, out_zero, out_dtype = quant_params(int8.output)
    info = np.iinfo(in_dtype)
    from isp_tf.models import get_spec

    model_psnr = _held_out_psnr()
    return {
        "model": "microisp", "weights": str(get_spec("microisp").weights_path.relative_to(REPO)),
        "weights_sha256": file_sha256(get_spec("microisp").weights_path)[:16],
        "command": "python -m benchmarks.int8_precision " + " ".join(shlex.quote(a) for a in argv),
        "trace_input_hw": [args.trace, args.trace], "threads": args.threads, "tflite_bytes": sizes,
        "quantization": {"input_dtype": in_dtype.name, "input_scale": in_scale, "input_zero_point": in_zero,
                         "input_range": [(info.min - in_zero) * in_scale, (info.max - in_zero) * in_scale],
                         "output_dtype": out_dtype.name, "output_scale": out_scale, "output_zero_point": out_zero},
        "held_out_model_psnr_db": model_psnr,
        "files": records, "summary": summary(records, model_psnr),
        "excluded": "Not used: sample_RAW_photos/*.dng (synthetic, unprocessed from sRGB photos by "
                    "isp_tf.data.make_samples, not real-camera RAWs).",
        "definitions": {
            "PSNR": "numpy, float64 MSE over all 3 channels, data range 1.0, both outputs clipped to [0, 1]; "
                    "reference = FP32 .tflite output on the same packed input",
            "dark 10%": f"the round({DARK_FRACTION} N) output pixels of lowest FP32-output luma 0.2126R+0.7152G+"
                        "0.0722B (sRGB-encoded values), ties by raster order",
            "full INT8": "the full-integer .tflite (int8 input and output, int8 weights/activations, calibrated "
                         "by the export on its synthetic frames)",
            "8-bit input only": "FP32 .tflite fed dequantize(quantize(x)) with the INT8 model's input scale/zp",
            "8-bit output only": "FP32 output rounded with the INT8 model's output scale/zp",
            "1 input step (DN)": "input scale x (white - mean black): one 8-bit input code in sensor counts",
            "dark 10%: 8-bit codes": "distinct int8 input codes among the packed input pixels under the dark "
                                     "output pixels (all 4 channels); '<= zp': share at or below the zero code",
            "implied drop": "10 log10(1 + 10^((Q - P)/10)): what a model with Q dB against ground truth (Q = the "
                            f"shipped weights' held-out PSNR, {model_psnr:.2f} dB) loses from an uncorrelated error of "
                            "P dB vs FP32 (P = the worst file)",
        },
        "seconds": time.monotonic() - start, "export_seconds": export_s,
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs", "python": platform.python_version(),
    }


def main(argv=None) -> int:
    from isp_tf.cli import run_command
    from isp_tf.utils import atomic_write

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)

    def go() -> int:
        result = run(args, argv)
        with atomic_write(args.json, "w") as f:
            json.dump(result, f, indent=1)
        text = markdown(result)
        if args.markdown:
            with atomic_write(args.markdown, "w") as f:
                f.write(text)
        if args.plot:
            plot(result, args.plot)
        print(text)
        return 0

    return run_command(go)


if __name__ == "__main__":
    sys.exit(main())
