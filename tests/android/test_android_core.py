"""android_demo's Kotlin core, compiled and run on the JVM, checked against the Python pipeline.

* the core's own unit tests (TIFF/DNG reader, planner, quantisation, executor, orientation);
* Bayer packing: the Kotlin packer equals ``isp_tf.raw.pack_bayer(read_raw(path))`` bit for bit
  for the sample DNGs and for DNGs of all four CFA patterns written by ``write_dng``;
* exact tiling: the Kotlin tiled executors (the segments, every op once; and the older statistics
  passes), their model calls served by LiteRT over a pipe, reproduce the whole-frame output of an
  exported small MicroISP (``export --tile 162``) and Python's ``TiledSession``;
* ktlint over every Kotlin source of android_demo.
"""
import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
DEMO = REPO / "android_demo"
SAMPLES = sorted((REPO / "sample_RAW_photos").glob("*.dng"))
TOL = 1e-4


def test_core_unit_tests(run_core):
    proc = run_core("test", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " 0 failed" in proc.stdout


def _pack_all(run_core, paths, tmp_path):
    args, outs = [], []
    for k, p in enumerate(paths):
        out = tmp_path / f"packed{k}.f32"
        args += [p, out]
        outs.append(out)
    lines = run_core("pack", *args).stdout.strip().splitlines()
    assert len(lines) == len(paths)
    return [(json.loads(line), out) for line, out in zip(lines, outs)]


def _check_same(meta, out, raw):
    from isp_tf.raw import pack_bayer

    assert "error" not in meta, meta
    want = pack_bayer(raw)
    assert tuple(meta["shape"]) == want.shape
    got = np.fromfile(out, "<f4").reshape(want.shape)
    assert np.array_equal(got, want), f"max abs diff {np.abs(got - want).max()}"
    assert meta["cfa_pattern"] == raw.cfa_pattern
    assert meta["black_level"] == [float(b) for b in raw.black_level]
    assert meta["white_level"] == float(raw.white_level)
    assert meta["orientation"] == raw.orientation
    for key in ("iso", "exposure_time", "f_number", "focal_length"):
        want_v = getattr(raw.exif, key)
        assert (meta[key] is None) == (want_v is None) and (want_v is None or np.isclose(meta[key], want_v)), key
    np.testing.assert_allclose(meta["wb_gains"], raw.wb_gains, rtol=1e-5)


def test_pack_matches_python_on_the_samples(run_core, tmp_path):
    from isp_tf.raw import read_raw

    assert len(SAMPLES) >= 4
    for (meta, out), path in zip(_pack_all(run_core, SAMPLES, tmp_path), SAMPLES):
        _check_same(meta, out, read_raw(path))


def _shrunk(path, out):
    """``path`` with ImageWidth, ImageLength and RowsPerStrip one less: an odd-sized DNG (same bytes)."""
    data = bytearray(path.read_bytes())
    ifd = int.from_bytes(data[4:8], "little")
    for k in range(int.from_bytes(data[ifd:ifd + 2], "little")):
        at = ifd + 2 + 12 * k
        if int.from_bytes(data[at:at + 2], "little") in (256, 257, 278):
            data[at + 8:at + 12] = (int.from_bytes(data[at + 8:at + 12], "little") - 1).to_bytes(4, "little")
    out.write_bytes(bytes(data))
    return out


def test_pack_matches_python_on_written_dngs(run_core, tmp_path):
    from isp_tf.raw import read_raw
    from isp_tf.raw.dng import write_dng

    rng = np.random.default_rng(13)
    paths = []
    cases = [(p, hw) for p in ("RGGB", "GRBG", "GBRG", "BGGR") for hw in ((22, 22), (30, 46), (58, 24))]
    for k, (pattern, (h, w)) in enumerate(cases):
        white = int(rng.choice([1023, 4095, 16383, 65535]))
        black = rng.integers(0, white // 8, 4).astype(np.float32)
        bayer = rng.integers(0, white + 1, (h, w)).astype(np.uint16)
        bayer[0, 0], bayer[-1, -1] = 0, white  # clipping at both ends
        md = dict(cfa_pattern=pattern, black_level=black, white_level=float(white),
                  wb_gains=[rng.uniform(1.2, 2.5), 1, rng.uniform(1.2, 2.5)],
                  exif=dict(iso=100 * (k + 1), exposure_time=1 / 250, f_number=2.8, focal_length=35),
                  orientation=int(rng.integers(1, 9)))
        path = tmp_path / f"w{k}_{pattern}_{h}x{w}.dng"
        write_dng(path, bayer, md)
        paths.append(path)
        if (h, w) != (22, 22):  # and an odd-sized one (write_dng writes even sides only)
            paths.append(_shrunk(path, tmp_path / f"w{k}_{pattern}_{h - 1}x{w - 1}.dng"))
    assert len(paths) == 20
    for (meta, out), path in zip(_pack_all(run_core, paths, tmp_path), paths):
        raw = read_raw(path)
        assert raw.bayer.shape == tuple(int(v) for v in path.stem.split("_")[-1].split("x"))
        _check_same(meta, out, raw)


def test_unreadable_dngs_raise_the_core_errors(run_core, tmp_path):
    from isp_tf.raw.dng import LONG, SHORT, write_tiff

    linear = tmp_path / "linear.dng"
    write_tiff(linear, np.zeros((24, 24, 3), np.uint16), [(254, LONG, 0), (262, SHORT, 34892), (50706, 1, [1, 4, 0, 0])])
    xtrans = tmp_path / "xtrans.dng"
    write_tiff(xtrans, np.zeros((24, 24), np.uint16), [(254, LONG, 0), (262, SHORT, 32803), (33421, SHORT, [6, 6]),
                                                       (33422, 1, [1] * 36), (50706, 1, [1, 4, 0, 0])])
    good = REPO / "sample_RAW_photos" / "astronaut.dng"
    data = bytearray(good.read_bytes())
    compressed = tmp_path / "compressed.dng"
    # patch Compression (tag 259) of IFD0 from 1 to 7 (lossless JPEG)
    ifd = int.from_bytes(data[4:8], "little")
    for k in range(int.from_bytes(data[ifd:ifd + 2], "little")):
        at = ifd + 2 + 12 * k
        if int.from_bytes(data[at:at + 2], "little") == 259:
            data[at + 8:at + 10] = (7).to_bytes(2, "little")
    compressed.write_bytes(bytes(data))
    results = _pack_all(run_core, [linear, xtrans, compressed], tmp_path)
    assert results[0][0]["error"] == "NotBayerException" and "LinearRaw" in results[0][0]["message"]
    assert results[1][0]["error"] == "NotBayerException" and "6x6" in results[1][0]["message"]
    assert results[2][0]["error"] == "CompressedDngException" and "lossless JPEG" in results[2][0]["message"]


def _export(folder, precision):
    """A small MicroISP (random weights large enough that its statistics matter), exported with --tile 162."""
    from isp_tf.export.convert import export_tflite
    from isp_tf.models import create_model, get_spec

    config = dict(get_spec("microisp").small_config)
    model = create_model("microisp", **config)
    rng = np.random.default_rng(0)
    for w in model.weights:
        w.assign(rng.normal(0.0, 0.3, w.shape).astype(np.float32))
    out = folder / "microisp_tile.tflite"
    export_tflite("microisp", out, precision=precision, tile=162, keras_model=model, config=config,
                  parity=False, progress=False, log=lambda *a, **k: None)
    return model, folder / "microisp_tile.tiling.json"


@pytest.fixture(scope="module")
def microisp_export(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("microisp_fp32"), "fp32")


@pytest.fixture(scope="module")
def microisp_int8(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("microisp_int8"), "int8")


def _kotlin_tiled(run_core, server_command, manifest, x, tmp_path):
    x.tofile(tmp_path / "x.f32")
    h, w, c = x.shape
    proc = run_core("tile", manifest, tmp_path / "x.f32", h, w, c, tmp_path / "y.f32", "--", *server_command(manifest))
    oh, ow, oc, tiles, calls = (int(v) for v in proc.stdout.split("\n")[0].split())
    return np.fromfile(tmp_path / "y.f32", "<f4").reshape(oh, ow, oc), tiles, calls, proc.stdout.splitlines()[1]


def test_tiled_executor_matches_whole_frame(run_core, server_command, microisp_export, tmp_path):
    from isp_tf.tiling.tflite_executor import TiledSession

    model, manifest = microisp_export
    x = np.random.default_rng(1).random((250, 200, 4), dtype=np.float32)  # three tiles of 81 a side
    whole = model(x[np.newaxis]).numpy()[0]  # the whole-frame Keras output
    got, tiles, calls, timing = _kotlin_tiled(run_core, server_command, manifest, x, tmp_path)
    assert got.shape == whole.shape == (500, 400, 3) and tiles == 6 and calls == 6 * 3
    err = float(np.abs(got - whole).max())
    # the same pass models on the same LiteRT kernels (the helper serves with runtime "builtin")
    python_tiled = TiledSession.from_manifest(manifest, threads=1, runtime="builtin")(x)
    err_python = float(np.abs(got - python_tiled).max())
    print(f"\nfp32: kotlin tiled vs keras whole frame {err:.3g}, vs python TiledSession {err_python:.3g}; "
          f"output std {whole.std():.3f}; {timing}")
    assert whole.std() > 0.05 and err <= 1e-5 and err_python <= TOL  # err: the README's 3.9e-6


def test_tiled_executor_int8_matches_python(run_core, server_command, microisp_int8, tmp_path):
    """INT8: the core quantises the frame and the statistics (scale/zero point of the manifest's inputs)
    and dequantises the maps and outputs exactly as isp_tf.runtime.quantize/dequantize: bit-equal to
    Python's TiledSession on the same kernels."""
    from isp_tf.tiling.tflite_executor import TiledSession

    _, manifest = microisp_int8
    x = np.random.default_rng(1).random((250, 200, 4), dtype=np.float32)
    got, tiles, calls, _ = _kotlin_tiled(run_core, server_command, manifest, x, tmp_path)
    python_tiled = TiledSession.from_manifest(manifest, threads=1, runtime="builtin")(x)
    err = float(np.abs(got - python_tiled).max())
    print(f"\nint8: kotlin tiled vs python TiledSession (builtin kernels) {err:.3g}")
    assert got.shape == python_tiled.shape and tiles == 6 and err == 0.0


def test_whole_frame_int8_uses_the_export_json(run_core, server_command, microisp_int8, tmp_path):
    from isp_tf.runtime.session import LiteRtSession

    _, manifest = microisp_int8
    tflite = manifest.parent / "microisp_tile.tflite"
    x = np.random.default_rng(2).random((81, 81, 4), dtype=np.float32)  # the export's own tile size
    x.tofile(tmp_path / "x.f32")
    proc = run_core("whole", tflite.with_suffix(".json"), tmp_path / "x.f32", 81, 81, 4, tmp_path / "y.f32", "--",
                    *server_command(tflite))
    assert proc.stdout.split() == ["162", "162", "3"]
    got = np.fromfile(tmp_path / "y.f32", "<f4").reshape(162, 162, 3)
    want = LiteRtSession(tflite, threads=1, runtime="builtin")(x[np.newaxis])[0]
    assert np.array_equal(got, want)


def _kotlin_segments(run_core, server_command, manifest, x, tmp_path):
    """The Kotlin SegmentExecutor on ``x``: (output, tiles, calls, {model index: [input shapes per call]})."""
    x.tofile(tmp_path / "x.f32")
    h, w, c = x.shape
    server = server_command("--segments", manifest)
    proc = run_core("tile", manifest, tmp_path / "x.f32", h, w, c, tmp_path / "y.f32", "--segments", "--", *server)
    lines = proc.stdout.splitlines()
    oh, ow, oc, tiles, calls = (int(v) for v in lines[0].split())
    log = {int(k): v for k, v in json.loads(lines[2][len("calls "):]).items()}
    return np.fromfile(tmp_path / "y.f32", "<f4").reshape(oh, ow, oc), tiles, calls, log


def _segment_names(manifest):
    """The segment model files in the order the server (and ``TileManifest.segmentModels``) numbers them."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("litert_server", pathlib.Path(__file__).with_name("litert_server.py"))
    server = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(server)
    return [p.name for p in server.segment_models(manifest)]


def test_segment_executor_matches_python_and_the_whole_frame(run_core, server_command, microisp_export, tmp_path):
    """The Kotlin SegmentExecutor (every op once per tile) on a 250x200 frame (not a multiple of the
    81-px core: the edge boxes are shifted inside the frame) equals Python's TiledSession and the
    whole-frame Keras output; each segment model runs once per tile, with Python's input shapes, and
    the frame costs fewer MACs than the statistics passes."""
    from benchmarks.macs import tflite_macs
    from isp_tf.tiling.tflite_executor import PassSession, TiledSession

    model, manifest = microisp_export
    x = np.random.default_rng(1).random((250, 200, 4), dtype=np.float32)
    whole = model(x[np.newaxis]).numpy()[0]
    got, tiles, calls, log = _kotlin_segments(run_core, server_command, manifest, x, tmp_path)
    session = TiledSession.from_manifest(manifest, threads=1, runtime="builtin")
    python_tiled = session(x)
    err, err_python = float(np.abs(got - whole).max()), float(np.abs(got - python_tiled).max())
    names = _segment_names(manifest)
    assert got.shape == whole.shape == (500, 400, 3) and tiles == 6 and calls == 6 * len(names)
    assert sorted(log) == list(range(len(names))) and all(len(log[k]) == tiles for k in log)
    # the same calls as Python's: per model, the input shapes of every tile (its boxes / cores)
    python_calls = {pathlib.Path(str(m)).name: sorted(map(list, (map(list, c) for c in calls_)))
                    for m, calls_ in session.calls(250, 200)}
    for k, name in enumerate(names):
        assert sorted(log[k]) == python_calls[name], name
    # segment 0 (halo 3): every box is its core + 6 px, shifted inside the frame at the edges
    assert sorted({shapes[0][1] for shapes in log[0]}) == [87, 94]
    macs_cache = {}

    def macs(path, shapes):
        key = (str(path), json.dumps(shapes))
        if key not in macs_cache:
            macs_cache[key] = tflite_macs(path, input_shapes=shapes)
        return macs_cache[key]

    seg_macs = sum(macs(manifest.parent / names[k], shapes) for k in log for shapes in log[k])
    passes = PassSession.from_manifest(manifest, threads=1, runtime="builtin")
    pass_macs = sum(macs(path, [[1, h, w, 4]] + [st["shape"] for st in passes.stats])
                    for path, boxes in passes.work(250, 200) for h, w in boxes)
    whole_macs = tflite_macs(manifest.parent / "microisp_tile.tflite", input_shapes=[[1, 250, 200, 4]])
    print(f"\nfp32 segments: kotlin vs keras whole frame {err:.3g}, vs python TiledSession {err_python:.3g}; "
          f"{calls} calls; MACs {seg_macs / whole_macs:.2f}x the whole frame, passes {pass_macs / whole_macs:.2f}x")
    assert whole.std() > 0.05 and err <= TOL and err_python <= TOL
    assert seg_macs < pass_macs


def test_segment_executor_int8_matches_python(run_core, server_command, microisp_int8, tmp_path):
    """INT8 segments: the int8 stores kept raw, the frame and the statistics quantised from the manifest:
    Python's TiledSession on the same kernels, to within one output quantisation step (bit-equal here)."""
    from isp_tf.tiling.tflite_executor import TiledSession

    _, manifest = microisp_int8
    x = np.random.default_rng(1).random((250, 200, 4), dtype=np.float32)
    got, tiles, _, _ = _kotlin_segments(run_core, server_command, manifest, x, tmp_path)
    python_tiled = TiledSession.from_manifest(manifest, threads=1, runtime="builtin")(x)
    step = json.loads(manifest.read_text())["outputs"][0]["scale"]
    err = float(np.abs(got - python_tiled).max())
    print(f"\nint8 segments: kotlin vs python TiledSession (builtin kernels) {err:.3g} (one step {step:.3g})")
    assert got.shape == python_tiled.shape and tiles == 6 and err <= step * 1.0001


def test_tiled_executor_refuses_a_mismatched_model(run_core, server_command, microisp_export, tmp_path):
    _, manifest = microisp_export
    x = np.zeros((100, 90, 4), np.float32)
    x.tofile(tmp_path / "x.f32")
    passes = [manifest.parent / p["model"] for p in json.loads(manifest.read_text())["passes"]]
    # the final model served as pass 0: one image output where three statistics maps are expected
    proc = run_core("tile", manifest, tmp_path / "x.f32", 100, 90, 4, tmp_path / "y.f32", "--",
                    *server_command(passes[-1], *passes[1:]), check=False)
    assert proc.returncode == 2 and "ModelMismatchException" in proc.stderr, proc.stderr


def test_ktlint_is_clean(kotlin):
    sources = sorted(DEMO.rglob("*.kt")) + sorted(DEMO.rglob("*.kts"))
    assert len(sources) >= 16
    proc = subprocess.run([str(kotlin.ktlint), "--relative", *(str(p.relative_to(DEMO)) for p in sources)],
                          capture_output=True, text=True, cwd=DEMO, timeout=600,
                          env={**os.environ, "JAVA_OPTS": os.environ.get("JAVA_OPTS", "-Xmx512m")})
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
