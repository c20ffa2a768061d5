"""Keras layers shared by several models, each defined once.

Every layer here exports to TFLite ops the NNAPI 1.2 delegate accepts (see
``../shared/NNAPI12.md``) when built normally, and layers that need whole-image
statistics derive from :class:`GlobalStatsLayer` so they can be tiled exactly.
"""
from isp_tf.layers.activations import ScaledTanh, channel_prelu
from isp_tf.layers.attention import ChannelAttention
from isp_tf.layers.color import apply_color_matrix
from isp_tf.layers.depth_space import DepthToSpace, SpaceToDepth
from isp_tf.layers.global_stats import GlobalStatsLayer, tiling_mode
from isp_tf.layers.instance_norm import InstanceNorm

__all__ = ["ChannelAttention", "DepthToSpace", "GlobalStatsLayer", "InstanceNorm", "ScaledTanh",
           "SpaceToDepth", "apply_color_matrix", "channel_prelu", "tiling_mode"]
