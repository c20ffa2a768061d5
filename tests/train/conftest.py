"""One tiny MicroISP run shared by the training tests (module ``full_run``).

Trained in-process with a test recipe: 2 epochs x 3 steps of batch 2 on
160-px patches (MicroISP's attention needs >= 79 packed pixels), a piecewise
learning rate (so resuming must restore the schedule's step), MSE + SSIM.
The resume, mirrored and multi-worker tests compare their weights with it.
"""
import json

import pytest

RECIPE = {
    "model": "microisp",
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "lr_schedule": {"name": "piecewise", "boundaries": [3], "factors": [1.0, 0.5]},
    "kernel_initializer": "he_normal",
    "batch_size": 2, "patch_size": 160, "epochs": 2, "steps_per_epoch": 3,
    "loss": {"mse": 1.0, "ssim": 0.1}, "validation_steps": 1, "checkpoint_every": 2, "log_every": 1,
    "qat": {"epochs": 1, "steps_per_epoch": 1, "learning_rate": 1e-4, "lr_schedule": {"name": "constant"}},
}


@pytest.fixture(scope="session")
def tiny_args(tmp_path_factory):
    """Command-line arguments of the shared tiny run, without --out."""
    path = tmp_path_factory.mktemp("recipe") / "tiny.json"
    path.write_text(json.dumps(RECIPE))
    return ["--model", "microisp", "--small", "--data", "synthetic:2", "--recipe", str(path),
            "--seed", "3", "--quiet"]


@pytest.fixture(scope="session")
def full_run(tmp_path_factory, tiny_args):
    """Run folder of the uninterrupted tiny run."""
    from isp_tf.train.__main__ import main

    out = tmp_path_factory.mktemp("runs") / "full"
    assert main(tiny_args + ["--out", str(out)]) == 0
    return out
