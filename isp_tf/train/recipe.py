"""Training recipes: one JSON file per method, in its folder (``ModelSpec.recipe_path``).

A recipe holds everything a run needs besides the data: optimizer, learning
rate schedule, batch and patch size, loss terms, epochs and steps.  Methods
trained in stages (``ModelSpec.stages``, e.g. PyNET's levels) keep the shared
values at the top and the per-stage ones under ``"stages"``.  Command-line flags override single values
(:func:`resolve_recipe`); the resolved recipe is stored in the run folder so
``--resume`` continues with exactly the same settings.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import pathlib
from typing import Any, Dict, Mapping, Optional

from isp_tf.errors import IspTfError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "piecewise")


class RecipeError(IspTfError, ValueError):
    """A recipe file or a command-line override is invalid; the message names the field."""


@dataclasses.dataclass
class Recipe:
    """A fully resolved recipe (one stage, overrides applied).

    Attributes:
      model: registry name.
      optimizer: ``{"name": "adam"|"adamw"|"sgd", "learning_rate": float, ...}``;
        other keys go to the Keras optimizer.
      lr_schedule: ``{"name": "constant"}``, ``{"name": "cosine", "warmup_steps",
        "alpha"}`` (decays over the whole run) or ``{"name": "piecewise",
        "boundaries": [steps], "factors": [...]}`` (factors multiply the base rate).
      batch_size: global batch (split over replicas under tf.distribute).
      patch_size: side of the RGB target patch; the packed input is half of it.
      epochs, steps_per_epoch: the run lasts ``epochs * steps_per_epoch`` steps.
      loss: term -> weight, see :class:`isp_tf.losses.CompositeLoss`.
      augment: random flips / 90-degree rotations of training patches.
      validation_steps: at most this many validation batches each epoch.
      checkpoint_every: steps between checkpoints (``None``: once per epoch).
      log_every: steps between TensorBoard scalars.
      stage: the stage (``ModelSpec.stages``) this recipe trains, else ``None``.
      qat: overrides used by ``--qat`` fine-tuning (epochs, steps, learning rate...).
      kernel_initializer: Keras initializer name; a run that starts from scratch
        re-initialises every convolution kernel with it (``None``: keep the
        model's own initialisation).
    """

    model: str
    optimizer: Dict[str, Any]
    lr_schedule: Dict[str, Any]
    batch_size: int
    patch_size: int
    epochs: int
    steps_per_epoch: int
    loss: Dict[str, float]
    augment: bool = True
    validation_steps: int = 8
    checkpoint_every: Optional[int] = None
    log_every: int = 10
    stage: Optional[str] = None
    qat: Dict[str, Any] = dataclasses.field(default_factory=dict)
    kernel_initializer: Optional[str] = None
    about: str = ""

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def learning_rate(self) -> float:
        return float(self.optimizer["learning_rate"])

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Recipe":
        names = {f.name for f in dataclasses.fields(cls)}
        data = dict(data)
        if "level" in data and "stage" not in data:  # run.json files written before stages
            level = data.pop("level")
            data["stage"] = None if level is None else str(level)
        unknown = sorted(set(data) - names)
        if unknown:
            raise RecipeError(f"unknown recipe field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        try:
            recipe = cls(**data)
        except TypeError as exc:
            raise RecipeError(f"incomplete recipe: {exc}") from None
        recipe.validate()
        return recipe

    def validate(self) -> None:
        def positive_int(name, value):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise RecipeError(f"{name} must be a positive integer, got {value!r}")

        for name in ("batch_size", "patch_size", "epochs", "steps_per_epoch", "validation_steps", "log_every"):
            positive_int(name, getattr(self, name))
        if self.checkpoint_every is not None:
            positive_int("checkpoint_every", self.checkpoint_every)
        if self.patch_size % 2:
            raise RecipeError(f"patch_size is the RGB patch side and must be even, got {self.patch_size}")
        if self.optimizer.get("name") not in OPTIMIZERS:
            raise RecipeError(f"optimizer.name must be one of {', '.join(OPTIMIZERS)}, "
                              f"got {self.optimizer.get('name')!r}")
        lr = self.optimizer.get("learning_rate")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise RecipeError(f"optimizer.learning_rate must be a positive number, got {lr!r}")
        if self.lr_schedule.get("name") not in SCHEDULES:
            raise RecipeError(f"lr_schedule.name must be one of {', '.join(SCHEDULES)}, "
                              f"got {self.lr_schedule.get('name')!r}")
        if self.kernel_initializer is not None:
            from isp_tf._keras import keras

            try:
                keras.initializers.get(self.kernel_initializer)
            except ValueError:
                raise RecipeError(f"kernel_initializer {self.kernel_initializer!r} is not a Keras initializer") from None
        from isp_tf.losses import LOSS_TERMS  # imports TensorFlow: only when a recipe is checked
        from isp_tf.models import get_spec

        known = tuple(LOSS_TERMS) + tuple(get_spec(self.model).loss_terms)
        if not self.loss or any(k not in known for k in self.loss):
            raise RecipeError(f"loss must map terms out of {', '.join(known)} to weights, got {self.loss!r}")


def recipe_path(model: str) -> pathlib.Path:
    """The shipped recipe file of ``model`` (``ModelSpec.recipe_path``)."""
    from isp_tf.models import get_spec

    path = get_spec(model).recipe_path
    if path is None:
        raise RecipeError(f"model {model!r} has no training recipe; pass --recipe FILE")
    return path


def read_recipe_file(path) -> Dict[str, Any]:
    path = pathlib.Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RecipeError(f"recipe file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecipeError(f"recipe file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"recipe file {path} must hold a JSON object, not a {type(data).__name__}")
    return data


def resolve_recipe(model: str, *, stage=None, path=None,
                   overrides: Optional[Mapping[str, Any]] = None) -> Recipe:
    """Read ``model``'s recipe (or ``path``), pick ``stage`` and apply ``overrides``.

    A method with stages (``ModelSpec.stages``) needs ``stage``; its recipe
    holds one entry per stage under ``"stages"``.  ``overrides`` keys are
    Recipe fields (``epochs``, ``batch_size``...) plus ``learning_rate``;
    ``None`` values are ignored (flags not given).
    """
    from isp_tf.models import get_spec

    spec = get_spec(model)
    data = copy.deepcopy(read_recipe_file(path or recipe_path(model)))
    stages = data.pop("stages", None)
    if data.get("model", model) != model:
        raise RecipeError(f"recipe {path} is for model {data['model']!r}, not {model!r}")
    data["model"] = model
    names = [s.name for s in spec.stages]
    if names:
        if stage is None:
            raise RecipeError(f"{model} is trained in stages: pass --stage ({', '.join(names)})")
        if str(stage) not in names:
            raise RecipeError(f"{model} has no stage {stage}; stages: {', '.join(names)}")
        if not stages or str(stage) not in stages:
            raise RecipeError(f"recipe {path or recipe_path(model)} has no entry for stage {stage} "
                              f"under \"stages\"")
        data.update(copy.deepcopy(stages[str(stage)]))
        data["stage"] = str(stage)
    elif stage is not None:
        raise RecipeError(f"{model} is not trained in stages; drop --stage")
    elif stages is not None:
        raise RecipeError(f"recipe {path} has \"stages\" but {model} declares none")
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "learning_rate":
            data.setdefault("optimizer", {})["learning_rate"] = value
        else:
            data[key] = value
    try:
        return Recipe.from_dict(data)
    except RecipeError as exc:
        if path is None:
            raise
        raise RecipeError(f"recipe file {path}: {exc}") from None


def qat_recipe(recipe: Recipe, overrides: Optional[Mapping[str, Any]] = None) -> Recipe:
    """The recipe of ``--qat`` fine-tuning: ``recipe`` with its ``qat`` section applied."""
    data = recipe.to_dict()
    qat = dict(data.pop("qat") or {})
    if "learning_rate" in qat:
        data["optimizer"] = dict(data["optimizer"], learning_rate=qat.pop("learning_rate"))
    data.update(qat)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "learning_rate":
            data["optimizer"]["learning_rate"] = value
        else:
            data[key] = value
    return Recipe.from_dict(data)
