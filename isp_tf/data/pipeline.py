"""tf.data pipelines of aligned (packed Bayer, sRGB) training pairs.

The stages, in order::

    example indices -> [shard] -> [shuffle] -> decode (parallel) -> [cache]
        -> [shuffle] -> [repeat] -> crop + augment (parallel) -> batch -> prefetch

* **decode** reads one pair through its layout (:mod:`isp_tf.data.layouts`)
  and normalises the mosaic with the file's black/white levels; it runs in
  parallel (``num_parallel_calls=AUTOTUNE``), most of its work being native
  code (LibRaw, the image codecs, numpy).
* **cache** keeps the decoded full images (in memory, or in files when
  ``cache`` is a path): later epochs skip decoding.
* **crop + augment** are TensorFlow ops. A crop always starts on a red pixel,
  so the crop is RGGB whatever the sensor's pattern (the Bayer phase is kept).
  Flips and rotations act on the *mosaic* and the sRGB target together, on a
  window two pixels larger than the patch; a map of CFA sites is moved with
  them, and the patch is then cut where the red pixel now lies. The patch is
  therefore again RGGB and is packed without permuting any channel. (Packing
  first and flipping the 4-channel image would swap G1/G2 and put R and B in
  the wrong place.) For an image exactly the patch size there is no margin:
  only the transforms that keep red at the top-left (identity, transpose) are
  drawn.
* **randomness** is stateless: the crop and transform of the ``i``-th element
  come from ``(seed, shard, i)``, and the shuffle is seeded, so a run repeats
  exactly, with or without the cache and whatever the parallelism.
* **sharding**: with an ``input_context`` (``tf.distribute``) the example list
  is split by ``input_pipeline_id`` before decoding and the batch is the
  per-replica batch; without one the auto-shard policy is ``DATA`` so a
  strategy may split elements (files are not the unit here).
* **evaluation splits** (``val``/``test``) take one centred crop per image,
  no augmentation, no repeat, and keep the last partial batch.
"""
from __future__ import annotations

from typing import Iterable, List, Optional, Sequence, Union

import numpy as np

from isp_tf._keras import tf
from isp_tf.data.batching import AUTOTUNE, batch_and_prefetch, shard_indices
from isp_tf.data.layouts import META_SIZES, PairExample, decode_example, find_examples, parse_spec
from isp_tf.errors import DatasetError

#: Input kinds: the model input built from the RGGB patch.
INPUT_KINDS = ("packed_bayer", "bayer", "linear_rgb")
_RGGB_OFFSETS = tf.constant([[0, 0], [0, 1], [1, 0], [1, 1]], tf.int32)  # CFA_PATTERNS order


# --------------------------------------------------------------------------- decode
def _decode_fn(examples: Sequence[PairExample], patch_size: int):
    def decode(index):
        return decode_example(examples[int(index)], patch_size)

    def tf_decode(index):
        mosaic, pattern, rgb, meta = tf.numpy_function(
            decode, [index], [tf.float32, tf.int32, tf.float32, tf.float32], stateful=False)
        mosaic.set_shape([None, None])
        pattern.set_shape([])
        rgb.set_shape([None, None, 3])
        meta.set_shape([sum(META_SIZES)])
        return mosaic, pattern, rgb, meta

    return tf_decode


# --------------------------------------------------------------------------- crop
def _dihedral(x, t):
    """Element ``t`` (0..7) of the symmetry group of the square: rot90^(t % 4), then transpose if t >= 4."""
    x = tf.image.rot90(x, k=t % 4)
    return tf.cond(t >= 4, lambda: tf.transpose(x, [1, 0, 2]), lambda: x)


def crop_and_augment(mosaic, pattern, rgb, seed, *, patch_size: int, augment: bool, random_crop: bool):
    """One aligned ``patch_size`` crop of ``(mosaic, rgb)``, RGGB phase.

    Args:
      mosaic: ``(H, W)`` float32, normalised.
      pattern: index into ``CFA_PATTERNS`` of the mosaic's pattern.
      rgb: ``(H, W, 3)`` float32, aligned with ``mosaic``.
      seed: int64 ``(2,)`` stateless seed of this element.
      augment: draw one of the 8 flips/rotations (see the module docstring).
      random_crop: random position (else centred).

    Returns:
      ``(rggb_mosaic (P, P), rgb (P, P, 3))``.
    """
    p = patch_size
    off = tf.gather(_RGGB_OFFSETS, pattern)
    avail_h = tf.shape(mosaic)[0] - off[0]
    avail_w = tf.shape(mosaic)[1] - off[1]
    margin = 2 if augment else 0
    if augment:  # no room for a margin: keep the phase with identity/transpose only
        margin = tf.where(tf.minimum(avail_h, avail_w) >= p + 2, 2, 0)
    win = p + margin
    steps_h = (avail_h - win) // 2 + 1  # number of red-aligned positions
    steps_w = (avail_w - win) // 2 + 1
    seeds = tf.random.experimental.stateless_split(seed, 3)
    if random_crop:
        iy = tf.random.stateless_uniform([], seeds[0], 0, steps_h, dtype=tf.int32)
        ix = tf.random.stateless_uniform([], seeds[1], 0, steps_w, dtype=tf.int32)
    else:
        iy, ix = (steps_h - 1) // 2, (steps_w - 1) // 2
    y0, x0 = off[0] + 2 * iy, off[1] + 2 * ix

    window = tf.concat([mosaic[y0:y0 + win, x0:x0 + win, None], rgb[y0:y0 + win, x0:x0 + win]], axis=-1)
    if not augment:
        return window[:p, :p, 0], window[:p, :p, 1:4]
    rows = tf.range(win)[:, None] % 2
    cols = tf.range(win)[None, :] % 2
    site = tf.cast(rows * 2 + cols, tf.float32)[..., None]  # 0 = red in this RGGB window
    window = tf.concat([window, site], axis=-1)
    t_any = tf.random.stateless_uniform([], seeds[2], 0, 8, dtype=tf.int32)
    t = tf.where(margin > 0, t_any, 4 * (t_any % 2))  # identity or transpose without a margin
    window = _dihedral(window, t)
    red = tf.cast(tf.argmin(tf.reshape(window[:2, :2, 4], [-1])), tf.int32)
    dy, dx = red // 2, red % 2
    patch = window[dy:dy + p, dx:dx + p]
    return patch[..., 0], patch[..., 1:4]


def pack_rggb(mosaic):
    """``(..., P, P)`` RGGB mosaic -> ``(..., P/2, P/2, 4)`` [R, G1, G2, B] (as ``isp_tf.raw.pack_bayer``)."""
    x = mosaic[..., None]
    squeeze = x.shape.rank == 3
    if squeeze:
        x = x[None]
    x = tf.nn.space_to_depth(x, 2)
    return x[0] if squeeze else x


# --------------------------------------------------------------------------- linear RGB
def demosaic_bilinear_rggb(mosaic):
    """Bilinear demosaic of an RGGB mosaic ``(..., H, W)`` -> ``(..., H, W, 3)`` in TensorFlow.

    The same arithmetic, in the same order, as :func:`isp_tf.raw.demosaic_bilinear`
    with pattern ``RGGB`` (own samples kept; missing green: mean of the 4
    neighbours; missing red/blue: mean of the 2 horizontal, 2 vertical or 4
    diagonal neighbours), borders mirrored without repeating the edge pixel
    (``REFLECT``, which keeps the Bayer phase), so on the same array the two
    agree to float32 rounding.  H and W must be even and at least 2.

    On a crop of a larger mosaic only the crop is seen: its interior (all but
    the outermost row and column) equals the demosaic of the whole mosaic
    cropped; the outermost pixels use mirrored neighbours instead of the
    pixels beyond the crop.
    """
    m = tf.convert_to_tensor(mosaic, tf.float32)
    rank = m.shape.rank
    paddings = [[0, 0]] * (rank - 2) + [[1, 1], [1, 1]]
    p = tf.pad(m, paddings, mode="REFLECT")
    horiz = p[..., 1:-1, :-2] + p[..., 1:-1, 2:]
    vert = p[..., :-2, 1:-1] + p[..., 2:, 1:-1]
    diag = p[..., :-2, :-2] + p[..., :-2, 2:] + p[..., 2:, :-2] + p[..., 2:, 2:]
    cross = (horiz + vert) * 0.25
    horiz = horiz * 0.5
    vert = vert * 0.5
    diag = diag * 0.25
    shape = tf.shape(m)
    odd_row = tf.equal(tf.range(shape[-2]) % 2, 1)[:, None]
    odd_col = tf.equal(tf.range(shape[-1]) % 2, 1)[None, :]
    red = tf.logical_and(~odd_row, ~odd_col)
    green_r = tf.logical_and(~odd_row, odd_col)   # green in a red row
    green_b = tf.logical_and(odd_row, ~odd_col)   # green in a blue row
    blue = tf.logical_and(odd_row, odd_col)
    r = tf.where(red, m, tf.where(green_r, horiz, tf.where(green_b, vert, diag)))
    g = tf.where(tf.logical_or(green_r, green_b), m, cross)
    b = tf.where(blue, m, tf.where(green_b, horiz, tf.where(green_r, vert, diag)))
    return tf.stack([r, g, b], axis=-1)


def linear_rgb_from_rggb(mosaic, wb_gains, gamma=None):
    """The ``linear_rgb`` model input of a normalised RGGB patch ``(..., P, P)``.

    As the linear part of :func:`isp_tf.raw.render_classical`: the camera's
    white-balance gains ``wb_gains`` (R, G, B; ``(3,)`` or ``(..., 3)``) divided by
    their smallest multiply the mosaic's sites, the result is clipped to
    [0, 1] and bilinearly demosaiced (:func:`demosaic_bilinear_rggb`; the
    black level was already subtracted by the normalisation).  White balance
    commutes with this demosaic (every plane is interpolated from its own
    samples only), so applying it to the mosaic first only changes where the
    highlight clip happens, and makes it the classical renderer's.

    ``gamma``: ``None`` (default: linear, the ``linear_rgb`` port kind) or an
    exponent ``g``, returning ``x ** (1 / g)`` (the InvISP authors' input; our
    InvISP applies its gamma inside the model).
    """
    m = tf.convert_to_tensor(mosaic, tf.float32)
    gains = tf.convert_to_tensor(wb_gains, tf.float32)
    gains = gains / tf.reduce_min(gains, axis=-1, keepdims=True)
    rows = tf.range(tf.shape(m)[-2]) % 2
    cols = tf.range(tf.shape(m)[-1]) % 2
    site = rows[:, None] + cols[None, :]  # RGGB: 0 red, 1 green, 2 blue
    site_gain = tf.gather(gains, site, axis=-1)  # (..., P, P) for gains (..., 3)
    x = demosaic_bilinear_rggb(tf.minimum(m * site_gain, 1.0))
    x = tf.clip_by_value(x, 0.0, 1.0)
    if gamma:
        x = tf.pow(x, 1.0 / float(gamma))
    return x


# --------------------------------------------------------------------------- build
def _as_spec_list(specs) -> List[str]:
    if isinstance(specs, str):
        return [specs]
    if not isinstance(specs, (list, tuple)) or not all(isinstance(s, str) for s in specs):
        raise DatasetError(f"dataset specs must be a 'LAYOUT:PATH' string or a list of them, got {specs!r}")
    if not specs:
        raise DatasetError("no dataset spec given")
    return list(specs)


def collect_examples(specs, split: str = "train", seed: int = 0) -> List[PairExample]:
    """All pairs of all specs for ``split``, in a fixed order."""
    examples = []
    for spec in _as_spec_list(specs):
        examples += find_examples(spec, split, seed)
    return examples


def build_dataset(specs, split: str = "train", patch_size: int = 256, batch_size: int = 8, seed: int = 0,
                  cache: Union[bool, str] = True, augment: Optional[bool] = None,
                  repeat: Optional[bool] = None, input_kind: str = "packed_bayer", *,
                  input_context=None, with_metadata: bool = False, shuffle: Optional[bool] = None,
                  random_crop: Optional[bool] = None, patches_per_image: int = 1,
                  num_parallel_calls=AUTOTUNE, validate: Union[bool, str] = True) -> "tf.data.Dataset":
    """A ``tf.data.Dataset`` of aligned training pairs.

    Args:
      specs: ``"LAYOUT:PATH"`` or a list of them (layouts in
        :mod:`isp_tf.data.layouts`); ``"rawnod:PATH"`` is delegated to
        :func:`isp_tf.data.rawnod.build_detection_dataset`.
      split: ``train``, ``val`` or ``test``.
      patch_size: side of the sRGB patch (even); the packed input is half that.
      batch_size: global batch size (divided by the replicas with ``input_context``).
      seed: makes shuffling, crops and augmentation repeatable.
      cache: ``True`` keeps decoded images in memory (16 bytes per pixel:
        float32 mosaic and sRGB), a path caches to files there, ``False``
        decodes every epoch (then ``patches_per_image`` > 1 helps).
      augment: flips/rotations that keep the CFA consistent; default on for ``train``.
      repeat: repeat forever; default on for ``train``.
      input_kind: ``packed_bayer`` -> ``(B, P/2, P/2, 4)``; ``bayer`` -> ``(B, P, P, 1)`` RGGB mosaic;
        ``linear_rgb`` -> ``(B, P, P, 3)`` white-balanced, demosaiced linear camera RGB
        (:func:`linear_rgb_from_rggb`, with the example's as-shot white balance).
      input_context: a ``tf.distribute.InputContext`` (see :func:`build_distributed_dataset`).
      with_metadata: yield ``({"raw": x, "wb_gains", "cam_to_srgb", "cam_to_xyz", "exif", "params"}, rgb)``
        (``params``: ParamISP's 84 encoded camera parameters, :func:`isp_tf.data.cameras.camera_params_vector`);
        ``exif`` is [focal length, f-number, exposure time, ISO], 0 where unknown.
      shuffle: shuffle the examples; default on for ``train``.
      random_crop: random crop positions (else one centred crop per image);
        default on for ``train``.
      patches_per_image: crops taken from each decoded image in a row; more
        than 1 trades batch diversity for speed when decoding is the
        bottleneck (no cache, large files).
      validate: decode the first example now, so a broken dataset fails here
        with a :class:`DatasetError` rather than inside TensorFlow; ``"all"``
        decodes every example of this shard first (slow, thorough).

    Yields:
      ``(x, rgb)`` float32 in [0, 1]; ``rgb`` is ``(B, P, P, 3)``.
    """
    spec_list = _as_spec_list(specs)
    if any(parse_spec(s)[0] == "rawnod" for s in spec_list):
        if len(spec_list) != 1:
            raise DatasetError("a rawnod spec cannot be mixed with (RAW, sRGB) pair specs")
        from isp_tf.data.rawnod import build_detection_dataset
        return build_detection_dataset(spec_list[0], split=split, batch_size=batch_size, seed=seed,
                                       cache=cache, augment=augment, repeat=repeat,
                                       input_context=input_context)
    if input_kind not in INPUT_KINDS:
        raise DatasetError(f"input_kind {input_kind!r} is not one of {', '.join(INPUT_KINDS)}")
    if not isinstance(patch_size, (int, np.integer)) or patch_size < 2 or patch_size % 2:
        raise DatasetError(f"patch_size must be an even integer >= 2, got {patch_size!r}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise DatasetError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(patches_per_image, (int, np.integer)) or patches_per_image < 1:
        raise DatasetError(f"patches_per_image must be a positive integer, got {patches_per_image!r}")
    training = split == "train"
    augment = training if augment is None else bool(augment)
    repeat = training if repeat is None else bool(repeat)
    shuffle = training if shuffle is None else bool(shuffle)
    random_crop = training if random_crop is None else bool(random_crop)

    examples = collect_examples(spec_list, split, seed)
    indices, batch_size = shard_indices(len(examples), batch_size, input_context)
    shard_id = input_context.input_pipeline_id if input_context is not None else 0
    if validate:
        for i in (indices if validate == "all" else indices[:1]):
            decode_example(examples[int(i)], patch_size)

    ds = tf.data.Dataset.from_tensor_slices(indices)
    n = len(indices)
    if shuffle and not cache:  # shuffle cheap indices; with a cache, shuffle after it (same order)
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(_decode_fn(examples, patch_size), num_parallel_calls=num_parallel_calls, deterministic=True)
    if cache:
        ds = ds.cache("" if cache is True else str(cache))
        if shuffle:
            ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if patches_per_image > 1:
        ds = ds.flat_map(lambda *e: tf.data.Dataset.from_tensors(e).repeat(patches_per_image))

    base_seed = tf.constant([seed, shard_id], tf.int64)

    def crop(counter, element):
        mosaic, pattern, rgb, meta = element
        element_seed = tf.random.experimental.stateless_fold_in(base_seed, counter)
        rggb, rgb_patch = crop_and_augment(mosaic, pattern, rgb, element_seed, patch_size=patch_size,
                                           augment=augment, random_crop=random_crop)
        if input_kind == "linear_rgb":
            x = linear_rgb_from_rggb(rggb, tf.split(meta, META_SIZES)[0])
        else:
            x = pack_rggb(rggb) if input_kind == "packed_bayer" else rggb[..., None]
        if with_metadata:
            parts = tf.split(meta, META_SIZES)
            x = {"raw": x, "wb_gains": parts[0], "cam_to_srgb": tf.reshape(parts[1], [3, 3]),
                 "cam_to_xyz": tf.reshape(parts[2], [3, 3]), "exif": parts[3], "params": parts[4]}
        return x, rgb_patch

    ds = ds.enumerate().map(crop, num_parallel_calls=num_parallel_calls, deterministic=True)
    return batch_and_prefetch(ds, batch_size, repeat, input_context)


def build_distributed_dataset(strategy, specs, batch_size: int = 8, **kwargs):
    """``build_dataset`` for a ``tf.distribute`` strategy: one input pipeline per
    worker, each reading a disjoint shard of the examples, ``batch_size`` global."""
    return strategy.distribute_datasets_from_function(
        lambda ctx: build_dataset(specs, batch_size=batch_size, input_context=ctx, **kwargs))


def count_examples(specs, split: str = "train", seed: int = 0) -> int:
    """Number of pairs ``specs`` hold for ``split`` (nothing is decoded)."""
    return len(collect_examples(specs, split, seed))


__all__: Iterable[str] = ("build_dataset", "build_distributed_dataset", "crop_and_augment", "pack_rggb",
                          "demosaic_bilinear_rggb", "linear_rgb_from_rggb",
                          "decode_example", "collect_examples", "count_examples", "INPUT_KINDS")
