"""MicroISP (Ignatov et al., ECCV 2022 workshops): one folder, the whole method.

* ``model.py``: the graph (:func:`build_microisp`), reads like the paper's figure;
* ``official.py``: the authors' TF1 checkpoint import and their input scaling;
* ``merged.py``: the merged-branch variant (same function, 12-channel convolutions);
* ``recipe.json``: our training recipe (the authors released none);
* ``weights/``: the reference weights trained here (``microisp_reference.weights.h5``).
"""
import pathlib

from isp_tf.models.microisp.merged import merge_branches
from isp_tf.models.microisp.model import BRANCHES, SKIP_EVERY, build_microisp
from isp_tf.models.microisp.official import (OFFICIAL_CHANNEL_ORDER, load_official_checkpoint,
                                             official_scaling)
from isp_tf.models.registry import PACKED_BAYER_INPUT, TANH_SRGB_OUTPUT, Direction, ModelSpec, Variant

__all__ = ["BRANCHES", "OFFICIAL_CHANNEL_ORDER", "SKIP_EVERY", "SPEC", "build_microisp",
           "load_official_checkpoint", "merge_branches", "official_scaling"]

SPEC = ModelSpec(
    name="microisp",
    build=build_microisp,
    description="MicroISP (Ignatov et al. 2022): 13.5K-parameter 3-branch NNAPI-1.2 ISP",
    home=pathlib.Path(__file__).resolve().parent,
    directions=(Direction("forward", (PACKED_BAYER_INPUT,), (TANH_SRGB_OUTPUT,), output_scale=2, size_multiple=1),),
    presets={"published": {"width": 4, "depth": 7}, "small": {"width": 4, "depth": 4}},
    published_parameters=13_560,
    recipe="recipe.json",
    weights="microisp_reference.weights.h5",
    variants={"merged": Variant(
        "merged", merge_branches, nnapi=True,
        description="the 3 branches of each stage in one 12-channel graph (block-diagonal kernels): "
                    "same function, a third of the ops, 2x faster under XNNPACK")},
    infer_variant="merged",  # 1.9x faster than the plain graph at FullHD (benchmarks/results/cpu_2threads.md)
    qat_configs={"PReLU": "output", "DepthToSpace": "noop", "ScaledTanh": "output",
                 "ChannelAttention": "sublayers"},
)
