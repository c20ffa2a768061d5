"""RAW file -> sRGB PNG: the renderers behind ``python -m isp_tf.infer``.

Renderers share one interface, ``renderer(raw, tile, progress) -> (H, W, 3)``
float32 sRGB in [0, 1], pixel-aligned with ``raw.bayer`` before orientation
(the default engine, :class:`isp_tf.infer.litert.LiteRtRenderer`, is the
network renderer's model exported to TFLite and has it too):

* :class:`NetworkRenderer`: a registry model (the registry's default model) with its
  weights, run whole-frame or tiled by :class:`~isp_tf.tiling.TiledRunner`.
  The model sees ``pack_bayer(raw)`` (black-subtracted, white-normalised,
  canonical RGGB), so its output covers the window :func:`isp_tf.raw.rggb_crop`
  keeps (at most one row/column less at each edge for non-RGGB sensors).
* :class:`ClassicalRenderer`: :func:`isp_tf.raw.render_classical` (bilinear
  demosaic, camera white balance and colour matrix, sRGB curve), cropped to the
  same window so both renderers give the same size.

A model whose output scale is 1 on packed Bayer (GenISP: an image for a
detector) gives its output at the packed resolution, half the window's sides.

:func:`render_file` reads a file, renders it, applies the EXIF orientation and
writes an 8- or 16-bit PNG atomically.
"""
from __future__ import annotations

import os
import pathlib
from typing import Callable, Iterable, List, Optional, Union

import numpy as np

from isp_tf.errors import InputShapeError, WeightsMismatchError
from isp_tf.infer.png import to_uint, write_png
from isp_tf.raw.reader import RAW_EXTENSIONS as _RAW_EXTENSIONS

__all__ = ["RAW_EXTENSIONS", "ClassicalRenderer", "NetworkRenderer",
           "expand_inputs", "output_paths", "render_file"]

#: file name endings taken from a folder given as input (any LibRaw format)
RAW_EXTENSIONS = frozenset(_RAW_EXTENSIONS)

Progress = Optional[Callable[[int], None]]


def linear_rgb_input(raw) -> np.ndarray:
    """The ``linear_rgb`` model input of a RAW photo, as the training pipeline builds it
    (:func:`isp_tf.data.pipeline.linear_rgb_from_rggb`): the ``rggb_crop`` window,
    normalised, times the as-shot white-balance gains over their smallest, clipped,
    bilinearly demosaiced.  Same size as the classical render's window."""
    from isp_tf.raw import demosaic_bilinear, pack_bayer, unpack_bayer

    mosaic = unpack_bayer(pack_bayer(raw))  # normalised RGGB window
    gains = np.asarray(raw.wb_gains, np.float32)
    gains = gains / gains.min()
    site = np.add.outer(np.arange(mosaic.shape[0]) % 2, np.arange(mosaic.shape[1]) % 2)  # 0 R, 1 G, 2 B
    mosaic = np.minimum(mosaic * gains[site], 1.0).astype(np.float32)
    return np.clip(demosaic_bilinear(mosaic, "RGGB"), 0.0, 1.0).astype(np.float32)


def _packed_bayer_input(raw) -> np.ndarray:
    from isp_tf.raw import pack_bayer

    return pack_bayer(raw)


#: image-input port kinds the network renderer builds from a RAW photo
MODEL_INPUTS = {"packed_bayer": _packed_bayer_input, "linear_rgb": linear_rgb_input}


def expand_inputs(inputs: Iterable[Union[str, os.PathLike]], extensions=RAW_EXTENSIONS) -> List[pathlib.Path]:
    """Input paths with folders replaced by the files directly inside them whose name ends in
    one of ``extensions`` (default: RAW files), sorted."""
    out = []
    for item in inputs:
        path = pathlib.Path(item)
        if path.is_dir():
            out.extend(sorted(p for p in path.iterdir()
                              if p.is_file() and p.suffix.lower() in extensions))
        else:
            out.append(path)
    return out


def output_paths(inputs: List[pathlib.Path], out_dir, suffix: str = ".png") -> List[pathlib.Path]:
    """``OUT/<stem><suffix>`` per input; inputs sharing a stem get ``<stem>_<ext><suffix>``."""
    stems = [p.stem for p in inputs]
    return [pathlib.Path(out_dir) / (f"{p.stem}_{p.suffix.lstrip('.').lower()}{suffix}"
                                     if stems.count(p.stem) > 1 else f"{p.stem}{suffix}")
            for p in inputs]


class ClassicalRenderer:
    """The classical ISP of :func:`isp_tf.raw.render_classical` (no network)."""

    name = "classical"

    def steps(self, raw, tile=None) -> int:
        return 1

    def __call__(self, raw, tile=None, progress: Progress = None) -> np.ndarray:
        from isp_tf.raw import render_classical

        rgb = render_classical(raw, align_to_packed=True)
        if progress:
            progress(1)
        return rgb


#: RAW pixels per model-input pixel of each image-input kind
RAW_PX_PER_INPUT_PX = {"packed_bayer": 2, "linear_rgb": 1}


def vector_ports(direction):
    """The per-frame ``vector`` inputs of ``direction`` (after its image input), each with its
    ``from_raw``; :class:`~isp_tf.errors.InputShapeError` for one infer cannot build."""
    ports = list(direction.inputs[1:])
    for port in ports:
        if port.kind != "vector" or port.from_raw is None:
            raise InputShapeError(f"input {port.name!r} ({port.kind}) cannot be built from a RAW file: "
                                  "a per-frame vector input needs Port.from_raw")
    return ports


def frame_vectors(ports, raw) -> List[np.ndarray]:
    """Every per-frame vector input of ``raw`` (``Port.from_raw``), float32 of shape (channels,)."""
    out = []
    for port in ports:
        v = np.asarray(port.from_raw(raw), np.float32).reshape(-1)
        if v.shape != (port.channels,):
            raise InputShapeError(f"{raw.path or 'input'}: {port.name} has {v.size} values, the model "
                                  f"takes {port.channels}")
        out.append(v)
    return out


class NetworkRenderer:
    """A registry model with weights, run by :class:`~isp_tf.tiling.TiledRunner` (TensorFlow).

    Args:
      model: registry name; ``None`` takes the name stored in ``weights`` (or
        the registry's default model when no weights are given either).
      weights: an ``isp_tf.models.weights`` file or a run folder; ``None`` for
        the model's shipped weights (``ModelSpec.weights_path``).

    The model's contract (its spec's forward direction) decides what is fed
    and read back: the image input is built from the RAW as the training
    pipeline builds it (:data:`MODEL_INPUTS`), every further input is a
    per-frame vector computed by its port's ``from_raw`` (GenISP: the file's
    camera -> XYZ matrix), the output is sRGB.  A model with a
    ``ModelSpec.split`` (GenISP) runs its per-frame part once on the whole
    frame; its values are one more vector of the tiled part, so its
    instance-norm statistics are still those of the whole frame.  Raises
    :class:`~isp_tf.errors.UnknownModelError` for an unknown name,
    :class:`~isp_tf.errors.MissingFileError` when the weights are absent (the
    message says how to get them) and :class:`~isp_tf.errors.WeightsMismatchError`
    for weights of another model.
    """

    def __init__(self, model: Optional[str] = None, weights=None):
        from isp_tf.tiling import TiledRunner, TilingError
        from isp_tf.layers.global_stats import tiling_mode
        from isp_tf.models import create_model, get_spec
        from isp_tf.models.weights import resolve_model

        loaded = resolve_model(model, weights)
        if loaded.qat:
            raise WeightsMismatchError(f"{loaded.weights} holds quantization-aware (QAT) weights: "
                                       "export them to int8 with export_to_tflite.py instead")
        spec = get_spec(loaded.name)
        forward = spec.forward
        if forward.image_input.kind not in MODEL_INPUTS or forward.image_output.kind != "srgb":
            raise InputShapeError(f"model {spec.name!r} does not render a RAW photo to sRGB "
                                  f"({forward.image_input.kind} -> {forward.image_output.kind}); "
                                  f"inputs this renderer builds: {', '.join(MODEL_INPUTS)}")
        self.vector_ports = vector_ports(forward)
        self.name, self.config, self.weights, self.spec = (spec.name, loaded.config,
                                                           pathlib.Path(loaded.weights), spec)
        name, config = spec.name, loaded.config
        self.per_frame = None
        tiled, rebuild = loaded.model, (lambda: create_model(name, **config))
        if spec.split is not None:
            self.per_frame, tiled = spec.split(loaded.model)

            def rebuild():
                with tiling_mode():
                    return spec.split(create_model(name, **config))[1]
        try:
            self.runner = TiledRunner(tiled, forward.size_multiple, rebuild=rebuild)
        except TilingError as e:
            raise TilingError(f"{name} {config} ({self.weights}): {e} (a model trained in stages: "
                              f"use the weights of its last stage)") from None
        if self.runner.footprint.output_scale != forward.output_scale:
            raise InputShapeError(
                f"{name} {config} outputs {self.runner.footprint.output_scale}x its input, not "
                f"{forward.output_scale}x (a model trained in stages: use the weights of its last stage)")

    def _model_input(self, raw):
        """The forward direction's image input built from ``raw`` (its port kind decides)."""
        kind = self.spec.forward.image_input.kind
        x = MODEL_INPUTS[kind](raw)
        side = self.runner.min_side
        if min(x.shape[:2]) < side:
            per = RAW_PX_PER_INPUT_PX[kind]
            raise InputShapeError(
                f"{raw.path or 'input'}: {raw.height}x{raw.width} px is smaller than one tile of "
                f"{self.name} ({per * side}x{per * side} RAW px)")
        return x

    def vectors(self, raw, x) -> List[np.ndarray]:
        """The per-frame inputs of the tiled model: the ports' ``from_raw``, then (a split
        model) the per-frame part's values over the whole frame ``x``."""
        vectors = frame_vectors(self.vector_ports, raw)
        if self.per_frame is not None:
            values = self.per_frame([x[np.newaxis]] + [v[np.newaxis] for v in vectors], training=False)
            vectors.append(np.asarray(values, np.float32)[0])
        return vectors

    def steps(self, raw, tile=None) -> int:
        """Model runs :meth:`__call__` will make on ``raw`` (for a progress bar)."""
        from isp_tf.raw import rggb_crop

        y0, y1, x0, x1 = rggb_crop(raw.bayer.shape, raw.cfa_pattern)
        per = RAW_PX_PER_INPUT_PX[self.spec.forward.image_input.kind]
        h, w = (y1 - y0) // per, (x1 - x0) // per
        if min(h, w) < self.runner.min_side:
            return 1
        return self.runner.steps(h, w, tile)

    def __call__(self, raw, tile=None, progress: Progress = None) -> np.ndarray:
        x = self._model_input(raw)
        out = self.runner(x, tile=tile, progress=progress, vectors=self.vectors(raw, x))
        return np.clip(out, 0.0, 1.0)


def read_input(path, bayer: Optional[dict] = None):
    """The :class:`~isp_tf.raw.RawImage` of ``path`` (``bayer``: see :func:`render_file`)."""
    from isp_tf.raw import read_bayer_array, read_raw

    return read_raw(path) if bayer is None else read_bayer_array(path, **bayer)


def render_file(path, out_path, renderer, *, bits: int = 8, tile="auto",
                bar=None, bayer: Optional[dict] = None, raw=None) -> pathlib.Path:
    """Read RAW ``path``, render it, orient it for display and write an 8/16-bit PNG.

    Args:
      bar: an optional tqdm bar, reset to the number of model runs and advanced
        after each.
      bayer: for headerless dumps and single-channel Bayer PNG/TIFFs: the
        keyword arguments of :func:`isp_tf.raw.read_bayer_array` (``shape``,
        ``cfa_pattern``, ``black_level``, ``white_level``...); ``None`` reads
        ``path`` with :func:`isp_tf.raw.read_raw`.
      raw: ``path`` already read (:func:`read_input`; infer reads the next file while
        the network runs).
    """
    from isp_tf.raw import apply_orientation

    if bits not in (8, 16):
        raise InputShapeError(f"PNG bit depth must be 8 or 16, got {bits}")
    if raw is None:
        raw = read_input(path, bayer)
    if bar is not None:
        bar.reset(total=renderer.steps(raw, tile))
    rgb = renderer(raw, tile=tile, progress=bar.update if bar is not None else None)
    image = to_uint(apply_orientation(rgb, raw.orientation), bits)
    write_png(out_path, image)
    return pathlib.Path(out_path)
