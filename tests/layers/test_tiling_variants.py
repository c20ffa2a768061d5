"""The tiling variants of InstanceNorm and ChannelAttention (GlobalStatsLayer protocol).

* use_given = 0 on a whole image: the same output as the normal layer;
* use_given = 1 with the whole-image pooled value: a tile's output is the crop
  of the whole-image output;
* the per-tile ``terms`` / ``count`` over core boxes that partition the image
  (on multiples of ``alignment``) add up to the whole-image statistics.
"""
import numpy as np
import pytest

from isp_tf.layers import ChannelAttention, InstanceNorm, tiling_mode

H, W, C = 170, 250, 4  # not multiples of 81: partial attention blocks at the far edges


def _instance_norm():
    return InstanceNorm()


def _attention():
    return ChannelAttention()


def _pair(factory, x, seed=0):
    """(normal layer, tiling layer) with the same random weights."""
    normal = factory()
    normal(x)
    with tiling_mode():
        tiled = factory()
    tiled(x)
    rng = np.random.default_rng(seed)
    strip = lambda v: v.name.split("/", 1)[1]  # noqa: E731  drop the layer's own name
    tiled_vars = {strip(v): v for v in tiled.trainable_weights}
    assert len(tiled_vars) == len(normal.trainable_weights)
    for v in normal.trainable_weights:
        value = rng.normal(0.5 if "scale" in v.name else 0.0, 0.5, v.shape).astype(np.float32)
        v.assign(value)
        tiled_vars[strip(v)].assign(value)
    return normal, tiled


def _set_tile(layer, core, tile_hw, given=None):
    layer.core_box.assign(core)
    layer.input_hw.assign(tile_hw)
    layer.use_given.assign(0.0 if given is None else 1.0)
    if given is not None:
        layer.given.assign(given)


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(7)
    return (rng.random((1, H, W, C)) * [1.0, 0.5, 2.0, 0.2] + [0.0, 0.3, -0.5, 1.0]).astype(np.float32)


# InstanceNorm's variants differ in float32 rounding only: the normal one is
# two-pass in float32, the tiling one one-pass in float64 (both within 2e-5 of
# a float64 reference on this image, see test_instance_norm.py)
TOLERANCE = {"instance_norm": 5e-5, "attention": 1e-6}


@pytest.mark.parametrize("factory", [_instance_norm, _attention], ids=["instance_norm", "attention"])
def test_whole_image_without_given_equals_normal(factory, image):
    normal, tiled = _pair(factory, image)
    assert tiled.tiling and not normal.tiling
    _set_tile(tiled, [0, 0, H, W], [H, W])
    expected = normal(image).numpy()
    atol = TOLERANCE["attention" if factory is _attention else "instance_norm"]
    np.testing.assert_allclose(tiled(image).numpy(), expected, atol=atol)
    whole = normal.positionwise(image).numpy()[0]
    np.testing.assert_allclose(tiled.terms.numpy(), whole.sum(axis=(0, 1)), rtol=1e-5)
    assert tiled.count.numpy() == whole.shape[0] * whole.shape[1]


@pytest.mark.parametrize("factory", [_instance_norm, _attention], ids=["instance_norm", "attention"])
def test_tile_with_given_whole_image_value_is_the_crop(factory, image):
    normal, tiled = _pair(factory, image, seed=1)
    expected = normal(image).numpy()
    pooled = normal.positionwise(image).numpy().mean(axis=(1, 2))[0]
    y0, x0, y1, x1 = 40, 81, 170, 250  # a tile touching the bottom-right border
    tile = image[:, y0:y1, x0:x1]
    _set_tile(tiled, [0, 0, y1 - y0, x1 - x0], [y1 - y0, x1 - x0], given=pooled)
    atol = TOLERANCE["attention" if factory is _attention else "instance_norm"]
    np.testing.assert_allclose(tiled(tile).numpy(), expected[:, y0:y1, x0:x1], atol=atol)
    # without the given value the tile would use its own statistics and differ
    _set_tile(tiled, [0, 0, y1 - y0, x1 - x0], [y1 - y0, x1 - x0])
    assert np.abs(tiled(tile).numpy() - expected[:, y0:y1, x0:x1]).max() > 1e-3


@pytest.mark.parametrize("factory", [_instance_norm, _attention], ids=["instance_norm", "attention"])
def test_tile_terms_add_up_to_whole_image_statistics(factory, image):
    normal, tiled = _pair(factory, image, seed=2)
    a = factory().alignment
    rows = [0, a, H] if a > 1 else [0, 57, H]
    cols = [0, a, 2 * a, W] if a > 1 else [0, 100, 201, W]
    margin = 2 * a if a > 1 else 5  # tiles overlap their neighbours by this much
    terms, count = 0.0, 0.0
    for r0, r1 in zip(rows, rows[1:]):
        for c0, c1 in zip(cols, cols[1:]):
            t0, t1 = max(r0 - margin, 0), min(r1 + margin, H)
            s0, s1 = max(c0 - margin, 0), min(c1 + margin, W)
            _set_tile(tiled, [r0 - t0, c0 - s0, r1 - t0, c1 - s0], [t1 - t0, s1 - s0])
            tiled(image[:, t0:t1, s0:s1])
            terms = terms + tiled.terms.numpy().astype(np.float64)
            count += float(tiled.count.numpy())
    whole = normal.positionwise(image).numpy()[0].astype(np.float64)
    assert count == whole.shape[0] * whole.shape[1]
    np.testing.assert_allclose(terms / count, whole.mean(axis=(0, 1)), rtol=1e-5, atol=1e-7)


def test_tiling_instance_norm_constant_channel_is_finite():
    x = np.full((1, 9, 9, 2), 0.7, np.float32)
    with tiling_mode():
        layer = InstanceNorm()
    layer(x)
    _set_tile(layer, [0, 0, 9, 9], [9, 9])
    y = layer(x).numpy()
    assert np.isfinite(y).all() and np.abs(y).max() < 0.05  # (x - mean) ~ 0; rounding only


def test_tiling_attention_tile_smaller_than_a_block_uses_given():
    # a tile with no complete 81-block has NaN local statistics; the given value must win
    x = np.random.default_rng(3).random((1, 50, 60, C), dtype=np.float32)
    with tiling_mode():
        layer = ChannelAttention()
    layer(np.zeros((1, 81, 81, C), np.float32))
    _set_tile(layer, [0, 0, 50, 60], [50, 60], given=np.full(C, 0.25, np.float32))
    y = layer(x).numpy()
    assert np.isfinite(y).all()
    assert float(layer.count.numpy()) == 0.0
