"""The training command in-process: recipes, learning, staged training (PyNET levels), clear errors."""
import json

import numpy as np
import pytest

from isp_tf.train import RecipeError, resolve_recipe
from isp_tf.train.__main__ import main

def test_recipes_resolve_with_overrides():
    micro = resolve_recipe("microisp", overrides={"epochs": 3, "learning_rate": 0.5, "batch_size": None})
    assert (micro.epochs, micro.learning_rate, micro.batch_size) == (3, 0.5, 8)
    # PyNET per METHODS.md: iterations 5K, 5K, 20K, 20K, 35K, 100K; batch 50, 50, 48, 18, 12, 10
    levels = [resolve_recipe("pynet", stage=k) for k in range(5, -1, -1)]
    assert [r.total_steps for r in levels] == [5000, 5000, 20000, 20000, 35000, 100000]
    assert [r.batch_size for r in levels] == [50, 50, 48, 18, 12, 10]
    assert [r.loss for r in levels] == [{"mse": 100}, {"mse": 100}, {"mse": 100, "vgg": 1},
                                        {"mse": 100, "vgg": 1}, {"mse": 50, "vgg": 1},
                                        {"mse": 20, "vgg": 1, "ssim": 20}]
    assert {r.learning_rate for r in levels} == {5e-5} and levels[0].patch_size == 448
    with pytest.raises(RecipeError, match="pass --stage"):
        resolve_recipe("pynet")
    with pytest.raises(RecipeError, match="batch_size must be a positive integer"):
        resolve_recipe("microisp", overrides={"batch_size": 0})


def _events(folder):
    from isp_tf._keras import tf

    tags = set()
    for path in folder.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(v.tag for v in event.summary.value)
    return tags


def test_a_few_steps_lower_the_loss_and_raise_psnr(full_run):
    history = json.loads((full_run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1, 2]  # 0: before training
    assert history[2]["loss"] < history[1]["loss"], history
    assert history[2]["val_psnr"] > history[0]["val_psnr"] + 0.2, history
    assert all(0 < h["val_ssim"] <= 1 for h in history)
    # piecewise, boundary 3: updates 1-4 use 0.01 (Keras: step <= boundary), later ones 0.005
    assert (history[1]["lr"], history[2]["lr"]) == (pytest.approx(0.01), pytest.approx(0.005))
    assert {"loss", "mse", "ssim", "psnr", "lr"} <= _events(full_run / "logs" / "train")
    validation = _events(full_run / "logs" / "validation")
    assert {"psnr", "ssim"} <= validation  # scalars ...
    assert any(t.startswith("samples/prediction_then_target") for t in validation), validation  # ... and images
    from isp_tf.models.weights import read_header

    assert read_header(full_run / "final.weights.h5") == ("microisp", {"width": 4, "depth": 4})


def test_pynet_levels_chain_through_the_run_folder(tmp_path, capsys):
    common = ["--model", "pynet", "--small", "--data", "synthetic:2", "--epochs", "1", "--steps-per-epoch", "1",
              "--batch-size", "1", "--patch-size", "64", "--validation-steps", "1", "--quiet"]
    out = tmp_path / "pynet"
    assert main(common + ["--level", "3", "--out", str(out)]) == 2
    assert "stage 3 starts from stage 4's weights" in capsys.readouterr().err
    assert main(common + ["--level", "5", "--out", str(out)]) == 0
    assert main(common + ["--level", "4", "--out", str(out)]) == 0
    run = json.loads((out / "level_4" / "run.json").read_text())
    assert run["init_from"] == str(out / "level_5") and run["recipe"]["loss"] == {"mse": 100}
    from isp_tf.models.weights import read_header

    assert read_header(out / "level_5" / "final.weights.h5")[1]["level"] == 5
    assert read_header(out / "level_4" / "final.weights.h5")[1]["level"] == 4
    # level 3 adds the VGG loss: without the VGG-19 file it stops before training
    assert main(common + ["--level", "3", "--out", str(out), "--vgg", str(tmp_path / "no_vgg")]) == 2
    err = capsys.readouterr().err
    assert "imagenet-vgg-verydeep-19.mat" in err and str(tmp_path / "no_vgg") in err
    assert not (out / "level_3").exists()


@pytest.mark.parametrize("argv, message", [
    (["--model", "resnet", "--data", "synthetic:2"], "unknown model 'resnet'; known models: microisp, pynet"),
    (["--model", "microisp", "--data", "jpegs:/tmp"], "unknown layout 'jpegs'"),
    (["--model", "microisp", "--data", "paired"], "give a folder, as 'paired:PATH'"),
    (["--model", "pynet", "--level", "3", "--data", "synthetic:2"], "stage 3 starts from stage 4"),
    (["--model", "pynet", "--stage", "7", "--data", "synthetic:2"], "pynet has no stage 7; stages: 5, 4, 3, 2, 1, 0"),
    (["--model", "microisp", "--stage", "1", "--data", "synthetic:2"], "microisp is not trained in stages"),
    (["--resume"], "holds no training run"),
])
def test_bad_input_exits_2_with_a_clear_message(tmp_path, capsys, argv, message):
    assert main(argv + ["--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_init_from_weights_of_another_model(tmp_path, capsys):
    from isp_tf.models import create_model
    from isp_tf.models.weights import save_weights

    pynet = create_model("pynet", small=True, level=5)
    save_weights(pynet, tmp_path / "pynet.weights.h5", "pynet", {"level": 5, "width": 0.0625})
    assert main(["--model", "microisp", "--small", "--data", "synthetic:2", "--out", str(tmp_path / "run"),
                 "--init-from", str(tmp_path / "pynet.weights.h5"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "weights of model 'pynet'" in err and "not of model 'microisp'" in err


def test_resume_refuses_changed_settings_and_reuse_of_a_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    assert main(["--model", "microisp", "--small", "--data", "synthetic:2", "--out", str(out), "--quiet"]) == 2
    assert "already holds a training run; pass --resume" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["--out", str(out), "--resume", "--lr", "0.1"])
    assert info.value.code == 2 and "drop --lr" in capsys.readouterr().err


def test_reinitialize_kernels_reaches_nested_convolutions():
    from isp_tf._keras import keras
    from isp_tf.models import create_model
    from isp_tf.train.trainer import reinitialize_kernels

    keras.utils.set_random_seed(0)
    model = create_model("microisp", small=True)
    kernels = [w for w in model.weights if w.name.endswith("kernel:0")]
    before = [w.numpy().std() for w in kernels]
    assert max(before) < 2e-3  # the published N(0, 1e-3)
    assert reinitialize_kernels(model, "he_normal") == len(kernels) > 6 * 5  # attention convs included
    first = model.get_layer("s1_r_conv0").kernel.numpy()
    assert abs(first.std() - np.sqrt(2 / (3 * 3 * 4))) < 0.1
    assert not np.array_equal(first, model.get_layer("s1_g_conv0").kernel.numpy())  # each drawn anew
