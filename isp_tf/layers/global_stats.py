"""Layers whose output depends on statistics of the *whole* image.

MicroISP's attention (global average pool) and PyNET's instance norm look at
every pixel of the frame.  Run naively on tiles they would see only the tile
and change the picture.  Every such layer derives from
:class:`GlobalStatsLayer`, which splits the layer in two:

* ``positionwise(x) -> (B, h, w, K)``: per-position values whose spatial *mean*
  over the whole frame is the only whole-image quantity the layer needs
  (instance norm: ``[x, x*x]``; pooled attention: the strided conv chain).
  It must commute with cropping at multiples of ``alignment`` input pixels:
  each output position sees one ``alignment`` x ``alignment`` block (VALID
  convolutions whose strides multiply to ``alignment``; ``alignment = 1``
  means it keeps the grid).  Its dtype is the dtype of the sums (InstanceNorm
  uses float64 for its one-pass variance).
* ``apply(x, pooled)``: the layer's output given ``pooled`` (B, K).  It must be
  position-wise (or at least local: its own convolutions are seen by the
  tiler's receptive-field analysis like any other op).
* ``min_side`` (optional class attribute): the smallest input side for which
  ``positionwise`` yields a position (MicroISP's attention: 79 of its 81); found
  by tracing when left ``None``.  A crop smaller than that contributes nothing,
  as the frame's trailing partial block does on the whole frame.

Normal models (``tiling`` off, the default) compute ``pooled`` as the spatial
mean and export to plain TFLite ops; a subclass may override ``call`` for that
case (InstanceNorm uses two passes there) as long as its whole-image
statistics stay spatial reductions inside the layer's name scope: the tiler
finds the layers' dependencies from those reductions in the traced graph.

Built inside :func:`tiling_mode`, each layer gets a few non-trainable variables
(:attr:`GlobalStatsLayer.TILING_VARIABLES`) so a tiler
(:mod:`isp_tf.tiling`) can, one image at a time (batch 1),

1. set ``core_box`` / ``input_hw`` (tile's own region and size, in model-input
   pixels, relative to the tile) and read back ``terms`` (sum of
   ``positionwise`` over the core) and ``count`` after each tile: summing over
   tiles gives the whole-frame mean;
2. set ``given`` and ``use_given = 1`` so every tile uses the whole-frame value
   (with ``use_given = 0`` the layer uses its own tile's mean: on a whole frame
   that is the normal layer).

Layers are fixed in dependency order, one statistics pass per depth, then a
final pass writes the output; the result equals whole-frame inference.

Rules for subclasses: create sub-layers in ``__init__`` (or before calling
``super().build``), keep ``get_config`` complete (the tiler may rebuild the
model with ``keras.models.clone_model``), and never read the tiling variables
yourself.
"""
from __future__ import annotations

import contextlib

from isp_tf._keras import keras, tf

_state = {"tiling": False}
_MIN_SIDE_CACHE = {}


@contextlib.contextmanager
def tiling_mode(enabled: bool = True):
    """Build models inside this context to get their tileable variant."""
    previous = _state["tiling"]
    _state["tiling"] = enabled
    try:
        yield
    finally:
        _state["tiling"] = previous


def _crop(x, box):
    """``x[:, y0:y1, x0:x1, :]`` for ``box = (y0, x0, y1, x1)``, in few graph ops."""
    begin = tf.concat([[0], box[:2], [0]], axis=0)
    size = tf.concat([[-1], tf.maximum(box[2:] - box[:2], 0), [-1]], axis=0)
    return tf.slice(x, begin, size)


def _sum_and_count(values):
    """Sum over the positions of (B=1, h, w, K) ``values`` and their number ``h * w``."""
    count = tf.cast(tf.reduce_prod(tf.shape(values)[1:3]), tf.float32)
    return tf.reduce_sum(values, axis=[0, 1, 2]), count


class GlobalStatsLayer(keras.layers.Layer):
    """Base class; see the module docstring.  Subclasses set ``alignment``."""

    alignment = 1  # core boxes must start and end on multiples of this (layer-input pixels)

    #: smallest crop side (layer-input px) for which ``positionwise`` yields a
    #: position; ``None``: found at build time by tracing (tiling variant only)
    min_side = None

    #: the extra non-trainable variables of the tiling variant (absent otherwise)
    TILING_VARIABLES = ("core_box", "input_hw", "given", "use_given", "terms", "count")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.tiling = _state["tiling"]

    # -- to implement ----------------------------------------------------
    def positionwise(self, x):
        raise NotImplementedError

    def apply(self, x, pooled):
        raise NotImplementedError

    # -- machinery ---------------------------------------------------------
    def tiling_variables(self):
        """The tiling variant's extra variables (empty list for a normal layer)."""
        if not self.tiling:
            return []
        return [getattr(self, name) for name in self.TILING_VARIABLES]

    def build(self, input_shape):
        super().build(input_shape)
        if not self.tiling:
            return
        channels = int(input_shape[-1])
        probe = tf.zeros([1] + [self.alignment * 2] * 2 + [channels])
        values = self.positionwise(probe)
        k, dtype = int(values.shape[-1]), values.dtype  # sums in positionwise's precision
        if self.min_side is None:
            self.min_side = self.find_min_side(channels)
        make = lambda name, shape, dtype="float32": self.add_weight(  # noqa: E731
            name=name, shape=shape, dtype=dtype, initializer="zeros", trainable=False)
        self.core_box = make("core_box", [4], "int32")  # y0, x0, y1, x1 in model-input pixels
        self.input_hw = make("input_hw", [2], "int32")  # tile size in model-input pixels
        self.given = make("given", [k], dtype)
        self.use_given = make("use_given", [])
        self.terms = make("terms", [k], dtype)
        self.count = make("count", [])

    def find_min_side(self, channels: int) -> int:
        """Smallest input side giving a nonempty ``positionwise`` (static shapes,
        traced only: eager convolutions on too-small inputs do not fail)."""
        if self.alignment <= 1:
            return 1
        config = {k: v for k, v in self.get_config().items() if k != "name"}
        key = (type(self), self.alignment, channels, repr(sorted(config.items())))
        if key not in _MIN_SIDE_CACHE:
            def yields(side):
                spec = tf.TensorSpec([1, side, side, channels], tf.float32)
                try:
                    fn = tf.function(self.positionwise, autograph=False)
                    out = fn.get_concrete_function(spec).structured_outputs
                except (ValueError, tf.errors.InvalidArgumentError):
                    return False
                return min(out.shape[1], out.shape[2]) >= 1

            low, high = 1, self.alignment  # yields(alignment) holds by the protocol
            while low < high:
                mid = (low + high) // 2
                low, high = (low, mid) if yields(mid) else (mid + 1, high)
            _MIN_SIDE_CACHE[key] = low
        return _MIN_SIDE_CACHE[key]

    def _sum_and_count(self, x):
        """Sum of ``positionwise(x)`` over all positions (batch of one) and their number."""
        if self.min_side <= 1:
            return _sum_and_count(self.positionwise(x))
        # An input smaller than one pooling window yields no position on the whole
        # frame either (only the frame's last core can be that small), but
        # convolutions on inputs smaller than their kernel return garbage.
        size = tf.shape(x)
        return tf.cond(tf.minimum(size[1], size[2]) >= self.min_side,
                       lambda: _sum_and_count(self.positionwise(x)),
                       lambda: (tf.zeros_like(self.terms), tf.zeros_like(self.count)))

    def call(self, x):
        if not self.tiling:
            return self.apply(x, tf.reduce_mean(self.positionwise(x), axis=[1, 2]))
        # The tiling variant runs one image at a time.  (Vectorised index
        # arithmetic: PyNET has ~100 of these layers and scalar indexing would
        # triple the size of its traced graph.)
        # the layer may run at a lower resolution than the model input; the tiler
        # aligns core boxes so that these products are integers
        # (unset boxes, before a tiler has set them, give an empty core)
        size = tf.tile(tf.shape(x)[1:3], [2])
        tile_size = tf.cast(tf.tile(self.input_hw, [2]), tf.float32)
        ratio = tf.math.divide_no_nan(tf.cast(size, tf.float32), tile_size)
        box = tf.cast(tf.round(tf.cast(self.core_box, tf.float32) * ratio), tf.int32)
        box = tf.clip_by_value(box, 0, size)
        if self.alignment == 1:  # positionwise keeps the grid: compute it once
            values = self.positionwise(x)
            terms, count = _sum_and_count(_crop(values, box))
            local_terms, local_count = _sum_and_count(values)
        else:
            terms, count = self._sum_and_count(_crop(x, box))
            local_terms, local_count = self._sum_and_count(x)
        self.terms.assign(terms)
        self.count.assign(count)
        local = local_terms / tf.cast(tf.maximum(local_count, 1.0), local_terms.dtype)
        # select, not ``u * given + (1 - u) * local``: 0 * NaN would be NaN
        pooled = tf.where(self.use_given > 0.5, self.given, local)[tf.newaxis]
        return self.apply(x, pooled)
