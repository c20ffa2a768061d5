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

**Whole-image statistics -> statistics passes.**  MicroISP's attention pools
over the frame, PyNET's instance norm takes the frame's mean and variance;
per-tile statistics would change the picture.  Those layers derive from
:class:`isp_tf.layers.global_stats.GlobalStatsLayer` (its docstring has the
protocol).  Layers are grouped by depth in their dependency graph: MicroISP's
12 attentions form 4 groups, so a frame takes 4 statistics passes plus the
final pass, not 13 (PyNET's instance norms sit one after another: 48 groups,
49 passes -- exact but slow; run the whole frame when it fits).  In pass ``d``
every tile reports the sum of the group-``d`` maps over its core (the groups
before it already use their whole-frame values, so the values inside the core
are exact); the sums over all tiles (float64) divided by the position counts
are the whole-frame means, which every later tile then uses.

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
fit.  Tiling costs time: every tile runs ``passes`` times and recomputes its
halo, so whole-frame is preferred whenever it fits.

Exactness also assumes every op is translation-equivariant (no coordinate
channels) and that the model runs in inference mode.

Modules:

* :mod:`~isp_tf.tiling.planner` (no TensorFlow): ``Footprint``, ``Geometry``,
  ``Tile``, ``plan_tiles``, ``auto_core``, ``memory_budget``, ``TilingError``,
  ``pad_to_multiple``.
* :mod:`~isp_tf.tiling.analysis` (TensorFlow): ``analyze``, ``global_layers``.
* :mod:`~isp_tf.tiling.keras_executor` (TensorFlow): ``TiledRunner``, ``copy_weights``.
* :mod:`~isp_tf.tiling.tflite_executor` (numpy + LiteRT): ``expose_global_stats``,
  ``pass_models``, ``TiledSession``.
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
    **{name: "isp_tf.tiling.tflite_executor" for name in ("TiledSession", "expose_global_stats", "pass_models")},
    **{name: "isp_tf.tiling.manifest" for name in ("manifest_path", "read_manifest", "write_manifest")},
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'isp_tf.tiling' has no attribute {name!r}")
