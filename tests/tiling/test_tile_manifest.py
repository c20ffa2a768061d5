"""Tile manifests: written by ``export --tile N``, enough on their own for exact tiled inference."""
import json

import numpy as np
import pytest

from isp_tf.errors import MissingFileError
from isp_tf.tiling.manifest import COMBINE_RULE, manifest_path, read_manifest, write_manifest
from isp_tf.tiling.planner import TilingError
from isp_tf.tiling.tflite_executor import TiledSession

TOL = 1e-4


def test_manifest_round_trip(vector_model, vector_tflite, tmp_path):
    from isp_tf.tiling.analysis import analyze

    geometry = analyze(vector_model).geometry
    path = tmp_path / "toy.tiling.json"
    written = write_manifest(vector_tflite, geometry, path, core=18, source={"model": "toy"})
    manifest = read_manifest(path)
    assert manifest["format"] == "isp_tf.tiling.manifest" and manifest["version"] == 1
    assert manifest["geometry"] == {"halo": 3, "stride": 1, "core_step": 9, "align": 9,
                                    "output_scales": [1, 2],  # the .tflite's output order
                                    "size_multiple": 1, "min_side": 7}
    assert manifest["core"] == 18 and manifest["resizable"] is True
    assert [i["role"] for i in manifest["inputs"]] == ["per_frame", "image", "statistic", "statistic"]
    assert [(p["model"], p["statistics"], p["final"]) for p in manifest["passes"]] == [
        ("toy_pass0.tflite", [0], False), ("toy_pass1.tflite", [1], False), ("toy_pass2.tflite", [], True)]
    assert [(s["input"], s["output"], s["pass"], s["jump"], s["depth"]) for s in manifest["statistics"]] == \
        [(2, 0, 0, 9, 0), (3, 0, 1, 1, 1)]
    assert manifest["statistics"][0]["shape"] == [1, 8]
    assert manifest["combine"]["rule"] == COMBINE_RULE["rule"] == "sum over tile cores / count"
    assert "core // 2" in manifest["plan"]["cuts"]
    assert json.loads(path.read_text()) == written  # what was written is what was returned
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temporary file

    x = np.random.default_rng(6).random((70, 44, 4), dtype=np.float32)
    camera = np.array([1.5, 0.3, 0.8], np.float32)
    reference = {o.shape[-1]: o.numpy()[0] for o in vector_model([x[np.newaxis], camera[np.newaxis]])}
    for core in (None, 27):  # the manifest's core, or another one
        session = TiledSession.from_manifest(path, threads=1, core=core)
        outs = session.run(x, camera)
        assert session.core == (core or 18) and session.tiles > 1
        for o in outs:
            assert np.abs(o - reference[o.shape[-1]]).max() <= TOL


def test_bad_manifests(vector_model, vector_tflite, tmp_path):
    with pytest.raises(MissingFileError, match="tile manifest not found"):
        read_manifest(tmp_path / "none.tiling.json")
    bad = tmp_path / "bad.tiling.json"
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(TilingError, match="not a tile manifest"):
        read_manifest(bad)
    bad.write_text("{")
    with pytest.raises(TilingError, match="not a tile manifest"):
        read_manifest(bad)
    from isp_tf.tiling.analysis import analyze

    path = tmp_path / "toy.tiling.json"
    write_manifest(vector_tflite, analyze(vector_model).geometry, path)
    (tmp_path / "toy_pass1.tflite").unlink()
    with pytest.raises(MissingFileError, match="toy_pass1.tflite"):
        TiledSession.from_manifest(path)


def test_microisp_tile_export_runs_exactly_from_its_manifest(tmp_path):
    """``export --tile 162`` of the small MicroISP (fp32): the manifest alone tiles a 250 x 200
    packed frame (three times the 81-px tile) to the whole-frame Keras output."""
    from isp_tf.export.convert import export_tflite
    from isp_tf.models import create_model, get_spec

    config = dict(get_spec("microisp").small_config)
    model = create_model("microisp", **config)
    rng = np.random.default_rng(0)
    for w in model.weights:  # weights large enough that the attention's statistics matter
        w.assign(rng.normal(0.0, 0.3, w.shape).astype(np.float32))
    out = tmp_path / "microisp_tile.tflite"
    result = export_tflite("microisp", out, precision="fp32", tile=162, keras_model=model, config=config,
                           parity=False, progress=False, log=lambda *a, **k: None)
    tile = result.metadata["tile"]
    assert tile["manifest"] == "microisp_tile.tiling.json" and manifest_path(out).exists()
    assert tile["passes"] == [f"microisp_tile_pass{k}.tflite" for k in range(3)]
    assert json.loads(out.with_suffix(".json").read_text())["tile"]["manifest"] == tile["manifest"]
    manifest = read_manifest(manifest_path(out))
    assert manifest["geometry"]["core_step"] == 81 and manifest["geometry"]["align"] == 81
    assert manifest["geometry"]["halo"] == tile["halo"] and manifest["core"] == 81
    assert manifest["source"]["tile_model"] == "microisp_tile.tflite"
    assert len(manifest["statistics"]) == 6 and manifest["resizable"] is True

    x = rng.random((250, 200, 4), dtype=np.float32)
    whole = model(x[np.newaxis]).numpy()[0]
    session = TiledSession.from_manifest(manifest_path(out), threads=1)
    tiled = session(x)
    assert session.tiles == 3 * 2 and tiled.shape == whole.shape == (500, 400, 3)  # cores of 81 (+ merged edges)
    assert whole.std() > 0.05 and np.abs(tiled - whole).max() <= TOL


def test_too_many_passes_write_segments_only(vector_model, vector_tflite, tmp_path):
    from isp_tf.tiling.analysis import analyze
    from isp_tf.tiling.tflite_executor import PassSession

    path = tmp_path / "t.tiling.json"
    manifest = write_manifest(vector_tflite, analyze(vector_model).geometry, path, max_passes=2)
    assert manifest["passes"] == [] and manifest["passes_omitted"] == 3 and manifest["segments"]
    assert not list(tmp_path.glob("*_pass*.tflite"))
    with pytest.raises(TilingError, match="segments only"):
        PassSession.from_manifest(path)
    x = np.random.default_rng(6).random((70, 44, 4), dtype=np.float32)
    camera = np.array([1.5, 0.3, 0.8], np.float32)
    reference = {o.shape[-1]: o.numpy()[0] for o in vector_model([x[np.newaxis], camera[np.newaxis]])}
    session = TiledSession.from_manifest(path, threads=1, core=18)
    outs = session.run(x, camera)
    assert session.tiles > 1 and len(outs) == 2
    for o in outs:
        assert np.abs(o - reference[o.shape[-1]]).max() <= TOL
