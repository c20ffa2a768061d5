"""--qat fine-tunes a trained run quantization-aware and saves weights export can read."""
import json
import shutil

from isp_tf.train.__main__ import main


def test_qat_fine_tunes_a_trained_run(tmp_path, tiny_args, full_run, capsys):
    assert main(tiny_args + ["--qat", "--out", str(tmp_path / "untrained")]) == 2
    assert "final weights" in capsys.readouterr().err
    out = tmp_path / "run"
    shutil.copytree(full_run, out)
    assert main(tiny_args + ["--qat", "--out", str(out)]) == 0
    run = json.loads((out / "qat" / "run.json").read_text())
    assert run["qat"] and run["init_from"] == str(out)
    assert run["recipe"]["optimizer"]["learning_rate"] == 1e-4  # the recipe's qat section
    assert run["recipe"]["steps_per_epoch"] == 1
    from isp_tf.export.qat import is_qat_weights, load_qat_model

    path = out / "qat" / "final.weights.h5"
    assert is_qat_weights(path)
    model, config = load_qat_model(path, "microisp")
    assert config == {"width": 4, "depth": 4}
    assert any("quant" in layer.name for layer in model.layers)
