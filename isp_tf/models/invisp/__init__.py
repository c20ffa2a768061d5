"""InvISP (Xing, Qian, Chen, CVPR 2021): one folder, the whole method.

* ``model.py``: the graph (:func:`build_invisp`: gamma + 8 invertible blocks),
  its inverse sharing the weights (:func:`build_inverse`), the flow's
  log-determinant (:func:`log_det`) and the authors' two-term loss
  (:func:`invisp_objective`: sRGB L1 + L1 of the inverse of the
  differentiably JPEG-compressed output against the RAW);
* ``recipe.json``: the authors' schedule (train.py of yzxing87/Invertible-ISP).

Directions: ``forward`` (linear camera RGB -> sRGB) and ``inverse``
(sRGB, e.g. a decoded JPEG -> linear camera RGB), both full resolution
(``output_scale`` 1).  ``python -m isp_tf.infer --model invisp --inverse
PHOTO.jpg --metadata RAW_OR_JSON`` turns the inverse's output into a DNG
(:mod:`isp_tf.infer.inverse`).  Shipped: the small preset's reference weights
(``weights/invisp_small_reference.*``, trained here on synthetic pairs); the
published preset needs a GPU and FiveK.

Int8: the coupling's EXP and the gamma curve's POW exist in NNAPI 1.2 at
float32 only, so an int8 export keeps them on the CPU (``cpu_ops``); export
FP32 or FP16 for the NNAPI delegate.
"""
import pathlib

from isp_tf.models.invisp.model import (BLOCKS_NAME, GAMMA_NAME, JPEG_SETTINGS, FlowParts, GammaCurve,
                                        build_inverse, build_invisp, flow_parts, invisp_objective, log_det)
from isp_tf.models.registry import Direction, ModelSpec, Port

__all__ = ["BLOCKS_NAME", "GAMMA_NAME", "JPEG_SETTINGS", "SPEC", "FlowParts", "GammaCurve", "build_inverse",
           "build_invisp", "flow_parts", "invisp_objective", "log_det"]

LINEAR_RGB = Port(
    "linear_rgb", "linear_rgb", 3,
    normalise="camera RGB: (raw - black) / (white - black) per CFA site, times the as-shot white-balance "
              "gains divided by their smallest, clipped to [0, 1], bilinearly demosaiced "
              "(isp_tf.raw.demosaic_bilinear); linear (the model applies gamma 1/2.2 itself)")
SRGB = Port("rgb", "srgb", 3, value_range=(0.0, 1.0),
            normalise="sRGB in [0, 1] (may overshoot slightly): clip to [0, 1], x 255")
SRGB_IN = Port("srgb", "srgb", 3,
               normalise="sRGB in [0, 1]: a decoded 8-bit JPEG / PNG divided by 255")
LINEAR_OUT = Port("linear_rgb", "linear_rgb", 3,
                  normalise="white-balanced linear camera RGB in [0, 1] (clip): remosaic to the camera's CFA, "
                            "divide by the white-balance gains / their smallest, x (white - black) + black "
                            "for sensor units (isp_tf.infer.inverse.linear_to_mosaic)")

SPEC = ModelSpec(
    name="invisp",
    build=build_invisp,
    description="InvISP (Xing et al. 2021): 1.41M-parameter invertible ISP, linear RGB <-> sRGB",
    home=pathlib.Path(__file__).resolve().parent,
    directions=(
        Direction("forward", (LINEAR_RGB,), (SRGB,), output_scale=1, size_multiple=1),
        Direction("inverse", (SRGB_IN,), (LINEAR_OUT,), output_scale=1, size_multiple=1,
                  derive=build_inverse),
    ),
    presets={"published": {"num_blocks": 8, "growth": 32, "gamma": 2.2},
             "small": {"num_blocks": 2, "growth": 8, "gamma": 2.2},
             "no_gamma": {"num_blocks": 8, "growth": 32, "gamma": None}},
    # trainable, the paper's count; count_params() adds 96 fixed values (P and sign_s of the 8 1x1 convs)
    published_parameters=1_413_760,
    recipe="recipe.json",
    weights="invisp_small_reference.weights.h5",  # the small preset, trained here (weights/*.json)
    qat_configs={"InvertibleSequence": "sublayers", "GammaCurve": "output"},
    # int8: EXP has no int8 kernel at API 29 and POW stays float, wrapped in QUANTIZE/DEQUANTIZE
    # ops the API-29 delegate refuses (int8 QUANTIZE output, int8 DEQUANTIZE with a zero point)
    cpu_ops={"int8": ("DEQUANTIZE", "EXP", "QUANTIZE")},
    objective=invisp_objective,
    loss_terms=("raw_l1",),
)
