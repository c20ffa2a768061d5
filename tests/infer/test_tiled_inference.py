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
from isp_tf.infer.tiling import TiledRunner, TilingError, auto_core, plan_tiles
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


def naive_tiles(model, frame, tiles, scale=2, min_side=1):
    """Tiles with a halo but per-tile statistics: what the tiler must avoid.

    Returns the stitched output and the mask of pixels it covers (tiles smaller
    than ``min_side`` are skipped: MicroISP refuses them)."""
    out = np.zeros((frame.shape[0] * scale, frame.shape[1] * scale, 3), np.float32)
    mask = np.zeros(out.shape[:2], bool)
    for t in tiles:
        y0, x0, y1, x1 = t.box
        if min(y1 - y0, x1 - x0) < min_side:
            continue
        result = model(frame[np.newaxis, y0:y1, x0:x1]).numpy()[0]
        ty0, tx0, ty1, tx1 = t.core_in_tile
        cy0, cx0, cy1, cx1 = t.core
        out[cy0 * scale:cy1 * scale, cx0 * scale:cx1 * scale] = \
            result[ty0 * scale:ty1 * scale, tx0 * scale:tx1 * scale]
        mask[cy0 * scale:cy1 * scale, cx0 * scale:cx1 * scale] = True
    return out, mask


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


@pytest.fixture(scope="module")
def microisp():
    """MicroISP (published config) with N(0, 0.3) weights: attention that matters."""
    model = randomize(create_model("microisp"), std=0.3)
    return TiledRunner(model, rebuild=lambda: create_model("microisp"))


def test_microisp_footprint(microisp):
    fp = microisp.footprint
    assert fp.halo == 16  # 2 stages x 8 convs 3x3
    assert fp.stride == 1 and fp.core_step == 81 and fp.min_side == 79
    # 12 attention layers, grouped by depth: stage 1 and 2, first and second attention
    assert [len(g) for g in fp.groups] == [3, 3, 3, 3]
    assert [sorted(g.name for g in group) for group in fp.groups][0] == \
        ["s1_b_att2", "s1_g_att2", "s1_r_att2"]
    # the tiling variant (what isp_tf.export analyses) has the same footprint
    variant = tiling.analyze(microisp.variant)
    assert (variant.halo, variant.core_step, variant.min_side) == (16, 81, 79)
    assert [[g.name for g in group] for group in variant.groups] == \
        [[g.name for g in group] for group in fp.groups]


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


def test_auto_runs_the_whole_frame_when_it_fits(toy, frame, monkeypatch):
    monkeypatch.setattr(tiling, "memory_budget", lambda: 1e12)
    assert len(toy.plan(101, 75, "auto")) == 1
    # a budget of 1/2 frame: tiles whose activations fit
    budget = 104 * 76 * toy.footprint.bytes_per_pixel / 2
    monkeypatch.setattr(tiling, "memory_budget", lambda: budget)
    tiles = toy.plan(101, 75, "auto")
    assert len(tiles) > 1
    assert all((t.box[2] - t.box[0]) * (t.box[3] - t.box[1]) * toy.footprint.bytes_per_pixel <= budget
               for t in tiles)
    assert np.abs(toy(frame, tile="auto") - toy(frame)).max() <= TOL


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
    naive = naive_tiles(toy.model, padded, tiles)[0][:202, :150]
    assert np.abs(naive - whole).max() > 0.05  # per-tile statistics change the picture
    thin = toy.footprint.__class__(**{**toy.footprint.__dict__, "halo": 4})
    short = TiledRunner.__new__(TiledRunner)
    short.__dict__.update(toy.__dict__, footprint=thin)
    assert np.abs(short(frame, tile=36) - whole).max() > 0.05  # too small a halo is wrong


def test_microisp_tiled_equals_whole(microisp):
    # 250 x 200 packed px in cores of 162: edge tiles with cores of 88 and 38 px
    x = np.random.default_rng(2).random((250, 200, 4), dtype=np.float32)
    whole = microisp(x)
    assert whole.shape == (500, 400, 3) and whole.std() > 0.05
    tiles = microisp.plan(250, 200, 162)
    assert [t.core for t in tiles] == [(0, 0, 162, 162), (0, 162, 162, 200),
                                       (162, 0, 250, 162), (162, 162, 250, 200)]
    assert np.abs(microisp(x, tile=162) - whole).max() <= TOL
    naive, mask = naive_tiles(microisp.model, x, tiles, min_side=79)
    assert mask.any() and np.abs(naive - whole)[mask].max() > 1e-2  # the attention matters


def test_microisp_input_smaller_than_one_tile(microisp):
    runner = microisp
    assert runner.min_side == 79
    with pytest.raises(InputShapeError, match="smaller than one tile"):
        runner(np.zeros((78, 200, 4), np.float32))
    with pytest.raises(InputShapeError, match=r"\(h, w, 4\)"):
        runner(np.zeros((100, 100, 3), np.float32))


def test_small_pynet_tiled_equals_whole():
    """Small PyNET: 48 groups of instance norms, a frame padded from 70 x 29 to 80 x 32.

    PyNET's receptive field (halo 464 px) exceeds this frame, so both tiles
    read the whole frame: this checks the statistics passes and the padding;
    the halo itself is checked on the toy model and MicroISP above.
    """
    model = randomize(create_model("pynet", small=True), seed=3)
    runner = TiledRunner(model, size_multiple=16, rebuild=lambda: create_model("pynet", small=True))
    assert runner.footprint.halo == 464 and len(runner.footprint.groups) == 48
    x = np.random.default_rng(4).random((70, 29, 4), dtype=np.float32)
    whole = runner(x)
    assert whole.shape == (140, 58, 3) and whole.std() > 0.05
    tiles = runner.plan(70, 29, 48)
    assert [t.core for t in tiles] == [(0, 0, 48, 32), (48, 0, 80, 32)]
    assert np.abs(runner(x, tile=48) - whole).max() <= TOL
    # the same cores without halo or shared statistics: a different picture
    naive = naive_tiles(model, tiling.pad_to_multiple(x, 16), [
        tiling.Tile(t.core, t.core) for t in tiles])[0][:140, :58]
    assert np.abs(naive - whole).max() > 1e-2
