"""``python -m isp_tf.infer`` end to end on DNGs written with isp_tf.raw.write_dng."""
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from isp_tf.infer import pipeline
from isp_tf.infer.__main__ import main
from isp_tf.infer.png import read_png, to_uint
from isp_tf.models import create_model
from isp_tf.models.weights import save_weights
from isp_tf.raw import apply_orientation, pack_bayer, read_raw, write_dng

def _dng(path, rows, cols, orientation=1, seed=0):
    rng = np.random.default_rng(seed)
    bayer = rng.integers(64, 4096, (rows, cols)).astype(np.uint16)
    write_dng(path, bayer, {"cfa_pattern": "GRBG", "black_level": [64] * 4, "white_level": 4095,
                            "wb_gains": [2.0, 1.0, 1.5], "orientation": orientation})
    return path


@pytest.fixture(scope="module", autouse=True)
def reuse_renderers():
    """One NetworkRenderer per (model, weights) for the whole module: building
    and tracing it is the slow part, and main() would repeat it per call."""
    cache = {}
    original = pipeline.NetworkRenderer

    def cached(model=None, weights=None):
        key = (model, str(weights))
        if key not in cache:
            cache[key] = original(model, weights)
        return cache[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "NetworkRenderer", cached)
        yield


@pytest.fixture(scope="module")
def files(tmp_path_factory, microisp_small):
    root = tmp_path_factory.mktemp("infer")
    model, weights = microisp_small
    pynet = create_model("pynet", small=True)
    save_weights(pynet, root / "pynet.weights.h5", "pynet", {"width": 0.0625})
    corrupt = root / "corrupt.dng"
    corrupt.write_bytes(_dng(root / "whole.dng", 200, 300).read_bytes()[:3000])
    return {
        "root": root, "model": model, "weights": weights,
        "pynet_weights": root / "pynet.weights.h5",
        # 200 x 300 GRBG: packed 100 x 149 (one column dropped), rotated 90 degrees to view
        "dng": _dng(root / "photo.dng", 200, 300, orientation=6),
        "tiny": _dng(root / "tiny.dng", 140, 400),  # packed 70 rows < 79
        "corrupt": corrupt,
    }


def test_png_written_oriented_and_equal_to_the_model(files, tmp_path):
    out = tmp_path / "out"
    code = main([str(files["dng"]), "--out", str(out), "--weights", str(files["weights"]), "--quiet"])
    assert code == 0
    png = read_png(out / "photo.png")
    assert png.dtype == np.uint8 and png.shape == (298, 200, 3)  # (2 * 149, 2 * 100) turned
    raw = read_raw(files["dng"])
    expected = files["model"](pack_bayer(raw)[None]).numpy()[0]
    expected = to_uint(apply_orientation(np.clip(expected, 0, 1), 6), 8)
    assert np.abs(png.astype(int) - expected.astype(int)).max() <= 1
    assert expected.std() > 10  # a picture, not a flat field
    assert sorted(p.name for p in out.iterdir()) == ["photo.png"]  # no temporaries


def test_tiled_png_equals_whole_frame_png_16_bit(files, tmp_path):
    args = [str(files["dng"]), "--weights", str(files["weights"]), "--bits", "16", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "whole"), "--tile", "0"]) == 0
    assert main(args + ["--out", str(tmp_path / "tiled"), "--tile", "162"]) == 0  # 2 x 2 tiles
    whole = read_png(tmp_path / "whole" / "photo.png")
    tiled = read_png(tmp_path / "tiled" / "photo.png")
    assert whole.dtype == np.uint16 and whole.shape == (298, 200, 3)
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 7  # 1e-4 * 65535


def test_unknown_model_exits_2(files, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main([str(files["dng"]), "--out", str(tmp_path), "--model", "resnet"])
    assert e.value.code == 2
    assert "invalid choice: 'resnet'" in capsys.readouterr().err


def test_weights_of_another_model_exit_2(files, tmp_path, capsys):
    code = main([str(files["dng"]), "--out", str(tmp_path), "--model", "microisp",
                 "--weights", str(files["pynet_weights"])])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {files['pynet_weights']} holds weights of model 'pynet', not of "
                   "'microisp' (drop --model or pass weights trained for microisp)"]


def test_missing_default_weights_say_how_to_get_them(files, tmp_path, monkeypatch, capsys):
    import dataclasses

    import isp_tf.models.microisp as microisp

    monkeypatch.setattr(microisp, "SPEC", dataclasses.replace(microisp.SPEC, home=tmp_path / "nowhere"))
    assert main([str(files["dng"]), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "python -m isp_tf.train --model microisp" in err and "--renderer classical" in err


def test_input_smaller_than_one_tile_exits_2(files, tmp_path, capsys):
    code = main([str(files["tiny"]), "--out", str(tmp_path), "--weights", str(files["weights"]), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "tiny.dng: 140x400 px is smaller than one tile of microisp (158x158 RAW px)" in err
    assert not (tmp_path / "tiny.png").exists()


def test_corrupt_file_alone_exits_2_among_others_exits_1(files, tmp_path, capsys):
    assert main([str(files["corrupt"]), "--out", str(tmp_path / "a"), "--renderer", "classical",
                 "--quiet"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {files['corrupt']}: ")
    code = main([str(files["corrupt"]), str(files["dng"]), "--out", str(tmp_path / "b"),
                 "--renderer", "classical", "--quiet"])
    assert code == 1
    assert "corrupt.dng" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["photo.png"]  # the good one kept


def test_classical_renderer_on_real_files(raw_samples, tmp_path):
    code = main([str(raw_samples["dng"]), "--out", str(tmp_path), "--renderer", "classical",
                 "--bits", "16", "--quiet"])
    assert code == 0
    raw = read_raw(raw_samples["dng"])
    packed = pack_bayer(raw)
    with Image.open(tmp_path / "canon_eos550d_colorchart.png") as im:
        height, width = 2 * packed.shape[0], 2 * packed.shape[1]
        assert im.size == ((height, width) if raw.orientation in (5, 6, 7, 8) else (width, height))
    png = read_png(tmp_path / "canon_eos550d_colorchart.png")
    assert png.dtype == np.uint16 and png.max() > 30000


def test_folder_input_and_help_runs_without_tensorflow(files, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a photo")
    _dng(folder / "a.dng", 200, 200)
    assert [p.name for p in pipeline.expand_inputs([folder])] == ["a.dng"]
    probe = ("import sys; from isp_tf.infer.__main__ import build_parser; build_parser().format_help(); "
             "print('tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_headerless_dump_with_metadata_options(raw_samples, tmp_path, capsys):
    args = [str(raw_samples["nikon_raw"]), "--out", str(tmp_path), "--renderer", "classical",
            "--cfa", "RGGB", "--black", "600", "--white", "15520", "--wb", "1.949,1,1.344", "--quiet"]
    assert main(args + ["--bayer-shape", "512x768"]) == 0
    png = read_png(tmp_path / "nikon_dsc1339_768x512_rggb_u16le_14bit.png")
    assert png.shape == (512, 768, 3)
    red, green, blue = png.reshape(-1, 3).mean(axis=0)
    assert red > green > blue  # a red rose
    assert main(args + ["--bayer-shape", "500x768"]) == 2  # the file size says otherwise
    assert capsys.readouterr().err.startswith(f"error: {raw_samples['nikon_raw']}")
    with pytest.raises(SystemExit) as e:
        main(args + ["--bayer-shape", "512 by 768"])
    assert e.value.code == 2
