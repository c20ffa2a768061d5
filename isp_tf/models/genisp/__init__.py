"""GenISP (Morawski et al., arXiv 2205.03688): a RAW-to-RGB ISP trained through a frozen object detector.

* ``model.py``: the graph (:func:`build_genisp`: green averaging, camera RGB
  -> XYZ with the file's matrix, ConvWB, ConvCC, shallow ConvNet),
  :func:`split_genisp` (the per-frame part and the tileable part: ``split``),
  and the detector-guided training the trainer reads from this spec
  (``options`` ``--detector-weights/--detector-backbone/--detector-classes``,
  ``dataset``, ``objective_factory``, ``validation``);
* ``detector.py``: the RetinaNet it trains through (kept as it is);
* ``recipe.json``: the paper's schedule.

Inputs: packed Bayer and ``cam_to_xyz`` (9 values, row-major: white-balanced
camera RGB -> XYZ, the inverse of the DNG's XYZ -> camera ColorMatrix; what
:mod:`isp_tf.data.rawnod` yields as ``cam_to_xyz``).  Output: a 3-channel
image at the packed resolution (``output_scale`` 1) for the detector.

``published`` uses 128 channels for the last ConvWB/ConvCC convolution, the
figure METHODS.md (section 5) gives, noting that the paper and the
reproductions disagree (64 or 128; not checked against the paper here); 64 is
the preset ``narrow`` (78,255 parameters against 116,015).
The width only decides 12 numbers per frame and runs on a 256 x 256
thumbnail, so the published choice costs little at inference whatever the
frame size.

Int8 (measured with the exporter's own conversion and passes,
``convert_function`` + ``fold_requantize`` + ``align_mean_quantization``, at
API 29): InstanceNorm's RSQRT stays on the CPU (as PyNET's), and the
converter keeps ConvCC's first convolution in float32 (a DEQUANTIZE /
QUANTIZE pair around it, refused by the API-29 delegate); export FP32 (every
op delegated) or FP16 for NNAPI.
"""
import pathlib

from isp_tf.models.genisp.model import (DETECTOR_OPTIONS, ApplyMatrix, AverageGreens, ThumbnailResize,
                                        build_genisp, genisp_dataset, genisp_objective_factory,
                                        genisp_validation, split_genisp)
from isp_tf.data.layouts import cam_to_xyz_vector
from isp_tf.models.registry import Direction, ModelSpec, Port

__all__ = ["AverageGreens", "ApplyMatrix", "SPEC", "ThumbnailResize", "build_genisp", "split_genisp"]

PACKED_BAYER = Port(
    "packed_bayer", "packed_bayer", 4,
    normalise="x = (raw - black_level) / (white_level - black_level), per CFA site, in [0, 1], "
              "after cropping the mosaic so its top-left pixel is red (isp_tf.raw.pack_bayer)")
CAM_TO_XYZ = Port(
    "cam_to_xyz", "vector", 9, value_range=(-4.0, 4.0),
    normalise="row-major 3x3 white-balanced camera RGB -> CIE XYZ (D65): the inverse of the file's "
              "XYZ -> camera ColorMatrix (isp_tf.raw.RawImage.cam_to_xyz), one per frame",
    from_raw=cam_to_xyz_vector)  # what RAW-NOD training yields as cam_to_xyz
IMAGE = Port("rgb", "srgb", 3, value_range=(0.0, 1.0),
             normalise="the detector's input image, sRGB-like, not clipped (clip to [0, 1] for display)")

SPEC = ModelSpec(
    name="genisp",
    build=build_genisp,
    description="GenISP (Morawski et al. 2022): 116K-parameter ISP trained through a frozen detector",
    home=pathlib.Path(__file__).resolve().parent,
    directions=(Direction("forward", (PACKED_BAYER, CAM_TO_XYZ), (IMAGE,), output_scale=1, size_multiple=1),),
    presets={"published": {"wbcc_width": 128, "shallow_widths": [16, 64], "thumbnail": 256},
             "narrow": {"wbcc_width": 64, "shallow_widths": [16, 64], "thumbnail": 256},
             "small": {"wbcc_width": 8, "shallow_widths": [4, 8], "thumbnail": 64}},
    published_parameters=116_015,
    recipe="recipe.json",
    weights=None,
    qat_configs={"InstanceNorm": "sublayers", "AverageGreens": "output", "ApplyMatrix": "output", "Multiply": "output",
                 "ThumbnailResize": "noop"},
    # int8: RSQRT (InstanceNorm) and the DEQUANTIZE/QUANTIZE pair around ConvCC's first conv, kept float
    cpu_ops={"int8": ("DEQUANTIZE", "QUANTIZE", "RSQRT")},
    loss_terms=("classification", "box"),
    options=DETECTOR_OPTIONS,
    dataset=genisp_dataset,
    objective_factory=genisp_objective_factory,
    validation=genisp_validation,
    split=split_genisp,
)
