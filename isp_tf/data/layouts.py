"""Dataset layouts: find the (RAW, sRGB) pairs of a folder, decode one pair.

A layout reader turns ``"LAYOUT:PATH"`` and a split into a list of
:class:`PairExample`; nothing is decoded until :meth:`PairExample.load`.
Each reader checks the folder against its layout and raises
:class:`~isp_tf.errors.DatasetError` naming what is missing.

Layouts (``split`` is ``train``, ``val`` or ``test``):

``paired:PATH``
    RAW files (any format LibRaw reads) and sRGB images (png, jpg, tif) with
    the same stem, in ``PATH`` or in ``PATH/<split>/``. Without split folders
    every 10th pair (sorted by name, starting with the first) is held out for
    ``val``/``test`` (a folder of one pair serves it to every split). A target
    in display orientation is matched by turning the mosaic (its CFA pattern
    follows); one up to 16 pixels smaller than the sensor area is matched by
    cropping the RAW at the bottom/right.
``zurich:PATH``
    Zurich RAW-to-RGB (PyNET): ``PATH/{train,test}/huawei_raw/N.png`` (Bayer,
    10-bit values in a 16-bit PNG) and ``PATH/{train,test}/canon/N.jpg``.
    ``val`` reads ``test``.
``fivek:PATH``
    MIT-Adobe FiveK as InvISP arranges it: ``PATH/<CAMERA>_{train,test}.txt``
    list the stems, ``PATH/<CAMERA>/DNG/<stem>.dng`` and
    ``PATH/<CAMERA>/RGB/<stem>.jpg``; ``PATH`` may also be one camera's folder.
    ``val`` reads ``test``.
``paramisp:PATH``
    ParamISP: ``PATH/<id>/`` holds ``raw-<T>-<i>-<j>.tif`` and
    ``rgb-<T>-<i>-<j>.tif`` tiles, ``metadata.json`` (or ``metadata.pt`` where
    torch is installed) and optionally ``extra.yml``; split lists are
    ``PATH/datalist/<CAMERA>.<split>.txt`` (or ``PATH/<CAMERA>.<split>.txt``).
``rendered:PATH``
    Real RAW files; the target is :func:`isp_tf.raw.render_classical` of each.
    Split as ``paired``.
``synthetic[:N[:PHOTO,PHOTO...]]``
    ``N`` pairs unprocessed from the bundled photos (:mod:`isp_tf.data.synthetic`),
    all of them or only those named (``synthetic:8:chelsea,coffee``), photo
    ``i % len(photos)`` for pair ``i``. ``val``/``test`` draw different seeds.
``cameras[:N[:CAMERA,...[:PHOTO,...]]]``
    ``N`` pairs from the simulated cameras of :mod:`isp_tf.data.cameras` (whose
    EXIF and colour tags change the RAW), all or the named ones, camera
    ``i % len(cameras)`` for pair ``i``. ``val``/``test`` draw different seeds.

Where we differ from the originals: Zurich PNGs are normalised by the 10-bit
white level 1023 (PyNET divides by 4 * 255 = 1020); FiveK pairs are read from
the DNG itself, with black level subtracted (InvISP's preprocessing skipped it);
ParamISP's ``metadata.pt`` is a torch pickle, so our own fixtures and
conversions use ``metadata.json`` with the same keys.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import re
from fractions import Fraction
from typing import Callable, List, Optional, Tuple

import numpy as np

from isp_tf.data.cameras import camera_params_vector, quiet_camera_warnings
from isp_tf.errors import DatasetError, IspTfError
from isp_tf.raw.image import CFA_PATTERNS, Exif, RawImage
from isp_tf.raw.reader import RAW_EXTENSIONS

#: File extensions read as sRGB targets.
RGB_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
ZURICH_WHITE_LEVEL = 1023.0
HOLDOUT_EVERY = 10
EVAL_SPLITS = ("val", "test")
SPLITS = ("train",) + EVAL_SPLITS


@dataclasses.dataclass(frozen=True)
class PairExample:
    """One (RAW, sRGB) pair; ``load()`` returns ``(RawImage, rgb)``.

    ``rgb`` is ``(H, W, 3)`` float32 in [0, 1], aligned pixel for pixel with
    ``raw.bayer`` (same height and width).
    """

    key: str
    loader: Callable[[], Tuple[RawImage, np.ndarray]] = dataclasses.field(compare=False, repr=False)

    def load(self) -> Tuple[RawImage, np.ndarray]:
        try:
            raw, rgb = self.loader()
        except IspTfError:
            raise
        except Exception as exc:  # a decoder's own error: name the example
            raise DatasetError(f"{self.key}: could not be read ({type(exc).__name__}: {exc})") from exc
        if rgb.shape[:2] != raw.bayer.shape:
            raise DatasetError(f"{self.key}: the sRGB image is {rgb.shape[1]}x{rgb.shape[0]} but the "
                               f"RAW is {raw.bayer.shape[1]}x{raw.bayer.shape[0]}; they must be aligned")
        return raw, rgb


# --------------------------------------------------------------------------- helpers
def read_rgb(path) -> np.ndarray:
    """An sRGB image file as ``(H, W, 3)`` float32 in [0, 1] (8 or 16 bit; alpha dropped)."""
    import imageio.v3 as iio

    try:
        image = np.asarray(iio.imread(path))
    except Exception as exc:
        raise DatasetError(f"{path}: not a readable image ({exc})") from exc
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        image = image[..., :3]
    else:
        raise DatasetError(f"{path}: expected an RGB image, got shape {image.shape}")
    if np.issubdtype(image.dtype, np.integer):
        return image.astype(np.float32) / np.float32(np.iinfo(image.dtype).max)
    return np.clip(image.astype(np.float32), 0.0, 1.0)


def orient_raw(raw: RawImage) -> RawImage:
    """Apply ``raw.orientation`` to the Bayer mosaic; the CFA pattern and the
    per-site black levels follow their pixels.

    The new pattern is found by moving a map of CFA sites the same way as the
    pixels, so it is right for odd sizes too.
    """
    from isp_tf.raw import apply_orientation

    if raw.orientation in (None, 0, 1):
        return raw
    h, w = raw.bayer.shape
    site = ((np.arange(h)[:, None] % 2) * 2 + (np.arange(w)[None, :] % 2)).astype(np.uint8)
    order = [int(s) for s in np.asarray(apply_orientation(site, raw.orientation))[:2, :2].ravel()]
    black = np.asarray(raw.black_level, np.float64).reshape(-1)
    return dataclasses.replace(
        raw, bayer=np.ascontiguousarray(apply_orientation(raw.bayer, raw.orientation)),
        cfa_pattern="".join(raw.cfa_pattern[s] for s in order),
        black_level=black[order] if black.size == 4 else black, orientation=1)


def align_to_target(raw: RawImage, rgb: np.ndarray, key: str) -> RawImage:
    """Make ``raw`` match a target image that may be in display orientation.

    A camera JPEG (or rawpy's render) is rotated by the EXIF orientation while
    the sensor data is not: the mosaic is always oriented by the RAW's
    orientation tag (see :func:`orient_raw`), whatever the shapes: flips,
    180-degree turns and turns of a square frame keep the shape, so the shape
    cannot tell. Targets a few pixels smaller than the sensor area (renderers
    trim borders differently) are matched by cropping the RAW from the
    top-left; anything else is an error.
    """
    shape = rgb.shape[:2]
    raw = orient_raw(raw)
    if raw.bayer.shape != shape:
        dh, dw = raw.bayer.shape[0] - shape[0], raw.bayer.shape[1] - shape[1]
        if not (0 <= dh <= 16 and 0 <= dw <= 16):
            raise DatasetError(f"{key}: sRGB target is {shape[1]}x{shape[0]} but the RAW is "
                               f"{raw.width}x{raw.height}; they must show the same pixels")
        raw = dataclasses.replace(raw, bayer=raw.bayer[:shape[0], :shape[1]])
    return raw


def _holdout(items: list, split: str) -> list:
    """Deterministic hold-out: every ``HOLDOUT_EVERY``-th item (from the first) is ``val``/``test``."""
    items = sorted(items)
    if split == "train":
        return [x for i, x in enumerate(items) if i % HOLDOUT_EVERY != 0 or len(items) == 1]
    return [x for i, x in enumerate(items) if i % HOLDOUT_EVERY == 0]


def _require_dir(path: pathlib.Path, spec: str, what: str) -> pathlib.Path:
    if not path.is_dir():
        raise DatasetError(f"{spec}: {path} is missing ({what})")
    return path


def _files_by_stem(folder: pathlib.Path, extensions) -> dict:
    return {p.stem: p for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix.lower() in extensions and not p.name.startswith(".")}


def _missing(names, limit=5) -> str:
    names = sorted(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


# --------------------------------------------------------------------------- loaders
def _load_raw_rgb(raw_path, rgb_path, key):
    from isp_tf.raw import read_raw

    rgb = read_rgb(rgb_path)
    return align_to_target(read_raw(raw_path), rgb, key), rgb


def _load_rendered(raw_path):
    from isp_tf.data.synthetic import rendered_pair
    from isp_tf.raw import read_raw

    return rendered_pair(orient_raw(read_raw(raw_path)))  # display orientation, as every layout


def _load_zurich(raw_path, rgb_path):
    from isp_tf.raw import read_bayer_array

    raw = read_bayer_array(str(raw_path), cfa_pattern="RGGB", black_level=0,
                           white_level=ZURICH_WHITE_LEVEL)
    return raw, read_rgb(rgb_path)


def _load_synthetic(index, seed, names=None):
    from isp_tf.data.synthetic import synthesize_bundled

    pair = synthesize_bundled(index, seed, names=names)
    return pair.raw, pair.target


# --------------------------------------------------------------------------- readers
def paired_examples(path: pathlib.Path, split: str, spec: str) -> List[PairExample]:
    root = _require_dir(path, spec, "a folder of RAW files and sRGB images with the same stems")
    folder = root / split if (root / split).is_dir() else None
    if folder is None and split in EVAL_SPLITS:
        other = root / ("test" if split == "val" else "val")
        folder = other if other.is_dir() else None
    raws = _files_by_stem(folder or root, RAW_EXTENSIONS)
    rgbs = _files_by_stem(folder or root, RGB_EXTENSIONS)
    where = folder or root
    if not raws:
        raise DatasetError(f"{spec}: no RAW files ({', '.join(RAW_EXTENSIONS[:6])}...) in {where}")
    lonely = set(raws) - set(rgbs)
    if lonely:
        raise DatasetError(f"{spec}: RAW files without an sRGB image of the same stem in {where}: "
                           f"{_missing(lonely)}")
    stems = list(raws) if folder is not None else _holdout(list(raws), split)
    return [PairExample(f"{spec}/{s}", functools.partial(_load_raw_rgb, raws[s], rgbs[s], str(raws[s])))
            for s in sorted(stems)]


def rendered_examples(path: pathlib.Path, split: str, spec: str) -> List[PairExample]:
    root = _require_dir(path, spec, "a folder of RAW files")
    folder = root / split if (root / split).is_dir() else None
    raws = _files_by_stem(folder or root, RAW_EXTENSIONS)
    if not raws:
        raise DatasetError(f"{spec}: no RAW files ({', '.join(RAW_EXTENSIONS[:6])}...) in {folder or root}")
    stems = list(raws) if folder is not None else _holdout(list(raws), split)
    return [PairExample(f"{spec}/{s}", functools.partial(_load_rendered, raws[s])) for s in sorted(stems)]


def zurich_examples(path: pathlib.Path, split: str, spec: str) -> List[PairExample]:
    what = "Zurich RAW-to-RGB layout: {train,test}/huawei_raw/N.png and {train,test}/canon/N.jpg"
    _require_dir(path, spec, what)
    part = "train" if split == "train" else "test"
    raw_dir = _require_dir(path / part / "huawei_raw", spec, what)
    rgb_dir = _require_dir(path / part / "canon", spec, what)
    raws = _files_by_stem(raw_dir, (".png",))
    rgbs = _files_by_stem(rgb_dir, (".jpg", ".jpeg", ".png"))
    if not raws:
        raise DatasetError(f"{spec}: no Bayer PNGs in {raw_dir}")
    lonely = set(raws) - set(rgbs)
    if lonely:
        raise DatasetError(f"{spec}: {raw_dir} has PNGs without a JPEG in {rgb_dir}: {_missing(lonely)}")
    order = sorted(raws, key=lambda s: (0, int(s)) if s.isdigit() else (1, s))
    return [PairExample(f"{spec}/{part}/{s}", functools.partial(_load_zurich, raws[s], rgbs[s]))
            for s in order]


def fivek_examples(path: pathlib.Path, split: str, spec: str) -> List[PairExample]:
    what = "FiveK/InvISP layout: <CAMERA>_train.txt, <CAMERA>_test.txt, <CAMERA>/DNG/*.dng, <CAMERA>/RGB/*.jpg"
    _require_dir(path, spec, what)
    part = "train" if split == "train" else "test"
    if (path / "DNG").is_dir():  # one camera's folder: lists live beside it
        cameras = [(path, path.parent / f"{path.name}_{part}.txt")]
    else:
        cameras = [(path / lst.name[:-len(f"_{part}.txt")], lst) for lst in sorted(path.glob(f"*_{part}.txt"))]
    if not cameras or not all(lst.is_file() for _, lst in cameras):
        raise DatasetError(f"{spec}: no split list *_{part}.txt found ({what})")
    examples = []
    for cam_dir, lst in cameras:
        dng_dir = _require_dir(cam_dir / "DNG", spec, what)
        rgb_dir = _require_dir(cam_dir / "RGB", spec, what)
        stems = [s.strip() for s in lst.read_text().splitlines() if s.strip()]
        missing = [s for s in stems if not (dng_dir / f"{s}.dng").is_file() or not (rgb_dir / f"{s}.jpg").is_file()]
        if missing:
            raise DatasetError(f"{spec}: {lst.name} lists images whose {cam_dir.name}/DNG/<stem>.dng or "
                               f"{cam_dir.name}/RGB/<stem>.jpg is missing: {_missing(missing)}")
        examples += [PairExample(f"{spec}/{cam_dir.name}/{s}", functools.partial(
            _load_raw_rgb, dng_dir / f"{s}.dng", rgb_dir / f"{s}.jpg", str(dng_dir / f"{s}.dng")))
            for s in stems]
    return examples


# ParamISP stores the CFA as a 2x2 array of colour indices (0 R, 1 G, 2 B).
_TILE_RE = re.compile(r"^(raw|rgb)-(\d+)-(\d+)-(\d+)\.tiff?$")


def _paramisp_pattern(value) -> str:
    if isinstance(value, str) and value.upper() in CFA_PATTERNS:
        return value.upper()
    arr = np.asarray(value).reshape(-1)
    if arr.size == 4 and set(arr.tolist()) <= {0, 1, 2}:
        pattern = "".join("RGB"[int(c)] for c in arr)
        if pattern in CFA_PATTERNS:
            return pattern
    raise DatasetError(f"ParamISP bayer_pattern {value!r} is not one of {', '.join(CFA_PATTERNS)}")


def _read_simple_yaml(path: pathlib.Path) -> dict:
    """``key: value`` lines (ParamISP's ``extra.yml``); no other YAML is needed."""
    out = {}
    for line in path.read_text().splitlines():
        if ":" in line and not line.lstrip().startswith("#"):
            key, value = line.split(":", 1)
            out[key.strip()] = value.strip().strip("'\"")
    return out


def _number(value) -> Optional[float]:
    try:
        v = float(Fraction(str(value)))
    except (ValueError, ZeroDivisionError):
        return None
    return v if v > 0 else None


def _paramisp_metadata(folder: pathlib.Path) -> dict:
    if (folder / "metadata.json").is_file():
        return json.loads((folder / "metadata.json").read_text())
    if (folder / "metadata.pt").is_file():
        try:
            import torch
        except ImportError:
            raise DatasetError(f"{folder}/metadata.pt is a torch pickle and torch is not installed: "
                               f"convert it to metadata.json with the same keys") from None
        meta = torch.load(folder / "metadata.pt", weights_only=False)
        return {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in meta.items()}
    raise DatasetError(f"{folder}: metadata.json (or metadata.pt) is missing")


def _assemble_tiles(folder: pathlib.Path, kind: str) -> np.ndarray:
    import tifffile

    tiles = {}
    for p in folder.iterdir():
        m = _TILE_RE.match(p.name)
        if m and m.group(1) == kind:
            tiles[(int(m.group(3)), int(m.group(4)))] = p
    if not tiles:
        raise DatasetError(f"{folder}: no {kind}-<T>-<i>-<j>.tif tiles")
    rows = sorted({i for i, _ in tiles})
    cols = sorted({j for _, j in tiles})
    missing = [f"{kind} tile ({i}, {j})" for i in rows for j in cols if (i, j) not in tiles]
    if missing:
        raise DatasetError(f"{folder}: missing {_missing(missing)}")
    image = np.concatenate([np.concatenate([tifffile.imread(tiles[(i, j)]) for j in cols], axis=1)
                            for i in rows], axis=0)
    return image[..., 0] if kind == "raw" and image.ndim == 3 else image


def _load_paramisp(folder: pathlib.Path):
    meta = _paramisp_metadata(folder)
    bayer = _assemble_tiles(folder, "raw")
    rgb_int = _assemble_tiles(folder, "rgb")
    if "image_size" in meta:
        h, w = (int(v) for v in list(meta["image_size"])[:2])
        bayer, rgb_int = bayer[:h, :w], rgb_int[:h, :w]
    rgb = rgb_int[..., :3].astype(np.float32)
    if np.issubdtype(rgb_int.dtype, np.integer):
        rgb /= np.float32(np.iinfo(rgb_int.dtype).max)
    black = np.asarray(meta["black_level"], np.float64).reshape(-1)
    black = np.repeat(black, 4) if black.size == 1 else black
    wb = np.asarray(meta["white_balance"], np.float64).reshape(-1)[:3]
    cam_to_srgb = np.asarray(meta["camera_matrix"], np.float64).reshape(3, 3)
    cam_to_srgb = cam_to_srgb / cam_to_srgb.sum(axis=1, keepdims=True)
    exif = Exif()
    if (folder / "extra.yml").is_file():
        extra = _read_simple_yaml(folder / "extra.yml")
        exif = Exif(iso=_number(extra.get("iso_sensitivity")), exposure_time=_number(extra.get("exposure_time")),
                    f_number=_number(extra.get("f_number")), focal_length=_number(extra.get("focal_length")))
    from isp_tf.raw.color import cam_to_xyz_from_cam_to_srgb

    raw = RawImage(bayer=bayer, cfa_pattern=_paramisp_pattern(meta["bayer_pattern"]), black_level=black,
                   white_level=float(np.max(meta["white_level"])), wb_gains=wb / wb[1],
                   cam_to_xyz=cam_to_xyz_from_cam_to_srgb(cam_to_srgb), cam_to_srgb=cam_to_srgb,
                   exif=exif, path=str(folder), camera=meta.get("camera_name"))
    return raw, rgb


def paramisp_examples(path: pathlib.Path, split: str, spec: str) -> List[PairExample]:
    what = "ParamISP layout: <id>/{raw,rgb}-<T>-<i>-<j>.tif + metadata.json, datalist/<CAMERA>.<split>.txt"
    _require_dir(path, spec, what)
    lists = sorted((path / "datalist").glob(f"*.{split}.txt")) + sorted(path.glob(f"*.{split}.txt"))
    if not lists:
        raise DatasetError(f"{spec}: no split list datalist/<CAMERA>.{split}.txt in {path} ({what})")
    ids = [s.strip() for lst in lists for s in lst.read_text().splitlines() if s.strip()]
    missing = [i for i in ids if not (path / i).is_dir()]
    if missing:
        raise DatasetError(f"{spec}: the split lists name folders that are missing: {_missing(missing)}")
    return [PairExample(f"{spec}/{i}", functools.partial(_load_paramisp, path / i)) for i in ids]


DEFAULT_SYNTHETIC_COUNT = 56
_EVAL_SEED_OFFSET = 1_000_003


def camera_examples(rest: Optional[str], split: str, spec: str, seed: int = 0) -> List[PairExample]:
    """``cameras[:N[:CAMERA,...[:PHOTO,...]]]`` (:mod:`isp_tf.data.cameras`)."""
    from isp_tf.data.cameras import load_camera_pair, parse_cameras_spec

    n, cameras, photos = parse_cameras_spec(rest, spec)
    s = seed if split == "train" else seed + _EVAL_SEED_OFFSET
    return [PairExample(f"cameras/{split}/{cameras[i % len(cameras)]}/{i}",
                        functools.partial(load_camera_pair, i, s, tuple(cameras), tuple(photos))) for i in range(n)]


def synthetic_examples(rest: Optional[str], split: str, spec: str, seed: int = 0) -> List[PairExample]:
    """``synthetic[:N[:PHOTO,PHOTO...]]``: ``N`` pairs from all bundled photos, or only from
    the named ones (so evaluation can use photos training never saw)."""
    from isp_tf.data.photos import BUNDLED_PHOTOS, photo_path

    count, _, photos = (rest or "").partition(":")
    try:
        n = DEFAULT_SYNTHETIC_COUNT if not count else int(count)
        if n <= 0:
            raise ValueError
    except ValueError:
        raise DatasetError(f"{spec}: the count after 'synthetic:' must be a positive integer") from None
    names = [p.strip() for p in photos.split(",") if p.strip()] or list(BUNDLED_PHOTOS)
    for name in names:
        photo_path(name)  # DatasetError for a photo that is not bundled
    s = seed if split == "train" else seed + _EVAL_SEED_OFFSET
    return [PairExample(f"synthetic/{split}/{names[i % len(names)]}/{i}",
                        functools.partial(_load_synthetic, i, s, tuple(names))) for i in range(n)]


# --------------------------------------------------------------------------- decode
#: Layout of the metadata vector (``with_metadata=True``).
META_FIELDS = ("wb_gains", "cam_to_srgb", "cam_to_xyz", "exif", "params")
META_SIZES = (3, 9, 9, 4, 84)


def _exif_vector(exif) -> np.ndarray:
    """[focal_length, f_number, exposure_time, iso], 0 where unknown (as ParamISP)."""
    values = (exif.focal_length, exif.f_number, exif.exposure_time, exif.iso)
    return np.array([float(v) if v else 0.0 for v in values], np.float32)


# The per-frame metadata vectors of a RawImage, one function each: the training
# pipeline (``with_metadata``, RAW-NOD) and a model's vector port
# (``Port.from_raw``, read by infer) both compute them here.
def wb_gains_vector(raw) -> np.ndarray:
    """(3,) float32: the as-shot white-balance gains [R, G, B]."""
    return np.asarray(raw.wb_gains, np.float32).reshape(3)


def cam_to_srgb_vector(raw) -> np.ndarray:
    """(9,) float32: white-balanced camera RGB -> linear sRGB, row-major."""
    return np.asarray(raw.cam_to_srgb, np.float32).reshape(9)


def cam_to_xyz_vector(raw) -> np.ndarray:
    """(9,) float32: white-balanced camera RGB -> XYZ (D65), row-major (``RawImage.cam_to_xyz``)."""
    return np.asarray(raw.cam_to_xyz, np.float32).reshape(9)


def exif_vector(raw) -> np.ndarray:
    """(4,) float32: [focal_length, f_number, exposure_time, iso], 0 where unknown."""
    return _exif_vector(raw.exif)


META_VECTORS = {"wb_gains": wb_gains_vector, "cam_to_srgb": cam_to_srgb_vector,
                "cam_to_xyz": cam_to_xyz_vector, "exif": exif_vector,
                "params": camera_params_vector}  # ParamISP's encoded camera parameters (isp_tf.data.cameras)


def decode_example(example: PairExample, patch_size: int = 0):
    """Decode one pair: ``(mosaic (H, W) float32 in [0, 1], pattern index, rgb (H, W, 3), meta (25,))``.

    Raises:
      DatasetError: the pair cannot be read, or is smaller than ``patch_size``
        once cropped to start on a red pixel.
    """
    from isp_tf.raw import normalize_bayer, rggb_offset

    raw, rgb = example.load()
    mosaic = normalize_bayer(raw)
    dy, dx = rggb_offset(raw.cfa_pattern)
    if patch_size and (mosaic.shape[0] - dy < patch_size or mosaic.shape[1] - dx < patch_size):
        raise DatasetError(f"{example.key}: image {mosaic.shape[1]}x{mosaic.shape[0]} ({raw.cfa_pattern}) "
                           f"is smaller than patch_size {patch_size} (+{max(dy, dx)} to start on red)")
    with quiet_camera_warnings():  # missing EXIF is the norm in training data; infer warns
        meta = np.concatenate([META_VECTORS[name](raw) for name in META_FIELDS])
    return (mosaic.astype(np.float32, copy=False), np.int32(CFA_PATTERNS.index(raw.cfa_pattern)),
            np.ascontiguousarray(rgb, dtype=np.float32), meta)


LAYOUTS = {
    "paired": paired_examples,
    "zurich": zurich_examples,
    "fivek": fivek_examples,
    "paramisp": paramisp_examples,
    "rendered": rendered_examples,
}


def parse_spec(spec: str) -> Tuple[str, Optional[str]]:
    """``"LAYOUT:PATH"`` -> ``(layout, path)``; ``"synthetic"`` alone is allowed."""
    if not isinstance(spec, str) or not spec:
        raise DatasetError(f"dataset spec {spec!r} must be a 'LAYOUT:PATH' string")
    layout, _, rest = spec.partition(":")
    layout = layout.strip().lower()
    known = sorted(LAYOUTS) + ["synthetic", "cameras", "rawnod"]
    if layout not in known:
        raise DatasetError(f"dataset spec {spec!r}: unknown layout {layout!r} (known: {', '.join(known)})")
    if layout not in ("synthetic", "cameras") and not rest:
        raise DatasetError(f"dataset spec {spec!r}: give a folder, as '{layout}:PATH'")
    if layout not in ("synthetic", "cameras") and not pathlib.Path(rest).expanduser().exists():
        # checked here, where no TensorFlow has started: a command fails before writing anything
        raise DatasetError(f"{spec}: {rest} is missing (no such folder)")
    return layout, rest or None


def find_examples(spec: str, split: str = "train", seed: int = 0) -> List[PairExample]:
    """All pairs of one ``"LAYOUT:PATH"`` spec for ``split`` (nothing is decoded)."""
    if split not in SPLITS:
        raise DatasetError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    layout, rest = parse_spec(spec)
    if layout == "synthetic":
        return synthetic_examples(rest, split, spec, seed)
    if layout == "cameras":
        return camera_examples(rest, split, spec, seed)
    if layout == "rawnod":
        raise DatasetError(f"{spec}: rawnod yields detection examples; use "
                           f"isp_tf.data.rawnod.build_detection_dataset")
    examples = LAYOUTS[layout](pathlib.Path(rest).expanduser(), split, spec)
    if not examples:
        raise DatasetError(f"{spec}: no examples for split {split!r}")
    return examples
