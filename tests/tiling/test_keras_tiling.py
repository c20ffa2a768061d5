"""Keras executor: tiled inference equals whole-frame inference (max abs <= 1e-4), and why.

The toy model (tests/tiling/tiling_toy_models.py) has every feature the tiler must
handle (strided attention pooling, instance norm at 1/4 resolution, max
pooling, transposed and strided convs, depth-to-space); MicroISP and a small
PyNET are the real thing, with weights large enough that their whole-image
statistics change the picture (checked: naive tiles differ).
"""
import numpy as np
import pytest

from isp_tf.errors import InputShapeError
from isp_tf.models import create_model
from isp_tf.tiling import keras_executor
from isp_tf.tiling.analysis import analyze
from isp_tf.tiling.keras_executor import TiledRunner
from isp_tf.tiling.planner import Tile, TilingError, auto_core, box_lead, pad_to_multiple, plan_tiles

from tiling_toy_models import camera_vector_model, cropping_model, toy_model, unknown_pool_model

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
    # 149 x 103: not a multiple of the tile, nor of size_multiple (4), nor of the pooling (9)
    return np.random.default_rng(1).random((149, 103, 4), dtype=np.float32)


# -- analysis -----------------------------------------------------------------
def test_toy_footprint(toy):
    fp = toy.footprint
    # conv 1 + conv 1 + max pool 0 + strided conv (1 px at 1/2) 2 + transposed conv
    # (3/4 px at 1/4) 3 + conv 1 + conv 1 = 9 input px, rounded up to the stride
    assert fp.radius == 9 and fp.halo == 12
    assert fp.stride == 4 and fp.output_scale == 2
    # lcm(stride 4, attention block 9, norm at 1/4 -> 4) = 36
    assert fp.core_step == 36
    # statistics boxes: lcm(stride 4, attention maps at 1/9, norm maps at 1 and 1/4) = 36
    assert fp.align == 36 and fp.output_scales == (2,)
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
    variant = analyze(microisp.variant)
    assert (variant.halo, variant.core_step, variant.min_side, variant.align) == (16, 81, 79, 81)
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
        sy0, sx0, sy1, sx1 = t.stats_box
        assert sy0 % fp.align == 0 and sx0 % fp.align == 0 and sy0 <= y0 and sx0 <= x0
        assert (sy1, sx1) == (y1, x1)
        assert cy0 % fp.core_step == 0 and cx0 % fp.core_step == 0
        assert 0 <= y0 <= cy0 and cy1 <= y1 <= 104 and 0 <= x0 <= cx0 and cx1 <= x1 <= 76
        assert y0 == 0 or cy0 - y0 >= fp.halo
        assert y1 == 104 or y1 - cy1 >= fp.halo
    assert (covered == 1).all()


def test_auto_core_fits_the_budget(toy):
    fp = toy.footprint
    core = auto_core(fp, budget_bytes=50e6)
    assert core % fp.core_step == 0
    side = core + box_lead(fp) + fp.halo  # an interior statistics box: its start aligned to 36
    assert box_lead(fp) == 36
    assert side ** 2 * fp.bytes_per_pixel <= 50e6
    assert ((side + fp.core_step) ** 2 * fp.bytes_per_pixel) > 50e6
    assert auto_core(fp, budget_bytes=1) == fp.core_step  # never below one step


def test_auto_runs_the_whole_frame_when_it_fits(toy, frame, monkeypatch):
    monkeypatch.setattr(keras_executor, "memory_budget", lambda: 1e12)
    assert len(toy.plan(149, 103, "auto")) == 1
    # a budget of 1/2 frame: tiles whose activations (statistics boxes included) fit
    budget = 152 * 104 * toy.footprint.bytes_per_pixel / 2
    monkeypatch.setattr(keras_executor, "memory_budget", lambda: budget)
    tiles = toy.plan(149, 103, "auto")
    assert len(tiles) > 1
    for t in tiles:
        for y0, x0, y1, x1 in (t.box, t.stats_box):
            assert (y1 - y0) * (x1 - x0) * toy.footprint.bytes_per_pixel <= budget
    assert np.abs(toy(frame, tile="auto") - toy(frame)).max() <= TOL


# -- exactness ----------------------------------------------------------------
@pytest.mark.parametrize("tile", [36, 40, 72, 1])
def test_toy_tiled_equals_whole(toy, frame, tile):
    whole = toy(frame)
    assert whole.shape == (298, 206, 3)
    tiles = toy.plan(*frame.shape[:2], tile)
    assert len(tiles) > 1
    steps = []
    tiled = toy(frame, tile=tile, progress=steps.append)
    assert len(steps) == toy.steps(*frame.shape[:2], tile) == len(tiles) * 4
    assert np.abs(tiled - whole).max() <= TOL


def test_toy_halo_and_statistics_are_both_needed(toy, frame):
    whole = toy(frame)
    padded = pad_to_multiple(frame, 4)
    tiles = toy.plan(*frame.shape[:2], 36)
    naive = naive_tiles(toy.model, padded, tiles)[0][:298, :206]
    assert np.abs(naive - whole).max() > 0.05  # per-tile statistics change the picture
    thin = toy.footprint.__class__(**{**toy.footprint.__dict__, "halo": 4})
    short = TiledRunner.__new__(TiledRunner)
    short.__dict__.update(toy.__dict__, footprint=thin, use_segments=False)
    assert np.abs(short(frame, tile=36) - whole).max() > 0.05  # too small a halo is wrong (passes)
    import dataclasses

    plan = toy.segments  # the segment executor: each segment's own halo, 4 px short
    thin_plan = dataclasses.replace(plan, segments=[dataclasses.replace(s, halo=max(0, s.halo - 4))
                                                    for s in plan.segments])
    short = TiledRunner.__new__(TiledRunner)
    short.__dict__.update(toy.__dict__, _segments=thin_plan)
    assert plan.halos == [4, 4, 4, 8] and np.abs(short(frame, tile=36) - whole).max() > 0.05


def test_microisp_tiled_equals_whole(microisp):
    # 250 x 300 packed px in cores of 162: edge cores of 88 rows and 138 columns; a thinner
    # remainder (< 81) would join the previous core
    x = np.random.default_rng(2).random((250, 300, 4), dtype=np.float32)
    whole = microisp(x)
    assert whole.shape == (500, 600, 3) and whole.std() > 0.05
    tiles = microisp.plan(250, 300, 162)
    assert [t.core for t in tiles] == [(0, 0, 162, 162), (0, 162, 162, 300),
                                       (162, 0, 250, 162), (162, 162, 250, 300)]
    # statistics boxes start on the attention's 81-px grid, final boxes at core - halo
    assert [t.stats_box[:2] for t in tiles] == [(0, 0), (0, 81), (81, 0), (81, 81)]
    assert [t.box[:2] for t in tiles] == [(0, 0), (0, 146), (146, 0), (146, 146)]
    assert [t.core for t in microisp.plan(250, 200, 162)] == [(0, 0, 162, 200), (162, 0, 250, 200)]
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
    naive = naive_tiles(model, pad_to_multiple(x, 16), [
        Tile(t.core, t.core) for t in tiles])[0][:140, :58]
    assert np.abs(naive - whole).max() > 1e-2


# -- per-frame inputs, several outputs -----------------------------------------------
def test_vector_input_and_two_outputs_tile_exactly():
    """A camera vector beside the image, two image outputs at scales 2 and 1."""
    runner = TiledRunner(camera_vector_model())
    fp = runner.footprint
    assert fp.output_scales == (2, 1) and fp.output_scale == 2
    assert (fp.stride, fp.core_step, fp.align) == (1, 9, 9) and fp.passes == 3
    x = np.random.default_rng(5).random((61, 50, 4), dtype=np.float32)
    camera = np.array([0.5, 2.0, 1.2], np.float32)
    whole = runner(x, vectors=[camera])
    assert isinstance(whole, list) and [w.shape for w in whole] == [(122, 100, 3), (61, 50, 2)]
    tiles = runner.plan(61, 50, 18)
    assert len(tiles) == 3 * 3  # rows 0, 18, 36-61 (7 rows left join the last core); columns 0, 18, 36
    tiled = runner(x, tile=18, vectors=[camera[np.newaxis]])
    for a, b in zip(tiled, whole):
        assert np.abs(a - b).max() <= TOL
    other = runner(x, tile=18, vectors=[[2.0, 0.1, 0.3]])  # the vector reaches every tile
    assert np.abs(other[0] - whole[0]).max() > 1e-2
    with pytest.raises(InputShapeError, match="1 per-frame input"):
        runner(x)
    with pytest.raises(InputShapeError, match=r"expected shape \(3,\)"):
        runner(x, vectors=[np.zeros(4)])
