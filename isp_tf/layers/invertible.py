"""Invertible layers for normalising-flow style ISPs (InvISP, Xing et al. 2021).

Every layer here maps ``(B, H, W, C) -> (B, H, W, C)`` and offers the same
small protocol:

* ``layer(x)`` / ``call(x, inverse=False)``: the forward map;
  ``layer(y, inverse=True)`` or ``layer.inverse(y)``: its exact inverse (both
  work eagerly, in ``tf.function`` and on Keras functional inputs, so a forward
  and an inverse functional model can share one set of blocks);
* ``forward_and_log_det(x) -> (y, log_det)`` (= ``layer(x, return_log_det=True)``)
  and ``log_det(x)``: the log of the absolute Jacobian determinant of the
  forward map, one value per image (shape ``(B,)``), summed over pixels and
  channels as usual for flows; ``inverse_and_log_det(y)`` gives that of the
  inverse map (the negative of the forward one at the matching ``x``).

Layers:

:class:`InvertibleConv1x1`
    Glow's LU-decomposed invertible 1x1 convolution: per pixel ``y = W x`` with
    ``W = P L (U + diag(sign_s * exp(log_s)))``; ``P`` (permutation) and
    ``sign_s`` are fixed (non-trainable weights), ``L`` (unit lower triangular),
    ``U`` (strictly upper) and ``log_s`` are trained.  Initialised from the QR
    decomposition of a seeded standard-normal matrix (``W`` starts orthogonal).
    ``log_det = H * W * sum(log_s)``.  Forward and inverse are each one 1x1
    ``CONV_2D``: ``W`` and ``W^-1 = (U + diag)^-1 L^-1 P^T`` are assembled from the
    factors in float64 inside the graph and fold to constant kernels when the
    model is converted to TFLite.
:class:`DenseSubnet`
    The coupling functions F, G, H of InvISP: five 3x3 convolutions with dense
    connections (conv k sees the input and the outputs of convs 1..k-1), growth
    32, LeakyReLU(0.2) after convs 1-4.  Convs 1-4: Xavier-normal weights times
    0.1; conv 5: zero weights and bias, so every coupling starts as the identity
    (the authors' initialisation).  Exported ops: ``CONV_2D``,
    ``CONCATENATION``, ``LEAKY_RELU`` (``tf.nn.leaky_relu``; NNAPI 1.2 takes it
    from API 29, sent as PRELU with a constant alpha, so no rewrite is needed).
    Not invertible itself; no log-det.
:class:`CouplingBlock`
    One InvISP block: 1x1 conv, split ``x1 = x[..., :split]``, ``x2 = x[..., split:]``,
    ``y1 = x1 + F(x2)``, ``s = clamp * (2 sigmoid(H(y1)) - 1)``,
    ``y2 = x2 * exp(s) + G(y1)``, ``y = concat(y1, y2)``.  Inverse:
    ``x2 = (y2 - G(y1)) * exp(-s)``, ``x1 = y1 - F(x2)``, inverse 1x1 conv.
    ``log_det = H * W * sum(log_s) + sum_{pixels, channels} s``.
    Defaults: 3 channels, split 1, clamp 0.8 (InvISP).
:class:`InvertibleSequence`
    A chain of invertible layers (forward in order, inverse in reverse order,
    log-dets added).  :func:`invisp_blocks` builds InvISP's 8 blocks.

Parameter count: 8 blocks on 3 channels have 1,413,760 trainable parameters,
InvISP's published count.  It includes the full 3x3 ``L`` and ``U`` matrices:
like the authors' (Glow's) code we store them as full matrices and mask them
(strictly lower / strictly upper) when assembling ``W``, so 6 of the 21
parameters of each 1x1 conv (96 in all) are masked out and never change;
storing only the free entries would give 1,413,664.

Where this differs from the authors' code, and why:

* ``W^-1`` is computed from the triangular factors in float64 (triangular
  solves) instead of inverting the assembled float32 ``W``, so
  ``inverse(forward(x))`` is exact to float32 rounding and both kernels fold
  to constants at export.
* The inverse coupling multiplies by ``exp(-s)`` computed as
  ``clamp - 2 clamp sigmoid(H(y1))`` instead of dividing by ``exp(s)``: the same
  math without a ``NEG``/``DIV`` op (``NEG`` is not delegated by NNAPI 1.2).
* PyTorch's ``xavier_normal_`` is an untruncated normal; Keras'
  ``GlorotNormal`` is truncated, so convs 1-4 use
  ``VarianceScaling(0.01, "fan_avg", "untruncated_normal")`` (= Xavier normal
  times 0.1, the same fans: kh * kw * channels).
* The 1x1 conv's initial matrix is drawn from a seeded generator (``seed``,
  stored in the config) rather than the global NumPy state.
* The split point and channel count are constructor arguments (InvISP: 1 of 3).
* The log-det is provided for flow losses; InvISP's own loss (two L1 terms)
  does not use it.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from isp_tf._keras import keras, tf
from isp_tf.errors import InputShapeError

__all__ = ["CouplingBlock", "DenseSubnet", "InvertibleConv1x1", "InvertibleSequence",
           "invisp_blocks"]


def _new_seed(seed):
    """A fixed int seed: ``seed`` itself, or a fresh random one (kept in the config)."""
    if seed is None:
        return int(np.random.SeedSequence().generate_state(1)[0] & 0x7FFFFFFF)
    return int(seed)


def _lu_decompose(a: np.ndarray):
    """``a = p @ l @ u`` with partial pivoting (p permutation, l unit lower, u upper)."""
    n = a.shape[0]
    u = a.astype(np.float64).copy()
    l = np.eye(n)
    perm = np.arange(n)
    for k in range(n - 1):
        piv = k + int(np.argmax(np.abs(u[k:, k])))
        if piv != k:
            u[[k, piv]] = u[[piv, k]]
            l[[k, piv], :k] = l[[piv, k], :k]
            perm[[k, piv]] = perm[[piv, k]]
        for i in range(k + 1, n):
            l[i, k] = u[i, k] / u[k, k]
            u[i, k:] -= l[i, k] * u[k, k:]
    p = np.eye(n)[perm].T  # rows of a were permuted by perm: a[perm] = l u
    return p, l, np.triu(u)


class _Invertible(keras.layers.Layer):
    """Shared protocol: ``call(x, inverse=False, return_log_det=False)`` and helpers.

    ``return_log_det=True`` returns ``(output, log_det)``; with ``inverse=True``
    that is the log-det of the inverse map at ``y`` (minus the forward one at x).
    """

    def inverse(self, y):
        return self(y, inverse=True)

    def forward_and_log_det(self, x):
        return self(x, return_log_det=True)

    def inverse_and_log_det(self, y):
        return self(y, inverse=True, return_log_det=True)

    def log_det(self, x):
        return self.forward_and_log_det(x)[1]

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def _check_channels(self, input_shape, channels):
        c = tf.TensorShape(input_shape)[-1]
        if tf.TensorShape(input_shape).rank != 4 or c != channels:
            raise InputShapeError(f"{type(self).__name__} {self.name!r} takes (B, H, W, "
                                  f"{channels}) inputs, got shape {tf.TensorShape(input_shape)}")


@keras.utils.register_keras_serializable(package="isp_tf")
class InvertibleConv1x1(_Invertible):
    """LU-decomposed invertible 1x1 convolution ``y = W x`` (see the module docstring)."""

    def __init__(self, seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = _new_seed(seed)

    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        if input_shape.rank != 4 or input_shape[-1] is None:
            raise InputShapeError(f"InvertibleConv1x1 {self.name!r} needs (B, H, W, C) inputs with "
                                  f"a known C, got shape {input_shape}")
        c = int(input_shape[-1])
        self.channels = c
        q, _ = np.linalg.qr(np.random.default_rng(self.seed).standard_normal((c, c)))
        p, l, u = _lu_decompose(q)
        s = np.diag(u)
        const = keras.initializers.Constant
        self.perm = self.add_weight("perm", (c, c), initializer=const(p), trainable=False)
        self.sign_s = self.add_weight("sign_s", (c,), initializer=const(np.sign(s)),
                                      trainable=False)
        self.lower = self.add_weight("lower", (c, c), initializer=const(np.tril(l, -1)))
        self.upper = self.add_weight("upper", (c, c), initializer=const(np.triu(u, 1)))
        self.log_s = self.add_weight("log_s", (c,), initializer=const(np.log(np.abs(s))))
        self._lower_mask = np.tril(np.ones((c, c)), -1)
        self._upper_mask = np.triu(np.ones((c, c)), 1)
        super().build(input_shape)

    def _factors(self):
        f64 = lambda v: tf.cast(v, tf.float64)  # noqa: E731
        eye = tf.eye(self.channels, dtype=tf.float64)
        lower = f64(self.lower) * self._lower_mask + eye
        upper = f64(self.upper) * self._upper_mask + tf.linalg.diag(
            f64(self.sign_s) * tf.exp(f64(self.log_s)))
        return f64(self.perm), lower, upper

    def weight_matrix(self):
        """``W`` (C, C) float64, assembled from the factors: ``y = W x`` per pixel."""
        p, lower, upper = self._factors()
        return p @ lower @ upper

    def inverse_matrix(self):
        """``W^-1`` (C, C) float64 by triangular solves: ``U'^-1 L^-1 P^T``."""
        p, lower, upper = self._factors()
        eye = tf.eye(self.channels, dtype=tf.float64)
        lower_inv = tf.linalg.triangular_solve(lower, eye, lower=True)
        upper_inv = tf.linalg.triangular_solve(upper, eye, lower=False)
        return upper_inv @ lower_inv @ tf.transpose(p)

    def call(self, x, inverse=False, return_log_det=False):
        m = self.inverse_matrix() if inverse else self.weight_matrix()
        kernel = tf.cast(tf.transpose(m), self.compute_dtype)[None, None]  # (1, 1, C_in, C_out)
        y = tf.nn.conv2d(x, kernel, strides=1, padding="VALID")
        if not return_log_det:
            return y
        ld = self._pixel_log_det(x)
        return y, -ld if inverse else ld

    def _pixel_log_det(self, x):
        """``H * W * sum(log_s)`` per image, shape (B,)."""
        shape = tf.shape(x)
        pixels = tf.cast(shape[1] * shape[2], self.compute_dtype)
        total = tf.reduce_sum(tf.cast(self.log_s, self.compute_dtype)) * pixels
        return tf.fill([shape[0]], total)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


@keras.utils.register_keras_serializable(package="isp_tf")
class DenseSubnet(keras.layers.Layer):
    """Five 3x3 convs with dense concatenation (InvISP's F, G, H); see the module docstring."""

    def __init__(self, out_channels: int, growth: int = 32, negative_slope: float = 0.2,
                 seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        if int(out_channels) != out_channels or out_channels < 1:
            raise ValueError(f"out_channels must be a positive integer, got {out_channels!r}")
        if int(growth) != growth or growth < 1:
            raise ValueError(f"growth must be a positive integer, got {growth!r}")
        self.out_channels = int(out_channels)
        self.growth = int(growth)
        self.negative_slope = float(negative_slope)
        self.seed = None if seed is None else int(seed)
        self.convs = []
        for i in range(5):
            last = i == 4
            if last:
                init = keras.initializers.Zeros()
            else:
                init = keras.initializers.VarianceScaling(
                    0.01, "fan_avg", "untruncated_normal",
                    seed=None if self.seed is None else self.seed + i)
            self.convs.append(keras.layers.Conv2D(
                self.out_channels if last else self.growth, 3, padding="same",
                kernel_initializer=init, bias_initializer="zeros", name=f"conv{i + 1}",
                dtype=self.dtype_policy))

    def call(self, x):
        features = [x]
        for i, conv in enumerate(self.convs):
            inp = features[0] if i == 0 else tf.concat(features, axis=-1)
            out = conv(inp)
            if i < 4:
                out = tf.nn.leaky_relu(out, alpha=self.negative_slope)
                features.append(out)
        return out

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)[:-1].concatenate([self.out_channels])

    def get_config(self):
        return {**super().get_config(), "out_channels": self.out_channels, "growth": self.growth,
                "negative_slope": self.negative_slope, "seed": self.seed}


@keras.utils.register_keras_serializable(package="isp_tf")
class CouplingBlock(_Invertible):
    """One InvISP block: invertible 1x1 conv + affine coupling (see the module docstring)."""

    def __init__(self, channels: int = 3, split: int = 1, growth: int = 32, clamp: float = 0.8,
                 negative_slope: float = 0.2, seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        if int(channels) != channels or channels < 2:
            raise ValueError(f"channels must be an integer >= 2, got {channels!r}")
        if int(split) != split or not 1 <= split < channels:
            raise ValueError(f"split must be an integer in 1..{int(channels) - 1}, got {split!r}")
        if not clamp > 0:
            raise ValueError(f"clamp must be positive, got {clamp!r}")
        self.channels, self.split = int(channels), int(split)
        self.growth, self.clamp = int(growth), float(clamp)
        self.negative_slope = float(negative_slope)
        self.seed = _new_seed(seed)
        c1, c2 = self.split, self.channels - self.split
        sub = dict(growth=self.growth, negative_slope=self.negative_slope, dtype=self.dtype_policy)
        self.invconv = InvertibleConv1x1(seed=self.seed, name="invconv", dtype=self.dtype_policy)
        self.f = DenseSubnet(c1, seed=self.seed + 10, name="f", **sub)  # x2 -> x1
        self.g = DenseSubnet(c2, seed=self.seed + 20, name="g", **sub)  # y1 -> x2
        self.h = DenseSubnet(c2, seed=self.seed + 30, name="h", **sub)  # y1 -> scale

    def build(self, input_shape):
        self._check_channels(input_shape, self.channels)
        input_shape = tf.TensorShape(input_shape)
        self.invconv.build(input_shape)
        self.f.build(input_shape[:-1].concatenate([self.channels - self.split]))
        self.g.build(input_shape[:-1].concatenate([self.split]))
        self.h.build(input_shape[:-1].concatenate([self.split]))
        super().build(input_shape)

    def _scale(self, y1, negative=False):
        """``s`` (or ``-s``) = clamp * (2 sigmoid(H(y1)) - 1), written as MUL + SUB."""
        sig = tf.sigmoid(self.h(y1))
        if negative:
            return self.clamp - (2.0 * self.clamp) * sig
        return (2.0 * self.clamp) * sig - self.clamp

    def call(self, x, inverse=False, return_log_det=False):
        if not inverse:
            x, conv_ld = self.invconv(x, return_log_det=True)
            x1, x2 = x[..., :self.split], x[..., self.split:]
            y1 = x1 + self.f(x2)
            s = self._scale(y1)
            y2 = x2 * tf.exp(s) + self.g(y1)
            y = tf.concat([y1, y2], axis=-1)
            return (y, conv_ld + tf.reduce_sum(s, axis=[1, 2, 3])) if return_log_det else y
        y1, y2 = x[..., :self.split], x[..., self.split:]
        neg_s = self._scale(y1, negative=True)
        x2 = (y2 - self.g(y1)) * tf.exp(neg_s)
        x1 = y1 - self.f(x2)
        out, conv_ld = self.invconv(tf.concat([x1, x2], axis=-1), inverse=True, return_log_det=True)
        return (out, conv_ld + tf.reduce_sum(neg_s, axis=[1, 2, 3])) if return_log_det else out

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "split": self.split,
                "growth": self.growth, "clamp": self.clamp,
                "negative_slope": self.negative_slope, "seed": self.seed}


@keras.utils.register_keras_serializable(package="isp_tf")
class InvertibleSequence(_Invertible):
    """A chain of invertible layers: forward in order, inverse in reverse, log-dets added."""

    def __init__(self, layers: Sequence[keras.layers.Layer], **kwargs):
        super().__init__(**kwargs)
        layers = list(layers)
        for layer in layers:
            methods = ("inverse", "forward_and_log_det")
            if not all(callable(getattr(layer, m, None)) for m in methods):
                raise ValueError(f"{layer!r} is not an invertible layer (needs inverse and "
                                 f"forward_and_log_det)")
        self.blocks: List[keras.layers.Layer] = layers

    def call(self, x, inverse=False, return_log_det=False):
        total = tf.zeros([tf.shape(x)[0]], self.compute_dtype) if return_log_det else None
        for block in (reversed(self.blocks) if inverse else self.blocks):
            if return_log_det:
                x, ld = block(x, inverse=inverse, return_log_det=True)
                total += ld
            else:
                x = block(x, inverse=inverse)
        return (x, total) if return_log_det else x

    def get_config(self):
        return {**super().get_config(),
                "layers": [keras.layers.serialize(b) for b in self.blocks]}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layers"] = [keras.layers.deserialize(c) for c in config["layers"]]
        return cls(**config)


def invisp_blocks(num_blocks: int = 8, channels: int = 3, split: int = 1, seed: int = 0,
                  name: str = "invisp_blocks", **block_kwargs) -> InvertibleSequence:
    """InvISP's stack: ``num_blocks`` :class:`CouplingBlock` s (block k seeded ``seed + 100 k``)."""
    blocks = [CouplingBlock(channels, split, seed=seed + 100 * k, name=f"block{k}", **block_kwargs)
              for k in range(num_blocks)]
    return InvertibleSequence(blocks, name=name)
