"""isp_tf.runtime: the int8/uint8 boundary, multi-input LiteRT sessions, frame sizes, PSNR."""
import math

import numpy as np
import pytest

from isp_tf.errors import FrameSizeError, InputShapeError
from isp_tf.runtime import (FRAME_SIZES, RUNTIMES, LiteRtSession, dequantize, frame_label, megapixels,
                            parse_frame_size, psnr, quantize, run_tflite)


# -- the quantised boundary ------------------------------------------------------------
@pytest.mark.parametrize("dtype, zero", [(np.int8, -128), (np.int8, 3), (np.uint8, 0), (np.uint8, 17)])
def test_quantize_dequantize_round_trip(dtype, zero):
    scale = 1.0 / 255
    detail = {"dtype": dtype, "quantization": (scale, zero)}
    info = np.iinfo(dtype)
    x = np.random.default_rng(0).random((1, 7, 5, 4), dtype=np.float32)
    q = quantize(detail, x)
    assert q.dtype == dtype
    assert (q.astype(int) == np.clip(np.rint(x / scale + zero), info.min, info.max)).all()
    back = dequantize(detail, q)
    assert back.dtype == np.float32
    inside = (x / scale + zero >= info.min) & (x / scale + zero <= info.max)
    assert np.abs(back - x)[inside].max() <= scale / 2 + 1e-7
    # out of range values clip to the dtype's ends
    assert quantize(detail, np.array([-10.0, 10.0])).tolist() == [info.min, info.max]


def test_float_tensors_pass_through():
    detail = {"dtype": np.float32, "quantization": (0.0, 0)}
    x = np.ones((2, 3), np.float32)
    assert quantize(detail, x) is x and dequantize(detail, x) is x
    assert quantize(detail, np.ones(3, np.float64)).dtype == np.float32
    # an integer tensor without a scale (e.g. an index input) is only cast
    assert quantize({"dtype": np.int32, "quantization": (0.0, 0)}, np.array([1.7])).tolist() == [1]


# -- sessions ---------------------------------------------------------------------------
def _feeds(session, image, camera):
    return [camera if "camera" in d["name"] else image for d in session.inputs]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_multi_input_multi_output_session(vector_model, vector_tflite, runtime):
    """An image and a per-frame vector in, two maps out, on every runtime; inputs follow the
    .tflite's own order (the converter sorts them by name: camera first)."""
    session = LiteRtSession(vector_tflite, threads=1, runtime=runtime)
    assert [d["name"] for d in session.inputs] == ["serving_default_camera:0", "serving_default_image:0"]
    rng = np.random.default_rng(1)
    camera = np.array([[0.5, 2.0, 1.2]], np.float32)
    reference = None
    for hw in [(30, 27), (18, 40), (30, 27)]:  # re-planned on every new size
        image = rng.random((1,) + hw + (4,), dtype=np.float32)
        outs = session.run(*_feeds(session, image, camera))
        keras_outs = [o.numpy() for o in vector_model([image, camera])]
        assert len(outs) == 2 and all(o.dtype == np.float32 for o in outs)
        by_channels = {o.shape[-1]: o for o in outs}
        for ref in keras_outs:
            assert np.abs(by_channels[ref.shape[-1]] - ref).max() <= 1e-4
        first = session(*_feeds(session, image, camera))
        assert np.array_equal(first, outs[0])
        reference = outs
    assert session.shape == [1, 3] and session.shapes[1] == [1, 30, 27, 4]
    assert reference is not None
    with pytest.raises(InputShapeError, match="takes 2 input"):
        session.run(image)


def test_unknown_runtime(vector_tflite):
    with pytest.raises(ValueError, match="unknown runtime 'gpu'"):
        LiteRtSession(vector_tflite, runtime="gpu")


@pytest.mark.filterwarnings("ignore:Statistics for quantized inputs:UserWarning")
def test_run_tflite_quantises_integer_io():
    """A one-op int8 model (x * 0.5) through run_tflite: quantised in, dequantised out."""
    from isp_tf._keras import tf

    fn = tf.function(lambda x: x * 0.5, input_signature=[tf.TensorSpec([1, 4, 4, 2], tf.float32)])
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(2)
    conv.representative_dataset = lambda: ([rng.random((1, 4, 4, 2), dtype=np.float32)] for _ in range(4))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    model = bytes(conv.convert())
    x = rng.random((1, 4, 4, 2), dtype=np.float32)
    y = run_tflite(model, x, num_threads=1)
    assert y.dtype == np.float32 and np.abs(y - 0.5 * x).max() < 0.02
    session = LiteRtSession(model, threads=1)
    assert session.input_dtype == np.int8
    assert np.abs(session(x) - y).max() == 0.0  # the same boundary code
    with pytest.raises(InputShapeError, match="takes"):
        run_tflite(model, np.zeros((1, 5, 4, 2), np.float32))


# -- frame sizes, PSNR -------------------------------------------------------------------
def test_frame_sizes():
    assert FRAME_SIZES == {"fullhd": (1080, 1920), "4k": (2160, 3840), "12mp": (3000, 4000),
                           "32mp": (4896, 6528)}
    assert parse_frame_size("12MP") == (3000, 4000) and parse_frame_size(" 64 x 48 ") == (64, 48)
    assert parse_frame_size("64,48") == (64, 48)
    assert frame_label("4K") == "4k" and frame_label("160x320") == "160x320"
    assert megapixels(FRAME_SIZES["12mp"]) == 12.0
    with pytest.raises(FrameSizeError, match="unknown frame size 'huge'.*HxW"):
        parse_frame_size("huge")
    with pytest.raises(InputShapeError, match="must be even.*161 is odd"):
        parse_frame_size("161x160")
    with pytest.raises(FrameSizeError, match="must be even and >= 2"):
        parse_frame_size("0x2")


def test_psnr_blocked_equals_the_plain_formula(monkeypatch):
    from isp_tf.runtime import metrics

    monkeypatch.setattr(metrics, "_BLOCK_ELEMENTS", 1000)  # many row blocks
    rng = np.random.default_rng(3)
    a = rng.random((1, 1100, 37, 3), dtype=np.float32) * 1.2 - 0.1  # outside [0, 1]: clipped
    b = np.clip(a + rng.normal(0, 0.01, a.shape).astype(np.float32), -0.2, 1.2)
    ca, cb = np.clip(a.astype(np.float64), 0, 1), np.clip(b.astype(np.float64), 0, 1)
    plain = 10 * math.log10(1 / np.mean((ca - cb) ** 2))
    assert psnr(a, b) == pytest.approx(plain, abs=1e-9)
    assert psnr(a[0], b[0]) == pytest.approx(plain, abs=1e-9)
    assert psnr(a, a) == math.inf
    with pytest.raises(InputShapeError, match="different shapes"):
        psnr(a, b[:, :10])
