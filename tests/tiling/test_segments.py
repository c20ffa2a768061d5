"""The segment executor: every op once per tile, each segment with its own halo, exact."""
import json
import os
import pathlib

import numpy as np
import pytest

from benchmarks import macs
from isp_tf.tiling.tflite_executor import PassSession, TiledSession

REFERENCE = pathlib.Path(__file__).resolve().parents[3] / "shared" / "reference_weights" / \
    "microisp_official" / "MicroISP.tflite"
TOL = 1e-4


@pytest.fixture(scope="module")
def reference():
    """The authors' MicroISP.tflite (published config); fails under CI when absent."""
    if not REFERENCE.exists():
        msg = f"{REFERENCE} is missing (the authors' MicroISP.tflite in ../shared)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    return REFERENCE.read_bytes()


def frame_macs(session, height, width):
    return sum(macs.tflite_macs(model, input_shapes=shapes)
               for model, calls in session.calls(height, width) for shapes in calls)


def test_toy_model_runs_each_segment_once_exactly():
    """Attentions at two depths, a parallel instance norm, a norm at 1/4 resolution before a
    transposed conv, depth-to-space: 4 segments, output equal to the Keras whole frame."""
    from tiling_toy_models import to_tflite, toy_model

    from isp_tf.tiling.analysis import analyze

    model = toy_model()
    footprint = analyze(model, 4)
    data = to_tflite(model)
    session = TiledSession.from_tflite(data, footprint.geometry, core=18, threads=1)
    x = np.random.default_rng(0).random((100, 76, 4), dtype=np.float32)
    whole = model(x[np.newaxis]).numpy()[0]
    tiled = session(x)
    assert session.segments == 4 and session.tiles == 6  # cores of 36 (the core step)
    assert all(h <= footprint.halo for h in session.halos) and sum(session.halos) >= footprint.halo
    assert whole.std() > 0.05 and np.abs(tiled - whole).max() <= TOL
    # every op once per tile: the whole frame's MACs plus the halos
    whole_macs = macs.tflite_macs(data, [1, 100, 76, 4])
    assert 1.0 <= frame_macs(session, 100, 76) / whole_macs <= 1.6  # 36-px cores: halos weigh here


def test_recomputed_stores_stay_exact_within_their_budget():
    """``store_budget``: over it, stores are recomputed from earlier ones (exact, more MACs); the
    greedy choice keeps the peak of the kept stores within the budget, none recomputed without one."""
    from tiling_toy_models import to_tflite, toy_model

    from isp_tf.tiling.analysis import analyze

    model = toy_model()
    geometry = analyze(model, 4).geometry
    data = to_tflite(model)
    h, w = 100, 76
    x = np.random.default_rng(1).random((h, w, 4), dtype=np.float32)
    whole = model(x[np.newaxis]).numpy()[0]
    kept = TiledSession.from_tflite(data, geometry, core=18, threads=1)
    stored = kept(x)
    kept_macs = frame_macs(kept, h, w)
    assert kept.recomputed == frozenset() and kept.store_mb > 0
    full = kept.store_mb * 2 ** 20
    results = []
    for budget in (full / 2, 0.0):
        session = TiledSession(kept.segment_plan, kept.geometry, 18, threads=1, store_budget=budget)
        tiled = session(x)
        assert session.recomputed and session.store_mb * 2 ** 20 <= max(budget, 0) + 1
        assert np.abs(tiled - stored).max() <= 1e-6 and np.abs(tiled - whole).max() <= TOL
        results.append((len(session.recomputed), frame_macs(session, h, w)))
    (some, half_macs), (every, zero_macs) = results
    assert some <= every and kept_macs <= half_macs <= zero_macs and zero_macs > kept_macs


def test_reference_microisp_exact_at_a_fraction_of_the_pass_macs(reference):
    """The authors' MicroISP.tflite: 5 segments (halos 3, 3, 5, 3, 2 px against the model's 16),
    output equal to its whole frame, MACs within 1.25x of the whole frame (the pass executor:
    ~4x); float16 stores halve their memory at a measured cost."""
    from isp_tf.runtime.session import LiteRtSession
    from isp_tf.tiling.planner import Geometry

    geometry = Geometry(halo=16, stride=1, core_step=81, align=81, output_scales=(2,), min_side=79)
    session = TiledSession.from_tflite(reference, geometry, core=162, threads=1)
    h, w = 405, 486
    x = np.random.default_rng(3).random((1, h, w, 4), dtype=np.float32)
    whole = LiteRtSession(reference, threads=1).run(x)[0]
    tiled = session(x)
    assert session.segments == 5 and session.halos == [3, 3, 5, 3, 2] and session.tiles == 9
    err = float(np.abs(tiled - whole).max())
    assert tiled.shape == whole.shape == (1, 2 * h, 2 * w, 3) and err <= TOL
    ratio = frame_macs(session, h, w) / macs.tflite_macs(reference, [1, h, w, 4])
    assert 1.0 < ratio <= 1.25
    # every full core's box has one size (planner.segment_box) and each model keeps an interpreter per box
    # shape of a row: at most two allocations per model and frame (each cut box had its own: ~4 per model)
    models = sum(1 for local, parts in session.segment_plan.segments for m in [local, *parts]
                 if m is not None and m.model is not None)
    assert models <= session.resizes_per_frame <= 2 * models
    half = TiledSession(session.segment_plan, session.geometry, 162, threads=1, storage="float16")
    err16 = float(np.abs(half(x) - whole).max())
    print(f"\nreference MicroISP 405x486, core 162: MACs {ratio:.3f}x whole, max abs error fp32 stores "
          f"{err:.2g}, fp16 stores {err16:.2g}")
    assert err < err16 < 2e-2


def test_manifest_carries_the_segments(vector_model, vector_tflite, tmp_path):
    """write_manifest adds the segments (models beside it); a manifest without them still runs
    through the pass executor, with the same output."""
    from isp_tf.tiling.analysis import analyze
    from isp_tf.tiling.manifest import read_manifest, write_manifest

    path = tmp_path / "toy.tiling.json"
    write_manifest(vector_tflite, analyze(vector_model).geometry, path, core=18)
    manifest = read_manifest(path)
    assert manifest["version"] == 1 and len(manifest["segments"]) == 3
    assert [s["local"]["halo"] for s in manifest["segments"]] == [1, 2, 1]
    assert manifest["stores"][0]["producer"] == -1 and all((tmp_path / s["local"]["model"]).exists()
                                                           for s in manifest["segments"])
    x = np.random.default_rng(5).random((61, 50, 4), dtype=np.float32)
    camera = np.array([0.5, 2.0, 1.2], np.float32)
    segmented = TiledSession.from_manifest(path, threads=1)
    assert isinstance(segmented, TiledSession)
    got = segmented.run(x, camera)
    old = {k: v for k, v in manifest.items() if k not in ("segments", "stores", "segment_rules")}
    for st in old["statistics"]:
        st.pop("given")
    path.write_text(json.dumps(old))
    passes = TiledSession.from_manifest(path, threads=1)
    assert isinstance(passes, PassSession)
    for a, b in zip(got, passes.run(x, camera)):
        assert a.shape == b.shape and np.abs(a - b).max() <= TOL


def test_genisp_tile_export_runs_its_per_frame_part_once(tmp_path):
    """``export --tile`` of GenISP (ModelSpec.split): the tile model is the tileable part, the
    manifest adds the per-frame part (ConvWB/ConvCC on the whole frame's resize), run once;
    with it the manifest alone gives the whole-frame output of the Keras model."""
    from isp_tf.export.convert import export_tflite
    from isp_tf.models import create_model, get_spec
    from isp_tf.tiling.manifest import manifest_path, read_manifest

    config = dict(get_spec("genisp").small_config)
    model = create_model("genisp", **config)
    rng = np.random.default_rng(0)
    for w in model.weights:  # away from the identity start, so the per-frame values matter
        w.assign(w.numpy() + rng.normal(0.0, 0.2, w.shape).astype(np.float32))
    out = tmp_path / "genisp_tile.tflite"
    result = export_tflite("genisp", out, precision="fp32", tile=64, keras_model=model, config=config,
                           parity=False, progress=False, log=lambda *a, **k: None)
    assert result.metadata["tile"]["per_frame"] == "genisp_tile_per_frame.tflite"
    manifest = read_manifest(manifest_path(out))
    assert manifest["per_frame"]["inputs"] == [["image", 0], ["vector", 0]] or \
        manifest["per_frame"]["inputs"] == [["vector", 0], ["image", 0]]
    x = rng.random((100, 90, 4), dtype=np.float32)
    cam = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.0, 0.1, 0.9]], np.float32).ravel()
    whole = model([x[np.newaxis], cam[np.newaxis]]).numpy()[0]
    session = TiledSession.from_manifest(manifest_path(out), threads=1, core=32)
    tiled = session(x, cam)
    assert session.tiles == 9 and tiled.shape == whole.shape
    assert whole.std() > 0.05 and np.abs(tiled - whole).max() <= TOL


def test_paramisp_tile_export_writes_its_per_frame_part(tmp_path):
    """``export --tile`` of ParamISP (ModelSpec.split, free-size per-frame part: its reflect and
    minimum-size pads keep their channel counts, so TFLite converts the convolutions after them):
    the manifest alone gives the Keras model's whole frame."""
    from isp_tf.export.convert import export_tflite
    from isp_tf.models import create_model, get_spec
    from isp_tf.tiling.manifest import manifest_path

    config = dict(get_spec("paramisp").small_config)
    model = create_model("paramisp", **config)
    out = tmp_path / "paramisp_tile.tflite"
    result = export_tflite("paramisp", out, precision="fp32", tile=128, keras_model=model, config=config,
                           parity=False, progress=False, log=lambda *a, **k: None)
    assert "manifest_error" not in result.metadata["tile"], result.metadata["tile"]
    assert result.metadata["tile"]["per_frame"] == "paramisp_tile_per_frame.tflite"
    rng = np.random.default_rng(2)
    x = rng.random((96, 80, 4), dtype=np.float32)
    params = rng.random(int(model.inputs[1].shape[-1])).astype(np.float32)
    whole = model([x[np.newaxis], params[np.newaxis]]).numpy()[0]
    session = TiledSession.from_manifest(manifest_path(out), threads=1, core=32)
    tiled = session(x, params)
    assert session.tiles > 1 and tiled.shape == whole.shape
    assert whole.std() > 0.01 and np.abs(tiled - whole).max() <= TOL
