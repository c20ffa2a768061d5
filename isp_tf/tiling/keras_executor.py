"""Exact tiled execution of Keras models: :class:`TiledRunner` (needs TensorFlow).

See :mod:`isp_tf.tiling` for the method.  The runner analyses the model
(:func:`isp_tf.tiling.analysis.analyze`), plans the tiles with the one planner
(:func:`isp_tf.tiling.planner.plan_tiles`) and, when a frame needs more than
one tile, runs it segment by segment (:mod:`isp_tf.tiling.keras_segments`:
the model cut at its global layers, every layer once per tile, each segment
with its own halo; the cut :mod:`isp_tf.tiling.segments` makes in the
``.tflite``).  For a model it cannot cut (global layers inside nested
models) or with ``use_segments = False`` it runs the model's tiling variant (built inside ``tiling_mode()`` by
``rebuild`` or ``keras.models.clone_model``, weights copied): one statistics
pass per dependency depth over every tile's statistics box, summing each
group's ``positionwise`` over the tile's core (float64), then a final pass
over every tile's box with every whole-frame mean given.

Extra per-frame inputs (e.g. a camera-parameter vector) are passed unchanged
to every tile of every pass; models with several image outputs get every
output stitched at its own scale.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Union

import numpy as np

from isp_tf._keras import keras, tf
from isp_tf.errors import InputShapeError
from isp_tf.layers.global_stats import tiling_mode
from isp_tf.tiling.analysis import analyze, call_model, global_layers, image_input_index, input_specs
from isp_tf.tiling.planner import (Tile, TilingError, auto_core, memory_budget, pad_to_multiple, padded_size,
                                   plan_tiles)

__all__ = ["TiledRunner", "copy_weights"]


def copy_weights(source, target) -> None:
    """Copy ``source``'s weights into its tiling variant ``target`` (same
    architecture; ``target``'s extra tiling variables are skipped)."""
    extra = {id(v) for g in global_layers(target) for v in g.tiling_variables()}
    dst = [w for w in target.weights if id(w) not in extra]
    src = list(source.weights)
    if len(src) != len(dst) or any(a.shape != b.shape for a, b in zip(src, dst)):
        raise TilingError("the tiling variant does not have the model's weights "
                          f"({len(src)} vs {len(dst)} tensors): was it built with the same config?")
    for a, b in zip(src, dst):
        b.assign(a)


def _as_list(out) -> list:
    return list(out) if isinstance(out, (list, tuple)) else [out]


class TiledRunner:
    """Run a Keras image model on a frame, whole or tile by tile, with the same result.

    Args:
      model: a functional tf_keras model, image input (1, h, w, C) -> image
        output(s) (1, s*h, s*w, C'), optionally with per-frame inputs of fixed
        shape (e.g. (1, K) camera parameters) beside the image.
      size_multiple: frame sides must be multiples of this (``ModelSpec.size_multiple``);
        other frames are reflect-padded and the output cropped.
      rebuild: ``() -> model`` building the same architecture; called inside
        ``tiling_mode()`` to get the tiling variant.  Default
        ``keras.models.clone_model(model)``.

    Call ``runner(frame, tile=..., vectors=(...))`` with ``frame`` (h, w, C)
    float32 and one array per per-frame input, in the model's input order
    (with or without the batch axis); ``tile``: ``None`` or ``0`` for the whole
    frame, an int core side in input pixels, or ``"auto"``.  The result is
    (s*h, s*w, C') float32, or a list of those for a model with several outputs.
    """

    def __init__(self, model, size_multiple: int = 1, rebuild: Optional[Callable] = None):
        self.model = model
        self.size_multiple = int(size_multiple)
        self.image_index = image_input_index(model)
        self.channels = int(model.inputs[self.image_index].shape[-1])
        self.footprint = analyze(model, self.size_multiple)
        self._specs = input_specs(model)
        self._rebuild = rebuild
        self._variant = None  # built on the first call that needs more than one tile
        self._tile = None
        self._segments = False  # not built yet
        self.use_segments = True
        self._whole = tf.function(lambda xs: call_model(model, xs, training=False), autograph=False,
                                  input_signature=[self._specs])

    @property
    def variant(self):
        """The tiling variant (built, with the model's weights, on first use)."""
        if self._variant is None:
            if global_layers(self.model):
                with tiling_mode():
                    build = self._rebuild or (lambda: keras.models.clone_model(self.model))
                    variant = build()
                copy_weights(self.model, variant)
            else:
                variant = self.model
            self._layers = global_layers(variant)
            if [g.name for g in self._layers] != [g.name for g in global_layers(self.model)]:
                raise TilingError("the tiling variant's global layers differ from the model's")
            self._variant = variant
        return self._variant

    def _tile_fn(self):
        """``fn(inputs, core_box, tile_hw) -> (outputs, terms, counts)`` as one graph.

        Setting the tile's boxes and reading every layer's statistics inside
        the graph saves dozens of eager variable ops per tile.  Statistics
        passes run this same graph (and discard the outputs): one trace instead
        of one per group, at the price of computing the layers past the group.
        """
        variant = self.variant
        layers = self._layers
        spec = [self._specs, tf.TensorSpec([4], tf.int32), tf.TensorSpec([2], tf.int32)]

        def run(xs, core_box, tile_hw):
            for g in layers:
                g.core_box.assign(core_box)
                g.input_hw.assign(tile_hw)
            out = _as_list(call_model(variant, xs, training=False))
            return out, [g.terms.read_value() for g in layers], [g.count.read_value() for g in layers]

        return tf.function(run, input_signature=spec, autograph=False)

    # -- public helpers ------------------------------------------------------
    @property
    def min_side(self) -> int:
        """The smallest frame side (input px) the model takes (:attr:`Footprint.min_side`)."""
        return self.footprint.min_side

    def core_for(self, tile: Union[None, int, str]) -> Optional[int]:
        """The core side ``tile`` asks for (``None``: whole frame)."""
        if tile in (None, 0, "0"):
            return None
        if tile == "auto":
            return auto_core(self.footprint, memory_budget())
        tile = int(tile)
        if tile < 0:
            raise InputShapeError(f"tile size must be positive, got {tile}")
        return tile

    def plan(self, height: int, width: int, tile: Union[None, int, str]) -> List[Tile]:
        """The tiles ``__call__`` will run for an (unpadded) ``height`` x ``width`` frame."""
        self._check(height, width)
        h, w = padded_size(height, width, self.size_multiple)
        whole = [Tile((0, 0, h, w), (0, 0, h, w))]
        if tile == "auto":
            budget = memory_budget()
            if h * w * self.footprint.bytes_per_pixel <= budget:
                return whole  # fits: tiling would only cost time
            core = auto_core(self.footprint, budget, (h, w))
        else:
            core = self.core_for(tile)
        if core is None:
            return whole
        tiles = plan_tiles(h, w, core, self.footprint)
        return tiles if len(tiles) > 1 else whole

    def steps(self, height: int, width: int, tile) -> int:
        """Model runs ``__call__`` will make (for progress bars)."""
        n = len(self.plan(height, width, tile))
        if n == 1:
            return 1
        if self.use_segments and self.segments is not None:
            return n * len(self.segments.segments)
        return n * self.footprint.passes

    def _check(self, height, width):
        if min(height, width) < self.min_side:
            raise InputShapeError(
                f"input of {height}x{width} px is smaller than one tile of this model "
                f"({self.min_side}x{self.min_side} input px: the least its strides and "
                "whole-image statistics allow)")

    def _vectors(self, vectors: Sequence) -> List[np.ndarray]:
        """The per-frame inputs as batch-1 arrays of their spec's shape and dtype."""
        specs = [s for i, s in enumerate(self._specs) if i != self.image_index]
        vectors = list(vectors or ())
        if len(vectors) != len(specs):
            raise InputShapeError(f"this model takes {len(specs)} per-frame input(s) beside the image, "
                                  f"got {len(vectors)}")
        out = []
        for k, (v, spec) in enumerate(zip(vectors, specs)):
            v = np.asarray(v, dtype=spec.dtype.as_numpy_dtype)
            want = tuple(spec.shape.as_list())
            if v.shape == want[1:]:
                v = v[np.newaxis]
            if v.shape != want:
                raise InputShapeError(f"per-frame input {k}: expected shape {want[1:]} (or {want}), "
                                      f"got {v.shape}")
            out.append(v)
        return out

    def _inputs(self, image, vectors):
        xs = list(vectors)
        xs.insert(self.image_index, image)
        return xs

    # -- running -------------------------------------------------------------
    def __call__(self, frame: np.ndarray, tile: Union[None, int, str] = None,
                 progress: Optional[Callable[[int], None]] = None, *, vectors: Sequence = ()):
        frame = np.asarray(frame, dtype=np.float32)
        if frame.ndim != 3 or frame.shape[-1] != self.channels:
            raise InputShapeError(f"expected an (h, w, {self.channels}) frame, got shape {frame.shape}")
        vectors = self._vectors(vectors)
        height, width = frame.shape[:2]
        tiles = self.plan(height, width, tile)
        padded = pad_to_multiple(frame, self.size_multiple)
        if len(tiles) == 1:
            outs = [o.numpy()[0] for o in _as_list(self._whole(self._inputs(padded[np.newaxis], vectors)))]
            if progress:
                progress(1)
        else:
            outs = self._tiled(padded, vectors, tiles, progress)
        outs = [o[: height * s, : width * s] for o, s in zip(outs, self.footprint.output_scales)]
        return outs[0] if len(outs) == 1 else outs

    def _run_tile(self, frame, vectors, tile: Tile, box):
        if self._tile is None:
            self._tile = self._tile_fn()
        y0, x0, y1, x1 = box
        return self._tile(self._inputs(frame[np.newaxis, y0:y1, x0:x1], vectors),
                          np.asarray(tile.core_in(box), np.int32), np.asarray([y1 - y0, x1 - x0], np.int32))

    @property
    def segments(self):
        """The segment plan (:mod:`isp_tf.tiling.keras_segments`: every layer once per tile), or
        ``None`` for a model it cannot cut (the statistics passes run then); built on first use."""
        if self._segments is False:
            from isp_tf.tiling.analysis import _trace_size
            from isp_tf.tiling.keras_segments import keras_segments
            from isp_tf.tiling.planner import lcm

            self._segments = keras_segments(self.model, self.image_index, _trace_size(self.model, self.size_multiple),
                                            lcm(self.footprint.stride, self.size_multiple))
        return self._segments

    def _tiled(self, frame, vectors, tiles, progress):
        if self.use_segments and self.segments is not None:
            from isp_tf.tiling.keras_segments import run_segments

            return run_segments(self.segments, frame, vectors, tiles, progress)
        return self._passes(frame, vectors, tiles, progress)

    def _passes(self, frame, vectors, tiles, progress):
        variant_layers = {g.name: v for g, v in zip(global_layers(self.model), global_layers(self.variant))}
        for g in self._layers:
            g.use_given.assign(0.0)
        index = {id(g): i for i, g in enumerate(self._layers)}
        for model_group in self.footprint.groups:
            group = [variant_layers[g.name] for g in model_group]
            sums = [np.zeros(g.terms.shape, np.float64) for g in group]
            counts = [0.0] * len(group)
            for tile in tiles:
                _, terms, tile_counts = self._run_tile(frame, vectors, tile, tile.stats_box)
                for i, g in enumerate(group):
                    sums[i] += terms[index[id(g)]].numpy()
                    counts[i] += float(tile_counts[index[id(g)]].numpy())
                if progress:
                    progress(1)
            for g, total, count in zip(group, sums, counts):
                if count <= 0:
                    raise InputShapeError(f"{g.name}: the frame is smaller than one pooling window")
                g.given.assign((total / count).astype(g.given.dtype.as_numpy_dtype))
                g.use_given.assign(1.0)
        scales = self.footprint.output_scales
        outs = None
        for tile in tiles:
            results = [r.numpy()[0] for r in self._run_tile(frame, vectors, tile, tile.box)[0]]
            if outs is None:
                outs = [np.empty((frame.shape[0] * s, frame.shape[1] * s, r.shape[-1]), np.float32)
                        for r, s in zip(results, scales)]
            ty0, tx0, ty1, tx1 = tile.core_in_tile
            cy0, cx0, cy1, cx1 = tile.core
            for out, result, s in zip(outs, results, scales):
                out[cy0 * s:cy1 * s, cx0 * s:cx1 * s] = result[ty0 * s:ty1 * s, tx0 * s:tx1 * s]
            if progress:
                progress(1)
        return outs
