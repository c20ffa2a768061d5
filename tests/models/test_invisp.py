"""InvISP (METHODS.md section 3): parameter count, exact inverse, log-det, the authors' loss through
the generic trainer, NNAPI-clean exports of both directions with parity, tiled inverse == whole."""
import json

import numpy as np
import pytest

from isp_tf._keras import keras, tf
from isp_tf.models import create_model, get_spec
from isp_tf.models.registry import derive_direction
from isp_tf.models.invisp import (BLOCKS_NAME, JPEG_SETTINGS, build_inverse, flow_parts,
                                  invisp_objective, log_det)

SPEC = get_spec("invisp")


@pytest.fixture(scope="module")
def small(invisp_trained_like):
    keras.utils.set_random_seed(0)
    return invisp_trained_like(create_model("invisp", small=True), seed=1)


@pytest.fixture(scope="module")
def real_linear(raw_samples):
    """A 256x256 linear-RGB crop of a real photo (the Canon EOS 550D colour chart DNG)."""
    from isp_tf.export.parity import parity_image
    from isp_tf.raw import read_raw

    image = parity_image(read_raw(raw_samples["dng"]), "linear_rgb")
    h, w = image.shape[:2]
    return np.ascontiguousarray(image[(h - 256) // 2:(h + 256) // 2, (w - 256) // 2:(w + 256) // 2])[None]


def _max_abs(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def test_parameter_count_and_presets():
    model = create_model("invisp")
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 1_413_760  # the paper's count (METHODS.md)
    # + P and sign_s of the 8 LU-decomposed 1x1 convs (fixed): what count_params() and the spec say
    assert SPEC.published_parameters == trainable  # the spec states the trainable count
    assert model.count_params() == 1_413_760 + 8 * (9 + 3)  # plus the fixed P and sign_s
    assert len(flow_parts(model).blocks.blocks) == 8 and flow_parts(model).gamma.gamma == 2.2
    assert flow_parts(create_model("invisp", preset="no_gamma")).gamma is None
    assert [d.name for d in SPEC.directions] == ["forward", "inverse"]
    assert (SPEC.input_kind, SPEC.output_kind, SPEC.output_scale) == ("linear_rgb", "srgb", 1)
    inverse = SPEC.direction("inverse")
    assert (inverse.image_input.kind, inverse.image_output.kind) == ("srgb", "linear_rgb")
    assert SPEC.loss_terms == ("raw_l1",) and SPEC.objective is invisp_objective


def test_inverse_undoes_forward_on_random_and_real_inputs(small, real_linear):
    inverse = build_inverse(small)
    assert {id(w) for w in inverse.weights} == {id(w) for w in small.weights}  # one set of weights
    x = np.random.default_rng(0).random((1, 256, 256, 3), dtype=np.float32)
    for inp in (x, real_linear):
        y = small(inp)
        assert _max_abs(y, inp) > 1e-2  # the model does something
        assert _max_abs(inverse(y), inp) < 1e-5
    # the flow itself both ways on an sRGB photo (a real JPEG's pixels)
    from isp_tf.data.photos import load_photo

    photo = load_photo("chelsea")[None, :128, :192]
    blocks = flow_parts(small).blocks
    assert _max_abs(blocks(blocks(photo, inverse=True)), photo) < 1e-5


def test_published_model_is_invertible(invisp_trained_like):
    keras.utils.set_random_seed(0)
    model = invisp_trained_like(create_model("invisp"), seed=2)
    x = np.random.default_rng(1).random((1, 48, 64, 3), dtype=np.float32)
    assert _max_abs(create_model("invisp", direction="inverse").count_params(), 1_413_856) == 0
    assert _max_abs(derive_direction(SPEC, model, "inverse")(model(x)), x) < 2e-6  # measured 1.5e-6 (README)


def test_log_det(small):
    x = np.random.default_rng(2).random((2, 16, 24, 3), dtype=np.float32)
    ld = log_det(small, x).numpy()
    parts = flow_parts(small)
    z = parts.encode(tf.constant(x))
    total, h = np.zeros(2), z
    for block in parts.blocks.blocks:
        h, part = block.forward_and_log_det(h)
        total += part.numpy()
    np.testing.assert_allclose(ld, total, rtol=1e-5)
    np.testing.assert_allclose(log_det(small, small(x), inverse=True).numpy(), -ld, rtol=1e-4)


def test_objective_is_the_authors_two_terms(small):
    from isp_tf.losses import CompositeLoss
    from isp_tf.layers.diffjpeg import diff_jpeg

    assert JPEG_SETTINGS == {"quality": 90, "subsampling": "4:2:0", "rounding": "cubic", "upsampling": "fancy"}
    rng = np.random.default_rng(3)
    x = tf.constant(rng.random((2, 32, 32, 3), dtype=np.float32))
    y = tf.constant(rng.random((2, 32, 32, 3), dtype=np.float32))
    with tf.GradientTape() as tape:
        terms, pred = invisp_objective(small, x, y, CompositeLoss({"l1": 1.0}))
        loss = tf.reduce_sum(terms["l1"] + terms["raw_l1"])
    assert set(terms) == {"l1", "raw_l1"} and terms["raw_l1"].shape == (2,)
    parts = flow_parts(small)
    recovered = parts.blocks(diff_jpeg(tf.clip_by_value(pred, 0, 1), **JPEG_SETTINGS), inverse=True)
    expected = np.mean(np.abs(recovered - parts.encode(x)), axis=(1, 2, 3))
    np.testing.assert_allclose(terms["raw_l1"].numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(terms["l1"].numpy(), np.mean(np.abs(pred - y), axis=(1, 2, 3)), rtol=1e-5)
    grads = tape.gradient(loss, small.trainable_variables)
    assert all(g is not None for g in grads)


def test_a_few_training_steps_lower_both_losses(tmp_path):
    """The generic trainer through the command line, with the spec's objective."""
    from isp_tf.models.weights import read_header
    from isp_tf.train.__main__ import main

    out = tmp_path / "run"
    assert main(["--model", "invisp", "--small", "--data", "synthetic:2", "--epochs", "2",
                 "--steps-per-epoch", "3", "--patch-size", "64", "--lr", "1e-3", "--validation-steps", "1",
                 "--seed", "0", "--out", str(out), "--quiet"]) == 0
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1, 2]
    for term in ("l1", "raw_l1", "loss"):
        assert history[2][term] < history[1][term], (term, history)
    assert history[2]["val_psnr"] > history[0]["val_psnr"], history
    run = json.loads((out / "run.json").read_text())
    assert run["recipe"]["loss"] == {"l1": 1.0, "raw_l1": 1.0}
    assert run["recipe"]["lr_schedule"]["name"] == "piecewise" and run["recipe"]["batch_size"] == 1
    assert read_header(out / "final.weights.h5") == ("invisp", SPEC.small_config)


def test_recipe_is_the_authors():
    from isp_tf.train import resolve_recipe

    r = resolve_recipe("invisp")
    assert (r.learning_rate, r.batch_size, r.patch_size, r.epochs, r.augment) == (1e-4, 1, 256, 300, True)
    assert r.optimizer["name"] == "adam" and r.loss == {"l1": 1.0, "raw_l1": 1.0}
    # halved at epochs 50 and 80
    assert r.lr_schedule == {"name": "piecewise", "boundaries": [50 * r.steps_per_epoch, 80 * r.steps_per_epoch],
                             "factors": [1.0, 0.5, 0.25]}


@pytest.mark.parametrize("direction", ["forward", "inverse"])
def test_fp32_exports_pass_nnapi_and_match_keras(small, raw_samples, direction):
    from isp_tf.export.convert import export_tflite
    from isp_tf.export.parity import load_parity_input
    from isp_tf.runtime.session import run_tflite

    net = derive_direction(SPEC, small, direction)
    result = export_tflite("invisp", None, precision="fp32", input_size="96x128", keras_model=net,
                           config=SPEC.small_config, parity=False, progress=False, log=lambda *a: None,
                           direction=direction)
    assert result.report.ok, result.report.format_table()
    ops = result.report.ops_used()
    assert {"CONV_2D", "LEAKY_RELU", "EXP", "POW"} <= set(ops) and "NEG" not in ops and "DIV" not in ops
    kind = SPEC.direction(direction).image_input.kind
    assert result.metadata["input"]["kind"] == kind and result.metadata["direction"] == direction
    x, _ = load_parity_input(str(raw_samples["dng"]), (96, 128), kind=kind)
    assert x.shape == (1, 96, 128, 3)
    assert _max_abs(run_tflite(result.tflite, x), net(x)) < 1e-4


def test_export_command_writes_the_inverse(tmp_path, capsys):
    from isp_tf.export.__main__ import main
    from isp_tf.export.nnapi import check_nnapi

    out = tmp_path / "invisp_inverse.tflite"
    assert main(["--model", "invisp", "--direction", "inverse", "--small", "--input-size", "64x64",
                 "--out", str(out), "--no-parity", "--quiet"]) == 0
    assert check_nnapi(out.read_bytes()).ok
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["direction"] == "inverse" and meta["input"]["kind"] == "srgb"
    assert meta["outputs"][0]["kind"] == "linear_rgb" and meta["input"]["shape"] == [1, 64, 64, 3]


def test_tiled_inverse_equals_whole(small):
    from isp_tf.tiling import TiledRunner

    inverse = build_inverse(small)
    runner = TiledRunner(inverse, 1)
    assert runner.footprint.halo >= 2 * 10  # 2 blocks, each reaching 10 px (F, then H/G after it)
    frame = np.random.default_rng(4).random((100, 140, 3), dtype=np.float32)
    assert len(runner.plan(100, 140, 40)) > 1
    np.testing.assert_allclose(runner(frame, tile=40), runner(frame, tile=0), atol=1e-4, rtol=0)


def test_not_an_invisp_model():
    from isp_tf.errors import InputShapeError

    with pytest.raises(InputShapeError, match=BLOCKS_NAME):
        flow_parts(keras.Sequential([keras.layers.Conv2D(3, 1, input_shape=(8, 8, 3))]))
    with pytest.raises(InputShapeError, match="3-channel"):
        create_model("invisp", small=True, input_shape=(8, 8, 4))
