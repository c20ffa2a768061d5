"""ParamISP (Kim et al., CVPR 2024): forward and inverse ISPs conditioned on camera parameters.

* ``model.py``: the graph (:func:`build_paramisp`: ParamNet, CanoNet,
  features, LocalNet, GlobalNet), the inverse it carries (:func:`inverse_of`,
  ``Direction.derive``), :func:`split_paramisp` (exact tiling);
* ``layers.py``: its layers (Malvar demosaic, Sobel, soft histograms, CBAM
  block, tone mapping), NNAPI 1.2 ops only;
* ``params.py``: camera parameters from a RAW file (``isp_tf.raw``) and the
  host-side encoding into the 84-value ``params`` input, with the warning for
  missing / out-of-range EXIF;
* ``training.py``: the data (``ModelSpec.dataset``), the losses of the
  stages ``pretrain``, ``finetune`` (``--camera NAME``) and ``joint``;
* ``experiment.py``: true vs shuffled camera parameters on held-out data;
* ``recipe.json``: the authors' schedule per stage.
* ``weights/paramisp_small_reference.*``: the small preset's reference weights, trained
  here on the simulated cameras (the JSON records the commands, seed and figures).

Directions: ``forward`` (packed Bayer + params -> sRGB at twice the packed
size) and ``inverse`` (sRGB + params -> RGGB mosaic at the same size).  Both
are separate networks (1 x 709,885 parameters each at the published preset);
the forward model carries the inverse, so ``published_parameters`` counts
both (1,419,770) and one weights file holds both.
"""
import pathlib

from isp_tf.models.paramisp.model import (InverseNetwork, build_paramisp, build_paramisp_inverse, inverse_of,
                                          split_paramisp)
from isp_tf.models.paramisp.params import (CameraParams, CameraParamsWarning, encode, params_from_raw,
                                           params_vector_from_raw, read_camera_params)
from isp_tf.models.registry import Direction, ModelSpec, Port

__all__ = ["SPEC", "CameraParams", "CameraParamsWarning", "InverseNetwork", "build_paramisp",
           "build_paramisp_inverse", "encode", "inverse_of", "params_from_raw", "read_camera_params",
           "split_paramisp"]

PARAMS_NORMALISE = (
    "84 float32 per frame, computed on the host (isp_tf.models.paramisp.params.encode): "
    "[0:3] wb = as-shot gains / green gain; [3:6] 1 / wb; [6:15] camera RGB (white balanced) -> linear sRGB "
    "3x3, row-major; [15:24] its inverse, row-major; [24:84] 15 values each for focal length (mm), "
    "f-number, exposure time (s), ISO, in that order: with v = max(value or 0, 1e-12): v/s, sqrt(v/s), "
    "(v/s)^0.25, c/v, sqrt(c/v), (c/v)^0.25, (log2(v) - a)/b, sin(log2 v), cos(log2 v), sin(v/d1), "
    "cos(v/d1), sin(v/d2), cos(v/d2), sin(v/d3), cos(v/d3); (s, c, d1, d2, d3, a, b): focal "
    "(200, 4.2, 50, 30, 20, 1.9, 5.8), f-number (32, 1.7, 11, 5, 2, 0.7, 4.3), exposure "
    "(30, 1/28800, 11, 5, 2, -15, 20), ISO (8000, 64, 3100, 1300, 500, 6, 7)")

PACKED_BAYER = Port(
    "packed_bayer", "packed_bayer", 4,
    normalise="x = (raw - black_level) / (white_level - black_level), per CFA site, in [0, 1], "
              "after cropping the mosaic so its top-left pixel is red (isp_tf.raw.pack_bayer)")
PARAMS = Port("params", "vector", 84, normalise=PARAMS_NORMALISE, value_range=(-1.0, 1e12),
              from_raw=params_vector_from_raw)
SRGB_OUT = Port("rgb", "srgb", 3, normalise="sRGB in [0, 1] (not clipped): clip to [0, 1], x 255")
SRGB_IN = Port("srgb", "srgb", 3, normalise="sRGB in [0, 1]: a decoded 8-bit JPEG / PNG divided by 255")
BAYER_OUT = Port("bayer", "bayer", 1,
                 normalise="RGGB mosaic, (raw - black) / (white - black) (clip to [0, 1]): remosaic to the "
                           "camera's CFA, x (white - black) + black for sensor units")


def _stages():
    from isp_tf.models.paramisp.training import STAGES

    return STAGES


def _training():
    from isp_tf.models.paramisp import training

    return training


SPEC = ModelSpec(
    name="paramisp",
    build=build_paramisp,
    description="ParamISP (Kim et al. 2024): 0.71M-parameter forward + 0.71M inverse ISPs conditioned on EXIF",
    home=pathlib.Path(__file__).resolve().parent,
    directions=(
        Direction("forward", (PACKED_BAYER, PARAMS), (SRGB_OUT,), output_scale=2, size_multiple=2),
        Direction("inverse", (SRGB_IN, PARAMS), (BAYER_OUT,), output_scale=1, size_multiple=4,
                  derive=inverse_of),
    ),
    presets={"published": {"width": 64},
             "small": {"width": 8, "blocks": 1, "scales": 2, "stages": 2, "global_convs": 2, "bins": [4]}},
    published_parameters=1_419_770,
    recipe="recipe.json",
    weights="paramisp_small_reference.weights.h5",  # the small preset, trained here (weights/*.json)
    stages=_stages(),
    qat_configs={"ParamSlices": "noop", "MinSizePad": "noop", "VectorSlice": "noop", "ELU": "output",
                 "CanoNet": "output", "UnCanoNet": "output", "OverExposureMask": "output", "PixelFeatures": "output",
                 "LocalBlock": "sublayers", "StageEmbedding": "output", "SubPixelUp": "output", "ToneMapping": "output",
                 "InverseNetwork": "noop"},
    # int8 (measured on the small preset with the exporter's conversion at API 29): EXP (ELU), ABS
    # (soft histograms, tone curve) and DIV (tone curve) have float32-only NNAPI kernels, MULs of
    # large-range activations need MUL v3, and the float islands bring QUANTIZE / DEQUANTIZE;
    # export FP32 or FP16 for the NNAPI delegate
    cpu_ops={"int8": ("ABS", "DEQUANTIZE", "DIV", "EXP", "MUL", "QUANTIZE")},
    objective_factory=lambda options: _training().objective_for(options),
    loss_terms=_training().LOSS_TERMS,
    options=_training().OPTIONS,
    dataset=lambda *a, **k: _training().paramisp_dataset(*a, **k),
    validation=lambda *a, **k: _training().paramisp_validation(*a, **k),
    split=split_paramisp,
)
