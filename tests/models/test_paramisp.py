"""ParamISP: architecture facts (METHODS.md section 4), the host-side EXIF encoding, camera
parameters from files, the fixed CanoNet / mosaic steps, tone mapping, exact tiling of the inverse,
the joint loss and the stages chained by the trainer (one small model built for the module)."""
import math
import warnings

import numpy as np
import pytest

from isp_tf.data.cameras import CameraParamsWarning, encode, encode_value
from isp_tf.models.paramisp.params import read_camera_params


# --------------------------------------------------------------------------- parameter counts
def _linear(i, o):
    return i * o + o


def _conv(k, i, o):
    return k * k * i * o + o


def expected_counts(c=64, blocks=2, scales=2, stages=4, convs=3, fcs=3, bins=(4, 8, 16)):
    """Per part of one direction, counted by hand from the paper's figure (no camera-ID embedding)."""
    feat = 3 + 6 + 3 * sum(bins) + 3
    param_net = _linear(24, c) + 4 * _linear(15, c) + 3 * _linear(c, c)
    block = _conv(3, c, c // 2) + _conv(3, c // 2, c) + _linear(c, c // 2) + _linear(c // 2, c) + _conv(7, 2, 1)
    local = (_conv(3, feat, c) + _linear(c, c) + blocks * (2 * scales + 1) * block
             + scales * (_conv(2, c, c) + (4 * c * c + c)) + _conv(3, c, 3))
    glob = (_conv(3, feat, c) + (convs - 1) * _conv(3, c, c) + _linear(c, c) + (stages * c + c)
            + (fcs - 1) * _linear(c, c) + stages * _linear(c, 39))
    return {"param": param_net, "local": local, "global": glob}


def test_published_counts_by_hand():
    counts = expected_counts()
    assert counts == {"param": 18_176, "local": 539_553, "global": 152_156}
    assert sum(counts.values()) == 709_885  # ~0.71M per direction (METHODS.md); the spec counts both
    from isp_tf.models import get_spec

    assert get_spec("paramisp").published_parameters == 2 * 709_885


@pytest.fixture(scope="module")
def small():
    from isp_tf._keras import keras
    from isp_tf.models import create_model

    keras.utils.set_random_seed(0)
    return create_model("paramisp", small=True)


def _part_counts(model):
    out = {"param": 0, "local": 0, "global": 0}
    for layer in model.layers:
        for part in out:
            if layer.name.startswith(part + "_"):
                out[part] += sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
    return out


def test_global_net_takes_frames_smaller_than_its_reach(small):
    from isp_tf.models.paramisp.model import min_global_side

    assert (min_global_side(3), min_global_side(2)) == (85, 21)  # the authors' 3 stages need 85 px
    params = encode([2.0, 1.0, 1.5], np.eye(3), [50, 4, 0.01, 100])[np.newaxis]
    tiny = np.random.default_rng(0).random((1, 4, 6, 4), dtype=np.float32)  # 8 x 12 px
    out = np.asarray(small([tiny, params]))
    assert out.shape == (1, 8, 12, 3) and np.all(np.isfinite(out))


def test_small_model_parts_match_the_hand_count(small):
    from isp_tf.models.paramisp import inverse_of

    want = expected_counts(c=8, blocks=1, scales=2, stages=2, convs=2, bins=(4,))
    assert _part_counts(small) == want
    assert _part_counts(inverse_of(small)) == want
    layer_names = {layer.name for layer in small.layers}
    assert sum(n.startswith("local_block") for n in layer_names) == 5      # blocks * (2 scales + 1)
    assert small.get_layer("local_features").compute_output_shape([(1, 8, 8, 3)] * 2)[-1] == 3 + 6 + 12 + 3


# --------------------------------------------------------------------------- encoding
def _by_hand(v, s, c, ds, a, b):
    l2 = math.log(v, 2)
    out = [v / s, math.sqrt(v / s), (v / s) ** 0.25, c / v, math.sqrt(c / v), (c / v) ** 0.25,
           (l2 - a) / b, math.sin(l2), math.cos(l2)]
    for d in ds:
        out += [math.sin(v / d), math.cos(v / d)]
    return out


def test_encoding_of_known_exif_equals_hand_computed_values():
    focal = _by_hand(50.0, 200, 4.2, (50, 30, 20), 1.9, 5.8)
    assert focal[:7] == pytest.approx([0.25, 0.5, 0.25 ** 0.25, 0.084, 0.084 ** 0.5, 0.084 ** 0.25,
                                       (math.log2(50) - 1.9) / 5.8])
    assert focal[9:11] == pytest.approx([math.sin(1.0), math.cos(1.0)])
    np.testing.assert_allclose(encode_value(50.0, "focal_length"), focal, rtol=1e-12)
    np.testing.assert_allclose(encode_value(2.8, "f_number"), _by_hand(2.8, 32, 1.7, (11, 5, 2), 0.7, 4.3))
    t = 1 / 125
    expo = _by_hand(t, 30, 1 / 28800, (11, 5, 2), -15, 20)
    assert expo[3] == pytest.approx(125 / 28800)  # the authors' 1 / (t * 28800)
    np.testing.assert_allclose(encode_value(t, "exposure_time"), expo)
    np.testing.assert_allclose(encode_value(400, "iso"), _by_hand(400, 8000, 64, (3100, 1300, 500), 6, 7))

    wb, m = np.array([2.0, 1.0, 1.5]), np.array([[1.6, -0.4, -0.2], [-0.2, 1.4, -0.2], [0.0, -0.5, 1.5]])
    v = encode(wb * 2, m, [50.0, 2.8, t, 400])  # the gains are normalised by green
    assert v.shape == (84,) and v.dtype == np.float32
    np.testing.assert_allclose(v[:6], [2.0, 1.0, 1.5, 0.5, 1.0, 1 / 1.5], rtol=1e-6)
    np.testing.assert_allclose(v[6:15], m.ravel(), rtol=1e-6)
    np.testing.assert_allclose(v[15:24].reshape(3, 3) @ m, np.eye(3), atol=1e-5)
    np.testing.assert_allclose(v[24:39], focal, rtol=1e-5)
    np.testing.assert_allclose(v[69:84], encode_value(400, "iso"), rtol=1e-5)
    # missing: 0 -> 1e-12, as the authors (the reciprocal terms explode; the reader warns)
    assert encode_value(0.0, "iso")[3] == pytest.approx(64 / 1e-12)


# --------------------------------------------------------------------------- files
def _dng(path, exif):
    from isp_tf.raw import write_dng

    bayer = np.random.default_rng(0).integers(64, 1000, (32, 48)).astype(np.uint16)
    write_dng(path, bayer, {"cfa_pattern": "RGGB", "black_level": 64, "white_level": 1023,
                            "wb_gains": [2.0, 1.0, 1.6], "exif": exif, "camera": "Test Cam"})
    return path


def test_camera_params_from_a_dng_with_known_exif(tmp_path):
    path = _dng(tmp_path / "known.dng", {"iso": 400, "exposure_time": 1 / 125, "f_number": 2.8,
                                         "focal_length": 50.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error", CameraParamsWarning)  # nothing missing, nothing out of range
        p = read_camera_params(path)
    assert (p.iso, p.f_number, p.focal_length) == (400, pytest.approx(2.8), pytest.approx(50.0))
    assert p.exposure_time == pytest.approx(1 / 125)
    np.testing.assert_allclose(p.wb_gains, [2.0, 1.0, 1.6], rtol=1e-4)
    np.testing.assert_allclose(p.vector(), encode(p.wb_gains, p.cam_to_srgb, [50.0, 2.8, 1 / 125, 400]), rtol=1e-5)

    from isp_tf.models import get_spec
    from isp_tf.raw import read_raw

    port = get_spec("paramisp").inputs[1]
    np.testing.assert_array_equal(port.from_raw(read_raw(path)), p.vector())  # what infer feeds


def test_missing_exif_warns_once_naming_file_and_fields_and_still_runs(tmp_path, small):
    path = _dng(tmp_path / "no_exif.dng", {"iso": 200})
    with pytest.warns(CameraParamsWarning) as record:
        p = read_camera_params(path)
    messages = [str(r.message) for r in record if issubclass(r.category, CameraParamsWarning)]
    assert len(messages) == 1 and "no_exif.dng" in messages[0]
    assert all(f in messages[0] for f in ("focal_length", "f_number", "exposure_time")) and "iso" not in messages[0]
    v = p.vector()
    assert np.all(np.isfinite(v)) and v[24 + 3] == pytest.approx(4.2e12, rel=1e-6)  # 0 -> 1e-12, as the authors
    from isp_tf.raw import pack_bayer, read_raw

    packed = pack_bayer(read_raw(path))[np.newaxis]
    out = np.asarray(small([packed, v[np.newaxis]]))  # runs; with 1e12 terms the values mean little
    assert out.shape == (1, 32, 48, 3)


def test_out_of_range_exif_warns(tmp_path):
    path = _dng(tmp_path / "odd.dng", {"iso": 25600, "exposure_time": 1 / 60, "f_number": 4.0,
                                       "focal_length": 35.0})
    with pytest.warns(CameraParamsWarning, match=r"odd\.dng: outside the encoding's range: iso=25600"):
        read_camera_params(path)


# --------------------------------------------------------------------------- fixed layers
def test_canonet_demosaic_is_exact_on_linear_ramps_and_applies_wb_and_matrix():
    from isp_tf.models.paramisp.layers import CanoNet, UnCanoNet
    from isp_tf.raw import pack_bayer

    h, w = 16, 20
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.stack([0.01 * xx + 0.1, 0.02 * yy + 0.05, 0.005 * (xx + yy) + 0.2], -1)  # linear in x, y
    mosaic = np.zeros((h, w), np.float32)
    mosaic[0::2, 0::2], mosaic[0::2, 1::2] = rgb[0::2, 0::2, 0], rgb[0::2, 1::2, 1]
    mosaic[1::2, 0::2], mosaic[1::2, 1::2] = rgb[1::2, 0::2, 1], rgb[1::2, 1::2, 2]
    params = encode([1.0, 1.0, 1.0], np.eye(3), [50, 4, 0.01, 100])[np.newaxis]
    out = np.asarray(CanoNet()([pack_bayer(mosaic, "RGGB")[np.newaxis], params]))[0]
    np.testing.assert_allclose(out[2:-2, 2:-2], rgb[2:-2, 2:-2], atol=1e-5)  # Malvar is exact on ramps
    m = np.array([[1.2, -0.1, -0.1], [-0.1, 1.3, -0.2], [0.0, -0.3, 1.3]])
    params2 = encode([1.5, 1.0, 1.25], m, [50, 4, 0.01, 100])[np.newaxis]
    out2 = np.asarray(CanoNet()([pack_bayer(mosaic, "RGGB")[np.newaxis], params2]))[0]
    want = np.clip(rgb * [1.5, 1.0, 1.25], 0, 1) @ m.T
    np.testing.assert_allclose(out2[2:-2, 2:-2], want[2:-2, 2:-2], atol=1e-5)
    back = np.asarray(UnCanoNet()([want[np.newaxis].astype(np.float32), params2]))[0, ..., 0]
    np.testing.assert_allclose(back[2:-2, 2:-2], mosaic[2:-2, 2:-2], atol=1e-5)  # its exact inverse


def test_tone_mapping_starts_at_identity_and_is_the_extended_gamma():
    from isp_tf.models.paramisp.layers import ToneMapping

    x = np.random.default_rng(0).random((1, 4, 5, 3)).astype(np.float32)
    w = np.zeros((1, 39), np.float32)  # g = 1, t0 = 0, t1 = 1, no quadratic term
    np.testing.assert_allclose(np.asarray(ToneMapping()([x, w])), x, atol=1e-6)
    w[0, 30:33] = np.log(2.2)
    w[0, 33:36] = 0.1
    w[0, 36:39] = np.log(3.0)
    w[0, 9 * 3 + 1] = 0.05  # the constant monomial, green channel
    y = x.copy()
    y[..., 1] += 0.05
    want = ((3 * y + 0.1) ** 2.2 - 0.1 ** 2.2) / (3.1 ** 2.2 - 0.1 ** 2.2)
    np.testing.assert_allclose(np.asarray(ToneMapping()([x, w])), want, rtol=1e-5, atol=1e-6)


def test_inverse_tiles_exactly_with_its_per_frame_values(small):
    from isp_tf.models.paramisp import inverse_of, split_paramisp
    from isp_tf.tiling import TiledRunner

    inverse = inverse_of(small)
    per_frame, render = split_paramisp(inverse)
    rng = np.random.default_rng(1)
    frame = rng.random((24, 48, 3), dtype=np.float32)
    params = encode([2.0, 1.0, 1.5], np.eye(3), [50, 4, 0.01, 100])
    values = np.asarray(per_frame([frame[np.newaxis], params[np.newaxis]]))[0]
    runner = TiledRunner(render, 4)
    tiled = runner(frame, tile=24, vectors=[params, values])
    whole = np.asarray(inverse([frame[np.newaxis], params[np.newaxis]]))[0]
    assert len(runner.plan(24, 48, 24)) == 2
    assert tiled.shape == whole.shape == (24, 48, 1)
    assert np.max(np.abs(tiled - whole)) <= 1e-4


# --------------------------------------------------------------------------- training
def test_joint_objective_scores_the_cycle_and_trains_both_networks(small):
    from isp_tf._keras import tf
    from isp_tf.models.paramisp import inverse_of
    from isp_tf.models.paramisp.training import STAGES, paramisp_objective

    rng = np.random.default_rng(0)
    packed = tf.constant(rng.random((1, 12, 12, 4), dtype=np.float32))
    params = tf.constant(encode([2, 1, 1.5], np.eye(3), [50, 4, 0.01, 100])[np.newaxis])
    srgb = tf.constant(rng.random((1, 24, 24, 3), dtype=np.float32))
    y = {"rgb": srgb, "bayer": tf.nn.depth_to_space(packed, 2)}
    joint = STAGES[-1]
    assert [s.name for s in STAGES] == ["pretrain", "finetune", "joint"] and joint.starts_from_previous
    with tf.GradientTape() as tape:
        terms, pred = paramisp_objective(small, (packed, params, srgb), joint.target(y))
        loss = tf.add_n([tf.reduce_sum(v) for v in terms.values()])
    assert set(terms) == {"forward_l1", "inverse_l1", "cycle_l1"} and pred.shape == (1, 24, 24, 3)
    inverse = inverse_of(small)
    again = small([tf.nn.space_to_depth(inverse([srgb, params]), 2), params])  # forward(recovered RAW)
    want = float(tf.reduce_mean(tf.abs(again - srgb)[:, 2:-2, 2:-2]))
    assert float(terms["cycle_l1"][0]) == pytest.approx(want, rel=1e-5)
    grads = tape.gradient(loss, small.trainable_variables)
    inverse_ids = {id(v) for v in inverse.trainable_variables}
    moved = {id(v): g is not None and float(tf.reduce_max(tf.abs(g))) > 0
             for v, g in zip(small.trainable_variables, grads)}
    assert any(m for k, m in moved.items() if k in inverse_ids)       # the inverse learns
    assert any(m for k, m in moved.items() if k not in inverse_ids)   # and the forward
    terms, _ = paramisp_objective(small, (packed, params, srgb), y)  # pretrain / finetune: no cycle
    assert set(terms) == {"forward_l1", "inverse_l1"}


def test_finetune_starts_from_the_pretrain_weights_with_its_camera(tmp_path, small):
    from isp_tf.errors import MissingFileError
    from isp_tf.models import get_spec
    from isp_tf.models.weights import save_weights
    from isp_tf.train.__main__ import _add_model_options, _settings_from_args, build_parser
    from isp_tf.train.trainer import _load_initial_weights, stage_config

    out = tmp_path / "run"
    argv = ["--model", "paramisp", "--stage", "finetune", "--camera", "cam_b", "--small",
            "--data", "cameras:4", "--out", str(out)]
    parser = build_parser()
    options = _add_model_options(parser, argv)
    args = parser.parse_args(argv)
    with pytest.raises(MissingFileError, match="train --stage pretrain"):  # nothing to start from yet
        _settings_from_args(args, parser, options)
    spec = get_spec("paramisp")
    save_weights(small, out / "pretrain" / "final.weights.h5", "paramisp", spec.small_config)
    settings, run_dir = _settings_from_args(args, parser, options)
    assert run_dir == out / "finetune" and settings.init_from == str(out / "pretrain")
    assert settings.options == {"camera": "cam_b"} and settings.recipe.stage == "finetune"
    assert settings.recipe.loss == {"forward_l1": 1.0, "inverse_l1": 1.0}
    assert stage_config(settings) == spec.small_config
    saved = small.get_weights()
    small.set_weights([w + 1.0 for w in saved])  # as a fresh model would differ
    _load_initial_weights(small, settings)
    for a, b in zip(small.get_weights(), saved):  # both directions start where pretrain ended
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- shipped weights, real RAW
def test_shipped_weights_return_a_real_raw_through_forward_then_inverse(raw_samples):
    """The shipped small-preset weights (``weights/paramisp_small_reference.*``) render the 256x256
    packed centre of the real Canon EOS D30 CRW with its own EXIF, the sRGB is clipped and rounded
    to 8 bits as a saved photo would be, and the inverse recovers the RGGB mosaic: 29.88 dB RAW PSNR
    against the input mosaic (normalised to [0, 1]) when measured, so the floor is 29.5 dB.  (This
    dark, 5 s exposure is far from the simulated cameras: freshly initialised weights score 35.1 dB
    on it, the pre-trained-only ones 28.8 dB; the held-out figures are in the weights' JSON.)"""
    from isp_tf.models import get_spec
    from isp_tf.models.paramisp import inverse_of, params_from_raw
    from isp_tf.models.weights import resolve_model
    from isp_tf.raw import pack_bayer, read_raw, unpack_bayer
    from isp_tf.runtime.metrics import psnr

    spec = get_spec("paramisp")
    assert spec.weights_path.name == "paramisp_small_reference.weights.h5"
    assert spec.weights_path.with_name("paramisp_small_reference.json").is_file()
    loaded = resolve_model("paramisp")
    assert loaded.config == spec.small_config

    raw = read_raw(raw_samples["crw"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", CameraParamsWarning)  # its EXIF is complete
        params = params_from_raw(raw).vector()[np.newaxis]
    packed = pack_bayer(raw)
    y, x = (packed.shape[0] - 256) // 2, (packed.shape[1] - 256) // 2
    crop = packed[np.newaxis, y:y + 256, x:x + 256]
    srgb = np.asarray(loaded.model([crop, params]))
    assert srgb.shape == (1, 512, 512, 3)
    photo = (np.round(np.clip(srgb, 0, 1) * 255) / 255).astype(np.float32)
    mosaic = np.asarray(inverse_of(loaded.model)([photo, params]))[..., 0]
    assert mosaic.shape == (1, 512, 512)
    assert psnr(mosaic, unpack_bayer(crop)) >= 29.5
