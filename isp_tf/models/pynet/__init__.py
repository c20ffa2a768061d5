"""PyNET (Ignatov et al., CVPRW 2020): one folder, the whole method.

* ``model.py``: the inverted-pyramid graph (:func:`build_pynet`, one output level);
* ``stages.py``: the level-by-level training (targets per level, weight transfer);
* ``recipe.json``: the authors' schedule (train_model.py of aiff22/PyNET), per level.

No weights are shipped: levels 3..0 need the VGG-19 file (``vgg_pretrained/``).
"""
import pathlib

from isp_tf.models.pynet.model import LEVELS, build_pynet
from isp_tf.models.pynet.stages import STAGES, target_for_level, transfer_level_weights
from isp_tf.models.registry import PACKED_BAYER_INPUT, TANH_SRGB_OUTPUT, Direction, ModelSpec

__all__ = ["LEVELS", "SPEC", "build_pynet", "target_for_level", "transfer_level_weights"]

SPEC = ModelSpec(
    name="pynet",
    build=build_pynet,
    description="PyNET (Ignatov et al. 2020): 47.5M-parameter inverted-pyramid ISP, levels 5..0",
    home=pathlib.Path(__file__).resolve().parent,
    # level 0 (the published preset) outputs twice the packed input; four 2x poolings
    directions=(Direction("forward", (PACKED_BAYER_INPUT,), (TANH_SRGB_OUTPUT,), output_scale=2, size_multiple=16),),
    presets={"published": {"level": 0, "width": 1.0}, "small": {"level": 0, "width": 0.0625},
             "no_instance_norm": {"level": 0, "width": 1.0, "instance_norm": False}},
    # the level-0 model alone; the authors' graph with all six heads has 47,548,170
    published_parameters=47_521_371,
    recipe="recipe.json",
    weights=None,
    stages=STAGES,
    qat_configs={"InstanceNorm": "sublayers", "ScaledTanh": "output"},
    # NNAPI 1.2 has RSQRT for float32 only: the int8 instance norms stay on the CPU
    cpu_ops={"int8": ("RSQRT",)},
)
