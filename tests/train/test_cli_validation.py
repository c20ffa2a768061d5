"""python -m isp_tf.train refuses a patch size the model's contract cannot take: one error line, exit 2."""
import os
import subprocess
import sys

import pytest


def _train(tmp_path, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("ISP_TF_DEBUG", None)
    cmd = [sys.executable, "-m", "isp_tf.train", *args, "--data", "synthetic:2", "--steps-per-epoch", "1",
           "--epochs", "1", "--out", str(tmp_path / "run"), "--quiet"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("model, patch, expected", [
    ("pynet", 48, ["--patch-size", "multiple of 32", "32 or 64"]),
    ("microisp", 64, ["--patch-size", "smallest valid --patch-size is 158"]),
])
def test_patch_size_the_model_cannot_take_is_one_error_line(tmp_path, model, patch, expected):
    stage = ["--stage", "5"] if model == "pynet" else []
    proc = _train(tmp_path, "--model", model, "--small", *stage, "--patch-size", str(patch))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    for text in expected:
        assert text in errors[0], errors[0]
    assert not (tmp_path / "run" / "run.json").exists()
