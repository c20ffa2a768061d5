"""--qat fine-tunes a trained run quantization-aware and saves weights export can read."""
import json

from isp_tf.train.__main__ import main

COMMON = ["--model", "microisp", "--small", "--data", "synthetic:1", "--epochs", "1", "--steps-per-epoch", "1",
          "--batch-size", "1", "--patch-size", "160", "--validation-steps", "1", "--quiet"]


def test_qat_fine_tunes_a_trained_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(COMMON + ["--qat", "--out", str(out)]) == 2  # nothing trained yet
    assert "final weights" in capsys.readouterr().err
    assert main(COMMON + ["--out", str(out)]) == 0
    assert main(COMMON + ["--qat", "--out", str(out)]) == 0
    run = json.loads((out / "qat" / "run.json").read_text())
    assert run["qat"] and run["init_from"] == str(out)
    assert run["recipe"]["optimizer"]["learning_rate"] == 1e-4  # the recipe's qat section
    from isp_tf.export.qat import is_qat_weights, load_qat_model

    path = out / "qat" / "final.weights.h5"
    assert is_qat_weights(path)
    model, config = load_qat_model(path, "microisp")
    assert config == {"width": 4, "depth": 4}
    assert any("quant" in layer.name for layer in model.layers)
