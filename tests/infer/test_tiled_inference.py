"""Tiled inference equals whole-frame inference (max abs <= 1e-4), and why.

The toy model (tests/infer/infer_toy_models.py) has every feature the tiler must
handle (strided attention pooling, instance norm at 1/4 resolution, max
pooling, transposed and strided convs, depth-to-space); MicroISP and a small
PyNET are the real thing, with weights large enough that their whole-image
statistics change the picture (checked: naive tiles differ).
"""
import numpy as np
import pytest

from isp_tf.errors import InputShapeError
from isp_tf.infer import tiling
from isp_tf.infer.tiling import TiledRunner, TilingError, analyze, auto_core, plan_tiles
from isp_tf.models import create_model

from infer_toy_models import cropping_model, toy_model, unknown_pool_model

TOL = 1e-4


def randomize(model, seed=0, std=None):
    """He-like random weights (or N(0, std)) so every layer, attention included, matters."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        if std is not None:
            scale = std
        elif len(shape) == 4:
            scale = np.sqrt(2.0 / np.prod(shape[:3]))
        else:
            scale = 0.1
        w.assign(rng.normal(0.0, scale, shape).astype(np.float32))
    return model


def naive_tiles(model, frame, tiles, scale=2):
    """Tiles with a halo but per-tile statistics: what the tiler must avoid."""
    out = np.zeros((frame.shape[0] * scale, frame.shape[1] * scale, 3), np.float32)
    for t in tiles:
        y0, x0, y1, x1 = t.box
        result = model(frame[np.newaxis, y0:y1, x0:x1]).numpy()[0]
        ty0, tx0, ty1, tx1 = t.core_in_tile
        cy0, cx0, cy1, cx1 = t.core
        out[cy0 * scale:cy1 * scale, cx0 * scale:cx1 * scale] = \
            result[ty0 * scale:ty1 * scale, tx0 * scale:tx1 * scale]
    return out


@pytest.fixture(scope="module")
def toy():
    return TiledRunner(toy_model(), size_multiple=4)


@pytest.fixture(scope="module")
def frame():
    # 101 x 75: not a multiple of the tile, nor of size_multiple (4), nor of the pooling (9)
    return np.random.default_rng(1).random((101, 75, 4), dtype=np.float32)


# -- analysis -----------------------------------------------------------------
def test_toy_footprint(toy):
    fp = toy.footprint
    # conv 1 + conv 1 + max pool 0 + strided conv (1 px at 1/2) 2 + transposed conv
    # (3/4 px at 1/4) 3 + conv 1 + conv 1 = 9 input px, rounded up to the stride
    assert fp.radius == 9 and fp.halo == 12
    assert fp.stride == 4 and fp.output_scale == 2
    # lcm(stride 4, attention block 9, norm at 1/4 -> 4) = 36
    assert fp.core_step == 36
    names = [[g.name for g in group] for group in fp.groups]
    assert names == [["toy_attention", "toy_instance_norm"], ["toy_attention_1"], ["toy_instance_norm_1"]]
    assert fp.passes == 4


def test_microisp_footprint():
    fp = analyze_model("microisp")
    assert fp.halo == 16  # 2 stages x 8 convs 3x3
    assert fp.stride == 1 and fp.core_step == 81 and fp.min_side == 79
    # 12 attention layers, grouped by depth: stage 1 and 2, first and second attention
    assert [len(g) for g in fp.groups] == [3, 3, 3, 3]
    assert [sorted(g.name for g in group) for group in fp.groups][0] == \
        ["s1_b_att2", "s1_g_att2", "s1_r_att2"]


def analyze_model(name, **config):
    from isp_tf.layers.global_stats import tiling_mode

    with tiling_mode():
        model = create_model(name, **config)
    return analyze(model, 1)


@pytest.mark.parametrize("build", [unknown_pool_model, cropping_model])
def test_analysis_refuses_what_it_cannot_tile(build):
    with pytest.raises(TilingError, match="cannot tile"):
        TiledRunner(build())


# -- layout -------------------------------------------------------------------
@pytest.mark.parametrize("core", [36, 40, 72, 1000])
def test_tiles_partition_the_frame(toy, core):
    fp = toy.footprint
    tiles = plan_tiles(104, 76, core, fp)
    covered = np.zeros((104, 76), int)
    for t in tiles:
        cy0, cx0, cy1, cx1 = t.core
        covered[cy0:cy1, cx0:cx1] += 1
        y0, x0, y1, x1 = t.box
        assert y0 % fp.stride == 0 and x0 % fp.stride == 0  # on the down-sampling grid
        assert cy0 % fp.core_step == 0 and cx0 % fp.core_step == 0
        assert 0 <= y0 <= cy0 and cy1 <= y1 <= 104 and 0 <= x0 <= cx0 and cx1 <= x1 <= 76
        assert y0 == 0 or cy0 - y0 >= fp.halo
        assert y1 == 104 or y1 - cy1 >= fp.halo
    assert (covered == 1).all()


def test_auto_core_fits_the_budget(toy):
    fp = toy.footprint
    core = auto_core(fp, budget_bytes=50e6)
    assert core % fp.core_step == 0
    assert (core + 2 * fp.halo) ** 2 * fp.bytes_per_pixel <= 50e6
    assert ((core + fp.core_step + 2 * fp.halo) ** 2 * fp.bytes_per_pixel) > 50e6
    assert auto_core(fp, budget_bytes=1) == fp.core_step  # never below one step


# -- exactness ----------------------------------------------------------------
@pytest.mark.parametrize("tile", [36, 40, 72, 1])
def test_toy_tiled_equals_whole(toy, frame, tile):
    whole = toy(frame)
    assert whole.shape == (202, 150, 3)
    tiles = toy.plan(*frame.shape[:2], tile)
    assert len(tiles) > 1
    steps = []
    tiled = toy(frame, tile=tile, progress=steps.append)
    assert len(steps) == toy.steps(*frame.shape[:2], tile) == len(tiles) * 4
    assert np.abs(tiled - whole).max() <= TOL


def test_toy_halo_and_statistics_are_both_needed(toy, frame):
    whole = toy(frame)
    padded = tiling.pad_to_multiple(frame, 4)
    tiles = toy.plan(*frame.shape[:2], 36)
    naive = naive_tiles(toy.model, padded, tiles)[:202, :150]
    assert np.abs(naive - whole).max() > 0.05  # per-tile statistics change the picture
    thin = toy.footprint.__class__(**{**toy.footprint.__dict__, "halo": 4})
    short = TiledRunner.__new__(TiledRunner)
    short.__dict__.update(toy.__dict__, footprint=thin)
    assert np.abs(short(frame, tile=36) - whole).max() > 0.05  # too small a halo is wrong


def test_microisp_tiled_equals_whole():
    model = randomize(create_model("microisp"), std=0.3)
    runner = TiledRunner(model, rebuild=lambda: create_model("microisp"))
    # 300 x 263 packed px: edge tiles of 57 and 20 px after cores of 81 / 162 / 243
    x = np.random.default_rng(2).random((300, 263, 4), dtype=np.float32)
    whole = runner(x)
    assert whole.shape == (600, 526, 3) and whole.std() > 0.05
    for tile in (81, 162):
        tiles = runner.plan(300, 263, tile)
        assert len(tiles) > 1
        assert np.abs(runner(x, tile=tile) - whole).max() <= TOL
    naive = naive_tiles(model, x, runner.plan(300, 263, 162))
    assert np.abs(naive - whole).max() > 1e-2  # the attention matters


def test_microisp_input_smaller_than_one_tile():
    runner = TiledRunner(create_model("microisp", depth=4), rebuild=lambda: create_model("microisp", depth=4))
    assert runner.min_side == 79
    with pytest.raises(InputShapeError, match="smaller than one tile"):
        runner(np.zeros((78, 200, 4), np.float32))
    with pytest.raises(InputShapeError, match=r"\(h, w, 4\)"):
        runner(np.zeros((100, 100, 3), np.float32))


def test_small_pynet_tiled_equals_whole():
    """Small PyNET: 48 groups of instance norms, a frame padded from 70 x 53 to 80 x 64.

    PyNET's receptive field (halo 496 px) exceeds this frame, so every tile
    reads the whole frame: this checks the statistics passes and the padding;
    the halo itself is checked on the toy model and MicroISP above.
    """
    model = randomize(create_model("pynet", small=True), seed=3)
    runner = TiledRunner(model, size_multiple=16, rebuild=lambda: create_model("pynet", small=True))
    assert runner.footprint.halo == 496 and len(runner.footprint.groups) == 48
    x = np.random.default_rng(4).random((70, 53, 4), dtype=np.float32)
    whole = runner(x)
    assert whole.shape == (140, 106, 3) and whole.std() > 0.05
    tiles = runner.plan(70, 53, 48)
    assert len(tiles) == 4
    assert np.abs(runner(x, tile=48) - whole).max() <= TOL
    naive = naive_tiles(model, tiling.pad_to_multiple(x, 16), tiles)[:140, :106]
    assert np.abs(naive - whole).max() > 1e-2  # the instance norms matter
