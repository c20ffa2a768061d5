"""The default LiteRT engine: exported once per weights file into the cache, the same floats (1e-4) and
PNGs as the Keras engine, whole and tiled, per-frame vectors and a split model (GenISP) included."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from isp_tf.infer.__main__ import main
from isp_tf.infer.litert import LiteRtRenderer, cache_root, load_renderer
from isp_tf.infer.pipeline import NetworkRenderer
from isp_tf.infer.png import read_png
from isp_tf.models import create_model, get_spec
from isp_tf.models.weights import save_weights
from isp_tf.raw import read_raw, write_dng

SMALL = {"width": 4, "depth": 4}  # tests/infer/conftest.py: MICROISP_SMALL


def _randomised(model, scale, seed=0):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign((w.numpy() + rng.normal(0.0, scale, w.shape)).astype(np.float32))
    return model


@pytest.fixture(scope="module")
def setup(tmp_path_factory, microisp_small):
    root = tmp_path_factory.mktemp("litert")
    (root / "microisp.weights.h5").symlink_to(microisp_small[1])  # exported once per session
    config = get_spec("genisp").small_config
    save_weights(_randomised(create_model("genisp", **config), 0.2), root / "genisp.weights.h5", "genisp", config)
    rng = np.random.default_rng(2)
    write_dng(root / "photo.dng", rng.integers(64, 4096, (236, 340)).astype(np.uint16),
              {"cfa_pattern": "BGGR", "black_level": [64] * 4, "white_level": 4095, "wb_gains": [1.8, 1.0, 1.4]})
    return root


@pytest.mark.parametrize("name", ["microisp", "genisp"])
def test_litert_floats_equal_keras_whole_and_tiled(setup, name):
    weights = setup / f"{name}.weights.h5"
    keras = NetworkRenderer(weights=weights)
    litert = load_renderer(weights=weights)
    assert isinstance(litert, LiteRtRenderer) and litert.name == name
    raw = read_raw(setup / "photo.dng")
    reference = keras(raw, tile=0)
    whole = litert(raw, tile=0)
    tile = 64 if name == "genisp" else 81
    x = litert.model_input(raw)
    assert litert.tiled_session(litert.core_for(tile, x.shape[:2])).plan(*x.shape[:2]).__len__() > 1
    tiled = litert(raw, tile=tile)
    assert whole.shape == tiled.shape == reference.shape
    assert np.max(np.abs(whole - reference)) <= 1e-4
    assert np.max(np.abs(tiled - reference)) <= 1e-4
    assert reference.std() > 0.02  # a picture, not a flat field


def test_exported_once_and_reused_without_tensorflow(setup):
    weights = setup / "microisp.weights.h5"
    first = load_renderer(weights=weights)
    entries = [p for p in cache_root().iterdir() if (p / "entry.json").is_file()]
    assert first.folder in entries and not [p for p in cache_root().iterdir() if p.name.startswith(".tmp")]
    entry = json.loads((first.folder / "entry.json").read_text())
    assert entry["model"] == "microisp" and entry["config"] == SMALL and entry["manifest"]
    probe = ("import sys; from isp_tf.infer.litert import load_renderer; "
             f"r = load_renderer(weights={str(weights)!r}); print(r.folder, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env=dict(os.environ)).stdout.split()
    assert out == [str(first.folder), "False"]


def test_default_engine_and_keras_engine_write_the_same_png(setup, tmp_path):
    args = [str(setup / "photo.dng"), "--weights", str(setup / "microisp.weights.h5"), "--quiet"]
    assert main(args + ["--out", str(tmp_path / "litert")]) == 0
    assert main(args + ["--out", str(tmp_path / "keras"), "--engine", "keras"]) == 0
    a, b = read_png(tmp_path / "litert" / "photo.png"), read_png(tmp_path / "keras" / "photo.png")
    assert a.shape == b.shape == (234, 338, 3)  # BGGR: one row and column cut at each edge
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1 and np.mean(a != b) < 1e-3
