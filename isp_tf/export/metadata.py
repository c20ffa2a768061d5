"""The JSON written beside every ``.tflite``: what an app needs to feed and read the model.

Inputs and outputs are described by the spec's ports (kind, layout,
normalisation), integer tensors by their scale and zero point; the NNAPI
verdict, parity figures, calibration and rewrites are recorded; a tile export
also gets its tiling geometry and the manifest of exact tiled execution
(:mod:`isp_tf.tiling.manifest`).
"""
from __future__ import annotations

import datetime
import pathlib
from typing import Optional

import numpy as np

from isp_tf.errors import IspTfError
from isp_tf.utils import file_sha256

__all__ = ["build_metadata", "tile_info"]


def _tensor_info(details, role: str) -> dict:
    dtype = np.dtype(details["dtype"]).name
    info = {"name": details["name"], "shape": [int(d) for d in details["shape"]], "dtype": dtype}
    if dtype in ("int8", "uint8"):
        scale, zp = details["quantization"]
        info["scale"] = float(scale)
        info["zero_point"] = int(zp)
        if role == "input":
            info["quantize"] = "q = clip(round(x / scale) + zero_point) to the dtype's range"
        else:
            info["dequantize"] = "x = (q - zero_point) * scale"
    return info


def _per_frame_tflite(model, spec) -> bytes:
    """The per-frame part of a split model (``ModelSpec.split``), FP32 with free height and
    width: it runs once on the whole frame, on the CPU."""
    from isp_tf._keras import tf
    from isp_tf.export.conversion import convert_function

    specs = []
    for k, t in enumerate(model.inputs):
        name = t.name.split(":")[0]
        shape = [1, None, None, int(t.shape[-1])] if len(t.shape) == 4 else [1] + [int(d) for d in t.shape[1:]]
        specs.append(tf.TensorSpec(shape, tf.float32, name=name))
    fn = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False),
                     input_signature=specs, autograph=False)
    return convert_function(fn.get_concrete_function(), "fp32", "float32", None, model)


def tile_info(spec, loaded, tile: int, input_hw, tflite: Optional[bytes] = None, out=None,
              precision: Optional[str] = None, per_frame=None) -> dict:
    """How a runner should use a tile model: halo and core alignment from
    :func:`isp_tf.tiling.analysis.analyze` of the tiling variant (None when unknown).

    With ``out`` (the tile ``.tflite`` path) and ``tflite`` it also writes the
    tile manifest and the per-pass models beside it
    (:func:`isp_tf.tiling.manifest.write_manifest`): what a phone needs for
    exact tiled inference of a frame of any size."""
    info = {"side": tile, "input_side": input_hw[0],
            "global_statistics": "computed over the tile alone when the tile model runs by itself; the "
                                 "pass models of the tile manifest (isp_tf.tiling.manifest) give the "
                                 "whole-frame result"}
    try:
        from isp_tf.layers import tiling_mode
        from isp_tf.models import create_model
        from isp_tf.tiling.analysis import analyze

        with tiling_mode():
            variant = create_model(spec.name, **loaded.config)
            if per_frame is not None:  # the tile model is the split's tileable part
                variant = spec.split(variant)[1]
        fp = analyze(variant, spec.size_multiple)
    except Exception as exc:  # noqa: BLE001 - metadata only; the export itself is valid
        info["analysis_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return info
    info.update({"halo": fp.halo, "stride": fp.stride, "core_step": fp.core_step, "align": fp.align,
                 "min_side": fp.min_side, "global_layers": sum(len(g) for g in fp.groups)})
    core = input_hw[0] - 2 * fp.halo
    info["core_input_side"] = core if core > 0 else None
    if core <= 0:
        info["warning"] = (f"the tile ({input_hw[0]} input px) is not larger than twice the halo "
                           f"({fp.halo}): no pixel of it is exact")
    if out is not None and tflite is not None:
        from isp_tf.tiling.manifest import manifest_path, write_manifest

        path = manifest_path(out)
        try:
            split = None
            if per_frame is not None:
                split = (_per_frame_tflite(per_frame, spec), [p.name for p in spec.direction().inputs])
            manifest = write_manifest(tflite, fp.geometry, path, input_side=min(input_hw), max_passes=16,
                                      source={"tile_model": pathlib.Path(out).name, "model": spec.name,
                                              "precision": precision, "config": loaded.config},
                                      per_frame=split)
        except (IspTfError, RuntimeError, ValueError) as exc:  # a graph the LiteRT tiler cannot
            # rewrite or resize: the tile model itself stays valid
            info["manifest_error"] = str(exc)
        else:
            info["manifest"] = path.name
            info["passes"] = [p["model"] for p in manifest["passes"]]
            info["segments"] = len(manifest.get("segments", []))
            if manifest.get("per_frame"):
                info["per_frame"] = manifest["per_frame"]["model"]
            info["align"] = manifest["geometry"]["align"]
    return info


def _port_info(details, port, role: str) -> dict:
    """A TFLite tensor's JSON entry, described by the spec's :class:`~isp_tf.models.registry.Port`."""
    info = _tensor_info(details, role)
    if port is not None:
        info["kind"] = port.kind
        info["layout"] = port.layout
        info["normalise" if role == "input" else "denormalise"] = port.normalise
    return info


def build_metadata(tflite: bytes, spec, loaded, precision, io, frame_hw, input_hw, tile, report,
                   parity_info, calib_spec, rewrites, direction=None) -> dict:
    """The JSON written beside the ``.tflite`` (see the README's export section).

    Inputs and outputs are described by the ports of the spec's ``direction``
    (kind, layout, how to normalise / denormalise), so an app can feed the
    model from the JSON alone."""
    from isp_tf._keras import tf
    from isp_tf.runtime.session import make_interpreter

    d = spec.direction(direction)
    interp = make_interpreter(tflite, num_threads=1)
    ins = interp.get_input_details()
    outs = interp.get_output_details()
    port = lambda ports, k: ports[k] if k < len(ports) else None  # noqa: E731
    in_infos = [_port_info(t, port(d.inputs, k), "input") for k, t in enumerate(ins)]
    out_infos = [_port_info(t, port(d.outputs, k), "output") for k, t in enumerate(outs)]
    meta = {
        "model": spec.name,
        "config": loaded.config,
        "weights": loaded.weights,
        "weights_sha256": file_sha256(loaded.weights) if loaded.weights else None,
        "qat": loaded.qat,
        "precision": precision,
        "io": io,
        "frame": {"height": frame_hw[0], "width": frame_hw[1]} if tile is None else None,
        "tile": tile,
        "input": in_infos[0],
        "inputs": in_infos,
        "outputs": out_infos,
        "ops": report.ops_used(),
        "nnapi": {"api_level": report.api_level, "ok": report.ok, "rejected_ops": report.rejected_ops,
                  "rules_broken": report.rules_broken(),
                  "findings": [f.to_dict() for f in report.findings]},
        "parity": parity_info,
        "calibration": calib_spec,
        "export_rewrites": rewrites,
        "file_bytes": len(tflite),
        "tensorflow": tf.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return meta


