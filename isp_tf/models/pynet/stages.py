"""PyNET's training stages: levels 5 (coarsest) to 0, each from the previous level's weights.

Level ``k`` learns the target bicubically downscaled by ``2**k``
(:func:`target_for_level`) and starts from level ``k+1``'s final weights,
copied layer by layer (:func:`transfer_level_weights`: layer names are stable
across levels).  :data:`STAGES` declares this to the registry; the trainer
only reads it.
"""
from __future__ import annotations

import functools

from isp_tf.errors import WeightsMismatchError
from isp_tf.models.pynet.model import LEVELS
from isp_tf.models.registry import Stage

__all__ = ["STAGES", "target_for_level", "transfer_level_weights"]


def target_for_level(rgb, level: int):
    """PyNET level ``k`` learns the target bicubically downscaled by ``2**k`` (level 0: full size)."""
    from isp_tf._keras import tf

    if not level:
        return rgb
    size = tf.shape(rgb)[1:3] // (2 ** level)
    return tf.clip_by_value(tf.image.resize(rgb, size, method="bicubic", antialias=True), 0.0, 1.0)


def transfer_level_weights(src_model, dst_model):
    """Copy the weights of every layer of ``src_model`` that ``dst_model`` also has, by name.

    Use it to start level k from a trained level k+1 (``dst`` is a superset
    except for the level-(k+1) output head, which level k does not contain).
    Returns the names of the layers copied.  Raises
    :class:`~isp_tf.errors.WeightsMismatchError` if a shared layer's shapes
    differ (e.g. two widths) or nothing is shared.
    """
    dst_layers = {layer.name: layer for layer in dst_model.layers if layer.weights}
    copied = []
    for layer in src_model.layers:
        if not layer.weights or layer.name not in dst_layers:
            continue
        target = dst_layers[layer.name]
        values = layer.get_weights()
        shapes = [tuple(v.shape) for v in values]
        expected = [tuple(v.shape) for v in target.weights]
        if shapes != expected[:len(shapes)] or len(shapes) != len(target.get_weights()):
            raise WeightsMismatchError(
                f"layer {layer.name!r}: {src_model.name!r} has weight shapes {shapes}, "
                f"{dst_model.name!r} has {expected} (different width?)")
        target.set_weights(values)
        copied.append(layer.name)
    if not copied:
        raise WeightsMismatchError(f"{src_model.name!r} and {dst_model.name!r} share no layers")
    return copied


STAGES = tuple(
    Stage(name=str(k), config={"level": k}, folder=f"level_{k}", starts_from_previous=k < 5,
          target=functools.partial(target_for_level, level=k) if k else None,
          transfer=transfer_level_weights)
    for k in LEVELS)
