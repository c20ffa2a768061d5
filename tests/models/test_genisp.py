"""GenISP: per-image ConvWB/ConvCC, exact tiling through the split model, training through a frozen
detector (detector bit-identical), and ``python -m isp_tf.train --model genisp`` on a tiny RAW-NOD fixture."""
import json

import numpy as np
import pytest

from isp_tf.models import create_model, get_spec


def _randomise(model, seed=0):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        scale = np.sqrt(2.0 / np.prod(shape[:-1])) if len(shape) >= 2 else 0.1
        w.assign(rng.normal(0.0, scale, shape).astype(np.float32) + (1.0 if len(shape) == 1 else 0.0))
    return model


def test_published_architecture():
    from isp_tf.models.genisp import build_genisp

    model = build_genisp()
    assert [model.get_layer(f"shallow_conv{k}").filters for k in range(2)] == [16, 64]
    assert model.get_layer("shallow_out").filters == 3 and model.get_layer("shallow_out").kernel_size == (1, 1)
    for prefix, outputs in (("conv_wb", 3), ("conv_cc", 9)):
        convs = [model.get_layer(f"{prefix}_conv{k}") for k in range(3)]
        assert [(c.filters, c.kernel_size[0]) for c in convs] == [(16, 7), (32, 5), (128, 3)]
        assert model.get_layer(f"{prefix}_dense").units == outputs
    assert model.get_layer("wb_resize").size == model.get_layer("cc_resize").size == 256
    assert [p.name for p in get_spec("genisp").inputs] == [t.name.split(":")[0] for t in model.inputs]


def test_camera_to_xyz_uses_the_frames_matrix():
    """Greens averaged, then out[i] = sum_j M[i, j] rgb[j] with each image's own matrix."""
    from isp_tf.models.genisp import ApplyMatrix, AverageGreens

    rng = np.random.default_rng(0)
    packed = rng.random((2, 5, 6, 4), dtype=np.float32)
    m = rng.normal(size=(2, 3, 3)).astype(np.float32)
    out = ApplyMatrix()([AverageGreens()(packed), m.reshape(2, 9)]).numpy()
    rgb = np.stack([packed[..., 0], packed[..., 1:3].mean(-1), packed[..., 3]], -1)
    np.testing.assert_allclose(out, np.einsum("bij,bhwj->bhwi", m, rgb), atol=1e-5)


def test_wb_and_cc_are_computed_per_image():
    from isp_tf.models.genisp import split_genisp

    model = _randomise(create_model("genisp", small=True))
    params, _ = split_genisp(model)
    rng = np.random.default_rng(1)
    packed = np.stack([rng.random((48, 64, 4), dtype=np.float32) * 0.2,
                       rng.random((48, 64, 4), dtype=np.float32) ** 3])
    m = np.tile(np.eye(3, dtype=np.float32).ravel(), (2, 1))
    both = params([packed, m]).numpy()
    assert both.shape == (2, 12)
    assert np.abs(both[0, :3] - both[1, :3]).max() > 1e-3  # gains
    assert np.abs(both[0, 3:] - both[1, 3:]).max() > 1e-3  # matrices
    for i in range(2):  # each image's values do not depend on the other image of the batch
        np.testing.assert_allclose(params([packed[i:i + 1], m[i:i + 1]]).numpy()[0], both[i], atol=1e-5)
    whole = model([packed, m]).numpy()
    for i in range(2):
        np.testing.assert_allclose(model([packed[i:i + 1], m[i:i + 1]]).numpy()[0], whole[i], atol=1e-5)


def test_split_model_tiles_exactly():
    """params on the whole frame + the render model tiled with the 12 values == the whole model."""
    from isp_tf.layers.global_stats import tiling_mode
    from isp_tf.models.genisp import split_genisp
    from isp_tf.tiling import TiledRunner

    model = _randomise(create_model("genisp", small=True))
    params, render = split_genisp(model)
    rng = np.random.default_rng(3)
    frame = rng.random((96, 80, 4), dtype=np.float32)
    m = rng.normal(0.3, 0.2, 9).astype(np.float32)
    given = params([frame[None], m[None]]).numpy()[0]

    def rebuild():
        with tiling_mode():
            return split_genisp(create_model("genisp", small=True))[1]

    runner = TiledRunner(render, rebuild=rebuild)
    assert len(runner.plan(96, 80, 32)) > 1
    tiled = runner(frame, tile=32, vectors=(m, given))
    whole = model([frame[None], m[None]]).numpy()[0]
    assert tiled.shape == whole.shape == (96, 80, 3)
    assert np.max(np.abs(tiled - whole)) <= 1e-4


def _boxes_batch(rng, batch, side):
    boxes = np.zeros((batch, 4, 4), np.float32)
    labels = np.full((batch, 4), -1, np.int32)
    for b in range(batch):
        y0, x0 = rng.uniform(0.05, 0.4, 2)
        boxes[b, 0] = [y0, x0, y0 + 0.45, x0 + 0.5]
        labels[b, 0] = b % 3
    return boxes, labels


def test_training_through_the_frozen_detector_lowers_the_loss_and_keeps_the_detector():
    from isp_tf._keras import keras, tf
    from isp_tf.models.genisp.detector import build_retinanet, freeze
    from isp_tf.models.genisp.model import detection_objective

    keras.utils.set_random_seed(0)
    detector = freeze(build_retinanet(3, backbone="light"))
    before = [w.numpy().copy() for w in detector.weights]
    model = create_model("genisp", small=True)
    objective = detection_objective(detector)
    rng = np.random.default_rng(0)
    x = (tf.constant(rng.random((2, 64, 64, 4), dtype=np.float32)),
         tf.constant(np.tile(np.eye(3, dtype=np.float32).ravel(), (2, 1))))
    boxes, labels = _boxes_batch(rng, 2, 64)
    y = {"boxes": tf.constant(boxes), "labels": tf.constant(labels)}
    optimizer = keras.optimizers.Adam(1e-2)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            terms, _ = objective(model, x, y)
            loss = tf.reduce_mean(terms["classification"] + terms["box"])
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    assert not detector.trainable_weights
    losses = [float(step()) for _ in range(8)]
    assert losses[-1] < losses[0], losses
    for a, w in zip(before, detector.weights):
        np.testing.assert_array_equal(a, w.numpy())


def test_recomputed_per_image_objective_gives_the_same_loss_and_gradients():
    """recompute=True (image by image under tf.recompute_grad, the memory of one image) is the same math."""
    from isp_tf._keras import keras, tf
    from isp_tf.models.genisp.detector import build_retinanet, freeze
    from isp_tf.models.genisp.model import detection_objective

    keras.utils.set_random_seed(1)
    detector = freeze(build_retinanet(3, backbone="light"))
    model = create_model("genisp", small=True)
    rng = np.random.default_rng(1)
    x = (tf.constant(rng.random((2, 32, 48, 4), dtype=np.float32)),
         tf.constant(rng.normal(0.3, 0.2, (2, 9)).astype(np.float32)))
    boxes, labels = _boxes_batch(rng, 2, 48)
    y = {"boxes": tf.constant(boxes), "labels": tf.constant(labels)}

    def loss_and_grads(recompute):
        objective = detection_objective(detector, recompute=recompute)
        with tf.GradientTape() as tape:  # eagerly: no tracing, the same ops
            terms, rgb = objective(model, x, y)
            loss = tf.reduce_mean(terms["classification"] + terms["box"])
        grads = tape.gradient(loss, model.trainable_variables)
        return float(loss), rgb.numpy(), [g.numpy() for g in grads]

    plain, recomputed = loss_and_grads(False), loss_and_grads(True)
    assert abs(plain[0] - recomputed[0]) <= 1e-6 * abs(plain[0])
    np.testing.assert_allclose(recomputed[1], plain[1], atol=1e-6)
    assert len(plain[2]) == len(recomputed[2]) == len(model.trainable_variables)
    for a, b in zip(plain[2], recomputed[2]):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6 * max(1.0, float(np.abs(a).max())))
    assert max(float(np.abs(g).max()) for g in plain[2]) > 0


@pytest.fixture(scope="module")
def rawnod_fixture(tmp_path_factory):
    """Four small DNGs with a bright rectangle each; train and val COCO JSONs; light detector weights."""
    from isp_tf._keras import keras
    from isp_tf.models.genisp.detector import build_retinanet, save_detector_weights
    from isp_tf.raw import write_dng

    root = tmp_path_factory.mktemp("rawnod_genisp")
    (root / "images").mkdir()
    (root / "annotations").mkdir()
    rng = np.random.default_rng(0)
    cats = [{"id": 1, "name": "person"}, {"id": 2, "name": "bicycle"}, {"id": 3, "name": "car"}]
    for split, names in (("train", ("a", "b", "c")), ("val", ("d",))):
        images, anns = [], []
        for k, name in enumerate(names):
            bayer = rng.integers(60, 200, (64, 96)).astype(np.uint16)
            y0, x0 = int(rng.integers(4, 24)), int(rng.integers(4, 40))
            bayer[y0:y0 + 32, x0:x0 + 40] = 900
            write_dng(root / "images" / f"{name}.dng", bayer,
                      {"cfa_pattern": "RGGB", "black_level": 50, "white_level": 1000})
            images.append({"id": name, "file_name": f"{name}.dng", "width": 96, "height": 64})
            anns.append({"id": k, "image_id": name, "category_id": 1 + k % 3, "iscrowd": 0,
                         "bbox": [x0, y0, 40, 32]})
        (root / "annotations" / f"raw_new_Cam_{split}.json").write_text(
            json.dumps({"images": images, "annotations": anns, "categories": cats}))
    keras.utils.set_random_seed(0)
    weights = save_detector_weights(build_retinanet(3, backbone="light"), root / "detector.h5")
    return root, weights


def test_train_cli_through_the_detector(rawnod_fixture, tmp_path):
    from isp_tf.models.genisp.detector import build_retinanet, load_detector_weights
    from isp_tf.models.weights import load_model
    from isp_tf.train.__main__ import main

    root, weights = rawnod_fixture
    out = tmp_path / "run"
    argv = ["--model", "genisp", "--small", "--data", f"rawnod:{root}", "--out", str(out),
            "--detector-weights", str(weights), "--detector-backbone", "light",
            "--epochs", "2", "--steps-per-epoch", "2", "--batch-size", "2", "--patch-size", "32",
            "--validation-steps", "1", "--quiet"]
    assert main(argv) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["options"] == {"detector_weights": str(weights), "detector_backbone": "light",
                              "detector_classes": 3, "recompute": "on"}
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert all(np.isfinite(h["val_detection_loss"]) for h in history)
    assert "val_psnr" not in history[-1] and "classification" in history[-1]
    model, name, _ = load_model(out / "final.weights.h5")
    assert name == "genisp"
    detector = build_retinanet(3, backbone="light")
    assert load_detector_weights(detector, weights) == "detector"  # the file is untouched
    # --resume reads the detector flags from run.json; giving them again is refused
    assert main(["--out", str(out), "--resume", "--quiet"]) == 0
    with pytest.raises(SystemExit):
        main(["--out", str(out), "--resume", "--detector-weights", str(weights)])
    with pytest.raises(SystemExit):  # the detector is required
        main([a for a in argv if a not in ("--detector-weights", str(weights))] + ["--out", str(tmp_path / "x")])


def test_int8_export_keeps_only_the_declared_ops_on_the_cpu():
    """The exporter's conversion and int8 passes, calibrated with both inputs (the contract's int8 test
    cannot calibrate a model with a per-frame vector input yet)."""
    from isp_tf.export import nnapi
    from isp_tf.export.conversion import convert_function, fixed_function
    from isp_tf.export.keras_rewrites import rewrite_for_nnapi
    from isp_tf.export.tflite_passes import align_mean_quantization, fold_requantize

    model, _ = rewrite_for_nnapi(_randomise(create_model("genisp", small=True)))
    rng = np.random.default_rng(0)
    frames = [rng.random((1, 96, 96, 4), dtype=np.float32) for _ in range(3)]
    eye = np.eye(3, dtype=np.float32).reshape(1, 9)
    concrete = fixed_function(model, (96, 96))
    try:  # the converter orders the calibration inputs by its own input order
        tflite = convert_function(concrete, "int8", "int8", lambda: ([f, eye] for f in frames), model)
    except Exception:  # noqa: BLE001
        tflite = convert_function(concrete, "int8", "int8", lambda: ([eye, f] for f in frames), model)
    tflite, _ = fold_requantize(tflite)
    tflite, _ = align_mean_quantization(tflite)
    report = nnapi.check_nnapi(tflite, api_level=29)
    assert {f.op for f in report.findings} == set(get_spec("genisp").cpu_ops["int8"]), report.format_table()


def test_interrupted_genisp_run_resumes_to_the_same_weights(rawnod_fixture, tmp_path):
    """--resume rebuilds the frozen detector from run.json's options and ends bit-identical."""
    import h5py

    from isp_tf.train.__main__ import main
    from isp_tf.train.trainer import Callback

    root, weights = rawnod_fixture
    argv = ["--model", "genisp", "--small", "--data", f"rawnod:{root}", "--detector-weights", str(weights),
            "--detector-backbone", "light", "--epochs", "2", "--steps-per-epoch", "2", "--batch-size", "2",
            "--patch-size", "32", "--validation-steps", "1", "--checkpoint-every", "1", "--quiet"]

    class Stop(Callback):
        def on_step_end(self, step, logs):
            if step == 3:
                raise RuntimeError("killed")

    assert main(argv + ["--out", str(tmp_path / "full")]) == 0
    assert main(argv + ["--out", str(tmp_path / "cut")], callbacks=[Stop()]) == 1
    assert not (tmp_path / "cut" / "final.weights.h5").exists()
    assert main(["--out", str(tmp_path / "cut"), "--resume", "--quiet"]) == 0

    def read(path):
        out = {}
        with h5py.File(path, "r") as f:
            f.visititems(lambda k, v: out.__setitem__(k, v[()]) if isinstance(v, h5py.Dataset) else None)
        return out

    ref, got = read(tmp_path / "full" / "final.weights.h5"), read(tmp_path / "cut" / "final.weights.h5")
    assert ref.keys() == got.keys() and ref
    for name in ref:
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)
