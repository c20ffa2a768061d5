"""The measurements behind the README's figures, one function per group of figures.

Each group returns ``{field: value}``; :mod:`isp_tf.figures.table` says which
field backs which figure.  Every function reruns the library's own code path
(the evaluator, the exporter with its parity check, the registry's builders),
never a copy of it, with the inputs and seeds the README names.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
from typing import Callable, Dict

REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED = pathlib.Path(os.environ.get("ISP_TF_SHARED", REPO.parent / "shared"))
RAW_SAMPLES = pathlib.Path(os.environ.get("ISP_TF_RAW_SAMPLES", SHARED / "raw_samples"))
COLOUR_CHART = RAW_SAMPLES / "canon_eos550d_colorchart.dng"
CANON_CRW = RAW_SAMPLES / "canon_eos_d30.crw"
OFFICIAL_MICROISP = SHARED / "reference_weights" / "microisp_official"
BENCH_RESULTS = REPO / "benchmarks" / "results"


@dataclasses.dataclass(frozen=True)
class Group:
    """A measurement: ``kind`` (cheap / committed / expensive / test), ``run() -> {field: value}``."""

    kind: str
    run: Callable[[], Dict[str, float]]
    how: str


def _need(path: pathlib.Path, what: str) -> pathlib.Path:
    from isp_tf.errors import MissingFileError

    if not path.exists():
        raise MissingFileError(f"{path} is missing ({what}); put it there or set ISP_TF_SHARED / "
                               f"ISP_TF_RAW_SAMPLES")
    return path


# --- cheap ---------------------------------------------------------------------------------------
def parameter_counts() -> Dict[str, float]:
    """Trainable parameters (what the papers count; InvISP's LU permutations are not trainable).

    PyNET's figure is the authors' graph, all six heads (``build_pynet(0, all_outputs=True)``);
    the registry's level-0 model alone has 26,799 fewer (``ModelSpec.published_parameters``)."""
    import numpy as np

    from isp_tf.models import create_model
    from isp_tf.models.pynet.model import build_pynet

    def trainable(model) -> int:
        return int(sum(np.prod(v.shape) for v in model.trainable_variables))

    return {"pynet": trainable(build_pynet(0, all_outputs=True)),
            "invisp": trainable(create_model("invisp")),
            "genisp": trainable(create_model("genisp")),
            "invisp_small": trainable(create_model("invisp", small=True))}


def libraw_render(path, **wb):
    """rawpy's render with the settings :func:`isp_tf.raw.render_classical` mirrors, float in [0, 1]."""
    import numpy as np
    import rawpy

    with rawpy.imread(str(path)) as rp:
        rgb = rp.postprocess(
            no_auto_bright=True, output_color=rawpy.ColorSpace.sRGB, gamma=(2.4, 12.92),
            demosaic_algorithm=rawpy.DemosaicAlgorithm.LINEAR, adjust_maximum_thr=0,
            highlight_mode=rawpy.HighlightMode.Clip, output_bps=16, user_flip=0, **wb)
    return rgb.astype(np.float32) / 65535


def classical_vs_libraw() -> Dict[str, float]:
    from isp_tf.raw import read_raw, render_classical
    from isp_tf.runtime.metrics import psnr

    path = _need(COLOUR_CHART, "the colour-chart DNG of shared/raw_samples")
    return {"psnr_db": float(psnr(render_classical(read_raw(path)), libraw_render(path, use_camera_wb=True)))}


def microisp_eval() -> Dict[str, float]:
    """``python -m isp_tf.train.evaluate --model microisp --data synthetic:16:chelsea,coffee`` (shipped weights)."""
    from isp_tf.data.layouts import find_examples
    from isp_tf.models.weights import resolve_model
    from isp_tf.train.evaluate import evaluate_pairs, summarize

    examples = find_examples("synthetic:16:chelsea,coffee", "test", 0)
    rows = evaluate_pairs(resolve_model("microisp", None).model, examples, progress=False)
    return dict(summarize(rows), images=len(rows))


def invisp_eval() -> Dict[str, float]:
    """``python -m isp_tf.models.invisp.evaluate`` on ``synthetic:8:chelsea,grace_hopper`` (shipped weights)."""
    from isp_tf.models.invisp.evaluate import evaluate
    from isp_tf.models.weights import resolve_model

    return evaluate(resolve_model("invisp", None).model, "synthetic:8:chelsea,grace_hopper")


def _export(precision, input_size, parity_input, **kwargs):
    from isp_tf.export.convert import export_tflite

    return export_tflite("microisp", None, precision=precision, input_size=input_size,
                         parity_input=str(parity_input), progress=False, log=lambda *a: None, **kwargs)


def official_export() -> Dict[str, float]:
    """FP32 / FP16 / INT8 exports of the authors' MicroISP at FullHD, parity on the Canon D30 CRW."""
    from isp_tf.models import create_model, get_spec
    from isp_tf.models.microisp import load_official_checkpoint

    _need(OFFICIAL_MICROISP / "MicroISP.ckpt.index", "the authors' MicroISP checkpoint")
    crw = _need(CANON_CRW, "the Canon D30 CRW of shared/raw_samples")
    model = load_official_checkpoint(create_model("microisp"), OFFICIAL_MICROISP)
    config = dict(get_spec("microisp").default_config)
    out = {}
    for precision in ("fp32", "fp16", "int8"):
        result = _export(precision, "fullhd", crw, keras_model=model, config=config)
        parity = result.metadata["parity"]
        out[f"{precision}_bytes"] = result.size_bytes
        out[f"{precision}_max_abs_error"] = parity["max_abs_error"]
        out[f"{precision}_psnr_db"] = parity["psnr_db"]
    return out


def ptq() -> Dict[str, float]:
    """Post-training INT8 of the shipped reference weights, 512x512, parity on the colour chart."""
    from isp_tf.models import get_spec

    reference = str(get_spec("microisp").weights_path)
    result = _export("int8", "512x512", _need(COLOUR_CHART, "the colour-chart DNG"), weights=reference,
                     reference_weights=reference)
    parity = result.metadata["parity"]
    return {"vs_fp32_db": parity["psnr_db"], "vs_reference_db": parity["vs_reference_weights"]["psnr_db"]}


# --- expensive (--full) ---------------------------------------------------------------------------------
def _run(argv, cwd=REPO):
    from isp_tf.errors import IspTfError

    proc = subprocess.run([sys.executable, *argv], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.split())[-400:]
        raise IspTfError(f"{' '.join(argv)} failed (exit {proc.returncode}): {tail}")
    return proc


def qat() -> Dict[str, float]:
    """The README's two QAT commands (150 steps of ``train --qat``, then the INT8 export)."""
    from isp_tf.models import get_spec

    reference = str(get_spec("microisp").weights_path)
    with tempfile.TemporaryDirectory(prefix="isp_tf_figures_qat_") as tmp:
        _run(["-m", "isp_tf.train", "--model", "microisp", "--data",
              "synthetic:60:astronaut,rocket,motorcycle,hubble,grace_hopper", "--data", f"rendered:{RAW_SAMPLES}",
              "--init-from", reference, "--out", f"{tmp}/runs/qat", "--qat", "--epochs", "1",
              "--steps-per-epoch", "150", "--quiet"])
        out = f"{tmp}/microisp_qat_int8.tflite"
        _run(["export/export_to_tflite.py", "--model", "microisp", "--qat-weights",
              f"{tmp}/runs/qat/qat/final.weights.h5", "--reference-weights", reference, "--precision", "int8",
              "--input-size", "512x512", "--parity-input", str(COLOUR_CHART), "--quiet", "--out", out])
        parity = json.loads(pathlib.Path(out).with_suffix(".json").read_text())["parity"]
    return {"vs_fp32_db": parity["psnr_db"], "vs_reference_db": parity["vs_reference_weights"]["psnr_db"]}


def genisp_lowlight() -> Dict[str, float]:
    """``python -m isp_tf.models.genisp.experiment`` (about 4 minutes unloaded), its results.json."""
    with tempfile.TemporaryDirectory(prefix="isp_tf_figures_genisp_") as tmp:
        _run(["-m", "isp_tf.models.genisp.experiment", "--out", tmp])
        results = json.loads((pathlib.Path(tmp) / "results.json").read_text())["results"]
    return {f"{name}.{metric}": r[metric] for name, r in results.items() for metric in ("AP", "AP50", "AP75")}


# --- committed results files ------------------------------------------------------------------------------
_PREDICTED = re.compile(r"predicts (\d+(?:\.\d+)?) MB")


def bench_fields(path: pathlib.Path, with_runtime: bool = False) -> Dict[str, float]:
    """``model/precision/mode/resolution[/runtime].field`` of a ``benchmarks.run --json`` file."""
    records = json.loads(pathlib.Path(path).read_text())["records"]
    out = {}
    for r in records:
        mode = "tiled" if str(r["mode"]).startswith("tiled") else r["mode"]
        key = f"{r['model']}/{r['precision']}/{mode}/{r['resolution_label']}"
        if with_runtime:
            key += f"/{r['runtime']}"
        for field in ("median_s", "peak_rss_mb", "max_abs_diff_vs_whole", "psnr_vs_whole_db"):
            if r.get(field) is not None:
                out[f"{key}.{field}"] = r[field]
        if r.get("status") == "ok" and mode == "tiled":  # was the tiled output compared with the whole frame?
            out[f"{key}.compared"] = float(r.get("max_abs_diff_vs_whole") is not None)
        predicted = _PREDICTED.search(f"{r.get('status', '')} {r.get('message', '')}")
        if predicted:
            out[f"{key}.predicted_mb"] = float(predicted.group(1))
    return out


def bench() -> Dict[str, float]:
    return bench_fields(BENCH_RESULTS / "cpu_2threads.json")


def bench_runtimes() -> Dict[str, float]:
    return bench_fields(BENCH_RESULTS / "runtimes_fullhd_12mp.json", with_runtime=True)


def records() -> Dict[str, float]:
    """The training records shipped beside the reference weights."""
    from isp_tf.models import get_spec

    micro = json.loads(get_spec("microisp").weights_path.with_suffix("").with_suffix(".json").read_text())
    inv = json.loads(get_spec("invisp").weights_path.with_suffix("").with_suffix(".json").read_text())
    command = inv["command"]
    steps = int(re.search(r"--epochs (\d+)", command).group(1)) * int(
        re.search(r"--steps-per-epoch (\d+)", command).group(1))
    return {"microisp.steps": micro["steps"], "microisp.minutes": micro["train_seconds"] / 60.0,
            "invisp.steps": steps}


def tests_present() -> Dict[str, float]:
    """The bound of a ``test`` figure holds while the test asserting it exists (path -> 1.0 / absent)."""
    return {}  # resolved per figure by isp_tf.figures.check (the field is the test's path)


GROUPS: Dict[str, Group] = {
    "params": Group("cheap", parameter_counts, "builds each published preset (and InvISP small): trainable parameters"),
    "classical_vs_libraw": Group("cheap", classical_vs_libraw,
                                 "render_classical vs rawpy's postprocess of the colour-chart DNG, PSNR"),
    "microisp_eval": Group("cheap", microisp_eval,
                           "train.evaluate of the shipped MicroISP weights on synthetic:16:chelsea,coffee"),
    "invisp_eval": Group("cheap", invisp_eval,
                         "models.invisp.evaluate of the shipped InvISP small weights on "
                         "synthetic:8:chelsea,grace_hopper"),
    "official_export": Group("cheap", official_export,
                             "export_tflite fp32/fp16/int8 of the authors' MicroISP at FullHD, parity on the CRW"),
    "ptq": Group("cheap", ptq, "export_tflite int8 512x512 of the shipped MicroISP weights, parity on the "
                               "colour chart"),
    "qat": Group("expensive", qat, "the README's train --qat (150 steps) and INT8 export commands"),
    "genisp_lowlight": Group("expensive", genisp_lowlight, "python -m isp_tf.models.genisp.experiment"),
    "bench": Group("committed", bench, "benchmarks/results/cpu_2threads.json (not rerun)"),
    "bench_runtimes": Group("committed", bench_runtimes, "benchmarks/results/runtimes_fullhd_12mp.json (not rerun)"),
    "records": Group("committed", records, "the training records beside the shipped weights (not rerun)"),
    "tests": Group("test", tests_present, "a test asserts the bound; the checker confirms it exists"),
}
