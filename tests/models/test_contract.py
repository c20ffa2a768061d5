"""The contract every registered model passes (as timm's tests do over ``list_models()``).

A method gets all of these by adding its folder and its registry line:
its spec is coherent, it builds at its small preset with the shapes its ports
declare, its published preset has the documented parameter count, its
weights survive a save/load round trip, its FP32 and INT8 exports pass the
NNAPI 1.2 validator (or fail naming exactly the ops its spec declares
CPU-bound), its variants compute the same function, tiled output equals
whole-frame output, and a few training steps lower the loss.
"""
import math

import numpy as np
import pytest

from isp_tf.models import available_models, create_model, get_spec
from isp_tf.models.registry import PORT_KINDS, derive_direction

MODELS = available_models()
TOL = 1e-4


def _side(spec, at_least=96):
    """A square input side the small preset takes (a multiple of size_multiple, >= ``at_least``)."""
    m = spec.size_multiple
    return m * math.ceil(at_least / m)


def _randomise(model, seed=0):
    """Weights large enough that every layer (attention, norms) changes the output."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        scale = np.sqrt(2.0 / np.prod(shape[:-1])) if len(shape) >= 2 else 0.1
        w.assign(rng.normal(0.0, scale, shape).astype(np.float32))
    return model


def _inputs(spec, direction, side, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for port in direction.inputs:
        shape = (1, side, side, port.channels) if port.spatial else (1, port.channels)
        out.append(rng.random(shape, dtype=np.float32))
    return out


def _call_tensor(model, xs):
    return model(xs if len(xs) > 1 else xs[0], training=True)


def _call(model, xs):
    y = model(xs if len(xs) > 1 else xs[0], training=False)
    return [np.asarray(t) for t in (y if isinstance(y, (list, tuple)) else [y])]


@pytest.fixture(scope="module", params=MODELS)
def small(request):
    """``(spec, small-preset model with random weights)`` per registered model."""
    from isp_tf._keras import keras

    keras.utils.set_random_seed(0)
    spec = get_spec(request.param)
    return spec, _randomise(create_model(spec.name, small=True))


@pytest.mark.parametrize("name", MODELS)
def test_spec_is_coherent(name):
    from isp_tf.train.recipe import resolve_recipe

    spec = get_spec(name)
    assert spec.name == name and spec.description
    assert spec.home.is_dir() and spec.home.name == name  # one folder per method
    assert spec.recipe_path is not None and spec.recipe_path.parent == spec.home
    assert spec.weights_path is None or spec.weights_path.is_file()
    assert spec.directions[0].name == "forward"
    for d in spec.directions:
        assert d.inputs and d.outputs and d.inputs[0].spatial and d.outputs[0].spatial
        assert all(p.kind in PORT_KINDS for p in d.inputs + d.outputs)
        assert d.output_scale >= 1 and d.size_multiple >= 1
        assert (d.derive is None) == (d.name == "forward")
    assert {"published", "small"} <= set(spec.presets)
    stage = spec.stages[0].name if spec.stages else None
    recipe = resolve_recipe(name, stage=stage)  # the shipped recipe is valid
    assert recipe.model == name
    for s in spec.stages[1:]:
        assert spec.previous_stage(s.name) is not None
        resolve_recipe(name, stage=s.name)


def test_small_preset_builds_with_the_declared_shapes(small):
    spec, model = small
    side = _side(spec)
    for d in spec.directions:
        net = derive_direction(spec, model, d.name)
        ys = _call(net, _inputs(spec, d, side))
        assert len(ys) == len(d.outputs)
        image = ys[0]
        assert image.shape == (1, side * d.output_scale, side * d.output_scale, d.outputs[0].channels)
        assert np.all(np.isfinite(image)) and image.std() > 1e-4


@pytest.mark.parametrize("name", MODELS)
def test_published_preset_has_the_documented_parameter_count(name):
    spec = get_spec(name)
    model = create_model(name)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == spec.published_parameters


def test_weights_round_trip(small, tmp_path):
    from isp_tf.models.weights import resolve_model, save_weights

    spec, model = small
    path = save_weights(model, tmp_path / f"{spec.name}.weights.h5", spec.name, spec.small_config)
    loaded = resolve_model(None, path)  # the file alone says which model it is
    assert (loaded.name, loaded.config) == (spec.name, spec.small_config)
    xs = _inputs(spec, spec.forward, _side(spec))
    np.testing.assert_array_equal(_call(loaded.model, xs)[0], _call(model, xs)[0])


def test_qat_configs_cover_the_models_own_layers(small):
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry_mod)

    from isp_tf._keras import keras
    from isp_tf.export.qat import layer_configs

    spec, model = small
    registry = registry_mod.Default8BitQuantizeRegistry()
    configs = layer_configs(spec.name)
    missing = {type(layer).__name__ for layer in model.layers
               if not isinstance(layer, keras.layers.InputLayer) and not registry.supports(layer)} - set(configs)
    assert not missing, f"{spec.name}: declare QAT treatments for {missing} in ModelSpec.qat_configs"


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_export_passes_nnapi_or_names_the_declared_cpu_ops(small, precision):
    from isp_tf.errors import NNAPIValidationError
    from isp_tf.export.convert import export_tflite

    spec, model = small
    side = _side(spec)
    frame = f"{side * spec.output_scale}x{side * spec.output_scale}"
    declared = set(spec.cpu_ops.get(precision, ()))
    kwargs = dict(precision=precision, input_size=frame, keras_model=model, config=spec.small_config,
                  parity=False, progress=False, log=lambda *a: None, calibration_frames_count=2)
    if not declared:
        result = export_tflite(spec.name, None, **kwargs)
        assert result.report.ok, result.report.format_table()
        assert result.metadata["input"]["kind"] == spec.input_kind
        return
    with pytest.raises(NNAPIValidationError) as info:
        export_tflite(spec.name, None, **kwargs)
    assert {f.op for f in info.value.report.findings} == declared


def test_variants_compute_the_same_function(small):
    spec, model = small
    xs = _inputs(spec, spec.forward, _side(spec))
    reference = _call(model, xs)[0]
    for variant in spec.variants.values():
        out = _call(variant.transform(model), xs)[0]
        np.testing.assert_allclose(out, reference, atol=1e-5, err_msg=variant.name)


def test_tiled_output_equals_whole_frame(small):
    from isp_tf.tiling import TiledRunner

    spec, model = small
    net, rebuild = model, (lambda: create_model(spec.name, small=True))
    if spec.split is not None:  # whole-frame values that are not spatial means: computed once, then given
        per_frame, net = spec.split(model)
        rebuild = lambda: spec.split(create_model(spec.name, small=True))[1]  # noqa: E731
    runner = TiledRunner(net, spec.size_multiple, rebuild=rebuild)
    step = runner.footprint.core_step
    h = max(2 * step, runner.min_side * 2)
    h = spec.size_multiple * math.ceil(h / spec.size_multiple)
    w = spec.size_multiple * math.ceil(max(step, runner.min_side) * 1.5 / spec.size_multiple)
    frame = np.random.default_rng(3).random((h, w, spec.input_channels), dtype=np.float32)
    vectors = [v[0] for v in _inputs(spec, spec.forward, 1, seed=4)[1:]]  # per-frame inputs, if any
    whole_inputs = [frame[np.newaxis]] + [v[np.newaxis] for v in vectors]
    if spec.split is not None:
        vectors.append(np.asarray(per_frame(whole_inputs))[0])
    assert len(runner.plan(h, w, step)) > 1
    tiled = runner(frame, tile=step, vectors=vectors)
    whole = _call(model, whole_inputs)[0][0]  # the model itself on the whole frame
    assert tiled.shape == whole.shape == (h * spec.output_scale, w * spec.output_scale,
                                          spec.outputs[0].channels)
    assert np.max(np.abs(tiled - whole)) <= TOL


def test_a_few_training_steps_lower_the_loss(small):
    from isp_tf._keras import keras, tf
    from isp_tf.data import build_dataset

    spec, _ = small
    keras.utils.set_random_seed(1)
    model = create_model(spec.name, small=True)
    side = _side(spec, 128)  # (oneDNN in TF 2.21 segfaults training MicroISP at 96-px inputs)
    x, y = next(iter(build_dataset("synthetic:2", split="train", patch_size=side * spec.output_scale,
                                   batch_size=1, seed=0, input_kind=spec.input_kind)))
    xs = [x] + [tf.constant(v) for v in _inputs(spec, spec.forward, 1)[1:]]  # per-frame inputs, if any
    out_hw = [int(x.shape[1]) * spec.output_scale, int(x.shape[2]) * spec.output_scale]
    if list(y.shape[1:3]) != out_hw:  # packed Bayer in, output at the packed resolution (GenISP)
        y = tf.image.resize(y, out_hw, method="area")
    optimizer = keras.optimizers.Adam(1e-3)

    @tf.function
    def step():  # as the trainer does: one traced step
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.abs(_call_tensor(model, xs) - y))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    losses = [float(step()) for _ in range(4)]
    assert losses[-1] < losses[0], losses
