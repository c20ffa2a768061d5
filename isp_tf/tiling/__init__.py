"""Exact tiled inference: bounded memory, output equal to whole-frame inference.

A full-resolution RAW frame (12 MP, 32 MP) does not fit through a network at
once without gigabytes of activations, so it runs tile by tile.  Two things
would make naive tiles differ from the whole frame, and each has a fix:

**Local receptive field -> a halo.**  Every tile is its *core* (the part of
the output it writes) plus a margin of ``halo`` input pixels on each side, cut
at the frame's edges.  :func:`~isp_tf.tiling.analysis.analyze` traces the
Keras model once and bounds its receptive field (see that module); the halo is
that radius rounded up to the model's total stride (and to ``size_multiple``),
so every tile starts on the down-sampling grid of the whole frame: strided
convs, pools and transposed convs then see exactly the pixels (and, at the
frame edges, the same zero padding) they see on the whole frame.

**Whole-image statistics -> segments.**  MicroISP's attention pools over
the frame, PyNET's and GenISP's instance norms take the frame's mean and
variance; per-tile statistics would change the picture.  Those layers derive
from :class:`isp_tf.layers.global_stats.GlobalStatsLayer` (its docstring has
the protocol).  The network is cut at them into *segments*
(:mod:`~isp_tf.tiling.segments` for a ``.tflite``,
:mod:`~isp_tf.tiling.keras_segments` for a Keras model; the same cut): a
tensor's level is 1 + the deepest statistic it depends on, segment ``L``
holds the layers of level ``L``.  Segments run in order, each over every tile
once: its *local* part reads the tensors earlier segments stored over the
tile's box -- the core plus **that segment's own halo** -- and writes the
cores of what later segments read into frame-sized stores; its *statistics*
part runs the statistics chains (the ``positionwise`` pooling convolutions)
over each tile's core and sums the maps (float64); sum / count is the
whole-frame mean every later segment is given.  Every op thus runs once per
tile (MicroISP: 5 segments, halos 3, 3, 5, 3, 2 px; 1.03-1.07x the
whole-frame MACs at 162-324 px cores, against 4.5x for the statistics passes
that recompute the network up to each statistic).  Stores are float32 (the
output equals the whole frame to summation order, ~1e-6), optionally float16
(half their memory; 5e-4 max abs on the authors' MicroISP weights); INT8
models keep their int8 tensors as they are (bit-exact).  Under a memory budget
(``TiledSession(store_budget=...)``; ``infer``: 40 % of the available memory)
the stores that do not fit are *recomputed* instead: each box that reads one
re-runs its segment's local model over the box plus that segment's halo
(recursively), the cheapest first by conv MACs per byte saved (GenISP: an
instance norm's ``x - mean`` costs nothing; its 64-channel convolutions do).
A model of any statistics depth runs this way (PyNET: 97 segments; its
manifest holds no pass models).  The older statistics
passes (one run of the pruned network per dependency depth) remain as
:class:`~isp_tf.tiling.tflite_executor.PassSession` and ``TiledRunner``'s
fallback for models the Keras cut does not handle (global layers inside
nested models).

**Alignment.**  Core boundaries are multiples of ``core_step``: the least
common multiple of the model's total stride, the spec's ``size_multiple`` and,
for every global layer, its ``alignment`` times the input pixels per pixel of
that layer (MicroISP's attention pools blocks of 81 x 81 packed pixels, so its
cores are multiples of 81; a PyNET norm at 1/16 resolution needs multiples of
16).  Statistics passes read boxes that start on multiples of ``align`` (the
statistics maps' strides), so a ``.tflite`` pooling chain samples the frame's
grid; the planner's rules are in :mod:`isp_tf.tiling.planner`.

**Frames that are not a multiple of** ``size_multiple`` are padded by
reflection up to the next multiple and the output is cropped back.  This
equals whole-frame inference *of the padded frame*, cropped.

**Memory** is bounded by the tile: its box's input pixels times the model's
peak activation bytes per pixel (estimated from the traced graph), plus the
frame's input and output arrays.  ``tile="auto"`` runs the whole frame when
that fits in 40 % of the available memory, else the largest core whose tiles
fit.  Tiling costs the halos (a few % of MACs) and one interpreter per segment
model; segments hold the stores of the frame, not the tile (MicroISP: 24
channels of the packed frame at a statistics boundary).

Exactness also assumes every op is translation-equivariant (no coordinate
channels) and that the model runs in inference mode.

Modules:

* :mod:`~isp_tf.tiling.planner` (no TensorFlow): ``Footprint``, ``Geometry``,
  ``Tile``, ``plan_tiles``, ``auto_core``, ``memory_budget``, ``TilingError``,
  ``pad_to_multiple``.
* :mod:`~isp_tf.tiling.analysis` (TensorFlow): ``analyze``, ``global_layers``.
* :mod:`~isp_tf.tiling.keras_executor` (TensorFlow): ``TiledRunner``, ``copy_weights``.
* :mod:`~isp_tf.tiling.segments` (numpy, no TensorFlow): ``segment_plan``, the cut of a ``.tflite``.
* :mod:`~isp_tf.tiling.keras_segments` (TensorFlow): ``keras_segments``, ``run_segments``.
* :mod:`~isp_tf.tiling.tflite_executor` (numpy + LiteRT): ``expose_global_stats``,
  ``pass_models``, ``TiledSession`` (segments), ``PassSession`` (statistics passes).
* :mod:`~isp_tf.tiling.manifest` (numpy + LiteRT): ``write_manifest``,
  ``read_manifest``: the files a phone needs for exact tiling.

Importing this package imports none of them; the names below load their
module on first use (so the LiteRT side never pulls in TensorFlow).
"""
import importlib

_LAZY = {
    **{name: "isp_tf.tiling.planner" for name in (
        "Footprint", "Geometry", "Tile", "TilingError", "auto_core", "memory_budget", "pad_to_multiple",
        "plan_tiles")},
    **{name: "isp_tf.tiling.analysis" for name in ("analyze", "global_layers")},
    **{name: "isp_tf.tiling.keras_executor" for name in ("TiledRunner", "copy_weights")},
    **{name: "isp_tf.tiling.tflite_executor" for name in ("PassSession", "TiledSession", "expose_global_stats",
                                                          "pass_models")},
    "segment_plan": "isp_tf.tiling.segments",
    "keras_segments": "isp_tf.tiling.keras_segments",
    **{name: "isp_tf.tiling.manifest" for name in ("manifest_path", "read_manifest", "write_manifest")},
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'isp_tf.tiling' has no attribute {name!r}")
