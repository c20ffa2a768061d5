"""The training loop behind ``python -m isp_tf.train``.

A custom loop rather than ``Model.fit``, for one property: **the data of step
``s`` is a function of ``(seed, s)`` only**.  The training stream is one
endless, seeded ``tf.data`` pipeline (stateless crops and augmentation, see
:mod:`isp_tf.data.pipeline`); a run that starts at step ``s`` skips the first
``s`` batches of it.  Checkpoints hold the model, the optimizer (its moments
and iteration count, which also drives the learning-rate schedule), the step
and the epoch, so a run killed at any moment and restarted with ``--resume``
continues from the last checkpoint and ends with the same weights as a run
that was never interrupted (bit for bit on CPU; ``--deterministic`` on GPU).
``Model.fit`` restarts epochs from their first batch, which would break this
for a kill in mid-epoch.  Nothing else carries state across steps: the model
draws no random numbers in training, the crops and flips are stateless
functions of ``(seed, step)``, and the learning rate is a function of the
optimizer's restored iteration count.

Ctrl-C (SIGINT) does not interrupt a step halfway: the first one lets the
current step finish, writes a checkpoint of that step and ends the run with
``KeyboardInterrupt`` (exit 130 through :mod:`isp_tf.cli`); ``--resume``
continues from it.  A second Ctrl-C stops at once (the last periodic
checkpoint stays).

Epochs are chunks of ``steps_per_epoch`` steps of that stream; after each
one the model is validated (PSNR, SSIM) and a checkpoint is written.

Distribution (``tf.distribute``): the batch size is global; each replica
gets its share (``experimental_distribute_dataset``), per-example losses are
averaged over the global batch (``tf.nn.compute_average_loss``) and the
optimizer sums the replicas' gradients.  Validation runs in the
cross-replica context on every worker (no collectives), the chief writes
TensorBoard logs, checkpoints and the final weights; other workers write
their checkpoints to a scratch folder that is removed at the end (as the
TensorFlow multi-worker guide prescribes).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import shutil
import signal
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from isp_tf._keras import keras, tf
from isp_tf.errors import IspTfError, MissingFileError, WeightsMismatchError
from isp_tf.losses import CompositeLoss, metrics
from isp_tf.models.weights import FINAL_WEIGHTS, find_weights
from isp_tf.train.recipe import Recipe, RecipeError

RUN_FILE = "run.json"
CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
HISTORY_FILE = "history.json"


@dataclasses.dataclass
class RunSettings:
    """Everything that defines a run; stored as ``run.json`` in the run folder.

    Attributes:
      model: registry name.
      model_config: keyword arguments of ``create_model`` (the small test
        config already merged when ``small``).
      data, val_data: ``"LAYOUT:PATH"`` specs; ``val_data`` defaults to the
        ``val`` split of ``data``.
      recipe: the resolved :class:`Recipe`.
      seed: seeds model initialisation and the data stream.
      init_from: weights file or run folder to start from (not for ``--resume``).
      qat: this run fine-tunes quantization-aware (``isp_tf.export.qat``).
      vgg: VGG-19 weights file or folder for the ``vgg`` loss term.
      deterministic: ``tf.config.experimental.enable_op_determinism()``.
      options: values of the model's own flags (``ModelSpec.options``, e.g.
        GenISP's ``detector_weights``), handed to ``ModelSpec.objective_factory``.
    """

    model: str
    model_config: Dict[str, Any]
    data: List[str]
    recipe: Recipe
    val_data: Optional[List[str]] = None
    seed: int = 0
    small: bool = False
    init_from: Optional[str] = None
    qat: bool = False
    vgg: Optional[str] = None
    deterministic: bool = False
    options: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        out = dataclasses.asdict(self)
        out["recipe"] = self.recipe.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "RunSettings":
        data = dict(data)
        data["recipe"] = Recipe.from_dict(data["recipe"])
        return cls(**data)


# --- run folder ------------------------------------------------------------------
def read_run(run_dir) -> RunSettings:
    path = pathlib.Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise MissingFileError(f"{run_dir} holds no training run ({RUN_FILE} is missing); "
                               f"start one without --resume")
    return RunSettings.from_dict(json.loads(path.read_text()))


def write_json(path, data) -> None:
    from isp_tf.utils import atomic_write

    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")


# --- building blocks ------------------------------------------------------------------
def make_strategy(name: str = "default"):
    """``default`` (one device), ``mirrored`` (all local GPUs, else all logical
    CPUs) or ``multiworker`` (``MultiWorkerMirroredStrategy`` from ``TF_CONFIG``).

    Create it before any other TensorFlow work: the multi-worker strategy
    starts the collective runtime and cannot do so once it is initialised.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multiworker":
        import os

        if "TF_CONFIG" not in os.environ:
            raise RecipeError("--strategy multiworker needs the TF_CONFIG environment variable "
                              "(cluster and this worker's task); see the README")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise RecipeError(f"unknown strategy {name!r}; choose default, mirrored or multiworker")


def _worker_role(strategy):
    """(is_chief, task_id) of this process."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    task_id = getattr(resolver, "task_id", 0) or 0
    if task_type in (None, "chief"):
        return True, task_id
    has_chief = "chief" in (resolver.cluster_spec().as_dict() if resolver else {})
    return (task_type == "worker" and task_id == 0 and not has_chief), task_id


def make_learning_rate(recipe: Recipe):
    base = recipe.learning_rate
    sched = dict(recipe.lr_schedule)
    name = sched.pop("name")
    if name == "constant":
        return base
    if name == "cosine":
        warmup = int(sched.get("warmup_steps", 0))
        decay = max(1, recipe.total_steps - warmup)
        if warmup:
            return keras.optimizers.schedules.CosineDecay(
                base * 1e-2, decay, alpha=float(sched.get("alpha", 0.0)),
                warmup_target=base, warmup_steps=warmup)
        return keras.optimizers.schedules.CosineDecay(base, decay, alpha=float(sched.get("alpha", 0.0)))
    if name == "piecewise":
        boundaries = [int(b) for b in sched["boundaries"]]
        factors = [float(f) for f in sched["factors"]]
        if len(factors) != len(boundaries) + 1:
            raise RecipeError("lr_schedule piecewise needs one more factor than boundaries")
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, [base * f for f in factors])
    raise RecipeError(f"unknown lr_schedule {name!r}")


def make_optimizer(recipe: Recipe):
    options = dict(recipe.optimizer)
    name = options.pop("name")
    options.pop("learning_rate")
    cls = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
           "sgd": keras.optimizers.SGD}[name]
    try:
        return cls(learning_rate=make_learning_rate(recipe), **options)
    except TypeError as exc:
        raise RecipeError(f"optimizer {name}: {exc}") from None


# --- the loop --------------------------------------------------------------------------
class Callback:
    """Hooks of :func:`train` (for tests and programmatic use); all optional."""

    def on_step_end(self, step: int, logs: Dict[str, float]) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: Dict[str, float]) -> None:
        pass


@dataclasses.dataclass
class TrainResult:
    run_dir: pathlib.Path
    weights: Optional[pathlib.Path]
    step: int
    history: List[Dict[str, float]]


def _stage(settings: RunSettings):
    """The :class:`~isp_tf.models.registry.Stage` the run trains (``None``: single-stage method)."""
    from isp_tf.models import get_spec

    if settings.recipe.stage is None:
        return None
    return get_spec(settings.model).stage(settings.recipe.stage)


def stage_config(settings: RunSettings) -> Dict[str, Any]:
    """Builder arguments of the run's model: its config plus its stage's."""
    config = dict(settings.model_config)
    stage = _stage(settings)
    if stage is not None:
        config.update(stage.config)
    return config


def _build_model(settings: RunSettings):
    from isp_tf.models import create_model

    return create_model(settings.model, **stage_config(settings))


def reinitialize_kernels(model, initializer: str, seed: int = 0) -> int:
    """Re-draw every convolution / dense kernel of ``model`` (nested layers included)
    from the Keras ``initializer``; biases and PReLU slopes are kept.  Returns the count.

    MicroISP's published N(0, 1e-3) initialisation does not train from scratch
    with gradient descent: the signal through 14 stacked 4-channel convolutions
    shrinks by ~1e-2 per layer and the early layers' gradients underflow, so
    the network only learns its output biases (a flat grey image).  Recipes
    therefore name a variance-scaling initializer for runs from scratch.
    """
    config = keras.initializers.serialize(keras.initializers.get(initializer))
    count = 0
    for layer in model.submodules:
        kernel = getattr(layer, "kernel", None)
        if isinstance(layer, keras.layers.Layer) and isinstance(kernel, tf.Variable):
            # one seeded initializer per kernel: an unseeded Keras initializer
            # called twice returns the same values (every branch would start equal)
            config["config"]["seed"] = int(seed) * 100_003 + count
            kernel.assign(keras.initializers.deserialize(config)(kernel.shape, dtype=kernel.dtype))
            count += 1
    return count


def _load_initial_weights(model, settings: RunSettings) -> str:
    """Start from ``init_from``: same model -> all weights; the previous stage -> its ``transfer``."""
    from isp_tf.models import weights as model_weights

    path = find_weights(settings.init_from)
    stage = _stage(settings)
    if stage is not None and stage.transfer is not None:
        source, name, config = model_weights.load_model(path)
        if name != settings.model:
            raise WeightsMismatchError(f"{path} holds weights of model {name!r}, not of model {settings.model!r}")
        copied = stage.transfer(source, model)
        return f"{len(copied)} layers from {path} ({config})"
    model_weights.load_weights_into(model, path, settings.model)
    return f"weights of {path}"


def _prepare_run_dir(settings: RunSettings, run_dir: pathlib.Path, resume: bool, is_chief: bool) -> None:
    """Check a resumed run's settings, or create the folder of a new one (``run.json``)."""
    if resume:
        stored = read_run(run_dir)
        if stored.to_dict() != settings.to_dict():
            raise RecipeError(f"{run_dir}: the settings differ from those the run was started with")
    elif is_chief:
        if (run_dir / CHECKPOINT_DIR).exists() or (run_dir / FINAL_WEIGHTS).exists():
            raise RecipeError(f"{run_dir} already holds a training run; pass --resume to continue it "
                              f"or choose another --out")
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / RUN_FILE, settings.to_dict())


@dataclasses.dataclass
class _State:
    """What a checkpoint holds, and what starting the run found out."""

    model: Any
    optimizer: Any
    loss_fn: Any
    checkpoint: Any
    manager: Any
    step: Any
    epoch: Any
    notes: List[str]


def _build_state(settings: RunSettings, strategy, ckpt_dir: pathlib.Path, latest, dataset_fn) -> _State:
    """Model (initialised, or QAT-wrapped), optimizer, loss and checkpoint, restored from ``latest``."""
    recipe = settings.recipe
    notes = []
    with strategy.scope():
        model = _build_model(settings)
        init_note = None
        if settings.init_from and not latest:
            init_note = _load_initial_weights(model, settings)
        elif recipe.kernel_initializer and not latest:
            count = reinitialize_kernels(model, recipe.kernel_initializer, settings.seed)
            init_note = f"{count} kernels drawn from {recipe.kernel_initializer}"
        if settings.qat:
            from isp_tf.export.qat import calibrate_ranges, quantize_model

            float_model, model = model, quantize_model(model, settings.model)
            if not latest:  # start the fake-quant ranges from real activations, not tfmot's [-6, 6]
                calibration = dataset_fn(settings.data, split="train", patch_size=recipe.patch_size,
                                         batch_size=4, seed=settings.seed, cache=False, repeat=False,
                                         **_data_kwargs(settings))
                count = calibrate_ranges(model, float_model, (x for x, _ in calibration.take(8)))
                init_note = f"{init_note or 'initial weights'}; {count} activation ranges calibrated"
        optimizer = make_optimizer(recipe)
        optimizer.build(model.trainable_variables)
        loss_fn = image_loss(recipe, settings.vgg)
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step_var, epoch=epoch_var)
    manager = tf.train.CheckpointManager(checkpoint, str(ckpt_dir), max_to_keep=3)
    if latest:  # every worker restores the chief's checkpoint
        checkpoint.restore(latest).assert_existing_objects_matched()
        notes.append(f"resumed at step {int(step_var.numpy())} from {latest}")
    if init_note:
        notes.append(f"initialisation: {init_note}")
    return _State(model, optimizer, loss_fn, checkpoint, manager, step_var, epoch_var, notes)


def image_loss(recipe: Recipe, vgg=None):
    """The :class:`CompositeLoss` of the recipe's standard image terms (``None`` if it names none)."""
    from isp_tf.losses import LOSS_TERMS

    weights = {k: w for k, w in recipe.loss.items() if k in LOSS_TERMS}
    return CompositeLoss(weights, vgg=vgg) if weights else None


def _data_kwargs(settings: RunSettings) -> Dict[str, Any]:
    """What the data pipeline needs from the model's contract: the kind of its image input
    (and, for a spec with its own ``dataset`` and ``options``, the options: ParamISP's ``--camera``)."""
    from isp_tf.models import get_spec

    spec = get_spec(settings.model)
    if spec.dataset is not None and spec.options:
        return {"input_kind": spec.input_kind, "options": dict(settings.options)}
    return {"input_kind": spec.input_kind}


def _datasets(settings: RunSettings, dataset_fn, start_step: int):
    """The training stream (skipping the steps already done) and the validation batches."""
    recipe = settings.recipe
    stage = _stage(settings)
    target = stage.target if stage is not None and stage.target is not None else None

    def stage_target(x, y):
        return x, target(y)

    kwargs = _data_kwargs(settings)
    train_ds = dataset_fn(settings.data, split="train", patch_size=recipe.patch_size,
                          batch_size=recipe.batch_size, seed=settings.seed, augment=recipe.augment, **kwargs)
    val_ds = dataset_fn(settings.val_data or settings.data, split="val", patch_size=recipe.patch_size,
                        batch_size=recipe.batch_size, seed=settings.seed, **kwargs)
    if target is not None:
        train_ds, val_ds = train_ds.map(stage_target), val_ds.map(stage_target)
    return train_ds.skip(start_step), val_ds.take(recipe.validation_steps)


def _step_functions(state: _State, strategy, recipe: Recipe, objective=None, validation=None):
    """``train_step(iterator) -> logs`` (distributed) and ``val_step(x, y) -> per-image metrics``.

    ``objective``: the spec's own training loss (``ModelSpec.objective``), else
    the recipe's image terms of ``model(x)`` against ``y``.  ``validation``:
    the spec's validation metrics (``ModelSpec.validation``), else PSNR/SSIM
    (and the training PSNR log)."""
    model, optimizer, loss_fn = state.model, state.optimizer, state.loss_fn
    batch_size, weights = recipe.batch_size, recipe.loss

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            if objective is not None:
                terms, pred = objective(model, x, y, loss_fn)
            else:
                pred = model(x, training=True)
                terms = loss_fn.terms(y, pred)
            per_example = tf.add_n([weights[k] * v for k, v in terms.items()])
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=batch_size)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        logs = {k: tf.nn.compute_average_loss(v, global_batch_size=batch_size) for k, v in terms.items()}
        logs["loss"] = loss
        if validation is None:
            logs["psnr"] = tf.nn.compute_average_loss(metrics.psnr(y, pred), global_batch_size=batch_size)
        return logs

    @tf.function
    def train_step(it):
        x, y = next(it)
        logs = strategy.run(replica_step, args=(x, y))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in logs.items()}

    @tf.function
    def val_step(x, y):
        if validation is not None:
            return validation(model, x, y, objective)
        pred = model(x, training=False)
        out = {"psnr": metrics.psnr(y, pred)}
        if min(y.shape[1], y.shape[2]) >= 11:
            out["ssim"] = metrics.ssim(y, pred)
        return out, pred

    return train_step, val_step


class _Logs:
    """TensorBoard writers (chief only): scalars, validation samples, ``history.json``."""

    SAMPLES = 3  # validation images shown in TensorBoard

    def __init__(self, run_dir: pathlib.Path, is_chief: bool):
        self.run_dir, self.is_chief = run_dir, is_chief
        if is_chief:
            self.train = tf.summary.create_file_writer(str(run_dir / LOG_DIR / "train"))
            self.val = tf.summary.create_file_writer(str(run_dir / LOG_DIR / "validation"))
        else:
            self.train = self.val = tf.summary.create_noop_writer()

    def scalars(self, writer, step: int, values: Dict[str, float], strip: str = "") -> None:
        with writer.as_default(step=step):
            for k, v in values.items():
                tf.summary.scalar(k[len(strip):] if strip and k.startswith(strip) else k, v)

    def samples(self, step: int, target, pred) -> None:
        """Prediction beside target for the first validation images (both clipped to [0, 1])."""
        if target is None or pred is None:
            return
        if not tf.is_tensor(target) or target.shape != pred.shape:  # not an image (detection targets...)
            n = min(self.SAMPLES, int(pred.shape[0]))
            with self.val.as_default(step=step):
                tf.summary.image("samples/prediction", tf.clip_by_value(pred[:n], 0.0, 1.0), max_outputs=n)
            return
        n = min(self.SAMPLES, int(target.shape[0]))
        pair = tf.concat([tf.clip_by_value(pred[:n], 0.0, 1.0), tf.clip_by_value(target[:n], 0.0, 1.0)], axis=2)
        with self.val.as_default(step=step):
            tf.summary.image("samples/prediction_then_target", pair, max_outputs=n)

    def history(self, history) -> None:
        if self.is_chief:
            write_json(self.run_dir / HISTORY_FILE, history)

    def flush(self) -> None:
        self.train.flush()
        self.val.flush()


def _validate(val_ds, val_step):
    """Mean metrics over the validation batches, and the first batch's (target, prediction)."""
    sums, count, sample = {}, 0, (None, None)
    for x, y in val_ds:
        values, pred = val_step(x, y)
        if sample[0] is None:
            sample = (y, pred)
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + float(tf.reduce_sum(v))
        count += int(tf.nest.flatten(x)[0].shape[0])
    return {f"val_{k}": v / max(count, 1) for k, v in sums.items()}, sample


def _save_final(settings: RunSettings, model, run_dir: pathlib.Path) -> pathlib.Path:
    """``final.weights.h5``, tagged with the model name and the stage's config."""
    from isp_tf.models import weights as model_weights

    config = stage_config(settings)
    path = run_dir / FINAL_WEIGHTS
    if settings.qat:  # tagged so export converts it to int8 (isp_tf.export.qat.load_qat_model)
        from isp_tf.export.qat import save_qat_weights

        save_qat_weights(model, path, settings.model, config)
    else:
        model_weights.save_weights(model, path, settings.model, config)
    return path


class _Interrupt:
    """SIGINT as a flag read between steps (see the module docstring); a second Ctrl-C raises at once."""

    def __init__(self):
        self.requested = False

    def _handler(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the next Ctrl-C is immediate

    @contextlib.contextmanager
    def installed(self):
        """Catch SIGINT while the loop runs (main thread, default handler only; else a no-op)."""
        if (threading.current_thread() is not threading.main_thread()
                or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
            yield self
            return
        signal.signal(signal.SIGINT, self._handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def train(settings: RunSettings, run_dir, *, strategy=None, resume: bool = False,
          callbacks: Sequence[Callback] = (), verbose: int = 1, time_limit: Optional[float] = None,
          dataset_fn: Optional[Callable[..., Any]] = None) -> TrainResult:
    """Train as ``settings`` say, writing into ``run_dir``; see the module docstring.

    Args:
      strategy: a ``tf.distribute`` strategy (default: the default strategy).
      resume: continue the run in ``run_dir`` from its latest checkpoint; the
        stored ``run.json`` must equal ``settings`` (use :func:`read_run`).
      callbacks: :class:`Callback` objects.
      verbose: 1 shows a Keras progress bar per epoch (chief only), 0 is quiet.
      time_limit: seconds; once exceeded the run stops after the current step,
        validates, checkpoints and saves its final weights (``--resume`` can
        continue it).  Not with multi-worker training (workers would disagree).
      dataset_fn: replaces :func:`isp_tf.data.build_dataset` (same signature);
        default ``ModelSpec.dataset`` if the spec has one, else ``build_dataset``.
    """
    run_dir = pathlib.Path(run_dir)
    strategy = strategy or tf.distribute.get_strategy()
    is_chief, task_id = _worker_role(strategy)
    if time_limit is not None and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        raise RecipeError("--time-limit cannot be used with --strategy multiworker")
    deadline = None if time_limit is None else time.time() + float(time_limit)
    recipe = settings.recipe
    say = (lambda *a: print(*a, flush=True)) if (verbose and is_chief) else (lambda *a: None)

    ckpt_dir = run_dir / CHECKPOINT_DIR if is_chief else run_dir / f".worker-{task_id}" / CHECKPOINT_DIR
    _prepare_run_dir(settings, run_dir, resume, is_chief)
    if settings.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(settings.seed)
    from isp_tf.models import get_spec

    spec = get_spec(settings.model)
    if dataset_fn is None:
        dataset_fn = spec.dataset
    if dataset_fn is None:
        from isp_tf.data import build_dataset as dataset_fn
    replicas = strategy.num_replicas_in_sync
    if recipe.batch_size % replicas:
        raise RecipeError(f"batch size {recipe.batch_size} cannot be split over {replicas} replicas")

    latest = tf.train.latest_checkpoint(str(run_dir / CHECKPOINT_DIR)) if resume else None
    state = _build_state(settings, strategy, ckpt_dir, latest, dataset_fn)
    if resume and not latest:
        say(f"{run_dir}: no checkpoint yet, starting from step 0")
    for note in state.notes:
        say(note)
    start_step = int(state.step.numpy())
    total = recipe.total_steps
    train_ds, val_ds = _datasets(settings, dataset_fn, start_step)
    iterator = iter(strategy.experimental_distribute_dataset(train_ds))
    objective = spec.objective
    if spec.objective_factory is not None:
        with strategy.scope():
            objective = spec.objective_factory(dict(settings.options))
    train_step, val_step = _step_functions(state, strategy, recipe, objective, spec.validation)
    logs_out = _Logs(run_dir, is_chief)
    schedule = make_learning_rate(recipe)

    def current_lr(step):
        return float(schedule(step) if callable(schedule) else schedule)

    stage_name = "" if recipe.stage is None else f" stage {recipe.stage}"
    say(f"{settings.model}{stage_name}{' (QAT)' if settings.qat else ''}: "
        f"{state.model.count_params():,} parameters, {replicas} replica(s), batch {recipe.batch_size}, "
        f"patch {recipe.patch_size}, loss {recipe.loss}, steps {start_step}..{total}")

    step = start_step
    steps_per_epoch = recipe.steps_per_epoch
    ckpt_every = recipe.checkpoint_every or steps_per_epoch
    first_epoch = start_step // steps_per_epoch
    history: List[Dict[str, float]] = []
    if resume and (run_dir / HISTORY_FILE).is_file():  # epochs finished before the interruption
        history = [h for h in json.loads((run_dir / HISTORY_FILE).read_text()) if h["epoch"] <= first_epoch]
    if start_step == 0:  # the starting point, so the first epoch's gain is visible
        val, sample = _validate(val_ds, val_step)
        history = [{"epoch": 0, "step": 0, **val}]
        logs_out.history(history)
        logs_out.scalars(logs_out.val, 0, val, strip="val_")
        logs_out.samples(0, *sample)
        say("before training: " + "  ".join(f"{k} {v:.4f}" for k, v in val.items()))
    stopped = False
    interrupt = _Interrupt()

    def stop_if_interrupted():
        """After a Ctrl-C: checkpoint the last finished step and stop (exit 130 through the CLI)."""
        if not interrupt.requested:
            return
        state.epoch.assign(step // steps_per_epoch)
        latest_saved = state.manager.latest_checkpoint
        if latest_saved is None or not latest_saved.endswith(f"-{step}"):
            state.manager.save(checkpoint_number=step)
        logs_out.history(history)
        say(f"\ninterrupted: checkpoint of step {step} of {total} written to {ckpt_dir}")
        raise KeyboardInterrupt

    with contextlib.ExitStack() as stack:
        stack.enter_context(interrupt.installed())
        stack.callback(logs_out.flush)
        for epoch in range(first_epoch, recipe.epochs):
            say(f"Epoch {epoch + 1}/{recipe.epochs}")
            bar = keras.utils.Progbar(steps_per_epoch, verbose=1 if (verbose and is_chief) else 0,
                                      stateful_metrics=["lr"])
            if step > epoch * steps_per_epoch:
                bar.update(step - epoch * steps_per_epoch)
            t0 = time.time()
            sums, n = {}, 0
            while step < (epoch + 1) * steps_per_epoch:
                stop_if_interrupted()
                logs = {k: float(v) for k, v in train_step(iterator).items()}
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + v
                n += 1
                if not np.isfinite(logs["loss"]):
                    raise IspTfError(f"the loss became {logs['loss']} at step {step + 1}; "
                                     f"lower the learning rate (--lr)")
                step += 1
                state.step.assign(step)
                logs["lr"] = current_lr(step)
                if step % recipe.log_every == 0 or step == total:
                    logs_out.scalars(logs_out.train, step, logs)
                if step % ckpt_every == 0 and step < total:
                    state.epoch.assign(step // steps_per_epoch)
                    state.manager.save(checkpoint_number=step)
                bar.update(step - epoch * steps_per_epoch, [(k, v) for k, v in logs.items()])
                for cb in callbacks:
                    cb.on_step_end(step, logs)
                if deadline is not None and time.time() > deadline and step < total:
                    stopped = True
                    break
            val, sample = _validate(val_ds, val_step)
            epoch_logs = {"epoch": epoch + 1, "step": step, "seconds": time.time() - t0,
                          **{k: v / max(n, 1) for k, v in sums.items()}, "lr": current_lr(step), **val}
            history.append(epoch_logs)
            logs_out.scalars(logs_out.val, step, val, strip="val_")
            logs_out.samples(step, *sample)
            state.epoch.assign(step // steps_per_epoch)
            latest_saved = state.manager.latest_checkpoint
            if latest_saved is None or not latest_saved.endswith(f"-{step}"):
                state.manager.save(checkpoint_number=step)
            logs_out.history(history)
            say("  " + "  ".join(f"{k} {v:.4f}" for k, v in val.items()))
            for cb in callbacks:
                cb.on_epoch_end(epoch + 1, epoch_logs)
            if stopped:
                epoch_logs["stopped_by_time_limit"] = True
                logs_out.history(history)
                say(f"time limit reached: stopped at step {step} of {total} (continue with --resume)")
                break
            stop_if_interrupted()

    weights_path = None
    if is_chief:
        weights_path = _save_final(settings, state.model, run_dir)
        say(f"saved {weights_path}")
    else:
        shutil.rmtree(run_dir / f".worker-{task_id}", ignore_errors=True)
    return TrainResult(run_dir=run_dir, weights=weights_path, step=step, history=history)
