"""RAW file -> sRGB PNG: the renderers behind ``python -m isp_tf.infer``.

Two renderers share one interface, ``renderer(raw, tile, progress) -> (H, W, 3)``
float32 sRGB in [0, 1], pixel-aligned with ``raw.bayer`` before orientation:

* :class:`NetworkRenderer`: a registry model (the registry's default model) with its
  weights, run whole-frame or tiled by :class:`~isp_tf.tiling.TiledRunner`.
  The model sees ``pack_bayer(raw)`` (black-subtracted, white-normalised,
  canonical RGGB), so its output covers the window :func:`isp_tf.raw.rggb_crop`
  keeps (at most one row/column less at each edge for non-RGGB sensors).
* :class:`ClassicalRenderer`: :func:`isp_tf.raw.render_classical` (bilinear
  demosaic, camera white balance and colour matrix, sRGB curve), cropped to the
  same window so both renderers give the same size.

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


class NetworkRenderer:
    """A registry model with weights, run by :class:`~isp_tf.tiling.TiledRunner`.

    Args:
      model: registry name; ``None`` takes the name stored in ``weights`` (or
        the registry's default model when no weights are given either).
      weights: an ``isp_tf.models.weights`` file or a run folder; ``None`` for
        the model's shipped weights (``ModelSpec.weights_path``).

    The model's contract (its spec's forward direction) must take packed
    Bayer and give sRGB at full resolution; what is fed and read back comes
    from it.  Raises :class:`~isp_tf.errors.UnknownModelError` for an unknown
    name, :class:`~isp_tf.errors.MissingFileError` when the weights are absent
    (the message says how to get them) and
    :class:`~isp_tf.errors.WeightsMismatchError` for weights of another model.
    """

    def __init__(self, model: Optional[str] = None, weights=None):
        from isp_tf.tiling import TiledRunner, TilingError
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
        self.name, self.config, self.weights, self.spec = (spec.name, loaded.config,
                                                           pathlib.Path(loaded.weights), spec)
        name, config = spec.name, loaded.config
        try:
            self.runner = TiledRunner(loaded.model, forward.size_multiple,
                                      rebuild=lambda: create_model(name, **config))
        except TilingError as e:
            raise TilingError(f"{name} {config} ({self.weights}): {e} (a model trained in stages: "
                              f"use the weights of its last stage)") from None
        if self.runner.footprint.output_scale != forward.output_scale:
            raise InputShapeError(
                f"{name} {config} outputs {self.runner.footprint.output_scale}x its input, not "
                f"{forward.output_scale}x (a model trained in stages: use the weights of its last stage)")

    def _model_input(self, raw):
        """The forward direction's image input built from ``raw`` (its port kind decides)."""
        x = MODEL_INPUTS[self.spec.forward.image_input.kind](raw)
        side = self.runner.min_side
        if min(x.shape[:2]) < side:
            per = self.spec.forward.output_scale  # RAW px per model-input px (the output is RAW-sized)
            raise InputShapeError(
                f"{raw.path or 'input'}: {raw.height}x{raw.width} px is smaller than one tile of "
                f"{self.name} ({per * side}x{per * side} RAW px)")
        return x

    def steps(self, raw, tile=None) -> int:
        """Model runs :meth:`__call__` will make on ``raw`` (for a progress bar)."""
        from isp_tf.raw import rggb_crop

        y0, y1, x0, x1 = rggb_crop(raw.bayer.shape, raw.cfa_pattern)
        per = self.spec.forward.output_scale
        h, w = (y1 - y0) // per, (x1 - x0) // per
        if min(h, w) < self.runner.min_side:
            return 1
        return self.runner.steps(h, w, tile)

    def __call__(self, raw, tile=None, progress: Progress = None) -> np.ndarray:
        out = self.runner(self._model_input(raw), tile=tile, progress=progress)
        return np.clip(out, 0.0, 1.0)


def render_file(path, out_path, renderer, *, bits: int = 8, tile="auto",
                bar=None, bayer: Optional[dict] = None) -> pathlib.Path:
    """Read RAW ``path``, render it, orient it for display and write an 8/16-bit PNG.

    Args:
      bar: an optional tqdm bar, reset to the number of model runs and advanced
        after each.
      bayer: for headerless dumps and single-channel Bayer PNG/TIFFs: the
        keyword arguments of :func:`isp_tf.raw.read_bayer_array` (``shape``,
        ``cfa_pattern``, ``black_level``, ``white_level``...); ``None`` reads
        ``path`` with :func:`isp_tf.raw.read_raw`.
    """
    from isp_tf.raw import apply_orientation, read_bayer_array, read_raw

    if bits not in (8, 16):
        raise InputShapeError(f"PNG bit depth must be 8 or 16, got {bits}")
    raw = read_raw(path) if bayer is None else read_bayer_array(path, **bayer)
    if bar is not None:
        bar.reset(total=renderer.steps(raw, tile))
    rgb = renderer(raw, tile=tile, progress=bar.update if bar is not None else None)
    image = to_uint(apply_orientation(rgb, raw.orientation), bits)
    write_png(out_path, image)
    return pathlib.Path(out_path)
