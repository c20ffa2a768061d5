"""Exports of directions with a per-frame vector input (ParamISP, GenISP) and of inverse directions:
parity feeds every input (vectors through ``Port.from_raw`` on the parity RAW), and ``input_size``
names the sRGB frame of an inverse (its input), the output frame of a forward direction."""
import pathlib

import numpy as np
import pytest

from isp_tf.errors import ExportError, InputShapeError
from isp_tf.export.parity import load_parity_inputs
from isp_tf.export.sizes import export_sizes, model_input_hw
from isp_tf.models import get_spec
from isp_tf.models.registry import Direction, Port

REPO = pathlib.Path(__file__).resolve().parents[2]
SAMPLE = REPO / "sample_RAW_photos" / "astronaut.dng"  # synthetic DNG of the checkout, with full EXIF


def test_input_size_is_the_srgb_frame_of_each_direction():
    paramisp, invisp = get_spec("paramisp"), get_spec("invisp")
    # forward: packed Bayer at half the output; inverse: the sRGB input itself (was 64x64: forward's scale)
    assert export_sizes(paramisp, "128x128", direction="forward") == ((128, 128), (64, 64))
    assert export_sizes(paramisp, "128x128", direction="inverse") == ((128, 128), (128, 128))
    assert export_sizes(paramisp, "96x128", direction=None) == ((96, 128), (48, 64))
    assert model_input_hw(invisp, (96, 128), direction="inverse") == (96, 128)
    with pytest.raises(InputShapeError, match=r"paramisp inverse: input frame 130x128 .* height of 130, "
                                              r"not a multiple of 4.*128 or 132"):
        model_input_hw(paramisp, (130, 128), direction="inverse")
    with pytest.raises(InputShapeError, match=r"packed input height of 33.*64 or 68"):
        model_input_hw(paramisp, (66, 64))  # forward: 33 packed rows, size_multiple 2


def test_parity_inputs_compute_every_vector_from_the_raw(raw_samples):
    from isp_tf.raw import read_raw

    raw = read_raw(SAMPLE)
    for name in ("paramisp", "genisp"):
        direction = get_spec(name).forward
        xs, used = load_parity_inputs(str(SAMPLE), (16, 24), direction)
        assert used == str(SAMPLE) and len(xs) == len(direction.inputs) == 2
        assert xs[0].shape == (1, 16, 24, 4)
        vector = direction.inputs[1]
        assert xs[1].shape == (1, vector.channels) and xs[1].dtype == np.float32
        np.testing.assert_array_equal(xs[1][0], np.asarray(vector.from_raw(raw), np.float32))
    lonely = Direction("forward", (get_spec("microisp").forward.image_input, Port("mystery", "vector", 3)),
                       get_spec("microisp").forward.outputs)
    with pytest.raises(ExportError, match="'mystery' has no from_raw.*--no-parity"):
        load_parity_inputs(str(raw_samples["dng"]), (16, 16), lonely)
    # the Canon DNG has no EXIF: ParamISP's 1/1e-12 terms are outside the port's range
    with pytest.warns(UserWarning, match="missing"), \
            pytest.raises(ExportError, match=r"'params' .* outside the port's range.*complete metadata"):
        load_parity_inputs(str(raw_samples["dng"]), (16, 16), get_spec("paramisp").forward)


def test_paramisp_inverse_export_parity_feeds_the_camera_parameters():
    from isp_tf.export.convert import export_tflite

    result = export_tflite("paramisp", None, precision="fp32", input_size="64x64", small=True,
                           direction="inverse", parity_input=str(SAMPLE), progress=False,
                           log=lambda *a: None)
    meta = result.metadata
    assert result.report.ok and meta["direction"] == "inverse"
    assert [i["name"] for i in meta["inputs"]] == ["srgb", "params"]
    assert meta["inputs"][0]["shape"] == [1, 64, 64, 3] and meta["inputs"][1]["shape"] == [1, 84]
    assert meta["outputs"][0]["shape"] == [1, 64, 64, 1] and meta["frame"] == {"height": 64, "width": 64}
    par = meta["parity"]
    assert par["input"] == str(SAMPLE) and par["max_abs_error"] <= par["tolerance"] == 1e-4
