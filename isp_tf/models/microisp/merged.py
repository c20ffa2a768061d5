"""MicroISP merged-branch variant: the three branches in one 12-channel graph (same function).

Where MicroISP's CPU time goes: its branches convolve 4 channels into 4.  A
3x3 4->4 convolution is 144 MACs per pixel, far too little work per output
pixel for XNNPACK's GEMM micro-kernels (16 fp32 lanes per AVX-512 register,
output channels padded to the kernel's tile), so the per-pixel overhead
(indirection pointers, loads and stores of 4-float pixels) dominates: a chain
of 12->12 convolutions (9x the MACs) was measured only ~15 % slower per op
than 4->4.  And every op is one more pass over a frame-sized tensor.

:func:`merge_branches` rebuilds a MicroISP model with the three colour
branches of each stage side by side in one 12-channel tensor:

* stage 1's first convolution: the three 4->4 kernels concatenated along the
  output channels (one 4->12 conv, no added MACs);
* every other convolution (including the attention's pooling chain and MLP):
  block-diagonal 12->12 kernels, exact zeros off the diagonal blocks, so each
  output channel sums exactly the products the original sums plus zeros;
* PReLU slopes and biases concatenated; MEAN, sigmoid, tanh, ADD, MUL act per
  channel and need no change;
* the last convolution's output channels permuted so a single 12->3
  ``DEPTH_TO_SPACE`` lays out R, G, B exactly as the three per-branch
  depth-to-space ops and the concatenation did.

The arithmetic of the model is unchanged (outputs agree to float rounding);
the graph has a third of the ops (16 instead of 48 full-resolution 3x3
convolutions), a third of XNNPACK's per-convolution indirection buffers, and
only NNAPI 1.2 ops.  The nominal MAC count triples (the zero blocks are
computed); the benchmark reports it as counted.
"""
from __future__ import annotations

import numpy as np

from isp_tf._keras import keras
from isp_tf.layers import ChannelAttention, DepthToSpace, ScaledTanh, channel_prelu
from isp_tf.models.microisp.model import BRANCHES, SKIP_EVERY

N = len(BRANCHES)


def _block_diag(kernels):
    """(kh, kw, i, o) kernels -> one (kh, kw, n*i, n*o) block-diagonal kernel."""
    kh, kw, i, o = kernels[0].shape
    out = np.zeros((kh, kw, N * i, N * o), np.float32)
    for c, k in enumerate(kernels):
        out[:, :, c * i:(c + 1) * i, c * o:(c + 1) * o] = k
    return out


def _conv_weights(layers, shared_input=False, out_perm=None):
    kernels = [layer.kernel.numpy() for layer in layers]
    biases = [layer.bias.numpy() for layer in layers]
    kernel = np.concatenate(kernels, axis=3) if shared_input else _block_diag(kernels)
    bias = np.concatenate(biases)
    if out_perm is not None:
        kernel, bias = kernel[..., out_perm], bias[out_perm]
    return [kernel, bias]


def _prelu_weights(layers):
    return [np.concatenate([layer.alpha.numpy() for layer in layers], axis=-1)]


def _depth_of(model) -> int:
    depth = 0
    while True:
        try:
            model.get_layer(f"s1_r_conv{depth}")
        except ValueError:
            return depth
        depth += 1


def merge_branches(model, name: str = "microisp_merged"):
    """A MicroISP model (isp_tf.models.microisp) -> the same function as one 12-channel graph.

    Works for any width/depth; the returned model's input size is ``model``'s.
    Build it inside :func:`isp_tf.layers.global_stats.tiling_mode` to get the
    tiling variant (the attentions stay :class:`ChannelAttention` layers).
    """
    depth = _depth_of(model)
    width = int(model.get_layer("s1_r_conv0").filters)
    get = model.get_layer
    inp = keras.Input(shape=model.inputs[0].shape[1:], name="packed_bayer")
    assign = []  # (layer, weights) to set once everything is built

    def stage(x, s, shared_input):
        skip = None
        for j in range(depth):
            src = [get(f"s{s}_{c}_conv{j}") for c in BRANCHES]
            conv = keras.layers.Conv2D(N * width, 3, padding="same", name=f"s{s}_conv{j}")
            x = conv(x)
            assign.append((conv, _conv_weights(src, shared_input and j == 0)))
            prelu = channel_prelu(f"s{s}_prelu{j}")
            x = prelu(x)
            assign.append((prelu, _prelu_weights([get(f"s{s}_{c}_prelu{j}") for c in BRANCHES])))
            if j % SKIP_EVERY == 0:
                skip = x
            elif j % SKIP_EVERY == SKIP_EVERY - 1:
                srcs = [get(f"s{s}_{c}_att{j}") for c in BRANCHES]
                att = ChannelAttention(hidden_units=N * (srcs[0].hidden_units or width), name=f"s{s}_att{j}")
                x = att(x)
                for k in range(len(srcs[0].pool_convs)):
                    assign.append((att.pool_convs[k], _conv_weights([a.pool_convs[k] for a in srcs])))
                    assign.append((att.pool_prelus[k], _prelu_weights([a.pool_prelus[k] for a in srcs])))
                assign.append((att.mlp_conv0, _conv_weights([a.mlp_conv0 for a in srcs])))
                assign.append((att.mlp_prelu, _prelu_weights([a.mlp_prelu for a in srcs])))
                assign.append((att.mlp_conv1, _conv_weights([a.mlp_conv1 for a in srcs])))
                x = keras.layers.Add(name=f"s{s}_res{j}")([x, skip])
        return x

    x = stage(inp, 1, shared_input=True)
    conv = keras.layers.Conv2D(N * 4, 3, padding="same", name="s1_conv_out")
    x = keras.layers.Activation("tanh", name="s1_tanh")(conv(x))
    assign.append((conv, _conv_weights([get(f"s1_{c}_conv_out") for c in BRANCHES])))
    x = stage(x, 2, shared_input=False)
    # branch c's channel j (= sub-pixel dy*2+dx) must land at depth-to-space input channel j*3 + c
    perm = [c * 4 + j for j in range(4) for c in range(N)]
    conv = keras.layers.Conv2D(N * 4, 3, padding="same", name="s2_conv_out")
    x = ScaledTanh(0.58, 0.5, name="s2_tanh")(conv(x))
    assign.append((conv, _conv_weights([get(f"s2_{c}_conv_out") for c in BRANCHES], out_perm=perm)))
    rgb = DepthToSpace(2, name="rgb")(x)
    merged = keras.Model(inp, rgb, name=name)
    for layer, weights in assign:
        layer.set_weights(weights)
    return merged
