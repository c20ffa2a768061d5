"""ParamISP's graph (Kim et al., "ParamISP: Learned Forward and Inverse ISPs using Camera Parameters", CVPR 2024).

Top to bottom, as the paper's Figure 2::

    params (84,) per frame: WB, 1/WB, CCM, CCM^-1, 4 x 15 EXIF encodings (params.py, on the host)
      -> ParamNet: Linear 24->C (colour) + 4 x Linear 15->C (optics, optics dropout) summed,
                   3 x [ELU, Linear C->C]                                      h (C,)
    forward (RAW -> sRGB):
      packed Bayer (h, w, 4) -> CanoNet: Malvar demosaic, WB, clip, CCM        x (2h, 2w, 3)
      features(x) = [x, Sobel(x), soft histograms 4/8/16, over-exposure mask]  (96 ch)
      -> LocalNet(x, features, h)  -> features again -> GlobalNet(x, features, h)   sRGB
    inverse (sRGB -> RAW):
      sRGB (H, W, 3) -> GlobalNet -> LocalNet -> CCM^-1 -> WB^-1 -> RGGB mosaic  (H, W, 1)

LocalNet: Conv3x3 96->C, plus Linear(h) as a per-channel bias; [2 LocalBlocks,
Conv2x2 s2] x 2; 2 LocalBlocks; [ConvT 2x2 s2, add skip, 2 LocalBlocks] x 2;
Conv3x3 C->3; added to x.  GlobalNet: 3 x [Conv3x3 s2 valid, ELU, MaxPool 2] on
the features, spatial mean, plus ELU(Linear(h)); 4 stages, each
``w = z + ELU(stage vector)``, 2 x [Linear, ELU], Linear C->39, ELU ->
quadratic colour transform + extended gamma (:class:`~.layers.ToneMapping`).

The two directions are separate networks (as the authors'); the model
:func:`build_paramisp` returns is the forward one and carries the inverse
(:class:`InverseNetwork`, an identity on the forward's output that owns the
inverse's layers), so one weights file holds both, a joint fine-tune trains
both, and :func:`inverse_of` (``Direction.derive``) returns the inverse.

Exact tiling (:func:`split_paramisp`): CBAM's channel attention (whole-frame
average and max) and GlobalNet (whole-frame) are per-frame values, not
spatial means of bounded reach, so the model splits into ``per_frame``
(all channel attentions and the 4 x 39 tone parameters, computed on the whole
frame) and ``render`` (the rest, given those values: local, tiles exactly).

Where we differ from the authors' code (woo525/ParamISP):

* The EXIF encoding is computed outside the graph (the ``params`` input), so
  exports need no LOG/SIN/COS; ParamNet's layers are in the model.
* The optics dropout (p = 0.2) is applied (per example and field, while
  training); the authors sample its mask and never use it.  It and the
  dequantisation noise are drawn in the training data (``training.py``,
  stateless functions of the seed and the step, so a resumed run sees the
  same values), not in the graph: a dropped field's 15 encoding values are
  zeroed, so its embedding is the Linear's bias (the authors' mask would
  zero the embedding itself, bias included).
* The camera-ID embedding, multiplied by 0 in the authors' code, is left out
  (1,088 parameters per direction that change nothing).
* Zero ("same") padding everywhere: the authors pad LocalNet's convolutions
  and the Sobel filter by edge replication, which needs MIRROR_PAD (never
  delegated by NNAPI 1.2) or edge slices the tiling analysis cannot place;
  only the outermost pixels differ.  The demosaic pads with zeros as well.
* Frames smaller than GlobalNet's reach (85 px, :func:`min_global_side`), which
  the authors' model cannot take, are zero-padded before its convolutions.
* ELU is ``relu(x) + exp(min(x, 0)) - 1`` and ``sign(x) |x|^g`` is
  ``x (|x| + eps)^(g - 1)`` (no ELU or SIGN op in NNAPI 1.2), same math.
"""
from __future__ import annotations

from typing import Dict, Sequence

from isp_tf._keras import keras, tf
from isp_tf.errors import InputShapeError
from isp_tf.models.paramisp.layers import (ELU, OPTICS_FIELDS, PACKAGE, PARAMS_SIZE, TONE_PARAMS, CanoNet,
                                           LocalBlock, MinSizePad, OverExposureMask, ParamSlices, PixelFeatures,
                                           ReflectPadToMultiple, StageEmbedding, SubPixelUp, ToneMapping,
                                           UnCanoNet, VectorSlice)

__all__ = ["InverseNetwork", "build_paramisp", "build_paramisp_inverse", "inverse_of", "per_frame_size",
           "split_paramisp"]

INVERSE_NAME = "inverse_network"


def _config(width=64, blocks=2, scales=2, stages=4, global_convs=3, global_fcs=3, bins=(4, 8, 16)):
    return dict(width=int(width), blocks=int(blocks), scales=int(scales), stages=int(stages),
                global_convs=int(global_convs), global_fcs=int(global_fcs), bins=[int(b) for b in bins])


def num_local_blocks(cfg) -> int:
    return cfg["blocks"] * (2 * cfg["scales"] + 1)


def min_global_side(global_convs: int = 3) -> int:
    """The smallest side GlobalNet's features can have: each of its [Conv3x3 s2 valid, MaxPool 2]
    stages must leave a pixel (85 px for 3 stages); smaller frames are zero-padded up to it."""
    side = 1
    for _ in range(int(global_convs)):
        side = 2 * (2 * side) + 1  # pool input 2n, conv input 2 (2n) + 1
    return side


def _check_side(input_shape, scale, cfg, what):
    if input_shape is None:
        return
    sides = [d for d in tuple(input_shape)[:2] if d is not None]
    if any(d * scale % (2 ** cfg["scales"]) for d in sides):
        raise InputShapeError(f"ParamISP's {what} input {tuple(input_shape)}: LocalNet needs full-resolution "
                              f"sides that are multiples of {2 ** cfg['scales']}")


def per_frame_size(cfg) -> int:
    """Values ``per_frame`` gives per image: every channel attention, then every stage's tone parameters."""
    return num_local_blocks(cfg) * cfg["width"] + cfg["stages"] * TONE_PARAMS


# --------------------------------------------------------------------------- the layers
def _layers(cfg) -> Dict[str, keras.layers.Layer]:
    """Every layer of one direction, by name (the graph below reads them by name, and so does
    :func:`split_paramisp` from a built model)."""
    c = cfg["width"]
    L = {"param_slices": ParamSlices(name="param_slices"),
         "param_color": keras.layers.Dense(c, name="param_color"),
         "param_sum": keras.layers.Add(name="param_sum")}
    for f in OPTICS_FIELDS:
        L[f"param_{f}"] = keras.layers.Dense(c, name=f"param_{f}")
    for k in range(3):
        L[f"param_mlp{k}_elu"] = ELU(name=f"param_mlp{k}_elu")
        L[f"param_mlp{k}"] = keras.layers.Dense(c, name=f"param_mlp{k}")
    L["over_exposure"] = OverExposureMask(name="over_exposure")
    for part in ("local", "global"):
        L[f"{part}_features"] = PixelFeatures(cfg["bins"], name=f"{part}_features")
    # LocalNet
    L["local_head"] = keras.layers.Conv2D(c, 3, padding="same", name="local_head")
    L["local_param"] = keras.layers.Dense(c, name="local_param")
    L["local_param_bias"] = keras.layers.Reshape((1, 1, c), name="local_param_bias")
    L["local_param_add"] = keras.layers.Add(name="local_param_add")
    for k in range(num_local_blocks(cfg)):
        L[f"local_block{k}"] = LocalBlock(c, 2, name=f"local_block{k}")
    for s in range(cfg["scales"]):
        L[f"local_down{s}"] = keras.layers.Conv2D(c, 2, strides=2, name=f"local_down{s}")
        L[f"local_up{s}"] = SubPixelUp(c, 2, strides=2, name=f"local_up{s}")
        L[f"local_skip{s}"] = keras.layers.Add(name=f"local_skip{s}")
    L["local_tail"] = keras.layers.Conv2D(3, 3, padding="same", name="local_tail",
                                          kernel_initializer=keras.initializers.RandomNormal(stddev=1e-3))
    L["local_residual"] = keras.layers.Add(name="local_residual")
    # GlobalNet
    for k in range(cfg["global_convs"]):
        L[f"global_conv{k}"] = keras.layers.Conv2D(c, 3, strides=2, padding="valid", name=f"global_conv{k}")
        L[f"global_elu{k}"] = ELU(name=f"global_elu{k}")
        L[f"global_pool{k}"] = keras.layers.MaxPooling2D(2, name=f"global_pool{k}")
    L["global_pad"] = MinSizePad(min_global_side(cfg["global_convs"]), name="global_pad")
    L["global_mean"] = keras.layers.GlobalAveragePooling2D(name="global_mean")
    L["global_param"] = keras.layers.Dense(c, name="global_param")
    L["global_param_elu"] = ELU(name="global_param_elu")
    L["global_param_add"] = keras.layers.Add(name="global_param_add")
    L["global_stages"] = StageEmbedding(cfg["stages"], name="global_stages")
    for j in range(cfg["global_fcs"] - 1):
        L[f"global_fc{j}"] = keras.layers.Dense(c, name=f"global_fc{j}")
        L[f"global_fc{j}_elu"] = ELU(name=f"global_fc{j}_elu")
    for s in range(cfg["stages"]):
        L[f"global_out{s}"] = keras.layers.Dense(
            TONE_PARAMS, name=f"global_out{s}", kernel_initializer=keras.initializers.RandomNormal(stddev=1e-3))
        L[f"global_out{s}_elu"] = ELU(name=f"global_out{s}_elu")
        L[f"tone{s}"] = ToneMapping(name=f"tone{s}")
    return L


# --------------------------------------------------------------------------- the graph
def param_net(params, L):
    """ParamNet: the (B, 84) parameter vector -> h (B, C)."""
    color, *optics = L["param_slices"](params)
    embeddings = [L[f"param_{f}"](e) for f, e in zip(OPTICS_FIELDS, optics)]
    h = L["param_sum"]([L["param_color"](color)] + embeddings)
    for k in range(3):
        h = L[f"param_mlp{k}"](L[f"param_mlp{k}_elu"](h))
    return h


class _Attention:
    """How LocalBlocks get their channel attention: computed (``given=None``), collected
    (``collect=True``: the per-frame part) or read from a given per-frame vector (the render)."""

    def __init__(self, cfg, given=None, collect=False):
        self.cfg, self.given, self.collect, self.values, self.k = cfg, given, collect, [], 0

    def block(self, L, z):
        k, c = self.k, self.cfg["width"]
        self.k += 1
        block = L[f"local_block{k}"]
        if self.given is not None:
            a = VectorSlice(k * c, (k + 1) * c, name=f"attention{k}")(self.given)
            return block(z, attention=a)
        if self.collect:
            z, a = block(z, return_attention=True)
            self.values.append(a)
            return z
        return block(z)


def local_net(x, features, h, L, cfg, attention: _Attention):
    """LocalNet: two-scale U-Net of LocalBlocks; ``x + tail(...)``."""
    z = L["local_head"](features)
    z = L["local_param_add"]([z, L["local_param_bias"](L["local_param"](h))])
    skips = []
    for s in range(cfg["scales"]):
        for _ in range(cfg["blocks"]):
            z = attention.block(L, z)
        skips.append(z)
        z = L[f"local_down{s}"](z)
    for _ in range(cfg["blocks"]):
        z = attention.block(L, z)
    for s in reversed(range(cfg["scales"])):
        z = L[f"local_skip{s}"]([skips[s], L[f"local_up{s}"](z)])
        for _ in range(cfg["blocks"]):
            z = attention.block(L, z)
    return L["local_residual"]([x, L["local_tail"](z)])


def global_params(features, h, L, cfg):
    """GlobalNet's per-frame part: the tone parameters of every stage, ``[(B, 39)] * stages``."""
    z = L["global_pad"](features)
    for k in range(cfg["global_convs"]):
        z = L[f"global_pool{k}"](L[f"global_elu{k}"](L[f"global_conv{k}"](z)))
    z = L["global_param_add"]([L["global_mean"](z), L["global_param_elu"](L["global_param"](h))])
    out = []
    for s, w in enumerate(L["global_stages"](z)):
        for j in range(cfg["global_fcs"] - 1):
            w = L[f"global_fc{j}_elu"](L[f"global_fc{j}"](w))
        out.append(L[f"global_out{s}_elu"](L[f"global_out{s}"](w)))
    return out


def global_net(x, features, h, L, cfg, given=None, offset=0):
    """GlobalNet: the stages' tone mappings of ``x`` (parameters computed, or read from ``given``)."""
    if given is None:
        tone = global_params(features, h, L, cfg)
    else:
        tone = [VectorSlice(offset + s * TONE_PARAMS, offset + (s + 1) * TONE_PARAMS, name=f"tone_params{s}")(given)
                for s in range(cfg["stages"])]
    for s, w in enumerate(tone):
        x = L[f"tone{s}"]([x, w])
    return x, tone


def forward_graph(packed, params, L, cfg, given=None, collect=False):
    """RAW -> sRGB.  ``collect``: return the per-frame vector instead; ``given``: use it."""
    h = param_net(params, L)
    x = L["canonet"]([packed, params])
    mask = L["over_exposure"](x)
    attention = _Attention(cfg, given, collect)
    x = local_net(x, L["local_features"]([x, mask]), h, L, cfg, attention)
    offset = num_local_blocks(cfg) * cfg["width"]
    if collect:
        tone = global_params(L["global_features"]([x, mask]), h, L, cfg)
        return keras.layers.Concatenate(name="per_frame")(attention.values + tone)
    x, _ = global_net(x, L["global_features"]([x, mask]), h, L, cfg, given, offset)
    return x


def inverse_graph(srgb, params, L, cfg, given=None, collect=False):
    """sRGB -> RAW mosaic (GlobalNet first, then LocalNet, then the inverse of CanoNet's colour steps)."""
    h = param_net(params, L)
    x = srgb
    mask = L["over_exposure"](x)
    attention = _Attention(cfg, given, collect)
    offset = num_local_blocks(cfg) * cfg["width"]
    if collect:
        tone = global_params(L["global_features"]([x, mask]), h, L, cfg)
        for s, w in enumerate(tone):
            x = L[f"tone{s}"]([x, w])
        local_net(x, L["local_features"]([x, mask]), h, L, cfg, attention)
        return keras.layers.Concatenate(name="per_frame")(attention.values + tone)
    if given is None:
        x, _ = global_net(x, L["global_features"]([x, mask]), h, L, cfg)
    else:
        x, _ = global_net(x, None, h, L, cfg, given, offset)
    x = local_net(x, L["local_features"]([x, mask]), h, L, cfg, attention)
    return L["uncanonet"]([x, params])


# --------------------------------------------------------------------------- models
def _image_inputs(input_shape, channels, name):
    h, w, c = tuple(input_shape) if input_shape is not None else (None, None, channels)
    if c != channels:
        raise InputShapeError(f"ParamISP's {name} input has {channels} channels, got input_shape {input_shape}")
    return keras.Input((h, w, channels), name=name), keras.Input((PARAMS_SIZE,), name="params")


def _forward_layers(cfg):
    L = _layers(cfg)
    L["canonet"] = CanoNet(name="canonet")
    return L


def _inverse_layers(cfg):
    L = _layers(cfg)
    L["uncanonet"] = UnCanoNet(name="uncanonet")
    return L


def build_paramisp_inverse(input_shape=None, name: str = "paramisp_inverse", **config):
    """The inverse network alone: ``[srgb (B, H, W, 3), params (B, 84)] -> RGGB mosaic (B, H, W, 1)``."""
    cfg = _config(**config)
    _check_side(input_shape, 1, cfg, "sRGB")
    srgb, params = _image_inputs(input_shape, 3, "srgb")
    raw = inverse_graph(srgb, params, _inverse_layers(cfg), cfg)
    return keras.Model([srgb, params], keras.layers.Activation("linear", name="bayer")(raw), name=name)


@keras.utils.register_keras_serializable(package=PACKAGE)
class InverseNetwork(keras.layers.Layer):
    """Identity on the forward model's output that owns the inverse network's layers.

    So the forward model's weights, checkpoints and training variables include
    the inverse's (one weights file for both directions, and a joint fine-tune
    that trains both); ``layer.network`` is the inverse model (:func:`inverse_of`).
    """

    def __init__(self, config=None, **kwargs):
        super().__init__(**kwargs)
        self.config = _config(**(config or {}))
        self.network = build_paramisp_inverse(**self.config)

    def call(self, x):
        return tf.identity(x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "config": dict(self.config)}


def build_paramisp(width: int = 64, blocks: int = 2, scales: int = 2, stages: int = 4, global_convs: int = 3,
                   global_fcs: int = 3, bins: Sequence[int] = (4, 8, 16), with_inverse: bool = True, input_shape=None,
                   name: str = "paramisp"):
    """Build ParamISP: ``[packed (B, h, w, 4), params (B, 84)] -> sRGB (B, 2h, 2w, 3)``.

    Args:
      width: channels of LocalNet, GlobalNet and ParamNet (published 64).
      blocks: LocalBlocks per U-Net level (2); scales: U-Net down-samplings (2).
      stages: GlobalNet tone-mapping stages (4); global_convs (3), global_fcs (3).
      bins: soft-histogram bin counts (4, 8, 16: 96 feature channels).
      with_inverse: carry the inverse network (:class:`InverseNetwork`); ``False``: forward only.
      input_shape: ``(h, w, 4)``; ``None`` leaves height and width free (multiples of 2, and
        their doubles multiples of ``2 ** scales``).
    """
    cfg = _config(width, blocks, scales, stages, global_convs, global_fcs, bins)
    _check_side(input_shape, 2, cfg, "packed Bayer")
    packed, params = _image_inputs(input_shape, 4, "packed_bayer")
    L = _forward_layers(cfg)
    rgb = forward_graph(packed, params, L, cfg)
    if with_inverse:
        rgb = InverseNetwork(cfg, name=INVERSE_NAME)(rgb)
    rgb = keras.layers.Activation("linear", name="rgb")(rgb)
    return keras.Model([packed, params], rgb, name=name)


def inverse_of(model):
    """``Direction.derive`` of the inverse: the inverse network the forward ``model`` carries
    (its weights, trained with it), or, for a model built ``with_inverse=False``, a fresh one."""
    try:
        return model.get_layer(INVERSE_NAME).network
    except ValueError:
        return build_paramisp_inverse(**_model_config(model))


def _model_config(model) -> dict:
    cfg = {"width": int(model.get_layer("local_head").filters),
           "blocks": 2, "scales": sum(1 for layer in model.layers if layer.name.startswith("local_down")),
           "stages": sum(1 for layer in model.layers if layer.name.startswith("tone")),
           "global_convs": sum(1 for layer in model.layers if layer.name.startswith("global_conv")),
           "global_fcs": 1 + sum(1 for layer in model.layers if layer.name.startswith("global_fc")
                                 and not layer.name.endswith("_elu")),
           "bins": list(model.get_layer("local_features").bins)}
    blocks = sum(1 for layer in model.layers if layer.name.startswith("local_block"))
    cfg["blocks"] = blocks // (2 * cfg["scales"] + 1)
    return cfg


def split_paramisp(model, input_shape=None):
    """``(per_frame, render)`` sharing ``model``'s weights, for exact tiled inference.

    ``model`` is a forward model (:func:`build_paramisp`) or an inverse one
    (:func:`inverse_of`).  ``per_frame([image, params]) -> (B, K)``: every
    LocalBlock's channel attention (``C`` values each, in block order), then
    every GlobalNet stage's 39 tone parameters; it needs the whole frame, which it
    reflect-pads to the direction's size multiple as the tiled runner does.
    ``render([image, params, per_frame])`` is ``model`` given those values and
    tiles exactly.
    """
    L = {layer.name: layer for layer in model.layers}
    cfg = _config(**_model_config(model))
    inverse = "uncanonet" in L
    graph = inverse_graph if inverse else forward_graph
    channels, image_name = (3, "srgb") if inverse else (4, "packed_bayer")

    image, params = _image_inputs(input_shape, channels, image_name)
    multiple = 2 ** cfg["scales"] // (1 if inverse else 2)  # the direction's size_multiple
    padded = ReflectPadToMultiple(multiple, name="pad_to_multiple")(image)
    per_frame = keras.Model([image, params], graph(padded, params, L, cfg, collect=True),
                            name=f"{model.name}_per_frame")
    image2, params2 = _image_inputs(input_shape, channels, image_name)
    given = keras.Input((per_frame_size(cfg),), name="per_frame")
    out = graph(image2, params2, L, cfg, given=given)
    render = keras.Model([image2, params2, given], out, name=f"{model.name}_render")
    return per_frame, render
