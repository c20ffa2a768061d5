"""PyNET (Ignatov et al., "Replacing Mobile Camera ISP with a Single Deep
Learning Model", CVPRW 2020), in Keras 2.

An inverted pyramid: an encoder halves the packed Bayer input four times, then
levels 5 (coarsest) to 1 each refine the upsampled features of the level
below with the encoder features of their own scale, and level 0 upsamples to
the full RGB resolution.  Every level has its own output head, and the model
is trained level by level, 5 -> 0, each level starting from the weights of the
previous one (:func:`isp_tf.models.pynet.stages.transfer_level_weights`)::

    packed (h, w, 4) -> L1 enc -> pool -> L2 enc -> pool -> L3 enc -> pool -> L4 enc -> pool
      L5 (h/16):  MB3(512), 2 x residual MB3(512), MB3(512)               -> out_5 (h/16, w/16)
      L4 (h/8):   [enc4, up(L5)] MB3(256), 2 x res MB3, MB3, [up(L5)] MB3   -> out_4
      L3 (h/4):   [enc3, up(L4)] 3 x res MB5(128), MB5, [enc3, up(L4)] MB3 -> out_3
      L2 (h/2):   [enc2, up(L3)] MB5(64), [enc2] 3 x res MB7, MB7, [enc2] MB5, [up(L3)] MB3 -> out_2
      L1 (h):     [enc1, up(L2)] MB5(32), [enc1] MB7, MB9, 3 x res MB9, MB7, [enc1] MB5,
                  [up(L2), enc1] MB3                                        -> out_1 (h, w)
      L0 (2h):    TransposedConv3x3/2 32->8, Conv3x3 -> 3                   -> out_0 (2h, 2w)

``MB{k}(n)``: parallel branches ``[Conv s x s, Conv s x s]`` for s in 3, 5, 7, 9
up to k, concatenated (``n`` channels per branch); each conv has a bias, an
optional instance norm and LeakyReLU(0.2).  ``up``: transposed conv 3x3,
stride 2, no bias, LeakyReLU.  Heads: Conv3x3 -> 3, ``tanh * 0.58 + 0.5``.
Instance norm at levels 2-5 (not in the level-1 encoder and blocks).  47,548,170
parameters at full width with all six heads (``all_outputs=True``, the authors'
graph); the level-0 model alone has 47,521,371.

Config ``level`` (0..5) picks the output: level k returns RGB at ``2 / 2^k``
times the packed input size (level 1: the packed size, level 0: twice it) and
only contains the layers that output needs.  Layer names are identical across
levels, so level k can start from level k+1's weights.  Input height and
width must be multiples of 16 (four 2x poolings).

Where we differ from the authors' code (aiff22/PyNET):

* Instance norm is written with ``MEAN``, ``SUB``, ``MUL``, ``ADD``, ``RSQRT``
  (see :mod:`isp_tf.layers.instance_norm`) instead of ``tf.nn.moments``, whose
  ``SQUARED_DIFFERENCE`` NNAPI 1.2 does not reliably take.
* The authors' graph always builds all six heads and trains with the loss on
  one of them; a level-k model here contains only the layers its output needs
  (``all_outputs=True`` adds the heads of levels k+1..5).
* ``width`` scales every channel count (the published model is ``width=1``),
  for small test models.
"""
from __future__ import annotations

from isp_tf._keras import keras
from isp_tf.layers import InstanceNorm, ScaledTanh

__all__ = ["LEVELS", "build_pynet"]

LEVELS = (5, 4, 3, 2, 1, 0)


class _Builder:
    """Holds the config while the functional graph is written level by level."""

    def __init__(self, width, instance_norm, instance_norm_level_1):
        self.width = float(width)
        self.instance_norm = bool(instance_norm)
        self.instance_norm_level_1 = bool(instance_norm_level_1)

    def channels(self, n):
        return max(1, int(round(n * self.width)))

    def conv(self, x, filters, size, norm, name):
        """Conv (bias) -> [InstanceNorm] -> LeakyReLU(0.2)."""
        x = keras.layers.Conv2D(
            filters, size, padding="same", name=name,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.01),
            bias_initializer=keras.initializers.Constant(0.01))(x)
        if norm:
            x = InstanceNorm(epsilon=1e-3, name=f"{name}_in")(x)
        return keras.layers.LeakyReLU(alpha=0.2, name=f"{name}_lrelu")(x)

    def multi_block(self, x, max_size, maps, norm, name):
        """MB(max_size, maps): parallel two-conv branches of sizes 3..max_size, concatenated."""
        outputs = []
        for size in (3, 5, 7, 9):
            if size > max_size:
                break
            y = self.conv(x, self.channels(maps), size, norm, f"{name}_{size}a")
            outputs.append(self.conv(y, self.channels(maps), size, norm, f"{name}_{size}b"))
        if len(outputs) == 1:
            return outputs[0]
        return keras.layers.Concatenate(name=f"{name}_cat")(outputs)

    def residual(self, x, max_size, maps, norm, name):
        return keras.layers.Add(name=f"{name}_add")([self.multi_block(x, max_size, maps, norm, name), x])

    def up(self, x, maps, name, scaled=True):
        """Transposed conv 3x3, stride 2, no bias -> LeakyReLU(0.2)."""
        x = keras.layers.Conv2DTranspose(
            self.channels(maps) if scaled else maps, 3, strides=2, padding="same", use_bias=False,
            name=name, kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.01))(x)
        return keras.layers.LeakyReLU(alpha=0.2, name=f"{name}_lrelu")(x)

    def head(self, x, name):
        x = keras.layers.Conv2D(
            3, 3, padding="same", name=name,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.01),
            bias_initializer=keras.initializers.Constant(0.01))(x)
        return ScaledTanh(0.58, 0.5, name=f"{name}_tanh")(x)


def _cat(name, *tensors):
    return keras.layers.Concatenate(name=name)(list(tensors))


def build_pynet(level: int = 0, width: float = 1.0, instance_norm: bool = True,
                instance_norm_level_1: bool = False, all_outputs: bool = False, input_shape=None,
                name: str = None):
    """Build PyNET returning the output of ``level``.

    ``width`` scales every channel count except level 0's 8 (already tiny).

    Args:
      level: 0 (full RGB resolution) .. 5 (1/32 of it).
      width: channel multiplier (published: 1.0); counts are rounded, at least 1.
      instance_norm: instance norm in levels 2-5 (published: True).
      instance_norm_level_1: instance norm in the MB9 blocks of level 1 (published: False).
      all_outputs: return the list ``[out_level, ..., out_5]`` of every head from
        ``level`` up, like the authors' graph, instead of ``out_level`` alone.
        ``build_pynet(0, all_outputs=True)`` is the published 47,548,170-parameter
        graph; the level-0 model alone lacks the five other heads (47,521,371).
      input_shape: ``(h, w, 4)`` with h, w multiples of 16; ``None`` leaves them free.
    """
    level = int(level)
    if level not in LEVELS:
        raise ValueError(f"PyNET level must be one of 0..5, got {level}")
    if not width > 0:
        raise ValueError(f"PyNET width must be positive, got {width}")
    h, w, c = tuple(input_shape) if input_shape is not None else (None, None, 4)
    if c != 4 or any(d is not None and d % 16 for d in (h, w)):
        raise ValueError(f"PyNET takes packed Bayer (h, w, 4) with h, w multiples of 16, "
                         f"got input_shape {input_shape}")
    b = _Builder(width, instance_norm, instance_norm_level_1)
    norm = b.instance_norm
    packed = keras.Input(shape=(h, w, 4), name="packed_bayer")
    heads = {}  # level -> output head (only level's own unless all_outputs)

    def finish():
        outputs = [heads[k] for k in range(level, 6)] if all_outputs else heads[level]
        return keras.Model(packed, outputs, name=name or f"pynet_level{level}")

    pool = lambda x, n: keras.layers.MaxPool2D(2, name=f"pool{n}")(x)  # noqa: E731

    # -- encoder -----------------------------------------------------------
    l1_d1 = b.multi_block(packed, 3, 32, False, "l1_d1")
    l2_d1 = b.multi_block(pool(l1_d1, 1), 3, 64, norm, "l2_d1")
    l3_d1 = b.multi_block(pool(l2_d1, 2), 3, 128, norm, "l3_d1")
    l4_d1 = b.multi_block(pool(l3_d1, 3), 3, 256, norm, "l4_d1")

    # -- level 5 (h/16) ----------------------------------------------------
    x = b.multi_block(pool(l4_d1, 4), 3, 512, norm, "l5_d1")
    x = b.residual(x, 3, 512, norm, "l5_d2")
    x = b.residual(x, 3, 512, norm, "l5_d3")
    l5 = b.multi_block(x, 3, 512, norm, "l5_d4")
    heads[5] = b.head(l5, "l5_out") if all_outputs or level == 5 else None
    if level == 5:
        return finish()
    t4a, t4b = b.up(l5, 256, "t4a"), b.up(l5, 256, "t4b")

    # -- level 4 (h/8) -----------------------------------------------------
    x = b.multi_block(_cat("l4_d2", l4_d1, t4a), 3, 256, norm, "l4_d3")
    x = b.residual(x, 3, 256, norm, "l4_d4")
    x = b.residual(x, 3, 256, norm, "l4_d5")
    x = _cat("l4_d6", b.multi_block(x, 3, 256, norm, "l4_d6"), t4b)
    l4 = b.multi_block(x, 3, 256, norm, "l4_d7")
    heads[4] = b.head(l4, "l4_out") if all_outputs or level == 4 else None
    if level == 4:
        return finish()
    t3a, t3b = b.up(l4, 128, "t3a"), b.up(l4, 128, "t3b")

    # -- level 3 (h/4) -----------------------------------------------------
    x = _cat("l3_d2", l3_d1, t3a)
    x = b.residual(x, 5, 128, norm, "l3_d3")
    x = b.residual(x, 5, 128, norm, "l3_d4")
    x = b.residual(x, 5, 128, norm, "l3_d5")
    x = _cat("l3_d6", b.multi_block(x, 5, 128, norm, "l3_d6"), l3_d1)
    x = _cat("l3_d7", x, t3b)
    l3 = b.multi_block(x, 3, 128, norm, "l3_d8")
    heads[3] = b.head(l3, "l3_out") if all_outputs or level == 3 else None
    if level == 3:
        return finish()
    t2a, t2b = b.up(l3, 64, "t2a"), b.up(l3, 64, "t2b")

    # -- level 2 (h/2) -----------------------------------------------------
    x = _cat("l2_d2", l2_d1, t2a)
    x = _cat("l2_d3", b.multi_block(x, 5, 64, norm, "l2_d3"), l2_d1)
    x = b.residual(x, 7, 64, norm, "l2_d4")
    x = b.residual(x, 7, 64, norm, "l2_d5")
    x = b.residual(x, 7, 64, norm, "l2_d6")
    x = _cat("l2_d7", b.multi_block(x, 7, 64, norm, "l2_d7"), l2_d1)
    x = _cat("l2_d8", b.multi_block(x, 5, 64, norm, "l2_d8"), t2b)
    l2 = b.multi_block(x, 3, 64, norm, "l2_d9")
    heads[2] = b.head(l2, "l2_out") if all_outputs or level == 2 else None
    if level == 2:
        return finish()
    t1a, t1b = b.up(l2, 32, "t1a"), b.up(l2, 32, "t1b")

    # -- level 1 (h) -------------------------------------------------------
    norm1 = b.instance_norm_level_1
    x = _cat("l1_d2", l1_d1, t1a)
    x = _cat("l1_d3", b.multi_block(x, 5, 32, False, "l1_d3"), l1_d1)
    x = b.multi_block(x, 7, 32, False, "l1_d4")
    x = b.multi_block(x, 9, 32, norm1, "l1_d5")
    x = b.residual(x, 9, 32, norm1, "l1_d6")
    x = b.residual(x, 9, 32, norm1, "l1_d7")
    x = b.residual(x, 9, 32, norm1, "l1_d8")
    x = _cat("l1_d9", b.multi_block(x, 7, 32, False, "l1_d9"), l1_d1)
    x = _cat("l1_d10", b.multi_block(x, 5, 32, False, "l1_d10"), t1b)
    x = _cat("l1_d11", x, l1_d1)
    l1 = b.multi_block(x, 3, 32, False, "l1_d12")
    heads[1] = b.head(l1, "l1_out") if all_outputs or level == 1 else None
    if level == 1:
        return finish()

    # -- level 0 (2h): upsampling to the full RGB resolution -----------------
    heads[0] = b.head(b.up(l1, 8, "t0", scaled=False), "l0_out")
    return finish()
