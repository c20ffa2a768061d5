"""Quantization-aware training (QAT) with tensorflow-model-optimization.

:func:`quantize_model` wraps a float functional model for QAT: tfmot inserts
fake-quantisation of weights and activations so fine-tuning learns weights
that survive int8.  tfmot only knows stock Keras layers; isp_tf's own layers
are annotated with a :class:`~tfmot.quantization.keras.QuantizeConfig` of
ours, registered in ``quantize_scope`` under their class names.  Which
treatment a layer class gets is part of the model's contract
(``ModelSpec.qat_configs``: ``"noop"``, ``"output"`` or ``"sublayers"``):

* :class:`NoOpQuantizeConfig` -- pixel reshuffles (``DepthToSpace``,
  ``SpaceToDepth``): they move values without changing them, and their int8
  TFLite ops keep the input's scale, so nothing needs quantising.
* :class:`OutputQuantizeConfig` -- element-wise layers (``ScaledTanh``, and
  Keras's ``PReLU``, which tfmot does not support): the output is
  fake-quantised (moving-average range) like a Keras activation; PReLU's slopes
  stay float in training and are quantized by the converter.
* :class:`SublayerQuantizeConfig` -- layers with inner Keras layers
  (``ChannelAttention``, ``InstanceNorm``): their kernels are fake-quantised
  per output channel (as tfmot does for Conv2D) and the output by moving
  average.  Inner activations are not fake-quantised during training; their
  int8 ranges come from calibration at export (``export_tflite`` always passes
  a representative dataset), which is where we differ from a fully simulated
  QAT graph -- tfmot cannot reach inside a custom layer.

oneDNN: training a QAT model whose strided 1x1 convolution gets a fake-quant
kernel (MicroISP's attention) segfaults inside TensorFlow 2.21's oneDNN
kernels.  Set ``TF_ENABLE_ONEDNN_OPTS=0`` before TensorFlow is imported for QAT
*training*; :func:`quantize_model` warns when it is not set.  Inference and
conversion of QAT models are unaffected.

Ranges: :func:`calibrate_ranges` sets every activation range from the float
model's activations on real inputs before fine-tuning (tfmot starts them at
[-6, 6] and moves them slowly); call it right after :func:`quantize_model`.

Saving and loading: :func:`save_qat_weights` writes an ordinary isp_tf
weights file (:mod:`isp_tf.models.weights`, tagged with the model name and
config) with one more attribute, ``isp_tf_qat``; :func:`load_qat_model`
rebuilds ``quantize_model(create_model(name, **config))`` and loads it, and
``export/export_to_tflite.py --weights FILE`` recognises such files and
exports them as int8.  (Per STACK.md: never ``.keras`` files for QAT models.)
"""
from __future__ import annotations

import contextlib
import os
import warnings
from typing import Dict, Optional, Tuple

from isp_tf._keras import keras, tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before tfmot)
from isp_tf.errors import WeightsMismatchError
from isp_tf.models.weights import QAT_ATTR, is_qat_weights

import tensorflow_model_optimization as tfmot  # noqa: E402

_q = tfmot.quantization.keras

__all__ = ["NoOpQuantizeConfig", "OutputQuantizeConfig", "SublayerQuantizeConfig", "calibrate_ranges",
           "TREATMENTS", "custom_objects", "layer_configs",
           "is_qat_weights", "load_qat_model", "qat_scope", "quantize_model", "save_qat_weights"]


@keras.utils.register_keras_serializable(package="isp_tf")
class NoOpQuantizeConfig(_q.QuantizeConfig):
    """Quantise nothing: for layers that only move values (depth/space reshuffles)."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {}


@keras.utils.register_keras_serializable(package="isp_tf")
class OutputQuantizeConfig(NoOpQuantizeConfig):
    """Fake-quantise the layer's output (8-bit, asymmetric, moving-average range)."""

    def get_output_quantizers(self, layer):
        return [_q.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False,
                                                     narrow_range=False)]


def _kernels(layer):
    """Every ``kernel`` variable of the Conv/Dense layers nested in ``layer``."""
    found = []
    for sub in layer._flatten_layers(include_self=False, recursive=True):  # noqa: SLF001
        has_kernel = getattr(sub, "kernel", None) is not None
        if isinstance(sub, (keras.layers.Conv2D, keras.layers.Dense)) and has_kernel:
            found.append(sub)
    return found


@keras.utils.register_keras_serializable(package="isp_tf")
class SublayerKernelQuantizer(_q.quantizers.LastValueQuantizer):
    """tfmot's Conv2D kernel quantizer (8 bits, per output channel, symmetric, narrow
    range) whose range variables are named after the inner layer: every inner kernel
    is called ``kernel``, and the wrapper would otherwise create ``kernel_min`` twice."""

    def __init__(self, prefix: str, **kwargs):
        kwargs = {"num_bits": 8, "per_axis": True, "symmetric": True, "narrow_range": True, **kwargs}
        super().__init__(**kwargs)
        self.prefix = prefix

    def build(self, tensor_shape, name, layer):
        return super().build(tensor_shape, f"{self.prefix}_{name}", layer)

    def get_config(self):
        return {**super().get_config(), "prefix": self.prefix}


@keras.utils.register_keras_serializable(package="isp_tf")
class SublayerQuantizeConfig(OutputQuantizeConfig):
    """Fake-quantise the kernels of inner Conv2D/Dense layers (per output channel,
    symmetric, narrow range: tfmot's Conv2D scheme) and the layer's output."""

    def get_weights_and_quantizers(self, layer):
        return [(sub.kernel, SublayerKernelQuantizer(sub.name)) for sub in _kernels(layer)]

    def set_quantize_weights(self, layer, quantize_weights):
        subs = _kernels(layer)
        if len(subs) != len(quantize_weights):
            raise ValueError(f"{layer.name}: {len(quantize_weights)} quantized kernels for "
                             f"{len(subs)} layers")
        for sub, kernel in zip(subs, quantize_weights):
            sub.kernel = kernel


#: ``ModelSpec.qat_configs`` values -> QuantizeConfig classes
TREATMENTS = {"noop": NoOpQuantizeConfig, "output": OutputQuantizeConfig, "sublayers": SublayerQuantizeConfig}


def layer_configs(model_name: Optional[str] = None) -> Dict[str, type]:
    """Layer class name -> QuantizeConfig class: from ``model_name``'s spec
    (``ModelSpec.qat_configs``), or the union over every registered model."""
    from isp_tf.models import available_models, get_spec

    names = [model_name] if model_name else list(available_models())
    out = {}
    for name in names:
        spec = get_spec(name)
        for cls_name, treatment in spec.qat_configs.items():
            if treatment not in TREATMENTS:
                raise ValueError(f"{spec.name}: qat_configs[{cls_name!r}] = {treatment!r}; "
                                 f"use one of {', '.join(TREATMENTS)}")
            out[cls_name] = TREATMENTS[treatment]
    return out


def custom_objects() -> Dict[str, object]:
    """Names ``quantize_scope`` needs to rebuild an annotated isp_tf model."""
    from isp_tf import layers as isp_layers

    objects = {name: getattr(isp_layers, name) for name in layer_configs() if hasattr(isp_layers, name)}
    objects.update({"NoOpQuantizeConfig": NoOpQuantizeConfig, "OutputQuantizeConfig": OutputQuantizeConfig,
                    "SublayerQuantizeConfig": SublayerQuantizeConfig,
                    "SublayerKernelQuantizer": SublayerKernelQuantizer})
    return objects


@contextlib.contextmanager
def qat_scope():
    """``tfmot.quantization.keras.quantize_scope`` with isp_tf's layers and configs."""
    with _q.quantize_scope(custom_objects()):
        yield


def quantize_model(model, model_name: Optional[str] = None):
    """Wrap a float functional/sequential ``model`` for quantization-aware training.

    Stock Keras layers get tfmot's default 8-bit scheme; the model's own layers
    get the configs its spec declares (``ModelSpec.qat_configs`` of
    ``model_name``; every registered model's when ``None``); any other custom
    layer class is refused with its name (tfmot would fail later with an
    opaque cloning error).
    """
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry_mod)

    if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "") != "0":
        warnings.warn("training a quantize_model() model can segfault in oneDNN (strided 1x1 "
                      "convolutions): set TF_ENABLE_ONEDNN_OPTS=0 before TensorFlow is imported "
                      "for QAT training", RuntimeWarning, stacklevel=2)

    registry = registry_mod.Default8BitQuantizeRegistry()
    configs = layer_configs(model_name)
    unknown = sorted({type(layer).__name__ for layer in model.layers
                      if not isinstance(layer, keras.layers.InputLayer)
                      and type(layer).__name__ not in configs and not registry.supports(layer)})
    if unknown:
        raise ValueError(f"quantize_model: no QuantizeConfig for layer class(es) {', '.join(unknown)}; "
                         "declare them in the model's ModelSpec.qat_configs")

    def annotate(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer
        cls = configs.get(type(layer).__name__)
        if cls is not None:
            return _q.quantize_annotate_layer(layer, quantize_config=cls())
        return _q.quantize_annotate_layer(layer)

    with qat_scope():
        annotated = keras.models.clone_model(model, clone_function=annotate)
        annotated.set_weights(model.get_weights())
        return _q.quantize_apply(annotated)


_RANGE_VARIABLES = {"post_activation_min": min, "output_min": min,
                    "post_activation_max": max, "output_max": max}


def calibrate_ranges(qat_model, float_model, inputs) -> int:
    """Start every activation range of a :func:`quantize_model` model from the float
    model's activations on ``inputs`` (an iterable of input batches).

    tfmot's moving-average quantizers start at [-6, 6] and move with decay
    0.999, so a short fine-tune trains (and exports) with ranges far too wide:
    ranges observed on real data first, as post-training quantization does, are
    what QAT should refine.  Each range is the min/max over all ``inputs``,
    widened to include 0; one training-mode pass also sets the kernels'
    (last-value) ranges.  Returns the number of activation ranges set.
    """
    import numpy as np

    layers = [layer for layer in float_model.layers if not isinstance(layer, keras.layers.InputLayer)]
    probe = keras.Model(float_model.inputs, [layer.get_output_at(0) for layer in layers])
    lo = {layer.name: np.inf for layer in layers}
    hi = {layer.name: -np.inf for layer in layers}
    in_lo, in_hi = np.inf, -np.inf
    for k, x in enumerate(inputs):
        x = np.asarray(x, np.float32)
        if k == 0:  # one training-mode pass sets the kernels' last-value ranges
            qat_model(x, training=True)
        in_lo, in_hi = min(in_lo, float(x.min())), max(in_hi, float(x.max()))
        for layer, y in zip(layers, probe(x, training=False)):
            y = y.numpy()
            lo[layer.name] = min(lo[layer.name], float(y.min()))
            hi[layer.name] = max(hi[layer.name], float(y.max()))
    count = 0
    for wrapper in qat_model.layers:
        inner = getattr(wrapper, "layer", None)
        for variable in wrapper.non_trainable_weights:
            role = variable.name.split("/")[-1].split(":")[0]
            if role in _RANGE_VARIABLES and inner is not None and inner.name in lo:
                pick = lo if role.endswith("_min") else hi
                variable.assign(_RANGE_VARIABLES[role](0.0, pick[inner.name]))
                count += 1
            elif type(wrapper).__name__ == "QuantizeLayer" and role.endswith(("_min", "_max")) \
                    and np.isfinite(in_lo):  # the input's range (quantize_layer[_N]_min/max)
                variable.assign(min(0.0, in_lo) if role.endswith("_min") else max(0.0, in_hi))
                count += 1
    return count


def save_qat_weights(qat_model, path, model_name: str, config: dict):
    """Save a :func:`quantize_model` model's weights, tagged as QAT (see module docstring)."""
    import h5py

    from isp_tf.models.weights import save_weights

    path = save_weights(qat_model, path, model_name, config)
    with h5py.File(path, "a") as f:
        f.attrs[QAT_ATTR] = 1
    return path


def load_qat_model(path, expected_name: str = None) -> Tuple[object, dict]:
    """Rebuild and load a QAT model saved by :func:`save_qat_weights`; ``(model, config)``."""
    from isp_tf.models import create_model
    from isp_tf.models.weights import load_weights_into, read_header

    name, config = read_header(path)
    if name is None:
        raise WeightsMismatchError(f"{path}: QAT weights carry no isp_tf model name")
    if expected_name and name != expected_name:
        raise WeightsMismatchError(f"{path} holds QAT weights of model {name!r}, not of {expected_name!r}")
    model = quantize_model(create_model(name, **(config or {})), name)
    load_weights_into(model, path, name)
    return model, dict(config or {})
