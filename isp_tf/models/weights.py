"""Weights files that know which model they belong to.

A weights file is an ordinary tf_keras HDF5 weights file (``model.save_weights``
layout, so ``model.load_weights(path)`` still works on it) with two extra
attributes on its root group:

* ``isp_tf_model``: the registry name (``"microisp"``, ``"pynet"``, ...);
* ``isp_tf_config``: the builder keyword arguments as JSON, so
  :func:`load_model` can rebuild exactly the model that was saved.
* ``isp_tf_version``: the package version that wrote it.

(tf_keras reads a file *named* ``*.weights.h5`` with its newer, incompatible
layout: use :func:`load_weights_into` for those, as for every isp_tf file.)

Loading matches the layers that hold weights in order (as Keras does) and
checks every shape first, so a file of another model or another config raises
:class:`~isp_tf.errors.WeightsMismatchError` naming both models instead of a
Keras traceback, and nothing is half-loaded.  Models built in
:func:`~isp_tf.layers.tiling_mode` can load the normal model's file: the
tiling state variables of :class:`~isp_tf.layers.GlobalStatsLayer` are skipped.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Optional, Tuple

import h5py
import numpy as np

from isp_tf import __version__
from isp_tf._keras import keras
from isp_tf.errors import MissingFileError, WeightsMismatchError
from isp_tf.layers.global_stats import GlobalStatsLayer
from isp_tf.utils import atomic_path

__all__ = ["FINAL_WEIGHTS", "LoadedModel", "find_weights", "is_qat_weights", "load_model", "open_weights_file",
           "load_weights_into", "read_header", "resolve_model", "resolve_weights", "save_weights"]

NAME_ATTR = "isp_tf_model"
CONFIG_ATTR = "isp_tf_config"
VERSION_ATTR = "isp_tf_version"
QAT_ATTR = "isp_tf_qat"  # set by isp_tf.export.qat.save_qat_weights
#: the weights a training run leaves in its folder
FINAL_WEIGHTS = "final.weights.h5"
_TILING_STATE = GlobalStatsLayer.TILING_VARIABLES


def _jsonable(value):
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _tiling_state_ids(model):
    """ids of the non-persistent variables tiling-mode GlobalStatsLayers add."""
    return {id(v) for layer in model.submodules if isinstance(layer, GlobalStatsLayer)
            for v in layer.tiling_variables()}


def _model_weights(model):
    """[(layer name, [variables])] for layers with persistent weights, in Keras's save order."""
    skip = _tiling_state_ids(model)
    out = []
    for layer in model.layers:
        variables = [v for v in layer.trainable_weights + layer.non_trainable_weights if id(v) not in skip]
        if variables:
            out.append((layer.name, variables))
    return out


def _decode(value):
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _file_weights(f):
    """[(layer name, [arrays])] stored in a Keras HDF5 weights file, in save order."""
    out = []
    for layer_name in (_decode(n) for n in f.attrs["layer_names"]):
        group = f[layer_name]
        names = [_decode(n) for n in group.attrs.get("weight_names", [])]
        names = [n for n in names if n.rsplit("/", 1)[-1].split(":")[0] not in _TILING_STATE]
        if names:
            out.append((layer_name, [np.asarray(group[n]) for n in names]))
    return out


def open_weights_file(path, missing: str = "", expected: str = ""):
    """Open an HDF5 weights file for reading, with isp_tf's errors.

    :class:`MissingFileError` when ``path`` is absent (``missing``: what to put
    there; default: how to get isp_tf weights), :class:`WeightsMismatchError`
    when it is not HDF5 (``expected`` says what was expected).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise MissingFileError(missing or (
            f"weights file {path} not found (train one with `python -m isp_tf.train` or pass "
            f"--weights PATH to an existing .h5 weights file)"))
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise WeightsMismatchError(f"{path} is not an HDF5 weights file ({e})"
                                   + (f"; expected {expected}" if expected else "")) from None


def read_header(path):
    """``(model name, config dict)`` stored in a weights file (``(None, None)`` for plain Keras files)."""
    with open_weights_file(path) as f:
        name = f.attrs.get(NAME_ATTR)
        config = f.attrs.get(CONFIG_ATTR)
        return (None if name is None else _decode(name),
                None if config is None else json.loads(_decode(config)))


def save_weights(model, path, model_name: str, config: dict):
    """Write ``model``'s weights to ``path`` (``.h5``) atomically, tagged with its name and config.

    ``config`` is what ``create_model(model_name, **config)`` needs to rebuild
    the model (tuples are stored as lists).
    """
    path = pathlib.Path(path)
    if path.suffix != ".h5":
        raise ValueError(f"weights file name must end in .h5, got {path}")
    if _tiling_state_ids(model):
        raise ValueError("save the normal model's weights, not a tiling_mode() model's")
    config_json = json.dumps(_jsonable(dict(config or {})), sort_keys=True)
    with atomic_path(path) as tmp:
        model.save_weights(tmp, save_format="h5")
        with h5py.File(tmp, "a") as f:
            f.attrs[NAME_ATTR] = str(model_name)
            f.attrs[CONFIG_ATTR] = config_json
            f.attrs[VERSION_ATTR] = __version__
    return path


def load_weights_into(model, path, expected_name: str = None):
    """Load ``path`` into ``model`` after checking that it belongs to it.

    Raises :class:`MissingFileError` if the file is absent and
    :class:`WeightsMismatchError` if it was saved from another model than
    ``expected_name`` or any layer's weight shapes differ.  Plain Keras HDF5
    weights files (without isp_tf attributes) are accepted when shapes match.
    """
    path = pathlib.Path(path)
    with open_weights_file(path) as f:
        name = f.attrs.get(NAME_ATTR)
        name = None if name is None else _decode(name)
        config = _decode(f.attrs.get(CONFIG_ATTR, "{}"))
        if "layer_names" not in f.attrs:
            raise WeightsMismatchError(f"{path} is not a Keras HDF5 weights file (no layer_names)")
        stored = _file_weights(f)
    source = f"model {name!r} {config}" if name else "an untagged model"
    target = f"model {expected_name!r} ({model.name!r})" if expected_name else f"model {model.name!r}"
    if expected_name and name and name != expected_name:
        raise WeightsMismatchError(f"{path} holds weights of {source}, not of {target}")

    wanted = _model_weights(model)
    if len(stored) != len(wanted):
        raise WeightsMismatchError(
            f"{path} holds weights of {source} with {len(stored)} weighted layers; "
            f"{target} has {len(wanted)}")
    pairs = []
    for (file_layer, arrays), (model_layer, variables) in zip(stored, wanted):
        file_shapes = [tuple(a.shape) for a in arrays]
        model_shapes = [tuple(v.shape) for v in variables]
        if file_shapes != model_shapes:
            raise WeightsMismatchError(
                f"{path} holds weights of {source} that do not fit {target}: layer "
                f"{file_layer!r} has shapes {file_shapes} in the file, {model_layer!r} has "
                f"{model_shapes} in the model")
        pairs.extend(zip(variables, arrays))
    keras.backend.batch_set_value(pairs)
    return model


def load_model(path):
    """Rebuild the model a :func:`save_weights` file was saved from and load it.

    Returns ``(model, name, config)``.
    """
    from isp_tf.models.registry import create_model

    name, config = read_header(path)
    if name is None:
        raise WeightsMismatchError(
            f"{os.fspath(path)} carries no isp_tf model name (a plain Keras weights file?): "
            f"build the model yourself and use load_weights_into(model, path)")
    model = create_model(name, **(config or {}))
    return load_weights_into(model, path, name), name, config


# --- the one weights resolver: which file, which model, built and loaded -------------
def find_weights(path) -> pathlib.Path:
    """A weights file, or the final weights of a run folder (``RUN_DIR/final.weights.h5``)."""
    path = pathlib.Path(path)
    if path.is_dir():
        if (path / FINAL_WEIGHTS).is_file():
            return path / FINAL_WEIGHTS
        raise MissingFileError(f"{path} holds no final weights ({FINAL_WEIGHTS}); has its training finished?")
    if not path.is_file():
        raise MissingFileError(f"weights file {path} not found (train one with `python -m isp_tf.train` "
                               f"or pass the path of an existing .h5 weights file)")
    return path


def is_qat_weights(path) -> bool:
    """Whether ``path`` holds quantization-aware weights (``isp_tf.export.qat.save_qat_weights``)."""
    try:
        with h5py.File(path, "r") as f:
            return bool(f.attrs.get(QAT_ATTR, 0))
    except OSError:
        return False


def resolve_weights(model: Optional[str] = None, weights=None) -> Tuple[str, pathlib.Path]:
    """``(model name, weights file)`` for a command's ``--model`` / ``--weights``.

    ``weights`` may be a file or a run folder; its stored model name must agree
    with ``model`` (which defaults to it).  Without ``weights`` the model's
    shipped weights (``ModelSpec.weights_path``) are used, and the registry's
    :data:`~isp_tf.models.registry.DEFAULT_MODEL` when neither is given.
    Raises :class:`UnknownModelError`, :class:`MissingFileError` (saying how to
    get the file) or :class:`WeightsMismatchError`.
    """
    from isp_tf.models.registry import DEFAULT_MODEL, get_spec

    if model is not None:
        model = get_spec(model).name  # unknown names fail before any file is read
    if weights is None:
        spec = get_spec(model or DEFAULT_MODEL)
        path = spec.weights_path
        if path is None:
            raise MissingFileError(
                f"model {spec.name!r} ships no default weights: pass --weights PATH (train them with "
                f"`python -m isp_tf.train --model {spec.name} ...`)")
        if not path.is_file():
            raise MissingFileError(
                f"the shipped weights of {spec.name} ({path}) are missing: reinstall isp_tf, train them "
                f"with `python -m isp_tf.train --model {spec.name} ...` (README, 'Reference weights'), "
                f"or pass --weights PATH")
        return spec.name, path
    path = find_weights(weights)
    stored, _ = read_header(path)
    if stored is not None and model is not None and stored.lower() != model:
        raise WeightsMismatchError(
            f"{path} holds weights of model {stored!r}, not of {model!r} "
            f"(drop --model or pass weights trained for {model})")
    name = model or (stored.lower() if stored else None)
    if name is None:
        raise WeightsMismatchError(
            f"{path} carries no isp_tf model name (a plain Keras weights file?): pass --model NAME")
    return get_spec(name).name, path


@dataclasses.dataclass
class LoadedModel:
    """A built model with its weights: what infer, export, evaluate and benchmarks run."""

    model: object
    name: str
    config: dict
    weights: Optional[str]
    qat: bool = False


def resolve_model(model: Optional[str] = None, weights=None, *, small: bool = False,
                  config: Optional[dict] = None, fresh: bool = False, seed: int = 0,
                  tiling: bool = False, input_shape=None) -> LoadedModel:
    """Resolve (:func:`resolve_weights`), build and load a model in one place.

    ``fresh=True`` (export, benchmarks): without ``weights`` a model that
    ships none (or ``small`` / ``config`` asked for another config than the
    shipped one) is built freshly initialised (``seed``) instead of failing.
    QAT weights files come back as the quantization-aware model (``qat=True``).
    ``tiling=True`` builds the tiling variant (:func:`isp_tf.layers.tiling_mode`);
    ``input_shape`` fixes the model's input size (not part of the stored config).
    """
    from isp_tf._keras import keras
    from isp_tf.errors import ExportError
    from isp_tf.layers.global_stats import tiling_mode
    from isp_tf.models.registry import DEFAULT_MODEL, create_model, get_spec, model_config

    spec = get_spec(model or (read_header(find_weights(weights))[0] if weights is not None else None)
                    or DEFAULT_MODEL)
    shape = {} if input_shape is None else {"input_shape": tuple(int(d) for d in input_shape)}
    if config and weights is not None:
        raise ExportError(f"config overrides {config} with --weights {weights}: the weights file "
                          "fixes the config")
    if weights is None and (small or config or spec.weights_path is None) and fresh:
        keras.utils.set_random_seed(seed)
        full = model_config(spec.name, small, **(config or {}))
        try:
            with tiling_mode(tiling):
                built = create_model(spec.name, **full, **shape)
        except (TypeError, ValueError) as exc:
            raise ExportError(f"{spec.name}: cannot build with config {full}: {exc}") from None
        return LoadedModel(built, spec.name, full, None)
    name, path = resolve_weights(spec.name, weights)
    if is_qat_weights(path):
        from isp_tf.export.qat import load_qat_model

        built, stored = load_qat_model(path, expected_name=name)
        return LoadedModel(built, name, stored, str(path), qat=True)
    _, stored = read_header(path)
    full = model_config(name, small) if stored is None else model_config(name, **stored)
    with tiling_mode(tiling):
        built = create_model(name, **full, **shape)
    load_weights_into(built, path, name)
    return LoadedModel(built, name, full, str(path))
