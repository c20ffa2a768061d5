"""The default engine of ``python -m isp_tf.infer``: the exported FP32 ``.tflite`` on LiteRT.

``--engine keras`` (:class:`~isp_tf.infer.pipeline.NetworkRenderer`) runs the
Keras model through TensorFlow; this engine runs the same model exported to
FP32 TFLite on LiteRT (XNNPACK), tiled by the tiling module's
:class:`~isp_tf.tiling.TiledSession`, and gives the same PNG (float outputs
within 1e-4 before quantisation to 8/16 bits; ``tests/infer``).

**Cache.**  The export runs once per weights file and export size and is kept
in ``$ISP_TF_CACHE/infer`` (default ``~/.cache/isp_tf/infer``; ``--cache DIR``):
one folder per key, the sha256 of (cache format, isp_tf version, tile-manifest
version, the weights file's sha256, the export side).  The weights file's header fixes the model
name and config, so its hash covers them.  A folder holds::

    entry.json          what the renderer needs (model, config, ports, geometry, files)
    model.tflite        the tiled model, FP32, traced at the export side and resized per tile
                        (a model with ``ModelSpec.split``, GenISP, ParamISP: its render part)
    per_frame.tflite    a split model's per-frame part (run once on the whole frame, reflect-padded
                        to the direction's size multiple on the host)
    tiled.tiling.json   the tile manifest and its pass models (isp_tf.tiling.manifest)

Each folder is built under a temporary name and renamed into place, so a
reader never sees half an entry (two processes exporting the same key: the
first rename wins, the other's copy is dropped).  A run whose entry exists
imports no TensorFlow: ``aliases/<hash of --model and --weights>.json``
names the weights file those arguments resolved to last time, which is
hashed again on every run (milliseconds), so a changed file gets a new entry.
The first run exports (TensorFlow, conversion: seconds) and says so.

**Per-frame vectors** come from the ports' ``from_raw`` functions, recorded
by name in ``entry.json`` (they import no TensorFlow).

**Sizes.**  The cached models are traced at one size and re-planned by
LiteRT for every frame and tile; a split model's per-frame part is fed the
frame reflect-padded to the direction's size multiple here (as the Keras
per-frame part pads it in its graph, ParamISP: a pad traced at the export's
multiple is none, and one of another size fails XNNPACK's reshape).  The
export probes once that the models run at another size (``entry.json``:
``resizable``); a graph that holds its traced size (a layer whose output
shape is folded into a constant) gets no tile manifest, and ``python -m
isp_tf.infer`` runs the Keras engine for it and says why.

**Tiles.**  ``tile=0`` runs the whole frame in one LiteRT session; an int is
the core side in model-input pixels; ``"auto"`` (default) tiles once the frame is larger than one tile, with the
core :func:`isp_tf.tiling.planner.cache_core` picks for the threads, the L2
cache and the free memory (bounded memory: XNNPACK keeps per-pixel buffers
for every 3x3 convolution, MicroISP's whole 12 MP frame needs over 4 GB).
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import pathlib
import shutil
import tempfile
from typing import List, Optional

import numpy as np

from isp_tf.errors import IspTfError, MissingFileError
from isp_tf.utils import file_sha256

__all__ = ["CACHE_FORMAT", "EXPORT_SIDE", "LiteRtRenderer", "cache_root", "entry_key",
           "export_entry", "load_renderer"]

CACHE_FORMAT = 3  # 2: 'resizable' probed; per-frame parts fed frames padded to the size multiple;
#                  3: 'bytes_per_pixel' for tile="auto" (planner.cache_core)
#: model-input side the cached model is traced at for ``tile="auto"`` / ``0`` (resized per tile)
EXPORT_SIDE = 256
ENTRY = "entry.json"


def cache_root(cache=None) -> pathlib.Path:
    """``cache`` or ``$ISP_TF_CACHE/infer`` or ``~/.cache/isp_tf/infer``."""
    if cache is not None:
        return pathlib.Path(cache)
    base = os.environ.get("ISP_TF_CACHE")
    return (pathlib.Path(base) if base else pathlib.Path.home() / ".cache" / "isp_tf") / "infer"


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def entry_key(weights_sha256: str, export_side: int, variant: Optional[str] = None) -> str:
    """The cache key of a weights file (by content) exported at ``export_side`` as ``variant``."""
    from isp_tf import __version__
    from isp_tf.tiling.manifest import MANIFEST_VERSION

    return _digest({"format": CACHE_FORMAT, "isp_tf": __version__, "manifest": MANIFEST_VERSION,
                    "weights": weights_sha256, "side": int(export_side), "variant": variant})[:32]


def _infer_graph(spec, model):
    """``model`` as ``spec.infer_variant`` (MicroISP: its branches merged into 12-channel convolutions,
    the same function, ~2x faster under XNNPACK); unchanged without one."""
    if spec.infer_variant is None:
        return model
    from isp_tf.layers.global_stats import tiling_mode

    with tiling_mode(False):
        return spec.variant(spec.infer_variant).transform(model)


def export_side_for(tile) -> int:
    """The traced side: :data:`EXPORT_SIDE`, or the box of a ``tile``-px core (rounded later)."""
    return EXPORT_SIDE if tile in (None, 0, "0", "auto") else int(tile)


def _alias_path(root: pathlib.Path, model, weights) -> pathlib.Path:
    weights = None if weights is None else str(pathlib.Path(weights).resolve())
    return root / "aliases" / (_digest({"model": model, "weights": weights})[:32] + ".json")


def _function_name(fn) -> str:
    name = f"{fn.__module__}:{fn.__qualname__}"
    if "<" in name:
        raise IspTfError(f"Port.from_raw {name} is not a module-level function; the LiteRT engine "
                         "records it by name")
    return name


def _function(name: str):
    module, _, qualname = name.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


# ----------------------------------------------------------------------------
# export (TensorFlow)
# ----------------------------------------------------------------------------
def _convert(model, side: int, scale: int, name: str, config: dict, out: pathlib.Path) -> bytes:
    """FP32 ``.tflite`` of ``model`` traced at a ``side`` x ``side`` image: the export's own
    conversion (NNAPI rewrites, fixed shape, converter, validation report); no parity run."""
    from isp_tf.export.convert import export_tflite

    result = export_tflite(name, str(out), precision="fp32", input_size=f"{scale * side}x{scale * side}",
                           keras_model=model, config=config, allow_cpu_fallback=True, parity=False,
                           progress=False, log=lambda *a, **k: None)
    return result.tflite


def _resizable(data: bytes, side: int, step: int) -> bool:
    """Whether LiteRT (XNNPACK) re-plans and runs ``data`` at an image side other than the
    ``side`` it was traced at (``side + step`` x ``side + 2 step``), with an image output of the
    right size (or a per-frame vector).

    A graph traced at a fixed size keeps that size wherever the converter folded a shape into a
    constant (e.g. a ``tf.ones_like`` image: "XNNPack delegate failed to reshape runtime", or a
    CONCATENATION size mismatch).  One run at a small frame, once per export."""
    from isp_tf.runtime.session import LiteRtSession

    try:
        session = LiteRtSession(data, threads=1)
        hw = (side + step, side + 2 * step)
        image = session.inputs[0]
        feeds = [np.zeros((1, *hw, int(image["shape"][-1])), np.float32)]
        feeds += [np.zeros([int(d) for d in detail["shape"]], np.float32) for detail in session.inputs[1:]]
        out = session.run(*feeds)[0]
    except (RuntimeError, ValueError, IspTfError):
        return False
    if out.ndim != 4:  # a per-frame part: one vector per frame
        return True
    scale = out.shape[1] // hw[0]
    return scale >= 1 and tuple(out.shape[1:3]) == (scale * hw[0], scale * hw[1])


def export_entry(renderer, root: pathlib.Path, side: int, weights_sha256: str) -> pathlib.Path:
    """Export ``renderer`` (a Keras :class:`~isp_tf.infer.pipeline.NetworkRenderer`) into the
    cache folder of its key and return that folder (already there: returned as it is)."""
    from isp_tf.tiling import TilingError
    from isp_tf.tiling.manifest import write_manifest
    from isp_tf.tiling.planner import round_core

    footprint = renderer.runner.footprint
    step = footprint.core_step
    trace = max(round_core(side, step) + 2 * footprint.halo, footprint.min_side)
    trace = -(-trace // renderer.spec.size_multiple) * renderer.spec.size_multiple
    variant = renderer.spec.infer_variant
    key = entry_key(weights_sha256, side, variant)
    final = root / key
    if (final / ENTRY).is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=root))
    try:
        forward = renderer.spec.forward
        scale, name, config = forward.output_scale, renderer.name, renderer.config
        data = _convert(_infer_graph(renderer.spec, renderer.runner.model), trace, scale, name, config,
                        tmp / "model.tflite")
        probe = max(step, renderer.spec.size_multiple)
        resizable = _resizable(data, trace, probe)
        if renderer.per_frame is not None:
            per_frame = _convert(renderer.per_frame, trace, scale, name, config, tmp / "per_frame.tflite")
            resizable = resizable and _resizable(per_frame, trace, probe)  # fed frames padded to the multiple
        manifest, why_not = None, None
        if not resizable:
            why_not = ("the traced graph holds its trace size (a layer reads its input's shape), LiteRT "
                       "cannot re-plan it for other frame or tile sizes")
        else:
            try:
                write_manifest(data, footprint.geometry, tmp / "tiled.tiling.json", core=step, max_passes=16,
                               source={"model": renderer.name, "precision": "fp32", "config": renderer.config})
                manifest = "tiled.tiling.json"
            except (TilingError, RuntimeError, ValueError) as exc:
                why_not = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        entry = {
            "format": CACHE_FORMAT, "key": key, "model": renderer.name, "config": renderer.config,
            "weights": str(renderer.weights), "weights_sha256": weights_sha256, "export_side": side,
            "variant": variant,
            "trace_side": trace, "image_input": forward.image_input.kind, "output_scale": forward.output_scale,
            "size_multiple": forward.size_multiple, "min_side": footprint.min_side,
            "geometry": footprint.geometry.to_dict(), "passes": footprint.passes,
            "bytes_per_pixel": footprint.bytes_per_pixel,
            "vectors": [{"name": p.name, "channels": p.channels, "from_raw": _function_name(p.from_raw)}
                        for p in renderer.vector_ports],
            "model_file": "model.tflite", "resizable": resizable,
            "per_frame": "per_frame.tflite" if renderer.per_frame is not None else None,
            "manifest": manifest, "manifest_error": why_not,
        }
        (tmp / ENTRY).write_text(json.dumps(entry, indent=1) + "\n")
        os.chmod(tmp, 0o755)
        try:
            os.replace(tmp, final)
        except OSError:  # another process published the same key first
            if not (final / ENTRY).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


# ----------------------------------------------------------------------------
# running (no TensorFlow)
# ----------------------------------------------------------------------------
class LiteRtRenderer:
    """A cached export run on LiteRT (same interface as the Keras renderers).

    ``renderer(raw, tile, progress) -> (H, W, 3)`` float32 sRGB in [0, 1], the
    ``rggb_crop`` window at the model's output scale.  ``threads``: LiteRT threads
    (default: every CPU).
    """

    engine = "litert"

    def __init__(self, folder, threads: Optional[int] = None):
        from isp_tf.infer.pipeline import MODEL_INPUTS

        self.folder = pathlib.Path(folder)
        entry = json.loads((self.folder / ENTRY).read_text())
        self.entry = entry
        self.name, self.config, self.weights = entry["model"], entry["config"], pathlib.Path(entry["weights"])
        self.output_scale = int(entry["output_scale"])
        self.min_side = int(entry["min_side"])
        self.size_multiple = int(entry["size_multiple"])
        self.threads = int(threads or os.cpu_count() or 1)
        self._input = MODEL_INPUTS[entry["image_input"]]
        self._vectors = [(v["name"], int(v["channels"]), _function(v["from_raw"])) for v in entry["vectors"]]
        self._whole = None
        self._per_frame = None
        self._tiled = {}
        from isp_tf.tiling.planner import Geometry

        self.geometry = Geometry.from_dict(entry["geometry"])

    # -- sessions (opened on first use, kept for the next frame) ----------------
    def _session(self, name):
        from isp_tf.runtime.session import LiteRtSession

        return LiteRtSession(str(self.folder / name), self.threads, "xnnpack")

    def tiled_session(self, core: int):
        from isp_tf.tiling import TiledSession

        if self.entry.get("manifest") is None:
            raise IspTfError(f"{self.name}: no tile manifest in the cache ({self.entry.get('manifest_error')}); "
                             "run it whole (--tile 0) or with --engine keras")
        if core not in self._tiled:
            from isp_tf.tiling.planner import memory_budget

            # stores over 40 % of the available memory are recomputed instead (exact, slower): no OOM
            self._tiled = {core: TiledSession.from_manifest(self.folder / self.entry["manifest"],
                                                            threads=self.threads, core=core,
                                                            store_budget=memory_budget())}
        return self._tiled[core]

    # -- the renderer interface ------------------------------------------------
    def core_for(self, tile, hw) -> Optional[int]:
        """The core side of ``tile`` for a frame of ``hw`` model-input px (``None``: whole frame)."""
        from isp_tf.tiling.planner import Footprint, cache_core, padded_size, round_core

        if tile in (None, 0, "0"):
            return None
        if tile == "auto":
            footprint = Footprint.of_geometry(self.geometry, self.entry["bytes_per_pixel"])
            if self.entry.get("manifest"):  # the segment executor's boxes: core + 2 of its largest segment halo
                import dataclasses

                from isp_tf.tiling.manifest import read_manifest, segment_halo

                manifest = read_manifest(self.folder / self.entry["manifest"])
                footprint = dataclasses.replace(footprint, halo=segment_halo(manifest, footprint.halo))
            core = cache_core(footprint, self.threads, frame_hw=padded_size(*hw, self.geometry.size_multiple))
        else:
            core = round_core(int(tile), self.geometry.core_step)
        if tile == "auto" and max(hw) <= core + 2 * self.geometry.halo:
            return None  # one tile anyway: the whole frame is cheaper
        return core

    def steps(self, raw, tile=None) -> int:
        return 1

    def vectors(self, raw, x) -> List[np.ndarray]:
        from isp_tf.infer.pipeline import frame_vectors
        from isp_tf.tiling.planner import pad_to_multiple

        vectors = frame_vectors([_VectorPort(*v) for v in self._vectors], raw)
        if self.entry.get("per_frame"):
            if self._per_frame is None:
                self._per_frame = self._session(self.entry["per_frame"])
            # padded here, not in the graph: the per-frame part's own ReflectPadToMultiple (ParamISP) was
            # traced at a multiple (no pad), and a pad fixed at the trace size fails XNNPACK's reshape
            framed = pad_to_multiple(x, self.size_multiple)
            vectors.append(self._per_frame.run(framed[np.newaxis], *[v[np.newaxis] for v in vectors])[0][0])
        return vectors

    def model_input(self, raw) -> np.ndarray:
        from isp_tf.errors import InputShapeError
        from isp_tf.infer.pipeline import RAW_PX_PER_INPUT_PX

        x = self._input(raw)
        if min(x.shape[:2]) < self.min_side:
            per = RAW_PX_PER_INPUT_PX[self.entry["image_input"]]
            raise InputShapeError(f"{raw.path or 'input'}: {raw.height}x{raw.width} px is smaller than one "
                                  f"tile of {self.name} ({per * self.min_side}x{per * self.min_side} RAW px)")
        return x

    def render(self, x: np.ndarray, vectors, tile="auto") -> np.ndarray:
        """The model's image output for input ``x`` (h, w, C) and the per-frame vectors."""
        from isp_tf.tiling.planner import pad_to_multiple

        core = self.core_for(tile, x.shape[:2])
        if core is None:
            if self._whole is None:
                self._whole = self._session(self.entry["model_file"])
            h, w = x.shape[:2]
            padded = pad_to_multiple(x, self.size_multiple)
            s = self.output_scale
            return self._whole.run(padded[np.newaxis], *[v[np.newaxis] for v in vectors])[0][0, :h * s, :w * s]
        return self.tiled_session(core).run(x, *vectors)[0]

    def __call__(self, raw, tile="auto", progress=None) -> np.ndarray:
        x = self.model_input(raw)
        out = self.render(x, self.vectors(raw, x), tile)
        if progress:
            progress(1)
        return np.clip(out, 0.0, 1.0)


class _VectorPort:
    """What :func:`isp_tf.infer.pipeline.frame_vectors` reads of a port (name, channels, from_raw)."""

    kind = "vector"

    def __init__(self, name, channels, from_raw):
        self.name, self.channels, self.from_raw = name, channels, from_raw


def load_renderer(model: Optional[str] = None, weights=None, *, tile="auto", cache=None,
                  threads: Optional[int] = None, log=None, before_tensorflow=None) -> LiteRtRenderer:
    """The LiteRT renderer of ``--model`` / ``--weights``, exporting into the cache on first use.

    Without TensorFlow when the cache has the entry (see the module docstring);
    otherwise the Keras renderer is built (its errors: unknown model, missing or
    mismatched weights) and exported.  ``log(message)`` is told about an export;
    ``before_tensorflow()`` runs before TensorFlow is first needed.
    """
    root = cache_root(cache)
    side = export_side_for(tile)
    alias = _alias_path(root, model, weights)
    try:
        known = json.loads(alias.read_text())
        path = pathlib.Path(known["weights"])
        folder = root / entry_key(file_sha256(path), side, known["variant"])
        entry = json.loads((folder / ENTRY).read_text())
        if model is None or entry["model"] == model:
            return LiteRtRenderer(folder, threads)
    except (OSError, ValueError, KeyError):
        pass  # not cached (or stale): export
    from isp_tf.infer.pipeline import NetworkRenderer
    from isp_tf.utils import atomic_write

    if before_tensorflow:
        before_tensorflow()
    keras_renderer = NetworkRenderer(model, weights)
    if log:
        log(f"first run of {keras_renderer.weights.name} on LiteRT: exporting {keras_renderer.name} to FP32 "
            f"TFLite once, into {root} (later runs start from there)")
    folder = export_entry(keras_renderer, root, side, file_sha256(keras_renderer.weights))
    alias.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(alias, "w") as f:
        json.dump({"model": model, "weights": str(keras_renderer.weights.resolve()),
                   "variant": keras_renderer.spec.infer_variant}, f)
    if not (folder / ENTRY).is_file():
        raise MissingFileError(f"{folder}: the export did not produce {ENTRY}")
    return LiteRtRenderer(folder, threads)
