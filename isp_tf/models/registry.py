"""The one model registry: every command finds everything about a model here.

Each method lives in its own module that defines ``SPEC = ModelSpec(...)``.
Listing names does not import TensorFlow (so ``--help`` is fast); asking for a
spec imports the model module.  Adding a method means writing its module and
adding one line to ``_MODULES``.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Dict, Optional, Tuple

from isp_tf.errors import UnknownModelError

# name -> module that defines SPEC.  Order is the order shown to users.
_MODULES: Dict[str, str] = {
    "microisp": "isp_tf.models.microisp",
    "pynet": "isp_tf.models.pynet",
}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the rest of isp_tf needs to know about one method.

    Attributes:
      name: registry name (``--model``).
      build: ``build(**config) -> tf_keras.Model``; spatial dims of the input
        are ``None`` unless ``input_shape=(H, W, C)`` is passed in config.
      description: one line for ``--help``.
      input_kind: what the model eats.  ``"packed_bayer"``: (H/2, W/2, 4)
        float32 in [0, 1], black-subtracted, white-normalised, canonical RGGB
        order (``isp_tf.raw.pack_bayer``).
      output_kind: ``"srgb"``: (H, W, 3) float32 in [0, 1], sRGB-encoded.
      output_scale: output side / input side (2 for packed Bayer -> RGB).
      size_multiple: input H and W (in input pixels) must be multiples of this.
      default_config: keyword arguments of ``build`` for the published model.
      small_config: a tiny variant for tests and CI.
      recipe: file name of the training recipe in ``isp_tf/train/recipes``.
      default_weights: file name in ``isp_tf/weights`` shipped with the package, if any.
    """

    name: str
    build: Callable[..., Any]
    description: str
    input_kind: str = "packed_bayer"
    output_kind: str = "srgb"
    output_scale: int = 2
    size_multiple: int = 1
    default_config: Dict[str, Any] = dataclasses.field(default_factory=dict)
    small_config: Dict[str, Any] = dataclasses.field(default_factory=dict)
    recipe: Optional[str] = None
    default_weights: Optional[str] = None


def available_models() -> Tuple[str, ...]:
    """Names of the registered models (imports nothing)."""
    return tuple(_MODULES)


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``; :class:`UnknownModelError` lists the known names."""
    key = str(name).lower()
    if key not in _MODULES:
        raise UnknownModelError(
            f"unknown model {name!r}; known models: {', '.join(available_models())}")
    return importlib.import_module(_MODULES[key]).SPEC


def create_model(name: str, small: bool = False, **config):
    """Build model ``name`` (a tf_keras Model).

    ``small=True`` starts from the spec's tiny test config; ``config`` overrides
    individual keyword arguments of the builder.
    """
    spec = get_spec(name)
    kwargs = dict(spec.small_config if small else spec.default_config)
    kwargs.update(config)
    return spec.build(**kwargs)
