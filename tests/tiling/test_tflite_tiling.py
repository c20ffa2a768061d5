"""LiteRT executor: the flatbuffer rewrite, pass models and exact tiled execution of a .tflite."""
import pathlib

import numpy as np
import pytest

from benchmarks import macs
from isp_tf.errors import InputShapeError, IspTfError
from isp_tf.tiling.tflite_executor import TiledSession, expose_global_stats, pass_models

REFERENCE = pathlib.Path(__file__).resolve().parents[3] / "shared" / "reference_weights" / \
    "microisp_official" / "MicroISP.tflite"
TOL = 1e-4


@pytest.fixture(scope="module")
def vector_geometry(vector_model):
    from isp_tf.tiling.analysis import analyze

    return analyze(vector_model).geometry


def _keras_by_channels(vector_model, image, camera):
    return {o.shape[-1]: o.numpy()[0] for o in vector_model([image[np.newaxis], camera[np.newaxis]])}


def test_expose_keeps_the_model_inputs_and_outputs_first(vector_tflite):
    data, stats = expose_global_stats(vector_tflite)
    # camera and image stay inputs 0, 1; the two image outputs stay outputs 0, 1
    assert [(s["given"], s["map"], s["jump"], s["depth"]) for s in stats] == [(2, 2, 9, 0), (3, 3, 1, 1)]
    passes = pass_models(data, stats)
    assert [which for _, which in passes] == [[0], [1], []]


def test_vector_input_tiled_equals_whole(vector_model, vector_tflite, vector_geometry):
    """The camera vector goes, unchanged, to every tile of every pass; both outputs are exact."""
    assert vector_geometry.output_scales == (2, 1) and vector_geometry.align == 9
    session = TiledSession.from_tflite(vector_tflite, vector_geometry, core=18, threads=1)
    assert (session.image_index, session.vector_indices, session.passes) == (1, [0], 3)
    x = np.random.default_rng(5).random((61, 50, 4), dtype=np.float32)
    camera = np.array([0.5, 2.0, 1.2], np.float32)
    outs = session.run(x, camera)
    # each segment reads its own halo: 1 px before the attention, 2 after it, 1 after the norm; boxes are
    # core + 2 halos, shifted inside the frame at its edges (planner.segment_box): the 25-px last core reads 29
    assert session.tiles == 9 and session.halos == [1, 2, 1] and session.tile_input == [29, 22]
    reference = _keras_by_channels(vector_model, x, camera)
    assert sorted(o.shape for o in outs) == sorted(r.shape for r in reference.values())
    for o in outs:
        assert np.abs(o - reference[o.shape[-1]]).max() <= TOL
    # batch axis in and out, the first output alone, another vector
    first = session(x[np.newaxis], camera[np.newaxis])
    assert first.shape == (1,) + outs[0].shape and np.array_equal(first[0], outs[0])
    other = session.run(x, np.array([2.0, 0.1, 0.3], np.float32))
    assert max(np.abs(a - b).max() for a, b in zip(other, outs)) > 1e-2
    with pytest.raises(InputShapeError, match="1 per-frame input"):
        session.run(x)
    with pytest.raises(InputShapeError, match="smaller than one tile"):
        session.run(x[:5], camera)


def test_tiled_runs_on_interpreter_runtimes_only(vector_tflite, vector_geometry):
    with pytest.raises(IspTfError, match="interpreter runtimes"):
        TiledSession.from_tflite(vector_tflite, vector_geometry, core=18, runtime="xnnpack-transient")


# --- the authors' MicroISP .tflite ---------------------------------------------------------
@pytest.mark.skipif(not REFERENCE.exists(), reason="authors' MicroISP.tflite not in ../shared")
def test_expose_global_stats_on_the_reference_microisp(tmp_path):
    from ai_edge_litert import interpreter as litert

    data, stats = expose_global_stats(REFERENCE.read_bytes())
    # 12 attentions (3 branches x 2 stages x 2), 4 dependency depths, pooled over 81-px blocks
    assert len(stats) == 12
    assert sorted({s["depth"] for s in stats}) == [0, 1, 2, 3]
    assert all(s["jump"] == 81 for s in stats)
    path = tmp_path / "stats_io.tflite"
    path.write_bytes(data)
    it = litert.Interpreter(model_path=str(path))
    assert len(it.get_input_details()) == 13 and len(it.get_output_details()) == 13
    it.resize_tensor_input(0, [1, 162, 162, 4], strict=False)
    it.allocate_tensors()
    assert "MEAN" not in {op["op_name"] for op in it._get_ops_details()}
    stat_map = it.get_output_details()[stats[0]["map"]]
    assert list(stat_map["shape"]) == [1, 2, 2, 4]  # two 81-px blocks per side

    # pruned pass models: each statistics pass runs only what its maps need, the final pass no pooling
    passes = pass_models(data, stats)
    assert [len(which) for _, which in passes] == [3, 3, 3, 3, 0]
    per_px = []
    for k, (model, _) in enumerate(passes):
        (tmp_path / f"p{k}.tflite").write_bytes(model)
        per_px.append(macs.tflite_macs(tmp_path / f"p{k}.tflite", [1, 405, 405, 4]) / 405 ** 2)
    assert per_px == sorted(per_px)  # deeper statistics need more of the network
    assert per_px[0] < 0.2 * 6957 and 0.99 * 6957 < per_px[-1] < 6957  # the last one: all but the chains


@pytest.mark.skipif(not REFERENCE.exists(), reason="authors' MicroISP.tflite not in ../shared")
def test_expose_global_stats_refuses_other_spatial_reductions():
    from ai_edge_litert import schema_py_generated as schema

    from isp_tf.export.flatbuffer import read_tflite, write_tflite

    model = read_tflite(REFERENCE.read_bytes()).model
    for code in model.operatorCodes:  # turn every MEAN into a SUM: not a mean of the image any more
        if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.MEAN:
            code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.SUM
    with pytest.raises(IspTfError, match="SUM over spatial axes"):
        expose_global_stats(write_tflite(model))
