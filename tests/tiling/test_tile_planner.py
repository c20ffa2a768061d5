"""The one tile planner (isp_tf.tiling.planner): invariants, the merge rule, alignment, memory.

No TensorFlow here: the planner, the LiteRT executor and the manifest reader
must stay importable in the benchmark worker, which measures memory without TF.
"""
import itertools
import subprocess
import sys

import numpy as np
import pytest

from isp_tf.tiling.planner import (Footprint, Geometry, Tile, auto_core, axis_spans, box_lead, largest_box, pad_to_multiple,
                                   padded_size, plan_tiles, round_core, segment_box)

GEOMETRIES = [
    Geometry(halo=16, stride=1, core_step=81, align=81, output_scales=(2,), min_side=79),  # MicroISP
    Geometry(halo=12, stride=4, core_step=36, align=36, output_scales=(2,), size_multiple=4),  # the toy
    Geometry(halo=464, stride=16, core_step=16, align=16, output_scales=(2,), size_multiple=16),  # PyNET small
    Geometry(halo=5, stride=1, core_step=1, align=1),
    Geometry(halo=10, stride=2, core_step=18, align=6),
]


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: f"halo{g.halo}_step{g.core_step}_align{g.align}")
def test_cores_cover_the_frame_once_and_boxes_are_aligned(geometry):
    for (h, w), core in itertools.product([(97, 61), (250, 200), (400, 430), (81, 1000)], [7, 33, 81, 162, 500]):
        tiles = plan_tiles(h, w, core, geometry)
        step = round_core(core, geometry.core_step)
        covered = np.zeros((h, w), int)
        for t in tiles:
            cy0, cx0, cy1, cx1 = t.core
            covered[cy0:cy1, cx0:cx1] += 1
            assert cy0 % geometry.core_step == 0 and cx0 % geometry.core_step == 0
            longest = step + max(step // 2 - 1, 0)  # a merged edge core
            assert cy1 - cy0 <= longest and cx1 - cx0 <= longest
            y0, x0, y1, x1 = t.box  # the final pass: the core plus the halo, cut at the edges
            assert (y0, x0, y1, x1) == (max(0, cy0 - geometry.halo), max(0, cx0 - geometry.halo),
                                        min(h, cy1 + geometry.halo), min(w, cx1 + geometry.halo))
            assert y0 % geometry.stride == 0 and x0 % geometry.stride == 0
            sy0, sx0, sy1, sx1 = t.stats_box  # the statistics passes: the start on the maps' grid
            assert sy0 % geometry.align == 0 and sx0 % geometry.align == 0
            assert 0 <= sy0 <= y0 and 0 <= sx0 <= x0 and (sy1, sx1) == (y1, x1)
            assert y0 - sy0 < geometry.align and x0 - sx0 < geometry.align
        assert (covered == 1).all(), (h, w, core)
        # row by row
        assert [t.core[:2] for t in tiles] == sorted(t.core[:2] for t in tiles)


def test_a_thin_remainder_joins_the_previous_core():
    assert [(s.core_start, s.core_end) for s in axis_spans(250, 81, 10, 81)] == [(0, 81), (81, 162), (162, 250)]
    assert [(s.core_start, s.core_end) for s in axis_spans(300, 162, 16, 81)] == [(0, 162), (162, 300)]
    assert [(s.core_start, s.core_end) for s in axis_spans(200, 162, 16, 81)] == [(0, 200)]
    assert len(axis_spans(100, 200, 16, 81)) == 1


def test_the_benchmark_plan_is_unchanged():
    """The layout the LiteRT benchmark used before the planners were merged (benchmarks/tiled.py:
    plan(400, 430, 162, halo 10, align 81))."""
    tiles = plan_tiles(400, 430, 162, Geometry(halo=10, stride=1, core_step=81, align=81))
    assert len(tiles) == 2 * 3
    assert (tiles[0].stats_box, tiles[0].core, tiles[0].box) == \
        ((0, 0, 172, 172), (0, 0, 162, 162), (0, 0, 172, 172))
    assert (tiles[4].stats_box, tiles[4].core, tiles[4].box) == \
        ((81, 81, 400, 334), (162, 162, 400, 324), (152, 152, 400, 334))
    assert tiles[4].core_in(tiles[4].stats_box) == (81, 81, 319, 243)
    assert tiles[4].core_in_tile == (10, 10, 248, 172)


def test_auto_core_honours_the_budget():
    fp = GEOMETRIES[0]
    per_px = 3500.0
    footprint = Footprint(halo=16, radius=16.0, stride=1, core_step=81, output_scale=2, groups=(),
                          bytes_per_pixel=per_px, min_side=79, align=81)
    assert footprint.geometry == fp and footprint.passes == 1
    budget = 300 * 2 ** 20
    core = auto_core(footprint, budget)
    assert core % 81 == 0 and (core + box_lead(fp) + fp.halo) ** 2 * per_px <= budget
    assert (core + 81 + box_lead(fp) + fp.halo) ** 2 * per_px > budget
    assert box_lead(fp) == 81  # a 16-px halo still starts the statistics box a whole block earlier
    for hw in [(1500, 2000), (540, 960), (300, 420)]:
        c = auto_core(footprint, budget, hw)
        bh, bw = largest_box(plan_tiles(hw[0], hw[1], c, footprint))
        assert bh * bw * per_px <= budget or c == 81
    assert auto_core(footprint, 1) == 81


def test_geometry_round_trip_and_padding():
    g = Geometry(halo=12, stride=4, core_step=36, align=36, output_scales=(2, 1), size_multiple=4, min_side=9)
    assert Geometry.from_dict(g.to_dict()) == g and g.output_scale == 2
    assert Geometry(halo=4, stride=4).align == 4  # default: the stride
    assert padded_size(101, 75, 4) == (104, 76)
    frame = np.arange(5 * 3 * 2, dtype=np.float32).reshape(5, 3, 2)
    padded = pad_to_multiple(frame, 4)
    assert padded.shape == (8, 4, 2) and (padded[:5, :3] == frame).all()
    assert (padded[5, :3] == frame[3]).all()  # reflected
    assert Tile((0, 0, 4, 4), (0, 0, 4, 4)).stats_box == (0, 0, 4, 4)


def test_the_litert_side_imports_no_tensorflow():
    code = ("import sys; import isp_tf.tiling, isp_tf.tiling.planner, isp_tf.tiling.tflite_executor, "
            "isp_tf.tiling.manifest, isp_tf.tiling.segments, isp_tf.runtime; isp_tf.tiling.TiledSession; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: f"halo{g.halo}_step{g.core_step}_align{g.align}")
def test_segment_boxes_keep_one_size_inside_the_frame(geometry):
    """segment_box: a full core's box is core + 2 halos wherever it lies (shifted inside at the frame's
    edges), holds its core with at least the halo on every inner side, starts on the stride grid; a
    core under eight halos is cut at the edge instead."""
    for (h, w), core, halo in itertools.product([(250, 200), (400, 430)], [81, 162], [2, 5, 16]):
        h, w = padded_size(h, w, geometry.size_multiple)
        halo = -(-halo // geometry.stride) * geometry.stride
        tiles = plan_tiles(h, w, core, geometry)
        step = round_core(core, geometry.core_step)
        for t in tiles:
            y0, x0, y1, x1 = segment_box(t.core, halo, (h, w))
            cy0, cx0, cy1, cx1 = t.core
            assert 0 <= y0 <= cy0 and cy1 <= y1 <= h and 0 <= x0 <= cx0 and cx1 <= x1 <= w
            for lo, hi, clo, chi, n in ((y0, y1, cy0, cy1, h), (x0, x1, cx0, cx1, w)):
                assert clo - lo >= min(halo, clo) and hi - chi >= min(halo, n - chi)  # context kept
                assert lo % geometry.stride == 0
                if chi - clo >= 8 * halo:
                    assert hi - lo == min(n, chi - clo + 2 * halo)  # one size, edges included
                else:
                    assert (lo, hi) == (max(0, clo - halo), min(n, chi + halo))
        full = {(b[2] - b[0], b[3] - b[1]) for t in tiles
                if t.core[2] - t.core[0] == step == t.core[3] - t.core[1]
                for b in [segment_box(t.core, halo, (h, w))]}
        assert len(full) <= 1 or step < 8 * halo


def test_auto_core_is_sized_for_the_threads_and_the_l2_within_the_memory():
    """cache_core: the MicroISP sweep's picks (162 px at 1 thread, 243 at 2, 2 MiB L2), larger with more
    threads or L2, never over what the memory budget allows, never under one core step."""
    from isp_tf.tiling.planner import cache_core, cpu_caches

    micro = Footprint(halo=16, radius=16.0, stride=1, core_step=81, output_scale=2, groups=(),
                      bytes_per_pixel=384.0, align=81, min_side=79)
    l2 = {"L2": 2 * 1024 ** 2}
    picks = [cache_core(micro, t, l2, budget_bytes=float("inf")) for t in (1, 2, 4, 8)]
    assert picks[:2] == [162, 243] and picks == sorted(picks) and picks[-1] > picks[1]
    assert cache_core(micro, 2, {"L2": 8 * 1024 ** 2}, budget_bytes=float("inf")) > picks[1]
    assert cache_core(micro, 1, {}, budget_bytes=float("inf")) >= 81  # no sysfs: a 1 MiB L2 is assumed
    tight = auto_core(micro, 20e6, (1500, 2000))
    assert cache_core(micro, 8, l2, budget_bytes=20e6, frame_hw=(1500, 2000)) == tight < picks[-1]
    # a tiny cache: never under 8 halos (here 128 px, rounded up to 162), unless the memory allows less
    assert cache_core(micro, 1, {"L2": 1}, budget_bytes=float("inf")) == 162
    assert cache_core(micro, 1, {"L2": 1}, budget_bytes=20e6, frame_hw=(1500, 2000)) == \
        min(162, auto_core(micro, 20e6, (1500, 2000)))
    caches = cpu_caches()
    assert all(isinstance(v, int) and v > 0 for v in caches.values())
