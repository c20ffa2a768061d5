"""Reading RAW photos into :class:`RawImage`: any LibRaw format, Bayer dumps, Bayer PNGs.

Every fact is read from the file, cross-checking sources where one is known
to be unreliable:

* CFA pattern: LibRaw's colour index of the *visible* area's top-left 2x2
  block (``raw_color`` at the margins), checked to repeat over 8x8 pixels, so
  an odd top/left margin that shifts the sensor's pattern is handled.
* Black level: LibRaw's per-channel black (which already folds in a 2x2
  ``BlackLevel`` pattern and masked-area estimates) mapped to the four
  positions of the visible 2x2 block.
* White balance: camera ("as shot") multipliers normalised to G = 1; when
  they are invalid (e.g. the -1 of some Canon CRWs, or zeros) the DNG
  AsShotNeutral, then LibRaw's daylight multipliers are used.
* Colour: for a DNG, its ColorMatrix1/2 nearest to D65 (read with tifffile;
  LibRaw's ``rgb_xyz_matrix`` is all zeros for DNGs); otherwise LibRaw's
  ``rgb_xyz_matrix``. See :func:`_cam_to_srgb`.
* EXIF: the file's EXIF tags (exifread) when present, LibRaw's decoded values
  otherwise (e.g. the CIFF records of a CRW). A 0 means unknown -> ``None``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import struct
import threading

import numpy as np

from isp_tf.errors import (CorruptRawError, InputShapeError, LinearRawError, MissingFileError,
                           NotRawError, RawReadError, UnsupportedCFAError,
                           UnsupportedSensorError)
from isp_tf.raw.bayer import check_cfa_pattern
from isp_tf.raw.color import cam_to_srgb_from_xyz_to_cam, cam_to_xyz_from_cam_to_srgb
from isp_tf.raw.image import Exif, RawImage

#: LibRaw ``sizes.flip`` -> EXIF orientation code (dcraw maps tag 274 via "50132467").
FLIP_TO_ORIENTATION = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}

# DNG CalibrationIlluminant codes -> colour temperature (K), to pick the matrix nearest D65.
_ILLUMINANT_KELVIN = {1: 5500, 2: 4150, 3: 2850, 4: 5500, 9: 5500, 10: 6500, 11: 7500,
                      12: 6430, 13: 5000, 14: 4150, 15: 3450, 17: 2856, 18: 4874, 19: 6774,
                      20: 5503, 21: 6504, 22: 7504, 23: 5003, 24: 3200}

#: File name endings of camera RAW files (any format LibRaw reads), most common first:
#: what folders given to infer, datasets and samples are searched for.
RAW_EXTENSIONS = (".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".orf",
                  ".rw2", ".pef", ".srw", ".raf", ".3fr", ".ari", ".dcr", ".erf", ".fff", ".iiq",
                  ".k25", ".kdc", ".mef", ".mos", ".mrw", ".raw", ".rwl", ".x3f")

#: The TIFF-based ones among them (a hint when a TIFF header is damaged).
TIFF_RAW_EXTENSIONS = {".dng", ".cr2", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".pef", ".srw",
                  ".orf", ".rw2", ".raw", ".rwl", ".iiq", ".3fr", ".erf", ".kdc", ".dcr",
                  ".mos", ".mef", ".fff"}

# First bytes of RAW containers LibRaw knows; a file that starts like one but that
# LibRaw refuses is damaged, not "not RAW".
_RAW_MAGIC = ((0, b"II*\0"), (0, b"MM\0*"), (6, b"HEAPCCDR"), (0, b"FUJIFILM"), (0, b"IIRO"),
              (0, b"IIRS"), (0, b"MMOR"), (0, b"IIU\0"), (0, b"FOVb"), (4, b"ftypcrx"),
              (0, b"\0MRM"), (0, b"ARRI"), (0, b"RIFF"))


# --------------------------------------------------------------------------- helpers
def _sniff(path) -> bytes:
    """The first 16 bytes; an unreadable file (permissions, I/O error) is a RawReadError."""
    try:
        with open(path, "rb") as f:
            return f.read(16)
    except OSError as e:
        raise RawReadError(path, f"cannot be read: {e.strerror or e}") from None


def _looks_raw(head: bytes) -> bool:
    return any(head[o:o + len(m)] == m for o, m in _RAW_MAGIC)


def _is_tiff(head: bytes) -> bool:
    return head[:4] in (b"II*\0", b"MM\0*")


class _QuietFilter(logging.Filter):
    """Drops exifread/tifffile log records while the current thread is parsing a file
    (they complain about odd maker-note tags); thread-safe, unlike changing levels."""

    def __init__(self):
        super().__init__()
        self.local = threading.local()

    def filter(self, record):
        return not getattr(self.local, "depth", 0)


_QUIET = _QuietFilter()
for _name in ("exifread", "tifffile"):
    logging.getLogger(_name).addFilter(_QUIET)


@contextlib.contextmanager
def _quiet():
    _QUIET.local.depth = getattr(_QUIET.local, "depth", 0) + 1
    try:
        yield
    finally:
        _QUIET.local.depth -= 1


def _tiff_tags(path) -> dict:
    """IFD0 tags of a TIFF-based file by code -> value ({} when not TIFF or unreadable).

    Under the key ``"raw"``: the tags of the main image IFD (NewSubfileType 0),
    which in many DNGs is a SubIFD of IFD0 (IFD0 holding a preview); the DNG
    colour and white-balance tags always live in IFD0.
    """
    import tifffile

    try:
        with _quiet(), tifffile.TiffFile(path) as tif:
            ifd0 = tif.pages[0]
            tags = {t.code: t.value for t in ifd0.tags.values()}
            main = ifd0
            if int(tags.get(254, 0)) != 0:
                for sub in ifd0.pages or ():
                    if int(getattr(sub, "subfiletype", 1)) == 0:
                        main = sub
                        break
            tags["raw"] = {t.code: t.value for t in main.tags.values()}
            return tags
    except Exception:  # noqa: BLE001 - any parse problem just means "no tags"
        return {}


def _tag_int(tags, code, default=None):
    """A one-value numeric tag as an int; ``default`` when absent, ``None`` when it holds anything else
    (text, several values: a damaged tag)."""
    if code not in tags:
        return default
    v = np.ravel(np.asarray(tags[code], dtype=object))
    try:
        return int(v[0]) if v.size == 1 else None
    except (TypeError, ValueError, OverflowError):
        return None


def _ratio_list(value) -> np.ndarray:
    """tifffile gives RATIONAL/SRATIONAL arrays as flat (num, den, num, den...) tuples.

    A value that is not such pairs (a damaged tag of another type or an odd count) gives an
    empty array, a zero denominator inf/nan: the callers treat both as "no usable value".
    """
    try:
        v = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return np.zeros(0)
    if v.size % 2:
        return np.zeros(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return v[0::2] / v[1::2]


def _exif_tags(path) -> dict:
    import exifread

    try:
        with _quiet(), open(path, "rb") as f:
            return exifread.process_file(f, details=False)
    except Exception:  # noqa: BLE001
        return {}


def _tag_float(tags, *names):
    """(found, value) of the first tag present; value None when 0/invalid."""
    for name in names:
        if name in tags:
            vals = tags[name].values
            try:
                v = float(vals[0] if isinstance(vals, (list, tuple)) else vals)
            except (TypeError, ValueError, ZeroDivisionError, IndexError):
                return True, None
            return True, (v if np.isfinite(v) and v > 0 else None)
    return False, None


def _read_exif(tags, other, sources=None) -> Exif:
    """EXIF tags when the file has them; LibRaw's decoded ``other`` otherwise.

    Where the EXIF tag exists and says 0 (unknown), the result is None even if
    LibRaw reports a value: LibRaw turns a zero APEX ShutterSpeedValue /
    ApertureValue into 1.0 s and f/1.0, which are not facts about the photo.
    """
    sources = {} if sources is None else sources

    def pick(field, names, libraw_value):
        found, v = _tag_float(tags, *names)
        if found:
            sources[field] = "exif" if v is not None else None
            return v
        try:
            lv = float(libraw_value) if libraw_value is not None else 0.0
        except (TypeError, ValueError):
            lv = 0.0
        ok = np.isfinite(lv) and lv > 0
        sources[field] = "libraw" if ok else None
        return lv if ok else None

    o = other
    return Exif(
        iso=pick("iso", ("EXIF ISOSpeedRatings", "Image ISOSpeedRatings", "EXIF PhotographicSensitivity"),
                 getattr(o, "iso_speed", None)),
        exposure_time=pick("exposure_time", ("EXIF ExposureTime", "Image ExposureTime"),
                           getattr(o, "shutter_speed", None)),
        f_number=pick("f_number", ("EXIF FNumber", "Image FNumber"), getattr(o, "aperture", None)),
        focal_length=pick("focal_length", ("EXIF FocalLength", "Image FocalLength"),
                          getattr(o, "focal_length", None)),
    )


def _ciff_make_model(path):
    """Make and model from a Canon CRW (CIFF) file's record 0x080A, or None."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        if data[:2] != b"II" or data[6:14] != b"HEAPCCDR":
            return None
        hlen = struct.unpack_from("<I", data, 2)[0]

        def walk(start, end, depth):
            dir_at = start + struct.unpack_from("<I", data, end - 4)[0]
            (n,) = struct.unpack_from("<H", data, dir_at)
            for i in range(n):
                tag, size, off = struct.unpack_from("<HII", data, dir_at + 2 + 10 * i)
                if tag & 0x3FFF == 0x080A:
                    parts = data[start + off:start + off + size].split(b"\0")
                    return " ".join(p.decode("ascii", "replace") for p in parts[:2] if p)
                if (tag >> 8) in (0x28, 0x30) and depth < 4:
                    found = walk(start + off, start + off + size, depth + 1)
                    if found:
                        return found
            return None

        return walk(hlen, len(data), 0)
    except (OSError, struct.error, IndexError):
        return None


def _camera_name(tags, path, head, sources=None):
    """The camera name from EXIF Make/Model, else a CRW's CIFF record (rawpy 0.28 exposes
    no LibRaw make/model); ``sources["camera"]`` says which."""
    sources = {} if sources is None else sources
    sources["camera"] = None
    make = str(tags.get("Image Make", "")).strip()
    model = str(tags.get("Image Model", "")).strip()
    if make or model:
        sources["camera"] = "exif"
        if model.lower().startswith(make.lower()):
            return model or None
        return f"{make} {model}".strip()
    if head[6:14] == b"HEAPCCDR":
        name = _ciff_make_model(path)
        if name:
            sources["camera"] = "ciff"
            make, _, model = name.partition(" ")
            return model if model.lower().startswith(make.lower()) else name
    return None


def _valid_gains(values):
    v = np.asarray(values[:3], dtype=np.float64)
    if v.shape != (3,) or not np.all(np.isfinite(v)) or np.any(v <= 0):
        return None
    return v / v[1]


def _dng_color(tags):
    """(xyz_to_cam 3x3 or None) from DNG ColorMatrix1/2, the one nearest D65."""
    candidates = []
    for cm_tag, ill_tag in ((50721, 50778), (50722, 50779)):
        if cm_tag in tags:
            m = _ratio_list(tags[cm_tag])
            if m.size == 9 and np.any(m):
                kelvin = _ILLUMINANT_KELVIN.get(_tag_int(tags, ill_tag, 0), 1e6)
                candidates.append((abs(kelvin - 6504), m.reshape(3, 3)))
    if not candidates:
        return None
    return min(candidates, key=lambda c: c[0])[1]


def _cam_to_srgb(rp, tiff):
    """Camera (white-balanced) -> linear sRGB, from the most specific source.

    1. A DNG's own ColorMatrix1/2 (nearest D65). LibRaw leaves ``rgb_xyz_matrix``
       at zero for DNGs, except when the camera name is in its built-in table,
       where it reports the table's matrix instead of the file's: the file's
       calibration wins (and :func:`write_dng` round trips exactly).
    2. LibRaw's ``rgb_xyz_matrix`` (its table of Adobe matrices per camera).
    3. LibRaw's ``color_matrix`` (camera -> sRGB some formats store).
    4. Identity: no colour information anywhere, camera RGB is taken as sRGB.
    """
    candidates = []
    dng_m = _dng_color(tiff) if 50706 in tiff else None
    if dng_m is not None:
        candidates.append(lambda: cam_to_srgb_from_xyz_to_cam(dng_m))
    xyz_to_cam = np.asarray(rp.rgb_xyz_matrix, dtype=np.float64)[:3]
    if np.any(xyz_to_cam):
        candidates.append(lambda: cam_to_srgb_from_xyz_to_cam(xyz_to_cam))
    rgb_cam = np.asarray(rp.color_matrix, dtype=np.float64)[:, :3]
    if np.any(rgb_cam) and np.all(np.abs(rgb_cam.sum(axis=1)) > 1e-6):
        candidates.append(lambda: rgb_cam / rgb_cam.sum(axis=1, keepdims=True))
    for make in candidates:  # a degenerate (singular) matrix falls through to the next source
        try:
            m = make()
        except (ValueError, np.linalg.LinAlgError):
            continue
        if np.all(np.isfinite(m)):
            return m
    return np.eye(3)


# --------------------------------------------------------------------------- read_raw
def _open_rawpy(path, head):
    import rawpy

    try:
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:  # a file name that is not UTF-8: rawpy encodes str paths strictly,
            with open(path, "rb") as f:  # so hand it the bytes (LibRaw's open_buffer) instead
                return rawpy.imread(f)
        return rawpy.imread(path)
    except rawpy.LibRawFileUnsupportedError as e:
        try:
            err = _why_refused(path, head, _msg(e))
        except Exception:  # noqa: BLE001 - a diagnosis must never mask the real problem
            err = CorruptRawError(path, f"LibRaw cannot parse it: {_msg(e)}")
        raise err from None
    except rawpy.LibRawIOError as e:
        raise CorruptRawError(path, f"read error: the file is truncated or its tags point outside it "
                                    f"(damaged): {_msg(e)}") from None
    except rawpy.LibRawError as e:
        raise CorruptRawError(path, f"LibRaw failed to open it: {_msg(e)}") from None



def _broken_link(path):
    """Raise the error for a symbolic link that leads nowhere (a loop or a missing target)."""
    try:
        os.stat(path)
    except OSError as e:
        import errno

        if e.errno == errno.ELOOP:
            raise RawReadError(path, "is a symbolic link loop (it never reaches a file)") from None
    raise MissingFileError(f"{path}: broken symbolic link (its target {os.readlink(path)!r} does not exist)")


def _check_dng_strips(path, raw_ifd):
    """Refuse an uncompressed DNG whose sample size or strip sizes contradict its image size.

    LibRaw trusts ImageWidth/ImageLength/BitsPerSample and reads whatever bytes
    follow StripOffsets, so a BitsPerSample of 7 on 16-bit data or strips shorter
    than the image decode "successfully" into wrong pixels.  Checked for strips of
    uncompressed CFA data only (tiled or compressed data: LibRaw's decoders check).
    Extra bytes past the image are tolerated (they are not read).
    """
    if _tag_int(raw_ifd, 262, -1) != 32803 or _tag_int(raw_ifd, 259, 1) != 1 or 322 in raw_ifd:
        return
    bits = _tag_int(raw_ifd, 258, 1)
    width, height = _tag_int(raw_ifd, 256, 0), _tag_int(raw_ifd, 257, 0)
    if None in (bits, width, height):
        raise CorruptRawError(path, "damaged size tags (ImageWidth, ImageLength or BitsPerSample is not "
                                    "one number)")
    if not 8 <= bits <= 32:
        raise CorruptRawError(path, f"BitsPerSample {bits}: a DNG mosaic stores 8 to 32 bits a "
                                    f"sample (damaged tag)")
    try:
        counts = np.ravel(np.asarray(raw_ifd.get(279, ()), dtype=np.int64))
        offsets = np.ravel(np.asarray(raw_ifd.get(273, ()), dtype=np.int64))
    except (TypeError, ValueError, OverflowError):
        raise CorruptRawError(path, "damaged StripOffsets / StripByteCounts tags") from None
    if counts.size == 0:
        return
    needed = -(-width * bits // 8) * height
    stored = int(np.sum(counts))
    if stored < needed:
        raise CorruptRawError(path, f"StripByteCounts holds {stored} bytes, but a {width}x{height} mosaic "
                                    f"of {bits}-bit samples needs {needed} (damaged tags or "
                                    f"truncated pixel data)")
    if offsets.size == counts.size:
        end = int(np.max(offsets + counts.clip(max=needed)))
        size = os.path.getsize(path)
        if end > size:  # checked here: LibRaw would print "Unexpected end of file" and decode zeros
            raise CorruptRawError(path, f"truncated: the pixel data ends at byte {end}, the file at {size}")


def _why_refused(path, head, libraw_msg) -> RawReadError:
    """The specific error for a file LibRaw calls 'unsupported'."""
    if head[:4] == b"FOVb":
        return UnsupportedSensorError(path, "Sigma Foveon X3F sensor (three colour layers per "
                                            "pixel), not a Bayer mosaic")
    if _is_tiff(head):
        tags = _tiff_tags(path)
        if not tags:
            return CorruptRawError(path, "its TIFF structure is truncated or damaged")
        raw_ifd = tags["raw"]
        photometric = int(raw_ifd.get(262, -1))
        if 50706 in tags:  # DNGVersion: a DNG that LibRaw refuses; say why
            size = (int(raw_ifd.get(257, 0)), int(raw_ifd.get(256, 0)))
            if min(size) == 0:
                return CorruptRawError(path, f"{size[0]}x{size[1]} pixels: an image side of 0 (damaged "
                                             f"ImageWidth/ImageLength tags)")
            if 0 < min(size) < 22:
                return NotRawError(path, f"{size[0]}x{size[1]} pixels: LibRaw reads no image "
                                         f"under 22 pixels a side")
            if photometric in (2, 6, 34892):
                return LinearRawError(path, "linear DNG: the pixels are already demosaiced RGB")
            if photometric in (0, 1):
                return UnsupportedSensorError(path, "monochrome DNG (no colour filter array)")
            if photometric == 32803:
                dims = tuple(int(d) for d in np.ravel(raw_ifd.get(33421, (2, 2))))
                cfa = raw_ifd.get(33422, b"")
                cfa = bytes(cfa) if isinstance(cfa, (bytes, bytearray)) else bytes(
                    np.asarray(cfa, dtype=np.uint8).ravel())
                if dims != (2, 2):
                    return UnsupportedSensorError(path, f"{dims[0]}x{dims[1]} colour filter "
                                                        f"pattern, only 2x2 Bayer is supported")
                letters = "".join("RGBCMYW?"[min(c, 7)] for c in cfa)
                if letters not in ("RGGB", "GRBG", "GBRG", "BGGR"):
                    return UnsupportedCFAError(path, f"CFA pattern {letters!r} is not one of "
                                                     f"RGGB, GRBG, GBRG, BGGR")
            return CorruptRawError(path, f"a DNG that LibRaw cannot decode (damaged or an "
                                         f"unsupported variant): {libraw_msg}")
        if 271 in tags or photometric in (32803, 34892):  # camera-written TIFF-based RAW
            return CorruptRawError(path, f"a camera TIFF-based RAW that LibRaw cannot parse "
                                         f"(truncated or damaged): {libraw_msg}")
        kind = {1: "greyscale", 2: "RGB", 6: "YCbCr"}.get(photometric)
        suffix = pathlib.Path(path).suffix
        if kind and 50706 not in tags and int(raw_ifd.get(277, 1)) in ((1,) if photometric == 1 else (3, 4)):
            renamed = f" renamed {suffix}" if suffix.lower() in TIFF_RAW_EXTENSIONS else ""
            return NotRawError(path, f"an ordinary {kind} TIFF image{renamed}, not a camera RAW file")
        if suffix.lower() in TIFF_RAW_EXTENSIONS:
            return CorruptRawError(path, f"named like a RAW file but its TIFF directory holds "
                                         f"no RAW tags (damaged header?): {libraw_msg}")
        return NotRawError(path, "a TIFF image, not a camera RAW file")
    if _looks_raw(head):
        return CorruptRawError(path, f"starts like a RAW file but LibRaw cannot parse it "
                                     f"(truncated or damaged): {libraw_msg}")
    return NotRawError(path, f"not a RAW file LibRaw can read ({_describe(head)})")


def _msg(e):
    a = e.args[0] if e.args else e
    return a.decode("utf-8", "replace") if isinstance(a, bytes) else str(a)


def _describe(head: bytes) -> str:
    if head[:3] == b"\xff\xd8\xff":
        return "it is a JPEG image"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "it is a PNG image"
    try:
        head.decode("utf-8")
        return "it looks like a text file"
    except UnicodeDecodeError:
        return "unknown format"


def _cfa_from_libraw(rp, path) -> str:
    sizes = rp.sizes
    desc = rp.color_desc.decode("ascii", "replace")
    idx = np.array([[rp.raw_color(sizes.top_margin + y, sizes.left_margin + x)
                     for x in range(8)] for y in range(8)])
    if not (np.all(idx[2:] == idx[:-2]) and np.all(idx[:, 2:] == idx[:, :-2])):
        raise UnsupportedCFAError(path, "the colour filter pattern does not repeat every 2x2 "
                                        "pixels (not a Bayer sensor)")
    try:
        letters = "".join(desc[c] for c in idx[:2, :2].ravel())
    except IndexError:
        raise UnsupportedCFAError(path, f"colour indices {idx[:2, :2].tolist()} outside the "
                                        f"colour description {desc!r}") from None
    if letters not in ("RGGB", "GRBG", "GBRG", "BGGR"):
        raise UnsupportedCFAError(path, f"CFA pattern {letters!r} is not one of RGGB, GRBG, "
                                        f"GBRG, BGGR")
    return letters


def read_raw(path) -> RawImage:
    """Decode a camera RAW file (any format LibRaw reads: DNG, CR2, CRW, NEF, ARW...).

    Returns a :class:`RawImage` with the visible sensor area and the metadata
    described in this module's docstring.

    Raises (all naming the file and the reason):
      MissingFileError: the path does not exist.
      NotRawError: an empty file, a JPEG/PNG/TIFF image, text, anything LibRaw rejects.
      CorruptRawError: a truncated or damaged RAW file.
      LinearRawError: a linear (already demosaiced) DNG.
      UnsupportedSensorError: X-Trans, Foveon/multi-layer, monochrome sensors.
      UnsupportedCFAError: a 2x2 pattern other than RGGB, GRBG, GBRG, BGGR (e.g. CYGM).
    """
    import rawpy

    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    p = pathlib.Path(path)
    if not p.exists():
        if p.is_symlink():
            _broken_link(path)
        raise MissingFileError(f"{path}: no such RAW file")
    if p.is_dir():
        raise NotRawError(path, "is a directory, not a RAW file")
    head = _sniff(path)
    if not head:
        raise NotRawError(path, "empty file")
    with _quiet():
        rp = _open_rawpy(path, head)
    with rp:
        try:
            tiff = _tiff_tags(path) if _is_tiff(head) else {}
            if 50706 in tiff:
                _check_dng_strips(path, tiff["raw"])
            if rp.raw_type != rawpy.RawType.Flat:
                photometric = tiff.get("raw", {}).get(262)
                if photometric == 34892 or (50706 in tiff and photometric != 32803):
                    raise LinearRawError(path, "linear DNG: the pixels are already demosaiced "
                                               "RGB, there is no Bayer mosaic to read")
                raise UnsupportedSensorError(path, "not a Bayer mosaic: several colours per "
                                                   "pixel (Foveon or demosaiced data)")
            try:
                pattern = rp.raw_pattern
            except NotImplementedError:  # rawpy: a filter layout it cannot describe
                raise UnsupportedSensorError(path, f"colour filter layout (LibRaw filters "
                                                   f"code) that is not a Bayer mosaic") from None
            if pattern is None or pattern.shape == (1, 1) or rp.num_colors == 1:
                raise UnsupportedSensorError(path, "monochrome sensor (no colour filter array)")
            if pattern.shape == (6, 6):
                raise UnsupportedSensorError(path, "Fujifilm X-Trans sensor (6x6 colour filter "
                                                   "pattern), only 2x2 Bayer sensors are supported")
            cfa = _cfa_from_libraw(rp, path)
            bayer = np.array(rp.raw_image_visible, copy=True)
            sizes = rp.sizes
            per_channel = np.asarray(rp.black_level_per_channel, dtype=np.float64)
            idx = [rp.raw_color(sizes.top_margin + y, sizes.left_margin + x)
                   for y in (0, 1) for x in (0, 1)]
            black = per_channel[idx].astype(np.float32)
            white = float(rp.white_level)
            wb = _valid_gains(rp.camera_whitebalance)
            if wb is None and 50728 in tiff:
                neutral = _ratio_list(tiff[50728])
                wb = _valid_gains(1.0 / neutral) if np.all(neutral > 0) else None
            if wb is None:
                wb = _valid_gains(rp.daylight_whitebalance)
            if wb is None:
                wb = np.ones(3)
            cam_to_srgb = _cam_to_srgb(rp, tiff)
            orientation = FLIP_TO_ORIENTATION.get(int(sizes.flip), 1)
            other = rp.other
        except RawReadError:
            raise
        except rawpy.LibRawIOError as e:
            raise CorruptRawError(path, f"pixel data is truncated: {_msg(e)}") from None
        except rawpy.LibRawError as e:
            raise CorruptRawError(path, f"pixel data is damaged, LibRaw could not decode it: "
                                        f"{_msg(e)}") from None
    # exifread for every format LibRaw opened (it parses TIFF-based RAWs and some others, e.g.
    # CR3/RAF/ORF/RW2 depending on its version; {} where it cannot), LibRaw's fields otherwise
    tags = _exif_tags(path)
    sources = {}
    exif = _read_exif(tags, other, sources)
    camera = _camera_name(tags, path, head, sources)
    return RawImage(
        bayer=bayer, cfa_pattern=cfa, black_level=black, white_level=white,
        wb_gains=wb.astype(np.float32), cam_to_xyz=cam_to_xyz_from_cam_to_srgb(cam_to_srgb),
        cam_to_srgb=cam_to_srgb, exif=exif, orientation=orientation,
        path=path, camera=camera, sources=sources)


# --------------------------------------------------------------------------- bare arrays
def _as_exif(exif) -> Exif:
    if exif is None:
        return Exif()
    if isinstance(exif, Exif):
        return exif
    if isinstance(exif, dict):
        unknown = set(exif) - {"iso", "exposure_time", "f_number", "focal_length"}
        if unknown:
            raise RawReadError("<exif>", f"unknown exif fields {sorted(unknown)}")
        return Exif(**exif)
    raise RawReadError("<exif>", f"exif must be an Exif, a dict or None, got "
                                 f"{type(exif).__name__}")


def read_bayer_array(src, *, shape=None, cfa_pattern, black_level, white_level,
                     wb_gains=None, color_matrix=None, dtype="<u2", exif=None) -> RawImage:
    """A :class:`RawImage` from a bare Bayer mosaic plus metadata you supply.

    Args:
      src: a headerless dump (file of ``shape`` ``dtype`` values, row-major),
        a single-channel 8/16-bit PNG/TIFF mosaic (as in the Zurich RAW-to-RGB
        data set), or a 2-D array.
      shape: (rows, cols); required for a headerless dump, checked otherwise.
      cfa_pattern: one of RGGB, GRBG, GBRG, BGGR (there is nothing to read it from).
      black_level: 1 or 4 values (4 in CFA order).
      white_level: saturation value.
      wb_gains: (R, G, B) gains, normalised to G = 1 here; default 1, 1, 1.
      color_matrix: 3x3 XYZ -> camera matrix (DNG ColorMatrix convention,
        LibRaw's ``rgb_xyz_matrix``); default: camera RGB is taken as sRGB.
      dtype: numpy dtype of a headerless dump (default little-endian uint16).
      exif: :class:`Exif`, dict of its fields, or None.

    Raises:
      MissingFileError; NotRawError (size does not match ``shape`` x ``dtype``,
      or an image that is not single-channel); InputShapeError;
      UnsupportedCFAError; RawReadError (inconsistent levels, gains, matrix).
    """
    where = "<array>"
    if isinstance(src, (str, os.PathLike)):
        where = os.fspath(src)
        p = pathlib.Path(where)
        if not p.exists():
            raise MissingFileError(f"{where}: no such Bayer file")
        head = _sniff(where)
        if head[:8] == b"\x89PNG\r\n\x1a\n" or _is_tiff(head):
            import imageio.v3 as iio

            try:
                mosaic = np.asarray(iio.imread(where))
            except Exception as e:  # noqa: BLE001
                raise CorruptRawError(where, f"cannot decode the image: {e}") from None
            if mosaic.ndim != 2:
                raise NotRawError(where, f"a Bayer image must have one channel, got shape "
                                         f"{mosaic.shape}")
        else:
            if shape is None:
                raise InputShapeError(f"{where}: a headerless Bayer dump needs shape=(rows, cols)")
            if min(int(s) for s in shape) < 2:
                raise InputShapeError(f"{where}: Bayer shape {shape[0]}x{shape[1]} is smaller than one 2x2 block")
            dt = np.dtype(dtype)
            expected = int(shape[0]) * int(shape[1]) * dt.itemsize
            size = p.stat().st_size
            if size != expected:
                raise NotRawError(where, f"{size} bytes, but {shape[0]}x{shape[1]} {dt} "
                                         f"needs {expected}")
            mosaic = np.fromfile(where, dtype=dt).reshape(int(shape[0]), int(shape[1]))
            mosaic = mosaic.astype(dt.newbyteorder("="), copy=False)
    else:
        mosaic = np.asarray(src)
    if mosaic.ndim != 2:
        raise InputShapeError(f"{where}: a Bayer mosaic must be 2-D, got shape {mosaic.shape}")
    if shape is not None and tuple(mosaic.shape) != tuple(int(s) for s in shape):
        if min(int(s) for s in shape) < 2:
            raise InputShapeError(f"{where}: Bayer shape {shape[0]}x{shape[1]} is smaller than one 2x2 block")
        raise InputShapeError(f"{where}: mosaic is {mosaic.shape}, expected {tuple(shape)}")
    if min(mosaic.shape) < 2:
        raise InputShapeError(f"{where}: mosaic {mosaic.shape} is smaller than one 2x2 block")
    pattern = check_cfa_pattern(cfa_pattern, where)
    black = np.asarray(black_level, dtype=np.float32).ravel()
    if black.size == 1:
        black = np.repeat(black, 4)
    if black.size != 4:
        raise RawReadError(where, f"black_level needs 1 or 4 values, got {black.size}")
    if not float(white_level) > float(black.max()):
        raise RawReadError(where, f"white level {white_level} must exceed the black level "
                                  f"{black.tolist()}")
    wb = np.ones(3) if wb_gains is None else _valid_gains(np.asarray(wb_gains, np.float64))
    if wb is None:
        raise RawReadError(where, f"wb_gains must be 3 positive numbers, got {wb_gains}")
    if color_matrix is None:
        cam_to_srgb = np.eye(3)
    else:
        cm = np.asarray(color_matrix, dtype=np.float64)
        if cm.shape != (3, 3):
            raise RawReadError(where, f"color_matrix must be 3x3, got {cm.shape}")
        cam_to_srgb = cam_to_srgb_from_xyz_to_cam(cm)
    return RawImage(
        bayer=mosaic, cfa_pattern=pattern, black_level=black, white_level=float(white_level),
        wb_gains=wb.astype(np.float32), cam_to_xyz=cam_to_xyz_from_cam_to_srgb(cam_to_srgb),
        cam_to_srgb=cam_to_srgb, exif=_as_exif(exif),
        path=None if where == "<array>" else where)
