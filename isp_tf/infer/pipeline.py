"""RAW file -> sRGB PNG: the renderers behind ``python -m isp_tf.infer``.

Two renderers share one interface, ``renderer(raw, tile, progress) -> (H, W, 3)``
float32 sRGB in [0, 1], pixel-aligned with ``raw.bayer`` before orientation:

* :class:`NetworkRenderer`: a registry model (MicroISP by default) with its
  weights, run whole-frame or tiled by :class:`~isp_tf.infer.tiling.TiledRunner`.
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

from isp_tf.errors import InputShapeError, MissingFileError, WeightsMismatchError
from isp_tf.infer.png import to_uint, write_png

__all__ = ["RAW_EXTENSIONS", "ClassicalRenderer", "NetworkRenderer", "default_weights_path",
           "expand_inputs", "output_paths", "render_file"]

WEIGHTS_DIR = pathlib.Path(__file__).resolve().parents[1] / "weights"

#: file name endings taken from a folder given as input (any LibRaw format)
RAW_EXTENSIONS = frozenset(
    ".3fr .ari .arw .cr2 .cr3 .crw .dcr .dng .erf .fff .iiq .k25 .kdc .mef .mos .mrw .nef .nrw "
    ".orf .pef .raf .raw .rw2 .rwl .sr2 .srf .srw .x3f".split())

Progress = Optional[Callable[[int], None]]


def expand_inputs(inputs: Iterable[Union[str, os.PathLike]]) -> List[pathlib.Path]:
    """Input paths with folders replaced by the RAW files directly inside them (sorted)."""
    out = []
    for item in inputs:
        path = pathlib.Path(item)
        if path.is_dir():
            out.extend(sorted(p for p in path.iterdir()
                              if p.is_file() and p.suffix.lower() in RAW_EXTENSIONS))
        else:
            out.append(path)
    return out


def output_paths(inputs: List[pathlib.Path], out_dir) -> List[pathlib.Path]:
    """``OUT/<stem>.png`` per input; inputs sharing a stem get ``<stem>_<ext>.png``."""
    stems = [p.stem for p in inputs]
    return [pathlib.Path(out_dir) / (f"{p.stem}_{p.suffix.lstrip('.').lower()}.png"
                                     if stems.count(p.stem) > 1 else f"{p.stem}.png")
            for p in inputs]


def default_weights_path(model_name: str) -> pathlib.Path:
    """The shipped weights of ``model_name`` (``isp_tf/weights/<spec.default_weights>``)."""
    from isp_tf.models import get_spec

    spec = get_spec(model_name)
    if not spec.default_weights:
        raise MissingFileError(
            f"model {model_name!r} ships no default weights: pass --weights PATH (train them "
            f"with `python -m isp_tf.train --model {model_name} ...`) or render without a "
            f"network with --renderer classical")
    return WEIGHTS_DIR / spec.default_weights


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
    """A registry model with weights, run by :class:`~isp_tf.infer.tiling.TiledRunner`.

    Args:
      model: registry name; ``None`` takes the name stored in ``weights`` (or
        ``"microisp"`` when no weights are given either).
      weights: an ``isp_tf.models.weights`` file; ``None`` for the model's
        shipped default weights.

    Raises :class:`~isp_tf.errors.UnknownModelError` for an unknown name,
    :class:`~isp_tf.errors.MissingFileError` when the weights are absent (the
    message says how to get them) and :class:`~isp_tf.errors.WeightsMismatchError`
    for weights of another model.
    """

    def __init__(self, model: Optional[str] = None, weights=None):
        from isp_tf.infer.tiling import TiledRunner, TilingError
        from isp_tf.models import create_model, get_spec
        from isp_tf.models.weights import load_weights_into, read_header

        if model is not None:
            get_spec(model)  # unknown names fail before any file is read
        if weights is None:
            weights = default_weights_path(model or "microisp")
            if not weights.is_file():
                raise MissingFileError(
                    f"the default weights of {model or 'microisp'} ({weights}) are missing: "
                    f"train them with `python -m isp_tf.train --model {model or 'microisp'} ...` "
                    f"(README, 'Reference weights'), pass --weights PATH, or render without a "
                    f"network with --renderer classical")
        weights = pathlib.Path(weights)
        if not weights.is_file():
            raise MissingFileError(f"weights file {weights} not found")
        stored_name, stored_config = read_header(weights)
        name = (model or stored_name or "microisp").lower()
        if stored_name and stored_name.lower() != name:
            raise WeightsMismatchError(
                f"{weights} holds weights of model {stored_name!r}, not of {name!r} "
                f"(drop --model or pass weights trained for {name})")
        spec = get_spec(name)
        if spec.input_kind != "packed_bayer" or spec.output_kind != "srgb":
            raise InputShapeError(f"model {name!r} does not render packed Bayer to sRGB "
                                  f"({spec.input_kind} -> {spec.output_kind})")
        config = dict(spec.default_config)
        config.update(stored_config or {})
        net = create_model(name, **config)
        load_weights_into(net, weights, name)
        self.name, self.config, self.weights, self.spec = name, config, weights, spec
        try:
            self.runner = TiledRunner(net, spec.size_multiple, rebuild=lambda: create_model(name, **config))
        except TilingError as e:
            raise TilingError(f"{name} {config} ({weights}): {e} (PyNET: use level 0 weights)") from None
        if self.runner.footprint.output_scale != 2:
            raise InputShapeError(
                f"{name} {config} outputs {self.runner.footprint.output_scale}x its input, not a "
                "full-resolution image (PyNET: use level 0 weights)")

    def _packed(self, raw):
        from isp_tf.raw import pack_bayer

        packed = pack_bayer(raw)
        side = self.runner.min_side
        if min(packed.shape[:2]) < side:
            raise InputShapeError(
                f"{raw.path or 'input'}: {raw.height}x{raw.width} px is smaller than one tile of "
                f"{self.name} ({2 * side}x{2 * side} RAW px)")
        return packed

    def steps(self, raw, tile=None) -> int:
        """Model runs :meth:`__call__` will make on ``raw`` (for a progress bar)."""
        from isp_tf.raw import rggb_crop

        y0, y1, x0, x1 = rggb_crop(raw.bayer.shape, raw.cfa_pattern)
        h, w = (y1 - y0) // 2, (x1 - x0) // 2
        if min(h, w) < self.runner.min_side:
            return 1
        return self.runner.steps(h, w, tile)

    def __call__(self, raw, tile=None, progress: Progress = None) -> np.ndarray:
        out = self.runner(self._packed(raw), tile=tile, progress=progress)
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
