"""PyNET: exact published size per level, level outputs, level-to-level transfer, export, tiling."""
import numpy as np
import pytest

from isp_tf.errors import WeightsMismatchError
from isp_tf.layers import InstanceNorm, tiling_mode
from isp_tf.models import create_model, get_spec
from isp_tf.models.pynet import build_pynet, transfer_level_weights

# Cumulative parameters of the authors' graph up to each level's section of
# model.py (METHODS.md): the encoder belongs to level 5, the two transposed
# convolutions feeding level k-1 to level k, and every level has its head.
CUMULATIVE_MILLIONS = {5: 21.25, 4: 28.94, 3: 36.52, 2: 43.26, 1: 47.55}


def section(layer_name):
    """The level whose section of the authors' model.py creates this layer."""
    if layer_name in ("l1_d1", "l2_d1", "l3_d1", "l4_d1") or layer_name.startswith(
            ("l1_d1_", "l2_d1_", "l3_d1_", "l4_d1_")):
        return 5  # the encoder, written before level 5
    if layer_name.startswith("t0"):
        return 0
    if layer_name[0] == "t":  # t4a / t4b are created in level 5's section
        return int(layer_name[1]) + 1
    return int(layer_name[1])


@pytest.fixture(scope="module")
def full_graph():
    """The published graph: all six heads (47.5M parameters; builds in a few seconds)."""
    return build_pynet(level=0, all_outputs=True)


def test_published_parameter_count(full_graph):
    assert full_graph.count_params() == 47_548_170
    assert len(full_graph.outputs) == 6


def test_cumulative_parameters_per_level(full_graph):
    per_section = {}
    for layer in full_graph.layers:
        if layer.weights:
            per_section[section(layer.name)] = per_section.get(section(layer.name), 0) + layer.count_params()
    cumulative = 0
    for level in (5, 4, 3, 2, 1):
        cumulative += per_section[level]
        assert round(cumulative / 1e6, 2) == CUMULATIVE_MILLIONS[level]
    assert cumulative + per_section[0] == 47_548_170


def test_level_zero_model_has_only_its_head(full_graph, small_levels):
    heads = sum(full_graph.get_layer(f"l{k}_out").count_params() for k in range(1, 6))
    assert heads == 26_799  # the published level-0 model alone: 47,521,371
    small_graph = create_model("pynet", small=True, all_outputs=True)
    small_heads = sum(small_graph.get_layer(f"l{k}_out").count_params() for k in range(1, 6))
    assert small_levels[0].count_params() == small_graph.count_params() - small_heads


def test_spec():
    spec = get_spec("pynet")
    assert spec.size_multiple == 16 and spec.recipe_path.is_file() and spec.weights_path is None
    assert [s.name for s in spec.stages] == ["5", "4", "3", "2", "1", "0"]
    assert [s.folder for s in spec.stages][:2] == ["level_5", "level_4"]
    assert [s.starts_from_previous for s in spec.stages] == [False] + [True] * 5
    assert spec.default_config["level"] == 0 and spec.default_config["width"] == 1.0


@pytest.fixture(scope="module")
def small_levels():
    return {level: create_model("pynet", small=True, level=level) for level in range(6)}


def test_level_output_sizes(small_levels):
    x = np.random.default_rng(0).random((1, 32, 48, 4), dtype=np.float32)
    for level, model in small_levels.items():
        y = model(x).numpy()
        assert y.shape == (1, 64 // 2 ** level, 96 // 2 ** level, 3), level
        assert np.all((y >= 0.5 - 0.58) & (y <= 0.5 + 0.58))


def test_instance_norm_only_at_levels_2_to_5(small_levels):
    names = [layer.name for layer in small_levels[0].layers if isinstance(layer, InstanceNorm)]
    assert "l2_d1_3a_in" in names and "l5_d4_3b_in" in names
    assert not [n for n in names if n.startswith("l1_")]


def test_level_weights_transfer(small_levels):
    for level in (4, 3, 2, 1, 0):
        src, dst = small_levels[level + 1], small_levels[level]
        src_names = {layer.name for layer in src.layers if layer.weights}
        dst_names = {layer.name for layer in dst.layers if layer.weights}
        # layer names are stable: level k holds every layer of k+1 but its head
        assert src_names - dst_names == {f"l{level + 1}_out"}
        rng = np.random.default_rng(level)
        for v in src.trainable_weights:
            v.assign(rng.normal(0, 0.1, v.shape).astype(np.float32))
        copied = transfer_level_weights(src, dst)
        assert set(copied) == src_names - {f"l{level + 1}_out"}
        for name in copied:
            for a, b in zip(src.get_layer(name).weights, dst.get_layer(name).weights):
                np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_transfer_between_widths_is_refused(small_levels):
    other = build_pynet(level=5, width=0.125)
    with pytest.raises(WeightsMismatchError, match="width"):
        transfer_level_weights(other, small_levels[4])


@pytest.mark.parametrize("config, match", [
    ({"level": 6}, "level"), ({"width": 0}, "width"), ({"input_shape": (40, 32, 4)}, "multiples of 16"),
    ({"input_shape": (32, 32, 3)}, "packed Bayer")])
def test_bad_config(config, match):
    with pytest.raises(ValueError, match=match):
        build_pynet(**config)


def test_exports_to_nnapi12_ops(small_levels, tflite_ops):
    model = small_levels[4]  # has every op type of level 0 (converting level 0 takes a minute)
    tflite = tflite_ops.convert(model, (1, 32, 32, 4))
    ops = tflite_ops.op_versions(tflite)
    assert {"TRANSPOSE_CONV", "LEAKY_RELU", "MAX_POOL_2D", "RSQRT", "MEAN"} <= set(ops)
    assert "SQUARED_DIFFERENCE" not in ops
    assert tflite_ops.nnapi12_rejects(tflite) == {}
    x = np.random.default_rng(1).random((1, 32, 32, 4), dtype=np.float32)
    np.testing.assert_allclose(tflite_ops.run_tflite(tflite, x), model(x).numpy(), atol=1e-4)


def test_tiling_variant_equals_normal_on_whole_frame(small_levels):
    model = small_levels[4]
    with tiling_mode():
        tiled = create_model("pynet", small=True, level=4)
    for a, b in zip(model.trainable_weights, tiled.trainable_weights):
        b.assign(a)
    x = np.random.default_rng(2).random((1, 32, 48, 4), dtype=np.float32)
    for layer in tiled.layers:
        if isinstance(layer, InstanceNorm):
            layer.core_box.assign([0, 0, 32, 48])
            layer.input_hw.assign([32, 48])
    np.testing.assert_allclose(tiled(x).numpy(), model(x).numpy(), atol=1e-4)
