"""Tile manifests: what a phone (or any LiteRT runner) needs for exact tiled inference.

``export_tflite(..., tile=N)`` writes, beside the tile ``.tflite`` and its
JSON, one pruned model per pass (``<stem>_pass<k>.tflite``, from
:func:`isp_tf.tiling.tflite_executor.expose_global_stats` and
:func:`~isp_tf.tiling.tflite_executor.pass_models`) and ``<stem>.tiling.json``,
the manifest (:func:`write_manifest`).  :func:`read_manifest` checks one and
:meth:`TiledSession.from_manifest <isp_tf.tiling.tflite_executor.TiledSession.from_manifest>`
runs a frame of any size from it alone.

Manifest (JSON, ``"format": "isp_tf.tiling.manifest"``, ``"version": 1``)::

    geometry    halo, stride, core_step, align, output_scales (one per output of the final
                pass, in its order), size_multiple, min_side (model-input pixels; see
                isp_tf.tiling.planner)
    core        the default core side (input px): the largest multiple of core_step
                whose box (core + 2 halo) fits the exported tile (at least one step)
    resizable   whether the pass models accept other input sizes than the export's
    inputs      every input of every pass model, in order: index, name, role
                ("image", "per_frame" or "statistic"), shape, dtype (+ scale, zero_point)
    outputs     the final pass's outputs: index, name, role "image", scale, shape, dtype
    passes      in order: model (file name beside the manifest), statistics (indices into
                "statistics": pass output j is the map of statistics[j]; the final
                pass has none and outputs the image(s)), final (bool); empty, with
                passes_omitted (how many a pass runner would need), for a model needing
                more than write_manifest's max_passes: run its segments
    statistics  name, input (index among every pass model's inputs where its whole-frame
                value is fed), output (index among its pass model's outputs where its
                per-position map comes out), pass, jump (input px per map px), depth, shape
    combine     how tiles make whole-frame statistics: sum over tile cores / count
    plan        the planner's rules (how to cut a frame into tiles)
    source      the tile model's file name, model name, precision (when given)

Segments (added in place, the version stays 1: a reader of passes ignores them; readers
that know segments run every op once instead of once per pass)::

    segments    in order: local {model, inputs (feeds), outputs (store ids), halo} or null, and
                stats [{model (or null), inputs (feeds), outputs (statistic indices), min_side}]
    stores      name, jump [num, den] (input px per store px), channels, dtype, scale, zero_point,
                producer (segment, -1: the frame), last (last segment reading it), output (k or null)
    segment_rules  how to run them (SEGMENT_RULES)
    per_frame   (optional) model, inputs (feeds: ["image", 0] the whole unpadded frame, ["vector", k]):
                run once per frame; its output is the last per-frame vector of every segment model
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Optional, Union

import numpy as np

from isp_tf.errors import MissingFileError
from isp_tf.tiling.planner import Geometry, TilingError, lcm, round_core
from isp_tf.utils import atomic_write

__all__ = ["MANIFEST_FORMAT", "MANIFEST_VERSION", "COMBINE_RULE", "PLAN_RULES", "SEGMENT_RULES", "default_core",
           "manifest_path", "read_manifest", "segment_halo", "segment_plan_from_manifest", "write_manifest"]

MANIFEST_FORMAT = "isp_tf.tiling.manifest"
MANIFEST_VERSION = 1

COMBINE_RULE = {
    "rule": "sum over tile cores / count",
    "how": ("for every pass but the last, run every tile's statistics box with the statistics known so "
            "far fed in; for each statistic the pass outputs, take its map's positions inside the tile's "
            "core -- rows [(core_y0 - box_y0) // jump, ceil((core_y1 - box_y0) / jump)), columns "
            "likewise -- and add their sum (per channel, float64) and their number over all tiles; the "
            "whole-frame value is sum / count, fed (as float32, quantised like that input when it is "
            "integer) to every later pass. The final pass runs every tile's box with every statistic "
            "given and writes its core (times the output scale) into the output."),
    "sum_dtype": "float64",
}

SEGMENT_RULES = {
    "order": ("segments in order; in each, every tile (row by row, any order) runs the local model over its "
              "box, then every statistics model over its core; after the last tile the statistics are "
              "sum / count (float64 sums, float32 values, quantised like the statistic input when integer)"),
    "box": ("per segment and axis, with that segment's own halo (isp_tf.tiling.planner.segment_box; length: the "
            "padded frame's): a core shorter than 8 halo is cut at the frame's edges, [max(0, core_start - halo), "
            "min(length, core_end + halo)); else the box is size = min(length, core_end - core_start "
            "+ 2 halo) and is shifted inside the frame: start = min(max(0, core_start - halo), length - size), "
            "[start, start + size)"),
    "feeds": ("each model input, in order: [\"store\", s] the crop of store s over the box (local) or the core "
              "(statistics), rows [y0 / jump, y1 / jump); [\"vector\", k] per-frame input k of the model; "
              "[\"statistic\", k] the whole-frame value of statistics[k]"),
    "local_outputs": ("output j is store outputs[j]: write its core (rows [(core_y0 - box_y0) / jump, "
                      "(core_y1 - box_y0) / jump) of the output) at [core_y0 / jump, core_y1 / jump) of the store"),
    "stats_outputs": ("output j is the map of statistics[outputs[j]]: add the sum over ALL its positions "
                      "(dequantised) and their number; skip the model for a core smaller than min_side on "
                      "either axis; a model of null: the map is the (single) store input itself"),
    "stores": ("store 0 is the padded frame; a store is (H / jump, W / jump, channels) of its dtype (integer "
               "tensors raw, float ones float32 or float16); stores with output k are float32 (dequantised) "
               "and, cropped to the unpadded frame, the model's image output k; free a store after segment last"),
}

PLAN_RULES = {
    "padding": "reflect-pad the frame's bottom and right to multiples of size_multiple; crop the output back",
    "core": "core side rounded up to a multiple of core_step",
    "cuts": ("per axis: 0, core, 2 core, ... below the length, and the length; a last piece thinner than "
             "core // 2 joins the previous core"),
    "box": "[max(0, core_start - halo), min(length, core_end + halo)): what the final pass reads",
    "statistics_box": ("the box with its start rounded down to a multiple of align: what the statistics "
                       "passes read"),
    "order": "tiles row by row; a 2-D tile is a row span times a column span",
}


def segment_halo(manifest: dict, default: int) -> int:
    """The largest halo of a manifest's segments (what the segment executor's boxes add to a core), or
    ``default`` (the whole network's) for a manifest without segments."""
    halos = [int(s["local"]["halo"]) for s in manifest.get("segments", []) if s.get("local")]
    return max(halos) if halos else int(default)


def manifest_path(tflite_path) -> pathlib.Path:
    """``model.tflite`` -> ``model.tiling.json`` (the manifest beside a tile export)."""
    path = pathlib.Path(tflite_path)
    return path.with_name(path.stem + ".tiling.json")


def default_core(geometry: Geometry, input_side: int) -> int:
    """The largest core (a multiple of ``core_step``) whose box ``core + 2 halo`` fits ``input_side``."""
    step = int(geometry.core_step)
    return max(step, (int(input_side) - 2 * int(geometry.halo)) // step * step)


def _tensor(detail, role: str) -> dict:
    info = {"index": None, "name": detail["name"], "role": role,
            "shape": [int(d) for d in detail.get("shape_signature", detail["shape"])],
            "dtype": np.dtype(detail["dtype"]).name}
    scale, zero = detail.get("quantization", (0.0, 0)) or (0.0, 0)
    if info["dtype"] in ("int8", "uint8") and scale:
        info["scale"], info["zero_point"] = float(scale), int(zero)
    return info


def _probe(model: bytes, image_index: int, geometry: Geometry, inputs, outputs):
    """``(resizable, scales)``: whether the model plans at a size it was not exported at, and
    each output's scale (output px per input px, in the model's output order)."""
    from ai_edge_litert import interpreter as litert

    from isp_tf.runtime.session import quiet_native_stderr

    detail = inputs[image_index]
    n, h, w, c = (int(d) for d in detail["shape"])

    def scales_of(details, hw):
        found = []
        for out in details:
            oh, ow = (int(d) for d in out["shape"][1:3])
            s = oh // max(hw[0], 1)
            found.append(s if s >= 1 and (oh, ow) == (s * hw[0], s * hw[1]) else None)
        return found

    step = lcm(geometry.core_step, geometry.size_multiple)  # a frame the model takes (PyNET: 32)
    side = round_core(max(h, w) + 2 * max(step, geometry.align), step)
    hw = (side, side + step)
    try:
        with quiet_native_stderr():
            it = litert.Interpreter(model_content=bytes(model),
                                    experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            it.resize_tensor_input(detail["index"], [n, hw[0], hw[1], c], strict=False)
            it.allocate_tensors()
            scales = scales_of(it.get_output_details(), hw)
            if None in scales:  # dynamic output shapes (a free-size export) are known after a run
                for d in it.get_input_details():
                    it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
                it.invoke()
        scales = scales_of(it.get_output_details(), hw)
        if None not in scales:
            return True, scales
    except (RuntimeError, ValueError):
        pass
    return False, scales_of(outputs, (h, w))  # the export's own (static) shapes


def write_manifest(tflite: Union[bytes, str, pathlib.Path], geometry: Geometry, path, *,
                   core: Optional[int] = None, input_side: Optional[int] = None,
                   source: Optional[dict] = None, exposed: Optional[tuple] = None,
                   max_passes: Optional[int] = None, per_frame: Optional[tuple] = None) -> dict:
    """Write the pass models and the manifest of ``tflite`` (path or bytes) at ``path``.

    ``path`` is the manifest's file (``<stem>.tiling.json``, see
    :func:`manifest_path`); the pass models go beside it as
    ``<stem>_pass<k>.tflite``.  ``geometry`` comes from the Keras analysis
    (:attr:`Footprint.geometry <isp_tf.tiling.planner.Footprint.geometry>`); its
    ``align`` is raised to a multiple of every statistics map's jump.
    ``core``: the default core side; else :func:`default_core` of
    ``input_side`` (default: the model's own input side).  Every file is
    written atomically.  ``exposed``: ``expose_global_stats(tflite)`` when the
    caller already has it.  ``max_passes``: a model needing more passes, each a model
    file (PyNET: 97, one per depth of its 48 instance norms' means and variances), gets
    its segments only (``"passes": []``, ``"passes_omitted"``: how many); the segment
    executor runs every op once whatever the depth.  ``per_frame``: ``(model bytes, names of the original
    model's inputs)`` of a split model's per-frame part (``ModelSpec.split``):
    written as ``<stem>_per_frame.tflite``; its output feeds the tile model's
    per-frame input that is not one of those names.  Returns the manifest.
    """
    from isp_tf.runtime.session import LiteRtSession
    from isp_tf.tiling.tflite_executor import expose_global_stats, pass_models, stats_alignment

    data = bytes(tflite) if isinstance(tflite, (bytes, bytearray)) else pathlib.Path(tflite).read_bytes()
    path = pathlib.Path(path)
    stem = path.name[:-len(".tiling.json")] if path.name.endswith(".tiling.json") else path.stem
    exposed, stats = expose_global_stats(data) if exposed is None else exposed
    passes_needed = len({s["depth"] for s in stats}) + 1
    write_passes = max_passes is None or passes_needed <= max_passes
    geometry = dataclasses.replace(geometry, align=lcm(geometry.align, stats_alignment(geometry.stride, stats)))
    models = pass_models(exposed, stats, final_only=not write_passes)

    final = LiteRtSession(models[-1][0], threads=1, runtime="builtin")
    given = {int(s["given"]): k for k, s in enumerate(stats)}
    image_index = next(k for k, d in enumerate(final.inputs) if k not in given and len(d["shape"]) == 4)
    inputs = []
    for k, detail in enumerate(final.inputs):
        role = "statistic" if k in given else ("image" if k == image_index else "per_frame")
        inputs.append(dict(_tensor(detail, role), index=k))
    resizable, scales = _probe(models[-1][0], image_index, geometry, final.inputs, final.outputs)
    if None in scales or sorted(scales) != sorted(geometry.output_scales):
        raise TilingError(f"the model's outputs have scales {scales} (output px per input px), the "
                          f"analysis found {list(geometry.output_scales)}: not the same model?")
    # the .tflite orders its outputs its own way (the converter may sort them by name)
    geometry = dataclasses.replace(geometry, output_scales=tuple(scales))
    outputs = [dict(_tensor(d, "image"), index=k, output_scale=int(s)) for k, (d, s) in enumerate(zip(final.outputs, scales))]
    if input_side is None:
        input_side = min(int(d) for d in final.inputs[image_index]["shape"][1:3])
    core = round_core(core, geometry.core_step) if core is not None else default_core(geometry, input_side)
    del final

    passes, statistics = [], [None] * len(stats)
    for k, st in enumerate(stats):  # a manifest of segments only still describes every statistic
        statistics[k] = {"name": st["name"], "input": int(st["given"]), "output": None, "pass": None,
                         "jump": int(st["jump"]), "depth": int(st["depth"]),
                         "shape": inputs[int(st["given"])]["shape"]}
    for p, (model, which) in enumerate(models if write_passes else []):
        name = f"{stem}_pass{p}.tflite"
        with atomic_write(path.with_name(name)) as f:
            f.write(model)
        passes.append({"model": name, "statistics": list(which), "final": p == len(models) - 1})
        for j, k in enumerate(which):
            st = stats[k]
            statistics[k] = {"name": st["name"], "input": int(st["given"]), "output": j, "pass": p,
                             "jump": int(st["jump"]), "depth": int(st["depth"]),
                             "shape": inputs[int(st["given"])]["shape"]}
    manifest_segments, stores = _write_segments(exposed, stats, geometry, path, stem)
    per_frame_entry = None
    if per_frame is not None:
        per_frame_entry = _write_per_frame(per_frame, inputs, path, stem)
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "source": dict(source or {}),
        "geometry": geometry.to_dict(),
        "core": int(core),
        "resizable": bool(resizable),
        "inputs": inputs,
        "outputs": outputs,
        "passes": passes,
        **({} if write_passes else {"passes_omitted": passes_needed}),
        "statistics": statistics,
        "combine": COMBINE_RULE,
        "plan": PLAN_RULES,
        "segments": manifest_segments,
        "stores": stores,
        "segment_rules": SEGMENT_RULES,
    }
    if per_frame_entry is not None:
        manifest["per_frame"] = per_frame_entry
    with atomic_write(path, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    return manifest


def _write_segments(exposed, stats, geometry: Geometry, path: pathlib.Path, stem: str):
    """Cut the exposed model into segments (:func:`isp_tf.tiling.segments.segment_plan`), write
    their models beside the manifest; returns the manifest's ``segments`` and ``stores``."""
    from isp_tf.tiling.segments import segment_plan

    plan = segment_plan(exposed[0] if isinstance(exposed, tuple) else exposed, stats,
                        lcm(geometry.stride, geometry.size_multiple))
    segments = []
    for k, (local, parts) in enumerate(plan.segments):
        entry = {"local": None, "stats": []}
        if local is not None:
            name = f"{stem}_seg{k}.tflite"
            with atomic_write(path.with_name(name)) as f:
                f.write(local.model)
            entry["local"] = local.to_dict(name)
        for j, part in enumerate(parts):
            name = None
            if part.model is not None:
                name = f"{stem}_seg{k}_stats{j}.tflite"
                with atomic_write(path.with_name(name)) as f:
                    f.write(part.model)
            entry["stats"].append(part.to_dict(name))
        segments.append(entry)
    return segments, [s.to_dict() for s in plan.stores]


def _write_per_frame(per_frame, inputs, path: pathlib.Path, stem: str) -> dict:
    """Write a split model's per-frame part; its feeds and the vector its output fills."""
    from isp_tf.runtime.session import LiteRtSession

    model, original = per_frame
    vectors = [d for d in inputs if d["role"] == "per_frame"]  # in the tile model's order
    simple = lambda name: name.split(":")[0].split("serving_default_")[-1]  # noqa: E731
    fed = [k for k, d in enumerate(vectors) if not any(simple(d["name"]).endswith(n) for n in original)]
    if len(fed) != 1:
        raise TilingError(f"cannot tell which per-frame input of the tile model the per-frame part fills "
                          f"({[d['name'] for d in vectors]} vs the model's own {list(original)})")
    feeds = []
    for d in LiteRtSession(model, 1, "builtin").inputs:
        if len(d["shape"]) == 4:
            feeds.append(["image", 0])
            continue
        match = [k for k, v in enumerate(vectors) if k != fed[0] and simple(v["name"]).endswith(simple(d["name"]))]
        if len(match) != 1:
            raise TilingError(f"per-frame part input {d['name']}: no single tile-model input of that name")
        feeds.append(["vector", match[0]])
    name = f"{stem}_per_frame.tflite"
    with atomic_write(path.with_name(name)) as f:
        f.write(model)
    return {"model": name, "inputs": feeds, "output_vector": fed[0],
            "rule": "run once per frame on the whole (unpadded) frame and the per-frame inputs; its single "
                    "output is per-frame input output_vector of every segment model"}


def segment_plan_from_manifest(manifest: dict, folder: pathlib.Path):
    """``(SegmentPlan, per_frame)`` of a manifest with ``segments`` (model paths under ``folder``);
    ``per_frame``: ``(model path, feeds)`` of its ``per_frame`` model, or ``None``."""
    from isp_tf.tiling.segments import LocalPart, SegmentPlan, StatsPart, Store

    folder = pathlib.Path(folder)
    feeds = lambda items: [(str(kind), int(k)) for kind, k in items]  # noqa: E731
    segments = []
    for entry in manifest["segments"]:
        local = entry.get("local")
        local = None if local is None else LocalPart(str(folder / local["model"]), feeds(local["inputs"]),
                                                     [int(o) for o in local["outputs"]], int(local["halo"]))
        parts = [StatsPart(None if p.get("model") is None else str(folder / p["model"]), feeds(p["inputs"]),
                           [int(o) for o in p["outputs"]], int(p["min_side"])) for p in entry["stats"]]
        segments.append((local, parts))
    stores = [Store.from_dict(d) for d in manifest["stores"]]
    stats = [dict(st) for st in manifest["statistics"]]
    vectors = [d["index"] for d in manifest["inputs"] if d["role"] == "per_frame"]
    image = next(d["index"] for d in manifest["inputs"] if d["role"] == "image")
    per_frame = None
    if manifest.get("per_frame"):
        pf = manifest["per_frame"]
        per_frame = (str(folder / pf["model"]), feeds(pf["inputs"]), int(pf["output_vector"]))
    own = [("image", 0) if d["role"] == "image" else ("vector", vectors.index(d["index"]))
           for d in manifest["inputs"] if d["role"] != "statistic"]
    return SegmentPlan(segments, stores, stats, vectors, image, own), per_frame


def read_manifest(path) -> dict:
    """The manifest at ``path``, checked: format, version, fields, pass model files present.

    Each statistic gets ``given`` (= ``input``), the key
    :class:`~isp_tf.tiling.tflite_executor.TiledSession` reads.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: tile manifest not found (export with --tile N writes it)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TilingError(f"{path}: not a tile manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise TilingError(f"{path}: not a tile manifest (no \"format\": \"{MANIFEST_FORMAT}\")")
    if manifest.get("version") != MANIFEST_VERSION:
        raise TilingError(f"{path}: tile manifest version {manifest.get('version')!r}; this isp_tf reads "
                          f"version {MANIFEST_VERSION}")
    missing = [k for k in ("geometry", "core", "passes", "statistics", "inputs", "outputs") if k not in manifest]
    if missing:
        raise TilingError(f"{path}: tile manifest without {', '.join(missing)}")
    try:
        Geometry.from_dict(manifest["geometry"])
    except (KeyError, TypeError, ValueError) as exc:
        raise TilingError(f"{path}: bad geometry in the tile manifest ({exc})") from None
    names = [p["model"] for p in manifest["passes"]]
    for entry in manifest.get("segments", []):
        names += [part["model"] for part in [entry.get("local")] + entry["stats"] if part and part.get("model")]
    if manifest.get("per_frame"):
        names.append(manifest["per_frame"]["model"])
    for name in names:
        model = path.parent / name
        if not model.is_file():
            raise MissingFileError(f"{model}: model named by {path} not found")
    for st in manifest["statistics"]:
        st.setdefault("given", st["input"])
    return manifest
