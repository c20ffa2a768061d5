"""The one model registry: every command finds everything about a model here.

Each method is one folder ``isp_tf/models/<name>/`` whose ``__init__.py``
defines ``SPEC = ModelSpec(...)``: the model's whole contract.  Listing names
does not import TensorFlow (so ``--help`` is fast); asking for a spec imports
the model's package.  Adding a method means writing its folder and adding one
line to ``_MODULES`` (see ``docs/ADDING_A_METHOD.md``).

What the commands read from a spec:

* ``train``: :attr:`ModelSpec.recipe_path`, :attr:`ModelSpec.stages` (each
  stage's builder overrides, target transform, run sub-folder, and whether it
  starts from the previous stage), the forward direction's input kind (handed
  to :func:`isp_tf.data.build_dataset`).
* ``infer``: the default weights (:attr:`ModelSpec.weights_path`), the input
  and output ports of each direction (what the renderer feeds and gets back),
  ``size_multiple`` and ``output_scale`` (tiling, padding).
* ``export``: the ports (shapes, dtypes and normalisation written into the
  JSON beside the ``.tflite``), :attr:`ModelSpec.variants` (e.g. MicroISP's
  merged branches), :attr:`ModelSpec.qat_configs` (how tfmot quantises the
  model's own layers) and :attr:`ModelSpec.cpu_ops` (ops NNAPI 1.2 is known to
  refuse at a precision, which the contract tests expect by name).
* ``benchmarks``: the directions, variants and presets.
"""
from __future__ import annotations

import dataclasses
import importlib
import pathlib
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from isp_tf.errors import UnknownModelError

# name -> package that defines SPEC.  Order is the order shown to users.
_MODULES: Dict[str, str] = {
    "microisp": "isp_tf.models.microisp",
    "pynet": "isp_tf.models.pynet",
    "invisp": "isp_tf.models.invisp",
    "genisp": "isp_tf.models.genisp",
    "paramisp": "isp_tf.models.paramisp",
}

#: what ``python -m isp_tf.infer`` renders with when neither --model nor --weights names one
DEFAULT_MODEL = "microisp"

#: the kinds of tensors a model port may carry
PORT_KINDS = {
    "packed_bayer": "(h, w, 4) float32, channels [R, G1, G2, B] of an RGGB quad "
                    "(isp_tf.raw.pack_bayer): (raw - black) / (white - black), in [0, 1]",
    "bayer": "(H, W, 1) float32 RGGB mosaic, (raw - black) / (white - black), in [0, 1]",
    "linear_rgb": "(H, W, 3) float32 camera RGB, demosaiced and white balanced, linear, in [0, 1]",
    "srgb": "(H, W, 3) float32 sRGB-encoded [R, G, B] in [0, 1]",
    "vector": "(n,) float32 per-frame values (e.g. camera parameters), the same for every tile",
}


@dataclasses.dataclass(frozen=True)
class Port:
    """One input or output of a model direction.

    Attributes:
      name: the Keras input/output name (and the TFLite tensor's).
      kind: a key of :data:`PORT_KINDS`.
      channels: last-axis size (vector length for ``kind="vector"``).
      normalise: how a caller turns its data into this tensor (inputs) or
        the tensor into its data (outputs); written into the export JSON.
      value_range: the values the tensor is meant to hold (outputs may
        overshoot, e.g. MicroISP's tanh head reaches 0.5 +- 0.58).
      from_raw: for a per-frame ``vector`` input: ``from_raw(raw) ->
        (channels,) float32`` computes it from an :class:`isp_tf.raw.RawImage`
        (the function the training pipeline builds the same metadata with, so
        inference, calibration and training agree); ``python -m isp_tf.infer``
        feeds every vector input through it.  A plain module-level function
        importing no TensorFlow (the LiteRT inference path records it by name).
    """

    name: str
    kind: str
    channels: int
    normalise: str = ""
    value_range: Tuple[float, float] = (0.0, 1.0)
    from_raw: Optional[Callable[[Any], Any]] = None

    def __post_init__(self):
        if self.kind not in PORT_KINDS:
            raise ValueError(f"port {self.name!r}: unknown kind {self.kind!r}; known: {', '.join(PORT_KINDS)}")

    @property
    def spatial(self) -> bool:
        return self.kind != "vector"

    @property
    def layout(self) -> str:
        return PORT_KINDS[self.kind]


#: the image ports of the packed-Bayer -> sRGB methods (MicroISP, PyNET): what
#: ``isp_tf.raw.pack_bayer`` gives, and a ``tanh * 0.58 + 0.5`` head's output
PACKED_BAYER_INPUT = Port(
    "packed_bayer", "packed_bayer", 4,
    normalise="x = (raw - black_level) / (white_level - black_level), per CFA site, in [0, 1], "
              "after cropping the mosaic so its top-left pixel is red")
TANH_SRGB_OUTPUT = Port(
    "rgb", "srgb", 3, value_range=(0.5 - 0.58, 0.5 + 0.58),
    normalise="sRGB in [0, 1] (the tanh head reaches -0.08..1.08): clip to [0, 1], x 255")


@dataclasses.dataclass(frozen=True)
class Direction:
    """One way through a method (``forward``: RAW -> sRGB; ``inverse``: sRGB -> RAW).

    Attributes:
      name: ``--direction`` value.
      inputs, outputs: :class:`Port` tuples; the first input and the first
        output are the images, the frame is cut into tiles on them.
      output_scale: output image side / input image side (2: packed Bayer -> RGB).
      size_multiple: input image height and width must be multiples of this.
      derive: for a direction that shares the forward model's weights (an
        invertible network): ``derive(forward_model) -> keras.Model``.
        ``None`` for the forward direction (``ModelSpec.build``).
    """

    name: str
    inputs: Tuple[Port, ...]
    outputs: Tuple[Port, ...]
    output_scale: int = 1
    size_multiple: int = 1
    derive: Optional[Callable[[Any], Any]] = None

    @property
    def image_input(self) -> Port:
        return self.inputs[0]

    @property
    def image_output(self) -> Port:
        return self.outputs[0]


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of a method trained in stages (PyNET: level 5, then 4, ... 0).

    Attributes:
      name: ``--stage`` value and the key of the recipe's ``"stages"`` section.
      config: builder keyword arguments of this stage's model (``{"level": 3}``).
      folder: run sub-folder of the stage (``RUN_DIR/<folder>``).
      starts_from_previous: the stage starts from the previous stage's final
        weights (the stage before it in :attr:`ModelSpec.stages`).
      target: ``target(rgb_batch) -> batch`` the stage learns (PyNET: the
        target downscaled by ``2**level``); ``None`` keeps the target.
      transfer: ``transfer(previous_model, model) -> [layer names]`` copies
        the previous stage's weights (``None``: load the whole file).
    """

    name: str
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    folder: str = ""
    starts_from_previous: bool = False
    target: Optional[Callable[[Any], Any]] = None
    transfer: Optional[Callable[[Any, Any], Any]] = None


@dataclasses.dataclass(frozen=True)
class Variant:
    """Another graph of the same function, for export and benchmarks.

    ``transform(model) -> model`` keeps the weights' arithmetic (e.g.
    MicroISP's branches merged into 12-channel convolutions).  ``nnapi``:
    every op of the result is NNAPI 1.2 legal (``False``: a CPU-only variant,
    labelled so in exports and benchmark tables).
    """

    name: str
    transform: Callable[[Any], Any]
    description: str = ""
    nnapi: bool = True


@dataclasses.dataclass(frozen=True)
class Option:
    """An extra ``python -m isp_tf.train`` option a method declares (GenISP's ``--detector-weights``).

    The value is stored in ``RunSettings.options[name]`` (so in ``run.json``,
    and ``--resume`` reuses it) and handed to :attr:`ModelSpec.objective_factory`.

    Attributes:
      name: the key in ``RunSettings.options``; the flag is ``--`` + name with ``_`` -> ``-``.
      help: the flag's help text.
      required: a run of this model without it is refused.
      default: the value when the flag is not given (``None``: absent).
      choices: allowed values, if restricted.
      type: ``str``, ``int`` or ``float`` (argparse converts).
    """

    name: str
    help: str = ""
    required: bool = False
    default: Any = None
    choices: Optional[Tuple[Any, ...]] = None
    type: Callable[[str], Any] = str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the rest of isp_tf needs to know about one method.

    Attributes:
      name: registry name (``--model``).
      build: ``build(**config) -> tf_keras.Model``, the forward direction;
        spatial dims of the input are ``None`` unless ``input_shape`` is given.
      description: one line for ``--help``.
      home: the method's folder (recipes and shipped weights live there).
      directions: ``forward`` first, then any other (:class:`Direction`).
      presets: named builder configs; ``published`` (the paper's model) and
        ``small`` (tests, CI) always exist.
      published_parameters: trainable parameter count of ``create_model(name)``
        at the published preset, as papers count them (checked by the contract
        tests; fixed tensors such as InvISP's permutation are not counted).
      recipe: training recipe file name in :attr:`home`.
      weights: shipped weights file name in ``home/weights/``, if any.
      stages: :class:`Stage` tuple in training order (empty: one stage).
      variants: name -> :class:`Variant`.
      infer_variant: the variant ``python -m isp_tf.infer``'s LiteRT engine exports (same function,
        faster on the CPU; ``None``: the model as built).
      qat_configs: Keras layer class name -> tfmot treatment of the model's own
        layers: ``"noop"`` (pure data movement), ``"output"`` (quantise the
        output only) or ``"sublayers"`` (quantise the kernels of nested
        convolutions and the output) -- see :mod:`isp_tf.export.qat`.
      cpu_ops: precision -> TFLite op names the NNAPI 1.2 delegate refuses in
        this model's published graph (e.g. PyNET's int8 RSQRT): the exporter
        refuses such an export unless CPU fallback is allowed, and the
        contract tests expect exactly these ops to be named.
      objective: the training loss of a method whose loss is not "image
        terms of forward(x) against y" (InvISP also scores the inverse of the
        JPEG-compressed output against the RAW):
        ``objective(model, x, y, image_loss) -> (terms, prediction)`` with
        ``terms`` a dict of unweighted per-example losses (weighted by the
        recipe's ``loss``) and ``prediction`` the forward image (validation
        PSNR/SSIM).  ``image_loss`` is the :class:`~isp_tf.losses.CompositeLoss`
        of the recipe's standard terms (``None`` if it names none).  ``None``:
        ``image_loss.terms(y, model(x))``.
      loss_terms: names of the terms ``objective`` computes itself (allowed in
        the recipe's ``loss`` besides :data:`isp_tf.losses.LOSS_TERMS`).
      options: :class:`Option` tuple: extra ``train`` flags of this method,
        stored in ``RunSettings.options`` (``run.json``).
      dataset: the method's training data, replacing
        :func:`isp_tf.data.build_dataset` in ``train`` (same call:
        ``dataset(specs, split=, patch_size=, batch_size=, seed=, augment=,
        cache=, repeat=, input_kind=) -> tf.data.Dataset`` of ``(x, y)``
        batches, ``x`` what the model takes -- a tuple for several inputs --
        and ``y`` what ``objective`` scores against: GenISP turns RAW-NOD's
        dicts into ``((packed, cam_to_xyz), {"boxes", "labels"})``).
        ``None``: ``build_dataset`` with the forward input kind.
      objective_factory: ``objective_factory(options) -> objective`` (the
        signature of :attr:`objective`), called once per run inside the
        distribution strategy's scope with ``RunSettings.options``: for an
        objective that needs something built from a flag (GenISP: the frozen
        detector of ``--detector-weights``).  Takes precedence over ``objective``.
      validation: ``validation(model, x, y, objective) -> (metrics, prediction)``
        replacing PSNR/SSIM in validation (and the training PSNR log):
        ``metrics`` a dict of per-example values (logged as ``val_<name>``),
        ``prediction`` an image batch for TensorBoard or ``None``.  GenISP
        reports the detection losses on the validation batches.
      split: for a model with whole-frame values that are not spatial means
        (GenISP's ConvWB/ConvCC see a fixed-size resize of the whole frame),
        ``split(model) -> (per_frame, render)`` sharing ``model``'s weights:
        ``per_frame(inputs) -> (B, K)`` runs once on the whole frame and
        ``render(inputs + [per_frame values]) -> outputs`` equals ``model``
        and tiles exactly (the values are one more per-frame vector input).
        Tiled inference builds the tiling variant as ``split(fresh model)[1]``
        inside ``tiling_mode()``.  ``None``: the model tiles as it is.
    """

    name: str
    build: Callable[..., Any]
    description: str
    home: pathlib.Path
    directions: Tuple[Direction, ...]
    presets: Mapping[str, Mapping[str, Any]]
    published_parameters: int
    recipe: Optional[str] = None
    weights: Optional[str] = None
    stages: Tuple[Stage, ...] = ()
    variants: Mapping[str, Variant] = dataclasses.field(default_factory=dict)
    infer_variant: Optional[str] = None
    qat_configs: Mapping[str, str] = dataclasses.field(default_factory=dict)
    cpu_ops: Mapping[str, Tuple[str, ...]] = dataclasses.field(default_factory=dict)
    objective: Optional[Callable[..., Any]] = None
    loss_terms: Tuple[str, ...] = ()
    options: Tuple[Option, ...] = ()
    dataset: Optional[Callable[..., Any]] = None
    objective_factory: Optional[Callable[[Mapping[str, Any]], Callable[..., Any]]] = None
    validation: Optional[Callable[..., Any]] = None
    split: Optional[Callable[[Any], Tuple[Any, Any]]] = None

    def __post_init__(self):
        if not self.directions or self.directions[0].name != "forward":
            raise ValueError(f"{self.name}: the first direction must be 'forward'")
        missing = {"published", "small"} - set(self.presets)
        if missing:
            raise ValueError(f"{self.name}: presets {sorted(missing)} are required")

    # -- directions --------------------------------------------------------
    def direction(self, name: Optional[str] = None) -> Direction:
        """The :class:`Direction` called ``name`` (default ``forward``)."""
        name = name or "forward"
        for d in self.directions:
            if d.name == name:
                return d
        raise UnknownModelError(f"{self.name} has no direction {name!r}; it has "
                                f"{', '.join(d.name for d in self.directions)}")

    @property
    def forward(self) -> Direction:
        return self.directions[0]

    @property
    def inputs(self) -> Tuple[Port, ...]:
        return self.forward.inputs

    @property
    def outputs(self) -> Tuple[Port, ...]:
        return self.forward.outputs

    @property
    def input_kind(self) -> str:
        return self.forward.image_input.kind

    @property
    def output_kind(self) -> str:
        return self.forward.image_output.kind

    @property
    def input_channels(self) -> int:
        return self.forward.image_input.channels

    @property
    def output_scale(self) -> int:
        return self.forward.output_scale

    @property
    def size_multiple(self) -> int:
        return self.forward.size_multiple

    # -- presets, files, stages ----------------------------------------------
    def preset(self, name: str = "published") -> Dict[str, Any]:
        if name not in self.presets:
            raise UnknownModelError(f"{self.name} has no preset {name!r}; presets: {', '.join(self.presets)}")
        return dict(self.presets[name])

    @property
    def default_config(self) -> Dict[str, Any]:
        """The published preset's builder arguments."""
        return self.preset("published")

    @property
    def small_config(self) -> Dict[str, Any]:
        """The small (test) preset's builder arguments."""
        return self.preset("small")

    @property
    def recipe_path(self) -> Optional[pathlib.Path]:
        return self.home / self.recipe if self.recipe else None

    @property
    def weights_path(self) -> Optional[pathlib.Path]:
        """The shipped weights file (``None`` when the method ships none)."""
        return self.home / "weights" / self.weights if self.weights else None

    def stage(self, name) -> Stage:
        for s in self.stages:
            if s.name == str(name):
                return s
        raise UnknownModelError(f"{self.name} has no stage {name!r}; stages: "
                                f"{', '.join(s.name for s in self.stages) or 'none'}")

    def previous_stage(self, name) -> Optional[Stage]:
        names = [s.name for s in self.stages]
        i = names.index(str(name))
        return self.stages[i - 1] if i > 0 else None

    def variant(self, name: str) -> Variant:
        if name not in self.variants:
            raise UnknownModelError(f"{self.name} has no variant {name!r}; variants: "
                                    f"{', '.join(self.variants) or 'none'}")
        return self.variants[name]


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


def model_config(name: str, small: bool = False, preset: Optional[str] = None, **config) -> Dict[str, Any]:
    """The builder arguments ``create_model`` would use (preset, then ``config``)."""
    spec = get_spec(name)
    kwargs = spec.preset(preset or ("small" if small else "published"))
    kwargs.update(config)
    return kwargs


def create_model(name: str, small: bool = False, preset: Optional[str] = None,
                 direction: Optional[str] = None, **config):
    """Build model ``name`` (a tf_keras Model).

    ``small=True`` (or ``preset="small"``) starts from the spec's tiny test
    preset; ``config`` overrides individual keyword arguments of the builder.
    ``direction`` (default ``forward``) builds another direction of the method
    from a freshly built forward model (use :func:`derive_direction` to get it
    from a trained one).
    """
    spec = get_spec(name)
    model = spec.build(**model_config(name, small, preset, **config))
    if direction in (None, "forward"):
        return model
    return derive_direction(spec, model, direction)


def derive_direction(spec: ModelSpec, forward_model, direction: str):
    """The ``direction`` model of ``spec`` sharing ``forward_model``'s weights."""
    d = spec.direction(direction)
    if d.derive is None:
        return forward_model
    return d.derive(forward_model)
