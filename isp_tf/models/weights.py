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

import json
import os
import pathlib

import h5py
import numpy as np

from isp_tf import __version__
from isp_tf._keras import keras
from isp_tf.errors import MissingFileError, WeightsMismatchError
from isp_tf.layers.global_stats import GlobalStatsLayer
from isp_tf.utils import atomic_path

__all__ = ["load_model", "load_weights_into", "read_header", "save_weights"]

NAME_ATTR = "isp_tf_model"
CONFIG_ATTR = "isp_tf_config"
VERSION_ATTR = "isp_tf_version"
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


def _open(path):
    path = pathlib.Path(path)
    if not path.is_file():
        raise MissingFileError(
            f"weights file {path} not found (train one with `python -m isp_tf.train` or pass "
            f"--weights PATH to an existing .h5 weights file)")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise WeightsMismatchError(f"{path} is not an HDF5 weights file: {e}") from None


def read_header(path):
    """``(model name, config dict)`` stored in a weights file (``(None, None)`` for plain Keras files)."""
    with _open(path) as f:
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
    with _open(path) as f:
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
