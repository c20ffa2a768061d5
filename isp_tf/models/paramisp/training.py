"""ParamISP's training, as ``python -m isp_tf.train`` reads it from the spec.

Stages (:data:`STAGES`, the authors' procedure):

* ``pretrain``: both directions from scratch on every camera of ``--data``;
* ``finetune``: from ``pretrain``'s weights, on one camera (``--camera NAME``
  keeps that camera's examples of a ``cameras:`` dataset);
* ``joint``: from ``finetune``'s weights, forward and inverse together.

Losses (per example; the recipe weighs them), L1 on outputs cropped by 2
pixels on every side as the authors' ``crop``:

* ``forward_l1``: ``|forward(raw, p) - srgb|``;
* ``inverse_l1``: ``|inverse(srgb, p) - raw mosaic|``;
* ``cycle_l1`` (joint only): ``|forward(inverse(srgb, p), p) - srgb|``, the
  forward fed the recovered RAW.  The joint loss is ``L_inv + L_fwd(recovered
  RAW) + L1`` = ``inverse_l1 + cycle_l1 + forward_l1``.

Pre-training and fine-tuning train the two networks side by side (their
losses summed; the networks share no weight, so this is two trainings at
once with one optimizer); the authors run them as two processes.

Training data (:func:`paramisp_dataset`): the pairs pipeline with metadata
(its ``params`` is the 84-value vector, :func:`isp_tf.data.cameras.camera_params_vector`),
the inverse's target is the RGGB mosaic of the packed RAW, and, for the
training split only, as stateless functions of ``(seed, batch index)``: the
dequantisation noise (N(0, 0.4 / 1023) on the RAW, N(0, 0.4 / 255) on the
sRGB input of the inverse; the authors use each file's white - black for the
RAW) and the optics dropout (p = 0.2 per example and field: the field's 15
encoding values are zeroed).
"""
from __future__ import annotations

from isp_tf._keras import tf
from isp_tf.models.registry import Option, Stage

LOSS_TERMS = ("forward_l1", "inverse_l1", "cycle_l1")
OPTICS_DROPOUT = 0.2
RAW_LEVELS = 1023.0
CROP = 2

OPTIONS = (Option("camera", help="fine-tune on this camera only (the examples of a cameras: dataset "
                                 "whose camera is NAME; see isp_tf.data.cameras)"),)


def _joint_target(y):
    return dict(y, cycle=tf.ones_like(y["rgb"][:, :1, :1, :1]))


STAGES = (
    Stage("pretrain", folder="pretrain"),
    Stage("finetune", folder="finetune", starts_from_previous=True),
    Stage("joint", folder="joint", starts_from_previous=True, target=_joint_target),
)


def to_model_batch(x, y, seed=None, index=None):
    """A pipeline batch with metadata -> ``((packed, params, srgb), {"rgb", "bayer"})``.

    ``seed``/``index`` given (training): adds the dequantisation noise and the optics dropout.
    """
    packed, params = x["raw"], x["params"]
    bayer = tf.nn.depth_to_space(packed, 2)
    srgb = y
    if seed is not None:
        s = tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)])
        b = tf.shape(packed)[0]
        packed = packed + tf.random.stateless_normal(tf.shape(packed), s, stddev=0.4 / RAW_LEVELS)
        srgb = y + tf.random.stateless_normal(tf.shape(y), s + [0, 1 << 40], stddev=0.4 / 255.0)
        keep = tf.cast(tf.random.stateless_uniform([b, 4], s + [0, 2 << 40]) >= OPTICS_DROPOUT, tf.float32)
        mask = tf.concat([tf.ones([b, 24]), tf.repeat(keep, 15, axis=1)], axis=1)
        params = params * mask
    return (packed, params, srgb), {"rgb": y, "bayer": bayer}


def paramisp_dataset(specs, split: str = "train", patch_size: int = 448, batch_size: int = 8, seed: int = 0,
                     cache=True, augment=None, repeat=None, input_kind=None, options=None, **kwargs):
    """``ModelSpec.dataset``: pairs with metadata as ``((packed, params, srgb), {"rgb", "bayer"})``."""
    from isp_tf.data import build_dataset

    camera = (options or {}).get("camera")
    if camera:
        from isp_tf.data.cameras import select_camera

        specs = select_camera(specs, camera)
    ds = build_dataset(specs, split=split, patch_size=patch_size, batch_size=batch_size, seed=seed, cache=cache,
                       augment=augment, repeat=repeat, input_kind="packed_bayer", with_metadata=True, **kwargs)
    if split != "train":
        return ds.map(lambda x, y: to_model_batch(x, y))
    return ds.enumerate().map(lambda i, xy: to_model_batch(xy[0], xy[1], seed, i))


def _crop(t):
    return t[:, CROP:-CROP, CROP:-CROP, :]


def _l1(a, b):
    return tf.reduce_mean(tf.abs(_crop(a) - _crop(b)), axis=[1, 2, 3])


def paramisp_objective(model, x, y, image_loss=None, training=True):
    """``objective(model, x, y) -> (terms, forward prediction)``; see the module docstring."""
    from isp_tf.models.paramisp.model import inverse_of

    packed, params, srgb = x
    inverse = inverse_of(model)
    rgb = model([packed, params], training=training)
    raw = inverse([srgb, params], training=training)
    terms = {"forward_l1": _l1(rgb, y["rgb"]), "inverse_l1": _l1(raw, y["bayer"])}
    if "cycle" in y:  # joint: the forward on the recovered RAW (packed again)
        again = model([tf.nn.space_to_depth(raw, 2), params], training=training)
        terms["cycle_l1"] = _l1(again, y["rgb"])
    return terms, rgb


def objective_for(options):
    """``ModelSpec.objective_factory``."""
    return paramisp_objective


def paramisp_validation(model, x, y, objective):
    """PSNR of both directions (outputs clipped to [0, 1]) on a validation batch."""
    from isp_tf.losses import metrics
    from isp_tf.models.paramisp.model import inverse_of

    packed, params, srgb = x
    rgb = tf.clip_by_value(model([packed, params], training=False), 0.0, 1.0)
    raw = tf.clip_by_value(inverse_of(model)([srgb, params], training=False), 0.0, 1.0)
    return {"forward_psnr": metrics.psnr(y["rgb"], rgb), "inverse_psnr": metrics.psnr(y["bayer"], raw)}, rgb
