"""MicroISP: exact size, structure, shapes, config, NNAPI-1.2 export, tiling variant."""
import numpy as np
import pytest

from isp_tf.errors import InputShapeError
from isp_tf.layers import ChannelAttention, tiling_mode
from isp_tf.models import create_model, get_spec
from isp_tf.models.microisp import build_microisp

OFFICIAL_OPS = {"CONV_2D", "PRELU", "MUL", "ADD", "MEAN", "RESHAPE", "LOGISTIC", "TANH",
                "DEPTH_TO_SPACE", "CONCATENATION"}


def randomise(model, seed=0, std=0.3):
    rng = np.random.default_rng(seed)
    for v in model.trainable_weights:
        v.assign(rng.normal(0, std, v.shape).astype(np.float32))
    return model


def expected_parameters(width, depth):
    """Closed form: branch = depth conv+PReLU blocks + out conv + attentions (4 convs, MLP, 5 PReLUs)."""
    blocks = (9 * 4 * width + width + width) + (depth - 1) * (9 * width * width + 2 * width)
    out_conv = 9 * width * 4 + 4
    attention = ((width * width + width) + 3 * (9 * width * width + width)  # pooling chain
                 + 2 * (width * width + width) + 5 * width)  # MLP, PReLUs
    return 6 * (blocks + out_conv + (depth // 3) * attention)


@pytest.fixture(scope="module")
def model():
    return create_model("microisp")


def test_published_parameter_count(model):
    assert model.count_params() == 13_560
    assert expected_parameters(4, 7) == 13_560
    for stage in (1, 2):
        for colour in "rgb":
            prefix = f"s{stage}_{colour}_"
            branch = [layer for layer in model.layers if layer.name.startswith(prefix)]
            assert sum(layer.count_params() for layer in branch) == 2_260


def test_spec():
    spec = get_spec("microisp")
    assert spec.size_multiple == 1 and spec.output_scale == 2 and spec.recipe_path.is_file()
    assert spec.weights_path.name == "microisp_reference.weights.h5" and spec.weights_path.is_file()
    assert spec.recipe_path.parent == spec.weights_path.parent.parent  # one folder holds the method
    assert (spec.input_kind, spec.output_kind, spec.input_channels) == ("packed_bayer", "srgb", 4)
    assert set(spec.variants) == {"merged"}
    assert spec.default_config == {"width": 4, "depth": 7}
    assert create_model("microisp", small=True).count_params() == expected_parameters(4, 4)


def test_structure(model):
    # two attentions per branch, after blocks 2 and 5, six branches
    attentions = [layer.name for layer in model.layers if isinstance(layer, ChannelAttention)]
    assert len(attentions) == 12 and "s1_r_att2" in attentions and "s2_b_att5" in attentions
    # stage-2 branch c eats stage-1 branch c's 4-channel tanh output
    for colour in "rgb":
        assert model.get_layer(f"s2_{colour}_conv0").input is model.get_layer(f"s1_{colour}_tanh").output
        assert model.get_layer(f"s1_{colour}_tanh").output.shape[-1] == 4


def test_output_shape_and_range(model):
    randomise(model)
    x = np.random.default_rng(1).random((2, 81, 97, 4), dtype=np.float32)
    y = model(x).numpy()
    assert y.shape == (2, 162, 194, 3)
    assert y.min() >= 0.5 - 0.58 and y.max() <= 0.5 + 0.58 and y.std() > 1e-3


def test_branches_are_independent(model):
    # changing the G branches' weights changes only the G output channel
    randomise(model, seed=2)
    x = np.random.default_rng(3).random((1, 81, 81, 4), dtype=np.float32)
    before = model(x).numpy()
    for layer in model.layers:
        if layer.name.startswith(("s1_g_", "s2_g_")):
            for v in layer.trainable_weights:
                v.assign(v.numpy() + 0.2)
    after = model(x).numpy()
    np.testing.assert_array_equal(after[..., [0, 2]], before[..., [0, 2]])
    assert np.abs(after[..., 1] - before[..., 1]).max() > 1e-3


@pytest.mark.parametrize("width, depth", [(8, 4), (2, 3), (4, 9)])
def test_width_and_depth(width, depth):
    model = build_microisp(width=width, depth=depth, input_shape=(81, 90, 4))
    assert model.count_params() == expected_parameters(width, depth)
    assert model.output_shape == (None, 162, 180, 3)
    assert model.get_layer("s1_r_conv1").kernel.shape == (3, 3, width, width)
    attentions = [layer for layer in model.layers if isinstance(layer, ChannelAttention)]
    assert len(attentions) == 6 * (depth // 3)


@pytest.mark.parametrize("config, match", [
    ({"width": 0}, "width"), ({"depth": 2}, "depth"), ({"input_shape": (81, 81, 3)}, "4 channels")])
def test_bad_config(config, match):
    with pytest.raises(ValueError, match=match):
        build_microisp(**config)


def test_input_smaller_than_attention_block():
    with pytest.raises(InputShapeError, match="79"):
        build_microisp(input_shape=(64, 128, 4))


def test_exports_only_official_ops(tflite_ops):
    # depth 3 has every layer kind of depth 7 and converts in half the time
    model = randomise(build_microisp(width=4, depth=3), seed=4)
    tflite = tflite_ops.convert(model, (1, 81, 90, 4))
    ops = tflite_ops.op_versions(tflite)
    assert set(ops) == OFFICIAL_OPS
    assert tflite_ops.nnapi12_rejects(tflite) == {}
    x = np.random.default_rng(5).random((1, 81, 90, 4), dtype=np.float32)
    np.testing.assert_allclose(tflite_ops.run_tflite(tflite, x), model(x).numpy(), atol=1e-4)


def test_tiling_variant_equals_normal_on_whole_frame(model, tmp_path):
    from isp_tf.models.weights import load_weights_into, save_weights

    randomise(model, seed=6, std=0.5)
    save_weights(model, tmp_path / "m.h5", "microisp", {"width": 4, "depth": 7})
    with tiling_mode():
        tiled = create_model("microisp")
    load_weights_into(tiled, tmp_path / "m.h5", "microisp")
    x = np.random.default_rng(7).random((1, 170, 100, 4), dtype=np.float32)
    for layer in tiled.layers:
        if isinstance(layer, ChannelAttention):
            layer.core_box.assign([0, 0, 170, 100])
            layer.input_hw.assign([170, 100])
    np.testing.assert_allclose(tiled(x).numpy(), model(x).numpy(), atol=1e-6)
