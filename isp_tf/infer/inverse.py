"""sRGB photo -> RAW (DNG): the inverse direction of an ISP (InvISP, ParamISP).

``python -m isp_tf.infer --model invisp --weights W --inverse PHOTO.jpg
--metadata RAWFILE_OR_JSON --out DIR`` writes ``DIR/PHOTO.dng``:

1. the photo (JPEG, PNG, any 8/16-bit image Pillow reads) is decoded to sRGB
   in [0, 1] and turned from display order back to sensor order (the
   metadata's EXIF ``orientation``, undone);
2. the model's ``inverse`` direction (``Direction.derive`` of the forward
   model: the same weights) maps it to white-balanced linear camera RGB,
   whole-frame or tile by tile (:class:`~isp_tf.tiling.TiledRunner`: the
   inverse has no whole-image statistics, so tiles only need the halo of its
   receptive field and tiled output equals whole-frame output);
   (ParamISP: the inverse network the forward model carries, fed the
   camera parameters its ``params`` port's ``from_raw`` computes from the
   metadata, and giving an RGGB mosaic, aligned to the metadata's CFA by
   padding the photo by the red site's offset; its per-frame part -- channel
   attention, tone curves -- runs once on the whole photo, ``ModelSpec.split``);
3. a ``bayer`` output (ParamISP) is scaled to sensor units per CFA site
   (:func:`bayer_to_mosaic`); a ``linear_rgb`` one (InvISP) goes through
   :func:`linear_to_mosaic`, which keeps, at every pixel, the colour of the
   metadata's CFA pattern there, undoes the white balance (the gains divided
   by their smallest, as :func:`isp_tf.raw.render_classical` and the
   ``linear_rgb`` data pipeline apply them), scales to ``white - black`` and
   re-adds the per-site black level, rounded to integer sensor units;
4. :func:`isp_tf.raw.write_dng` stores it with the metadata's pattern, levels,
   white balance, colour matrix, EXIF, orientation and camera name, so
   rawpy / LibRaw (and :func:`isp_tf.raw.read_raw`) read it back.

The metadata is what the photo alone cannot say: it comes from a RAW file
of the camera (any LibRaw format; its pixels are not used) or from a JSON
object with the fields of :class:`isp_tf.raw.RawImage`
(:func:`metadata_to_json` writes one): ``cfa_pattern``, ``black_level``
(1 or 4 values), ``white_level``, ``wb_gains``; optional ``cam_to_xyz`` or
``cam_to_srgb``, ``exif`` ({iso, exposure_time, f_number, focal_length}),
``orientation``, ``camera``.  A model's per-frame vector inputs are computed
from it by their ports' ``from_raw``, as from a RAW file: for ParamISP give
``wb_gains`` (as shot, R, G, B), ``cam_to_srgb`` (or ``cam_to_xyz``) and the
four ``exif`` fields; a missing one is encoded as the authors do and reported
in a ``CameraParamsWarning``.  Example::

    {"cfa_pattern": "RGGB", "black_level": [512, 512, 512, 512], "white_level": 16383,
     "wb_gains": [2.265, 1.0, 1.717], "cam_to_srgb": [[1.6, -0.5, -0.1], [-0.2, 1.4, -0.2],
     [0.0, -0.5, 1.5]], "exif": {"iso": 100, "exposure_time": 0.008, "f_number": 5.6,
     "focal_length": 24}}

:class:`ClassicalInverse` is the baseline without a network: the classical
renderer undone (sRGB curve inverted, the camera's colour matrix inverted,
clipped).  Both renderers share ``renderer(srgb, metadata, tile, progress) ->
linear (H, W, 3)`` (a ``bayer`` inverse: the normalised ``(H, W)`` mosaic; the
renderer's ``output_kind`` says which).
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Callable, Iterable, List, Optional, Union

import numpy as np

from isp_tf.errors import InputShapeError, IspTfError, MissingFileError, RawReadError, WeightsMismatchError
from isp_tf.utils import atomic_write

from isp_tf.infer.pipeline import expand_inputs
from isp_tf.infer.pipeline import output_paths as _output_paths

__all__ = ["INVERSE_OUTPUTS", "PHOTO_EXTENSIONS", "ClassicalInverse", "InverseRenderer", "bayer_to_mosaic",
           "expand_photos", "invert_file", "linear_to_mosaic", "metadata_to_json", "read_metadata", "read_photo", "sensor_order"]

#: file name endings taken from a folder given as input
PHOTO_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp"})
#: the smallest mosaic write_dng stores (LibRaw reads nothing smaller)
_MIN_SIDE = 22

Progress = Optional[Callable[[int], None]]


# --------------------------------------------------------------------------- inputs
def expand_photos(inputs: Iterable[Union[str, os.PathLike]]) -> List[pathlib.Path]:
    """Input paths with folders replaced by the photos directly inside them (sorted)."""
    return expand_inputs(inputs, PHOTO_EXTENSIONS)


def output_paths(inputs: List[pathlib.Path], out_dir) -> List[pathlib.Path]:
    """``OUT/<stem>.dng`` per input; inputs sharing a stem get ``<stem>_<ext>.dng``."""
    return _output_paths(inputs, out_dir, suffix=".dng")


def read_photo(path) -> np.ndarray:
    """An 8- or 16-bit RGB photo -> (H, W, 3) float32 sRGB in [0, 1] (pixels as stored)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such photo")
    if path.suffix.lower() == ".png":
        from isp_tf.infer.png import read_png

        data = read_png(path)
    else:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                data = np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as exc:
            raise IspTfError(f"{path}: not a readable image ({exc})") from None
    if data.ndim == 2:
        data = np.repeat(data[..., None], 3, axis=-1)
    if data.ndim != 3 or data.shape[-1] not in (3, 4):
        raise InputShapeError(f"{path}: expected an RGB image, got shape {data.shape}")
    top = 65535.0 if data.dtype == np.uint16 else 255.0
    return np.ascontiguousarray(data[..., :3], dtype=np.float32) / np.float32(top)


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def metadata_to_json(raw, path=None) -> dict:
    """The JSON object :func:`read_metadata` reads, from a :class:`~isp_tf.raw.RawImage`
    (written atomically to ``path`` if given)."""
    import dataclasses

    exif = {k: v for k, v in dataclasses.asdict(raw.exif).items() if v is not None}
    data = {"cfa_pattern": raw.cfa_pattern, "black_level": _jsonable(raw.black_level),
            "white_level": float(raw.white_level), "wb_gains": _jsonable(raw.wb_gains),
            "cam_to_xyz": _jsonable(raw.cam_to_xyz), "cam_to_srgb": _jsonable(raw.cam_to_srgb),
            "exif": exif, "orientation": int(raw.orientation), "camera": raw.camera}
    if path is not None:
        with atomic_write(path, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
    return data


_REQUIRED = ("cfa_pattern", "black_level", "white_level", "wb_gains")
_OPTIONAL = ("cam_to_xyz", "cam_to_srgb", "exif", "orientation", "camera")


def read_metadata(path):
    """The camera metadata of ``path`` (a RAW file or a JSON object) as a
    :class:`~isp_tf.raw.RawImage` with a placeholder 2x2 ``bayer``.

    Raises :class:`MissingFileError` (no such file), :class:`RawReadError`
    (a JSON that lacks or breaks a field, a file that is neither JSON nor RAW).
    """
    from isp_tf.raw import Exif, RawImage, read_raw
    from isp_tf.raw.color import SRGB_TO_XYZ, XYZ_TO_SRGB, cam_to_xyz_from_cam_to_srgb

    path = pathlib.Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such metadata file (give a RAW file of the camera or a JSON "
                               f"with {', '.join(_REQUIRED)})")
    if path.suffix.lower() != ".json":
        raw = read_raw(path)
        raw.bayer = np.zeros((2, 2), np.uint16)  # only the metadata is used
        return raw
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RawReadError(path, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RawReadError(path, "the metadata JSON must be an object")
    missing = [k for k in _REQUIRED if data.get(k) is None]
    if missing:
        raise RawReadError(path, f"the metadata lacks {', '.join(missing)} (needed: {', '.join(_REQUIRED)}; "
                                 f"optional: {', '.join(_OPTIONAL)})")
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise RawReadError(path, f"unknown metadata field(s) {', '.join(unknown)}")
    try:
        cam_to_xyz, cam_to_srgb = data.get("cam_to_xyz"), data.get("cam_to_srgb")
        if cam_to_xyz is None and cam_to_srgb is None:
            cam_to_xyz, cam_to_srgb = SRGB_TO_XYZ, np.eye(3)
        elif cam_to_xyz is None:
            cam_to_xyz = cam_to_xyz_from_cam_to_srgb(np.asarray(cam_to_srgb, np.float64))
        elif cam_to_srgb is None:
            m = XYZ_TO_SRGB @ np.asarray(cam_to_xyz, np.float64)
            cam_to_srgb = m / m.sum(axis=1, keepdims=True)
        exif = data.get("exif") or {}
        if not isinstance(exif, dict):
            raise ValueError("exif must be an object")
        return RawImage(bayer=np.zeros((2, 2), np.uint16), cfa_pattern=data["cfa_pattern"],
                        black_level=data["black_level"], white_level=float(data["white_level"]),
                        wb_gains=data["wb_gains"], cam_to_xyz=cam_to_xyz, cam_to_srgb=cam_to_srgb,
                        exif=Exif(**exif), orientation=data.get("orientation") or 1, path=str(path),
                        camera=data.get("camera"))
    except RawReadError:
        raise
    except (TypeError, ValueError) as exc:
        raise RawReadError(path, f"bad metadata: {exc}") from None


_UNDO_ORIENTATION = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}


def sensor_order(image: np.ndarray, orientation: int) -> np.ndarray:
    """Undo :func:`isp_tf.raw.apply_orientation`: a displayed image back in sensor order."""
    from isp_tf.raw import apply_orientation

    return apply_orientation(image, _UNDO_ORIENTATION[int(orientation)])


# --------------------------------------------------------------------------- linear RGB -> mosaic
def _site_gains(meta) -> np.ndarray:
    """The gains the forward pipeline applied: ``wb_gains / min(wb_gains)``."""
    gains = np.asarray(meta.wb_gains, np.float64)
    if gains.shape != (3,) or np.any(~np.isfinite(gains)) or np.any(gains <= 0):
        raise RawReadError(meta.path or "<metadata>", f"wb_gains must be 3 positive numbers, got {gains}")
    return gains / gains.min()


def linear_to_mosaic(linear: np.ndarray, meta) -> np.ndarray:
    """White-balanced linear camera RGB ``(H, W, 3)`` in [0, 1] -> ``(H, W)`` uint16 sensor mosaic.

    The inverse of the ``linear_rgb`` input (up to the demosaic): at every
    pixel the colour of ``meta.cfa_pattern`` there, divided by its
    white-balance gain (``wb_gains / min(wb_gains)``), times ``white - black``
    plus ``black`` of that CFA site, rounded and clipped to [0, white].
    """
    from isp_tf.raw import check_cfa_pattern

    linear = np.asarray(linear, np.float64)
    if linear.ndim != 3 or linear.shape[-1] != 3:
        raise InputShapeError(f"linear RGB must be (H, W, 3), got shape {linear.shape}")
    pattern = check_cfa_pattern(meta.cfa_pattern, meta.path or "<metadata>")
    gains = _site_gains(meta)
    black = np.asarray(meta.black_level, np.float64).reshape(2, 2)
    white = float(meta.white_level)
    h, w = linear.shape[:2]
    out = np.empty((h, w), np.float64)
    for y in (0, 1):
        for x in (0, 1):
            c = "RGB".index(pattern[2 * y + x])
            v = np.clip(linear[y::2, x::2, c], 0.0, 1.0) / gains[c]
            out[y::2, x::2] = v * (white - black[y, x]) + black[y, x]
    return np.clip(np.rint(out), 0, min(white, 65535)).astype(np.uint16)


# --------------------------------------------------------------------------- renderers
class ClassicalInverse:
    """The classical renderer undone (no network): inverse sRGB curve, inverse colour matrix, clip."""

    name = "classical"

    def steps(self, shape, tile=None) -> int:
        return 1

    def __call__(self, srgb, meta, tile=None, progress: Progress = None) -> np.ndarray:
        from isp_tf.raw import apply_color_matrix, srgb_to_linear

        lin = srgb_to_linear(np.clip(srgb, 0.0, 1.0))
        cam = apply_color_matrix(lin, np.linalg.inv(np.asarray(meta.cam_to_srgb, np.float64)))
        if progress:
            progress(1)
        return np.clip(cam, 0.0, 1.0).astype(np.float32)


#: image-output port kinds an inverse direction may give, and how they become a sensor mosaic
INVERSE_OUTPUTS = ("linear_rgb", "bayer")


class InverseRenderer:
    """A registry model's ``inverse`` direction with its weights, run by
    :class:`~isp_tf.tiling.TiledRunner`.

    Args:
      model: registry name (``None``: the one stored in ``weights``).
      weights: a weights file or run folder of the *forward* model (the
        inverse shares its weights or is carried by it); ``None``: the model's
        shipped weights.
      direction: the direction to run (default ``inverse``).
      keras_model: an in-memory forward model to use instead of loading one
        (``weights`` then only names it).

    The direction's ports decide what is fed and read back: an sRGB image in,
    every further input a per-frame vector computed from the camera metadata
    by its port's ``from_raw`` (ParamISP: the 84 camera parameters, from the
    RAW file's or the JSON's ``wb_gains``, ``cam_to_srgb`` and ``exif``), and
    an image out of kind ``linear_rgb`` (InvISP: white-balanced camera RGB,
    :func:`linear_to_mosaic`) or ``bayer`` (ParamISP: an RGGB mosaic,
    :func:`bayer_to_mosaic`; ``__call__`` aligns it to the camera's CFA).  A
    direction with a ``ModelSpec.split`` runs its per-frame part once on the
    whole photo and tiles the rest, so tiled output equals whole-frame output.
    """

    def __init__(self, model: Optional[str] = None, weights=None, direction: str = "inverse",
                 keras_model=None):
        from isp_tf.infer.pipeline import vector_ports
        from isp_tf.layers.global_stats import tiling_mode
        from isp_tf.models import create_model, get_spec
        from isp_tf.models.registry import derive_direction
        from isp_tf.models.weights import resolve_model
        from isp_tf.tiling import TiledRunner

        if keras_model is None:
            loaded = resolve_model(model, weights)
            if loaded.qat:
                raise WeightsMismatchError(f"{loaded.weights} holds quantization-aware (QAT) weights, "
                                           "which have no inverse")
            name, config, forward = loaded.name, loaded.config, loaded.model
        else:
            name, config, forward = model, {}, keras_model
        spec = get_spec(name)
        d = spec.direction(direction)
        if d.name == "forward" or d.image_input.kind != "srgb" or d.image_output.kind not in INVERSE_OUTPUTS:
            raise InputShapeError(f"model {spec.name!r} direction {d.name!r} does not map sRGB to RAW "
                                  f"({d.image_input.kind} -> {d.image_output.kind}; an inverse gives "
                                  f"{' or '.join(INVERSE_OUTPUTS)}); directions: "
                                  f"{', '.join(x.name for x in spec.directions)}")
        self.name, self.config, self.weights, self.spec, self.direction = name, config, weights, spec, d
        self.output_kind = d.image_output.kind
        self.vector_ports = vector_ports(d)
        self.model = derive_direction(spec, forward, d.name)
        self.per_frame = None
        tiled = self.model

        def rebuild():
            return derive_direction(spec, create_model(name, **config), d.name)

        if spec.split is not None and self.vector_ports:
            # whole-frame values that are not spatial means (ParamISP's channel attention, tone curves)
            self.per_frame, tiled = spec.split(self.model)

            def rebuild():  # noqa: F811
                with tiling_mode():
                    return spec.split(derive_direction(spec, create_model(name, **config), d.name))[1]
        self.runner = TiledRunner(tiled, d.size_multiple, rebuild=rebuild)

    def steps(self, shape, tile=None) -> int:
        h, w = shape[:2]
        if min(h, w) < self.runner.min_side:
            return 1
        return self.runner.steps(h, w, tile)

    def vectors(self, srgb: np.ndarray, meta) -> List[np.ndarray]:
        """The per-frame inputs: the ports' ``from_raw`` of ``meta``, then (a split model) the
        per-frame part's values over the whole photo ``srgb``."""
        from isp_tf.infer.pipeline import frame_vectors

        if not self.vector_ports:
            return []
        if meta is None:
            raise InputShapeError(f"{self.name} {self.direction.name} needs the camera metadata for its "
                                  f"input(s) {', '.join(p.name for p in self.vector_ports)}")
        vectors = frame_vectors(self.vector_ports, meta)
        if self.per_frame is not None:
            values = self.per_frame([srgb[np.newaxis]] + [v[np.newaxis] for v in vectors], training=False)
            vectors.append(np.asarray(values, np.float32)[0])
        return vectors

    def __call__(self, srgb, meta=None, tile=None, progress: Progress = None) -> np.ndarray:
        """``(H, W, 3)`` linear RGB, or for a ``bayer`` output the ``(H, W)`` normalised mosaic in
        ``meta``'s CFA pattern (clipped to [0, 1])."""
        srgb = np.asarray(srgb, np.float32)
        h, w = srgb.shape[:2]
        dy = dx = 0
        if self.output_kind == "bayer":
            # the model writes RGGB from the top-left pixel: for another CFA, pad the photo by the
            # offset of its red site (reflected, both sides: even sides) and take the window where
            # the RGGB grid falls on the camera's pattern
            from isp_tf.raw import rggb_offset

            if meta is None:
                raise InputShapeError(f"{self.name}: a mosaic output needs the camera's CFA pattern (metadata)")
            dy, dx = rggb_offset(meta.cfa_pattern)
            if dy or dx:
                srgb = np.pad(srgb, ((dy, dy), (dx, dx), (0, 0)), mode="reflect")
        out = self.runner(srgb, tile=tile, progress=progress, vectors=self.vectors(srgb, meta))
        out = np.clip(out, 0.0, 1.0)
        if self.output_kind == "bayer":
            return np.ascontiguousarray(out[dy:dy + h, dx:dx + w, 0])
        return out


def bayer_to_mosaic(normalised: np.ndarray, meta) -> np.ndarray:
    """A normalised mosaic ``(H, W)`` in ``meta.cfa_pattern`` (``(raw - black) / (white - black)``,
    :class:`InverseRenderer` of a ``bayer`` output) -> ``(H, W)`` uint16 sensor units: times
    ``white - black`` plus ``black`` of each CFA site, rounded and clipped to [0, white]."""
    m = np.asarray(normalised, np.float64)
    if m.ndim != 2:
        raise InputShapeError(f"a mosaic must be (H, W), got shape {m.shape}")
    black = np.asarray(meta.black_level, np.float64).reshape(-1)
    black = np.broadcast_to(black if black.size == 4 else black[:1], (4,)).reshape(2, 2)
    white = float(meta.white_level)
    out = np.empty(m.shape, np.float64)
    for y in (0, 1):
        for x in (0, 1):
            out[y::2, x::2] = np.clip(m[y::2, x::2], 0.0, 1.0) * (white - black[y, x]) + black[y, x]
    return np.clip(np.rint(out), 0, min(white, 65535)).astype(np.uint16)


# --------------------------------------------------------------------------- the whole file
def invert_file(photo_path, metadata, out_path, renderer, *, tile="auto", bar=None):
    """Photo -> linear RGB or a normalised mosaic (``renderer``, its ``output_kind``) -> sensor
    mosaic -> DNG at ``out_path``.

    ``metadata``: a path (:func:`read_metadata`) or a :class:`~isp_tf.raw.RawImage`.
    Returns the :class:`~isp_tf.raw.RawImage` written (its ``bayer`` the mosaic).
    The photo is cropped to even height and width (a Bayer mosaic is made of 2x2 blocks).
    """
    import dataclasses

    from isp_tf.raw import RawImage, write_dng

    meta = metadata if isinstance(metadata, RawImage) else read_metadata(metadata)
    srgb = sensor_order(read_photo(photo_path), meta.orientation)
    h, w = srgb.shape[0] // 2 * 2, srgb.shape[1] // 2 * 2
    if min(h, w) < _MIN_SIDE:
        raise InputShapeError(f"{photo_path}: {srgb.shape[1]}x{srgb.shape[0]} px is too small for a DNG "
                              f"(at least {_MIN_SIDE}x{_MIN_SIDE})")
    srgb = np.ascontiguousarray(srgb[:h, :w])
    if bar is not None:
        bar.reset(total=renderer.steps(srgb.shape, tile))
    out = renderer(srgb, meta, tile=tile, progress=bar.update if bar is not None else None)
    if getattr(renderer, "output_kind", "linear_rgb") == "bayer":
        mosaic = bayer_to_mosaic(out, meta)
    else:
        mosaic = linear_to_mosaic(out, meta)
    fields = {f.name: getattr(meta, f.name) for f in dataclasses.fields(meta)}
    fields.update(bayer=mosaic, path=str(out_path))
    raw = RawImage(**fields)
    write_dng(out_path, mosaic, raw)
    return raw
