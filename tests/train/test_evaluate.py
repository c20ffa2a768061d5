"""Held-out evaluation: the model and the classical renderer are scored on the same crop."""
import dataclasses
import json

import numpy as np
import pytest

from isp_tf.train import evaluate


@dataclasses.dataclass
class _Pair:
    key: str
    raw: object
    target: np.ndarray

    def load(self):
        return self.raw, self.target


class _Identity:
    """A 'model' that returns a fixed image, to check the bookkeeping."""

    def __init__(self, image):
        self.image = image

    def __call__(self, packed, training=False):
        from isp_tf._keras import tf

        assert packed.shape[1:3] == (self.image.shape[0] // 2, self.image.shape[1] // 2)
        return tf.constant(self.image[None])


@pytest.mark.parametrize("pattern", ["GRBG", "BGGR"])
def test_renderer_scores_perfectly_against_its_own_render(pattern):
    from isp_tf.data.photos import load_photo
    from isp_tf.data.synthetic import synthesize
    from isp_tf.raw import render_classical

    raw = synthesize(load_photo("chelsea")[:101, :131], seed=1, cfa_pattern=pattern).raw
    full = np.asarray(render_classical(raw), np.float32)  # aligned with raw.bayer, uncropped
    aligned = np.asarray(render_classical(raw, align_to_packed=True), np.float32)
    model = _Identity(np.clip(aligned + 0.1, 0, 1))       # off by 0.1 where not clipped
    rows = evaluate.evaluate_pairs(model, [_Pair("x", raw, full)], progress=False)
    assert rows[0]["classical_psnr"] == pytest.approx(100.0)  # same crop as pack_bayer
    assert rows[0]["classical_ssim"] == pytest.approx(1.0, abs=1e-6)
    assert 15 < rows[0]["model_psnr"] < 40


def test_command_writes_table_and_json(tmp_path, capsys):
    from isp_tf.models import create_model
    from isp_tf.models.weights import save_weights

    weights = tmp_path / "m.weights.h5"
    save_weights(create_model("microisp", small=True), weights, "microisp", {"width": 4, "depth": 4})
    out = tmp_path / "eval.json"
    assert evaluate.main(["--model", "microisp", "--weights", str(weights), "--data", "synthetic:1:chelsea",
                          "--json", str(out), "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "| microisp (`m.weights.h5`) |" in table and "classical renderer" in table
    data = json.loads(out.read_text())
    assert len(data["images"]) == 1 and data["images"][0]["image"].startswith("synthetic/test/chelsea")
    assert f"{data['mean']['model_psnr']:.2f}" in table
    assert evaluate.main(["--model", "pynet", "--weights", str(weights), "--data", "synthetic:1"]) == 2
    assert "not of 'pynet'" in capsys.readouterr().err
