"""The malformed-input corpus: every bad (and valid-but-unusual) input a user may throw at isp_tf.

:func:`build` writes it into a folder at test time (nothing binary is committed:
every file is made here, from :func:`isp_tf.raw.write_dng`, the low-level
:func:`isp_tf.raw.dng.write_tiff`, byte surgery on those, tifffile for the
layouts our writer never produces, and the bundled ``sample_RAW_photos``) and
returns :class:`Entry` records saying what each input is and what answer is
expected.  ``tests/reliability/run_corpus.py`` pushes every entry through the
public commands; ``test_corpus.py`` asserts the answers and ``report.py``
tabulates them in ``docs/RELIABILITY.md``.

Kinds of entries (``Entry.kind``):

* ``raw``: a file given to ``read_raw`` / ``python -m isp_tf.infer`` (and, for
  the valid ones, rendered: ``shape`` is the PNG's expected (H, W), ``corner``
  where the bright top-left quadrant of the mosaic must appear after orientation);
* ``tflite``: given to ``check_nnapi.py`` and ``benchmarks.run --reference``;
* ``weights``: given to ``infer --weights``, ``export_to_tflite.py --weights``, ``train --init-from``;
* ``recipe``: given to ``train --recipe``;
* ``cli``: an argument vector of one command (``Entry.command``) with a value out of range.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import struct
from typing import List, Optional, Sequence, Tuple

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_RAW_photos"
#: inputs on which the fuzzer (fuzz.py) once found a crash; each is a corpus entry from then on
FUZZ_CRASHES = pathlib.Path(__file__).resolve().parent / "fuzz_crashes"

#: DNG truncation points: absolute byte counts, then fractions of the file
CUT_BYTES = (4, 8, 12, 100)
CUT_FRACTIONS = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)


@dataclasses.dataclass
class Entry:
    """One corpus input and the answer expected of it.

    ``expect``: ``"error"`` (one ``error:`` line naming ``path`` / the value,
    exit 2 alone, 1 in a batch), ``"ok"`` (a valid but unusual input: the
    command succeeds), ``"verdict"`` (check_nnapi: exit 1 with the table naming
    the refused op, not an error).  ``words``: lower-case words the error
    message must contain.  ``error``: the isp_tf error class name ``read_raw``
    must raise (raw entries).  ``argv``: the command line of a ``cli`` entry.
    """

    name: str
    kind: str
    what: str
    expect: str = "error"
    path: Optional[pathlib.Path] = None
    words: Tuple[str, ...] = ()
    error: Optional[str] = None
    command: Optional[str] = None
    argv: Tuple[str, ...] = ()
    shape: Optional[Tuple[int, int]] = None
    corner: Optional[str] = None
    network: bool = False  # also rendered by the network (MicroISP) in the infer run

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.name}"


# --------------------------------------------------------------------------- mosaics and DNGs
def marked_mosaic(h: int, w: int, seed: int = 0, white: int = 4095) -> np.ndarray:
    """A noisy mosaic at ~20% with its top-left quadrant bright (~90%): orientation is visible."""
    rng = np.random.default_rng(seed)
    m = rng.integers(int(0.15 * white), int(0.25 * white), (h, w))
    m[: h // 2, : w // 2] = rng.integers(int(0.85 * white), int(0.95 * white), (h // 2, w // 2))
    return m.astype(np.uint16)


def _metadata(pattern="RGGB", orientation=1, white=4095, black=64):
    from isp_tf.raw import Exif

    return {"cfa_pattern": pattern, "black_level": black, "white_level": white,
            "wb_gains": (2.0, 1.0, 1.5), "orientation": orientation, "camera": "Corpus Cam",
            "exif": Exif(iso=200, exposure_time=0.01, f_number=2.8, focal_length=35.0)}


def write_dng(path, h, w, pattern="RGGB", orientation=1, seed=0) -> pathlib.Path:
    from isp_tf.raw import write_dng as _write

    _write(path, marked_mosaic(h, w, seed), _metadata(pattern, orientation))
    return pathlib.Path(path)


def _dng_tags(pattern_codes=(0, 1, 1, 2), dims=(2, 2), photometric=32803):
    """IFD0 entries of a minimal DNG for :func:`isp_tf.raw.dng.write_tiff` (any size, any pattern)."""
    from isp_tf.raw.dng import ASCII, BYTE, LONG, SHORT, SRATIONAL

    tags = [(254, LONG, 0), (262, SHORT, photometric), (271, ASCII, "Corpus"), (272, ASCII, "Cam"),
            (50706, BYTE, [1, 4, 0, 0]), (50717, LONG, 4095),
            (50721, SRATIONAL, [1, 0, 0, 0, 1, 0, 0, 0, 1])]
    if photometric == 32803:
        tags += [(33421, SHORT, list(dims)), (33422, BYTE, list(pattern_codes))]
    return tags


def write_raw_tiff(path, image, **tag_kw) -> pathlib.Path:
    from isp_tf.raw.dng import write_tiff

    write_tiff(path, np.asarray(image), _dng_tags(**tag_kw))
    return pathlib.Path(path)


def _ifd(data: bytes):
    """(ifd offset, {tag: (entry offset, type, count, value-or-offset)}) of a little-endian TIFF."""
    (at,) = struct.unpack_from("<I", data, 4)
    (n,) = struct.unpack_from("<H", data, at)
    entries = {}
    for i in range(n):
        off = at + 2 + 12 * i
        tag, typ, count, value = struct.unpack_from("<HHII", data, off)
        entries[tag] = (off, typ, count, value)
    return at, entries


def patch_tag(data: bytes, tag: int, value: int) -> bytes:
    """Set a one-value SHORT/LONG tag of IFD0 (``write_tiff`` output) to ``value``."""
    out = bytearray(data)
    _, entries = _ifd(data)
    off, typ, count, _ = entries[tag]
    if typ == 3:
        struct.pack_into("<HH", out, off + 8, value, 0)
    else:
        struct.pack_into("<I", out, off + 8, value)
    return bytes(out)


# --------------------------------------------------------------------------- .tflite files (no TF)
def tiny_tflite(channels=4, side=8, dynamic=False, custom=None) -> bytes:
    """A one-op .tflite (ADD of the input to itself, or a CUSTOM op) built with the schema objects."""
    from isp_tf.export.flatbuffer import schema, write_tflite

    def tensor(name, index_buffer):
        t = schema.TensorT()
        t.name = name
        t.type = schema.TensorType.FLOAT32
        t.shape = [1, side, side, channels]
        t.shapeSignature = [1, -1, -1, channels] if dynamic else None
        t.buffer = index_buffer
        return t

    code = schema.OperatorCodeT()
    code.version = 1
    if custom:
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
        code.customCode = custom
    else:
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.ADD
    op = schema.OperatorT()
    op.opcodeIndex = 0
    op.inputs = [0, 0]
    op.outputs = [1]
    if not custom:
        op.builtinOptionsType = schema.BuiltinOptions.AddOptions
        op.builtinOptions = schema.AddOptionsT()
    sg = schema.SubGraphT()
    sg.tensors = [tensor("input", 1), tensor("output", 2)]
    sg.inputs, sg.outputs, sg.operators = [0], [1], [op]
    sg.name = "main"
    model = schema.ModelT()
    model.version = 3
    model.operatorCodes = [code]
    model.subgraphs = [sg]
    model.buffers = [schema.BufferT() for _ in range(3)]
    model.description = "isp_tf reliability corpus"
    return write_tflite(model)


# --------------------------------------------------------------------------- the corpus
def _raw_entries(root: pathlib.Path) -> List[Entry]:
    from isp_tf.raw.dng import write_tiff

    d = root / "raw"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    out: List[Entry] = []

    def bad(name, what, error, *words, path=None):
        out.append(Entry(name, "raw", what, path=path or d / name, error=error,
                         words=tuple(w.lower() for w in words)))

    (d / "empty.dng").write_bytes(b"")
    bad("empty.dng", "empty file", "NotRawError", "empty")
    (d / "random.nef").write_bytes(rng.integers(0, 256, 8192, np.uint8).tobytes())
    bad("random.nef", "8 KB of random bytes", "NotRawError", "not a raw")
    (d / "random_tiff_magic.dng").write_bytes(b"II*\0" + rng.integers(0, 256, 8192, np.uint8).tobytes())
    bad("random_tiff_magic.dng", "TIFF magic then random bytes", "CorruptRawError", "damaged")
    (d / "notes.cr2").write_text("these are not the pixels you are looking for\n" * 40)
    bad("notes.cr2", "a text file named .cr2", "NotRawError", "text")

    # DNGs written by write_dng (pixels first, IFD at the end), cut at many points
    base = write_dng(d / "base.dng", 48, 64)
    data = base.read_bytes()
    base.unlink()
    cuts = list(CUT_BYTES) + [int(len(data) * f) for f in CUT_FRACTIONS]
    for n in cuts:
        name = f"cut_{n:06d}_of_{len(data)}.dng"
        (d / name).write_bytes(data[:n])
        bad(name, f"our DNG truncated to {n} of {len(data)} bytes ({100 * n / len(data):.0f}%)",
            "CorruptRawError", "truncated")
    # a real-size bundled sample (IFD at the end too), cut at a few points
    sample = (SAMPLES / "coffee.dng").read_bytes()
    for f in (0.02, 0.5, 0.99):
        n = int(len(sample) * f)
        name = f"coffee_cut_{int(100 * f):02d}pct.dng"
        (d / name).write_bytes(sample[:n])
        bad(name, f"sample_RAW_photos/coffee.dng truncated to {100 * f:.0f}%", "CorruptRawError", "truncated")
    # a DNG with its IFD before the pixels (tifffile's layout), cut inside the pixel data
    tf_dng = d / "tifffile_layout.dng"
    _tifffile_dng(tf_dng, marked_mosaic(96, 128))
    tdata = tf_dng.read_bytes()
    tf_dng.unlink()
    for f in (0.5, 0.9, 0.99):
        n = int(len(tdata) * f)
        name = f"ifd_first_cut_{int(100 * f):02d}pct.dng"
        (d / name).write_bytes(tdata[:n])
        bad(name, f"DNG with the IFD first, pixel data truncated to {100 * f:.0f}%", "CorruptRawError",
            "truncated")

    # IFD offset past the end, scrambled tag bytes, wrong strip sizes
    past = bytearray(data)
    struct.pack_into("<I", past, 4, len(data) + 1000)
    (d / "ifd_past_end.dng").write_bytes(bytes(past))
    bad("ifd_past_end.dng", "IFD0 offset points past the end of the file", "CorruptRawError", "damaged")
    ifd_at, entries = _ifd(data)
    for seed in range(3):
        scr = bytearray(data)
        n = len(entries)
        table = np.frombuffer(bytes(scr[ifd_at + 2: ifd_at + 2 + 12 * n]), np.uint8).copy()
        r = np.random.default_rng(100 + seed)
        hit = r.choice(table.size, table.size // 4, replace=False)
        table[hit] = r.integers(0, 256, hit.size)
        scr[ifd_at + 2: ifd_at + 2 + 12 * n] = table.tobytes()
        name = f"scrambled_tags_{seed}.dng"
        (d / name).write_bytes(bytes(scr))
        bad(name, f"a quarter of IFD0's entry bytes randomised (seed {seed})", "CorruptRawError", "damaged")
    strip = entries[279][3]
    for name, value, what in (("strip_bytes_half.dng", strip // 2, "half"),
                              ("strip_bytes_zero.dng", 0, "zero")):
        (d / name).write_bytes(patch_tag(data, 279, value))
        bad(name, f"StripByteCounts {what} the real size", "CorruptRawError", "stripbytecounts")
    (d / "strip_bytes_10x.dng").write_bytes(patch_tag(data, 279, strip * 10))
    out.append(Entry("strip_bytes_10x.dng", "raw", "StripByteCounts ten times the real size (the pixels are "
                     "all there: read as they are)", expect="ok", path=d / "strip_bytes_10x.dng",
                     shape=(48, 64), corner="tl"))
    (d / "strip_offset_past_end.dng").write_bytes(patch_tag(data, 273, len(data) + 64))
    bad("strip_offset_past_end.dng", "StripOffsets past the end of the file", "CorruptRawError", "truncated")

    # sensor layouts we do not support
    mosaic = marked_mosaic(48, 64)
    write_raw_tiff(d / "cfa_3x3.dng", mosaic, dims=(3, 3), pattern_codes=[0, 1, 2, 1, 2, 0, 2, 0, 1])
    bad("cfa_3x3.dng", "CFARepeatPatternDim 3x3", "UnsupportedSensorError", "2x2")
    xtrans = [1, 1, 0, 1, 1, 2, 1, 1, 2, 1, 1, 0, 2, 0, 1, 0, 2, 1,
              1, 1, 2, 1, 1, 0, 1, 1, 0, 1, 1, 2, 0, 2, 1, 2, 0, 1]
    write_raw_tiff(d / "cfa_6x6_xtrans.dng", mosaic, dims=(6, 6), pattern_codes=xtrans)
    bad("cfa_6x6_xtrans.dng", "6x6 X-Trans-like CFAPattern", "UnsupportedSensorError", "x-trans")
    write_raw_tiff(d / "cfa_cygm.dng", mosaic, pattern_codes=[3, 4, 1, 5])
    bad("cfa_cygm.dng", "2x2 pattern of cyan/yellow/green/magenta", "UnsupportedCFAError", "not one of")
    base_tiff = write_raw_tiff(d / "_base_tiff.dng", mosaic).read_bytes()
    (d / "_base_tiff.dng").unlink()
    for bits in (7, 32):
        name = f"bits_per_sample_{bits}.dng"
        (d / name).write_bytes(patch_tag(base_tiff, 258, bits))
        bad(name, f"BitsPerSample {bits} on 16-bit data", "CorruptRawError", f"bitspersample {bits}" if bits == 7
            else "damaged")
    for tag, name, what in ((256, "zero_width.dng", "ImageWidth 0"), (257, "zero_height.dng", "ImageLength 0")):
        (d / name).write_bytes(patch_tag(base_tiff, tag, 0))
        bad(name, what, "CorruptRawError", "damaged")
    for side in (1, 2):
        name = f"mosaic_{side}x{side}.dng"
        write_raw_tiff(d / name, np.full((side, side), 1000, np.uint16))
        bad(name, f"a {side}x{side} mosaic", "NotRawError", "22 pixels")
    write_tiff(d / "linear_rgb.dng", np.stack([mosaic] * 3, -1), _dng_tags(photometric=34892))
    bad("linear_rgb.dng", "linear DNG (3 samples per pixel)", "LinearRawError", "linear dng")
    write_tiff(d / "mono.dng", mosaic, _dng_tags(photometric=1))
    bad("mono.dng", "monochrome DNG", "UnsupportedSensorError", "monochrome")

    # other image formats under RAW names
    import imageio.v3 as iio
    import tifffile

    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[:20] = 200
    tifffile.imwrite(d / "rgb_tiff.nef", rgb)
    bad("rgb_tiff.nef", "an RGB TIFF renamed .nef", "NotRawError", "rgb tiff image renamed .nef")
    iio.imwrite(d / "photo_jpeg.cr2", rgb, extension=".jpg")
    bad("photo_jpeg.cr2", "a JPEG renamed .cr2", "NotRawError", "jpeg")
    iio.imwrite(d / "photo_png.arw", rgb, extension=".png")
    bad("photo_png.arw", "a PNG renamed .arw", "NotRawError", "png")

    # paths
    (d / "folder.dng").mkdir(exist_ok=True)
    bad("folder.dng", "a directory named like a RAW file", "NotRawError", "directory")
    loop = d / "loop.dng"
    if not loop.is_symlink():
        os.symlink(loop.name, loop)
    bad("loop.dng", "a symbolic link pointing to itself", "RawReadError", "symbolic link loop")
    dangling = d / "dangling.dng"
    if not dangling.is_symlink():
        os.symlink("nowhere.dng", dangling)
    bad("dangling.dng", "a symbolic link to a missing file", "MissingFileError", "symbolic link")
    bad("missing.dng", "a path that does not exist", "MissingFileError", "no such")
    weird = os.fsdecode(os.fsencode(str(d)) + b"/bad_name_\xff\xfe.dng")
    (pathlib.Path(weird)).write_bytes(rng.integers(0, 256, 512, np.uint8).tobytes())
    bad("non_utf8_noise", "random bytes in a file whose name is not UTF-8", "NotRawError", "not a raw",
        path=pathlib.Path(weird))
    for found in sorted((FUZZ_CRASHES / "raw").glob("*")):
        (d / f"fuzz_{found.name}").write_bytes(found.read_bytes())
        bad(f"fuzz_{found.name}", f"an input on which the fuzzer found a crash ({found.stem})", "RawReadError")
    return out


def _tifffile_dng(path, mosaic):
    import tifffile

    tags = [(50706, "B", 4, (1, 4, 0, 0), True), (50717, "I", 1, 4095, True),
            (271, "s", 0, "Foo", True), (272, "s", 0, "Bar", True),
            (33421, "H", 2, (2, 2), True), (33422, "B", 4, bytes([0, 1, 1, 2]), True),
            (50721, "2i", 9, [1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1], True)]
    tifffile.imwrite(path, mosaic, photometric=32803, extratags=tags)


#: where the mosaic's top-left quadrant ends up after EXIF orientation k (display order)
ORIENTATION_CORNER = {1: "tl", 2: "tr", 3: "br", 4: "bl", 5: "tl", 6: "tr", 7: "br", 8: "bl"}


def expected_png_shape(h, w, pattern, orientation=1):
    from isp_tf.raw import rggb_crop

    y0, y1, x0, x1 = rggb_crop((h, w), pattern)
    hh, ww = y1 - y0, x1 - x0
    return (ww, hh) if orientation >= 5 else (hh, ww)


def _valid_entries(root: pathlib.Path) -> List[Entry]:
    """Valid but unusual RAW files: every CFA pattern, every orientation, odd and tiny sizes."""
    d = root / "valid"
    d.mkdir(parents=True, exist_ok=True)
    out: List[Entry] = []

    def ok(name, what, h, w, pattern="RGGB", orientation=1, network=False):
        out.append(Entry(name, "raw", what, expect="ok", path=d / name, network=network,
                         shape=expected_png_shape(h, w, pattern, orientation),
                         corner=ORIENTATION_CORNER[orientation]))

    from isp_tf.raw import CFA_PATTERNS

    for pattern in CFA_PATTERNS:
        write_dng(d / f"cfa_{pattern}.dng", 40, 56, pattern)
        ok(f"cfa_{pattern}.dng", f"{pattern} mosaic 40x56", 40, 56, pattern)
    for k in range(1, 9):
        write_dng(d / f"orientation_{k}.dng", 40, 64, "GRBG", orientation=k)
        ok(f"orientation_{k}.dng", f"EXIF orientation {k}, 40x64 GRBG", 40, 64, "GRBG", k)
    write_dng(d / "tiny_22x22.dng", 22, 22)
    ok("tiny_22x22.dng", "the smallest frame LibRaw reads, 22x22", 22, 22)
    codes = {"R": 0, "G": 1, "B": 2}
    for h, w, pattern in ((37, 53, "RGGB"), (36, 53, "BGGR"), (41, 48, "GBRG")):
        name = f"odd_{h}x{w}_{pattern}.dng"
        write_raw_tiff(d / name, marked_mosaic(h, w), pattern_codes=[codes[c] for c in pattern])
        ok(name, f"odd size {h}x{w} {pattern}", h, w, pattern)
    write_dng(d / "network_160x172.dng", 160, 172, "GBRG", orientation=6)
    ok("network_160x172.dng", "160x172 GBRG, orientation 6 (network-rendered)", 160, 172, "GBRG", 6,
       network=True)
    weird = os.fsdecode(os.fsencode(str(d)) + b"/valid_\xff\xfe.dng")
    write_dng(weird, 40, 56)
    out.append(Entry("non_utf8_valid", "raw", "a valid DNG whose file name is not UTF-8", expect="ok",
                     path=pathlib.Path(weird), shape=(40, 56), corner="tl"))
    return out


def _tflite_entries(root: pathlib.Path) -> List[Entry]:
    d = root / "tflite"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    out: List[Entry] = []
    good = tiny_tflite()
    (d / "good.tflite").write_bytes(good)
    (d / "empty.tflite").write_bytes(b"")
    out.append(Entry("empty.tflite", "tflite", "empty file", path=d / "empty.tflite", words=("tflite",)))
    for f in (0.1, 0.5, 0.9):
        name = f"truncated_{int(100 * f)}pct.tflite"
        (d / name).write_bytes(good[:int(len(good) * f)])
        out.append(Entry(name, "tflite", f"a valid .tflite truncated to {100 * f:.0f}%", path=d / name,
                         words=("tflite",)))
    (d / "random.tflite").write_bytes(rng.integers(0, 256, 4096, np.uint8).tobytes())
    out.append(Entry("random.tflite", "tflite", "4 KB of random bytes", path=d / "random.tflite",
                     words=("tflite",)))
    magic = bytearray(rng.integers(0, 256, 4096, np.uint8).tobytes())
    magic[4:8] = b"TFL3"
    (d / "random_tfl3.tflite").write_bytes(bytes(magic))
    out.append(Entry("random_tfl3.tflite", "tflite", "random bytes with the TFL3 identifier",
                     path=d / "random_tfl3.tflite", words=("tflite",)))
    (d / "custom_op.tflite").write_bytes(tiny_tflite(custom="IspTfMystery"))
    out.append(Entry("custom_op.tflite", "tflite", "a graph with a custom op", expect="verdict",
                     path=d / "custom_op.tflite", words=("custom:isptfmystery",)))
    (d / "dynamic_shape.tflite").write_bytes(tiny_tflite(dynamic=True))
    out.append(Entry("dynamic_shape.tflite", "tflite", "input with open dimensions (1x-1x-1x4)",
                     expect="verdict", path=d / "dynamic_shape.tflite", words=("dynamic-shape",)))
    for found in sorted((FUZZ_CRASHES / "tflite").glob("*")):
        (d / f"fuzz_{found.name}").write_bytes(found.read_bytes())
        out.append(Entry(f"fuzz_{found.name}", "tflite", f"an input on which the fuzzer found a crash "
                         f"({found.stem})", path=d / f"fuzz_{found.name}", words=("tflite",)))
    (d / "other_model_rgb.tflite").write_bytes(tiny_tflite(channels=3))
    out.append(Entry("other_model_rgb.tflite", "tflite", "another model's .tflite (RGB (1,8,8,3) input)",
                     expect="ok", path=d / "other_model_rgb.tflite"))
    return out


def _weights_entries(root: pathlib.Path) -> List[Entry]:
    d = root / "weights"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    out: List[Entry] = []
    shipped = REPO / "isp_tf" / "models" / "microisp" / "weights" / "microisp_reference.weights.h5"
    other = REPO / "isp_tf" / "models" / "invisp" / "weights" / "invisp_small_reference.weights.h5"
    data = shipped.read_bytes()
    (d / "truncated.weights.h5").write_bytes(data[: len(data) // 2])
    out.append(Entry("truncated.weights.h5", "weights", "MicroISP's weights cut in half",
                     path=d / "truncated.weights.h5", words=("truncated.weights.h5",)))
    (d / "random.weights.h5").write_bytes(rng.integers(0, 256, 4096, np.uint8).tobytes())
    out.append(Entry("random.weights.h5", "weights", "4 KB of random bytes", path=d / "random.weights.h5",
                     words=("random.weights.h5",)))
    (d / "empty.weights.h5").write_bytes(b"")
    out.append(Entry("empty.weights.h5", "weights", "empty file", path=d / "empty.weights.h5",
                     words=("empty.weights.h5",)))
    (d / "invisp.weights.h5").write_bytes(other.read_bytes())
    out.append(Entry("invisp.weights.h5", "weights", "InvISP's weights given for MicroISP",
                     path=d / "invisp.weights.h5", words=("invisp",)))
    return out


def _recipe_entries(root: pathlib.Path) -> List[Entry]:
    d = root / "recipes"
    d.mkdir(parents=True, exist_ok=True)
    shipped = json.loads((REPO / "isp_tf" / "models" / "microisp" / "recipe.json").read_text())
    out: List[Entry] = []

    def recipe(name, what, text, *words):
        (d / name).write_text(text)
        out.append(Entry(name, "recipe", what, path=d / name, words=tuple(words)))

    recipe("invalid.json", "not JSON", '{"model": "microisp", "batch_size": 4,', "not valid json")
    recipe("unknown_key.json", "an unknown field", json.dumps(dict(shipped, warp_speed=9)), "warp_speed")
    neg = json.loads(json.dumps(shipped))
    neg["optimizer"]["learning_rate"] = -1e-4
    recipe("negative_lr.json", "a negative learning rate", json.dumps(neg), "learning_rate")
    recipe("zero_batch.json", "batch_size 0", json.dumps(dict(shipped, batch_size=0)), "batch_size")
    recipe("zero_steps.json", "steps_per_epoch 0", json.dumps(dict(shipped, steps_per_epoch=0)),
           "steps_per_epoch")
    recipe("zero_epochs.json", "epochs 0", json.dumps(dict(shipped, epochs=0)), "epochs")
    recipe("list.json", "a JSON list, not an object", "[1, 2, 3]", "recipe")
    return out


def _cli(command, name, what, argv, *words, expect="error"):
    return Entry(name, "cli", what, expect=expect, command=command, argv=tuple(argv),
                 words=tuple(w.lower() for w in words))


def _cli_entries(root: pathlib.Path) -> List[Entry]:
    d = root / "cli"
    d.mkdir(parents=True, exist_ok=True)
    good = write_dng(d / "good.dng", 40, 56)
    (d / "empty_folder.dng").mkdir(exist_ok=True)
    a_file = d / "a_file"
    a_file.write_text("x")
    out_dir = str(d / "out")
    g = str(good)
    infer = [
        ("tile_negative", "--tile -5", [g, "--out", out_dir, "--tile", "-5"], "tile"),
        ("tile_text", "--tile big", [g, "--out", out_dir, "--tile", "big"], "tile"),
        ("bits_12", "--bits 12", [g, "--out", out_dir, "--bits", "12"], "bits"),
        ("bayer_shape_0x0", "--bayer-shape 0x0", [g, "--out", out_dir, "--bayer-shape", "0x0",
                                                   "--renderer", "classical"], "0x0"),
        ("bayer_shape_big", "--bayer-shape big", [g, "--out", out_dir, "--bayer-shape", "big"], "big"),
        ("wb_text", "--wb a,b,c", [g, "--out", out_dir, "--wb", "a,b,c"], "wb"),
        ("out_is_a_file", "--out is an existing file", [g, "--out", str(a_file), "--renderer", "classical"],
         "a_file"),
        ("unknown_model", "--model nosuch", [g, "--out", out_dir, "--model", "nosuch"], "nosuch"),
        ("no_inputs_in_folder", "a folder named like a RAW file, holding none", [str(d / "empty_folder.dng"), "--out", out_dir,
                                                               "--renderer", "classical"], "empty_folder.dng"),
    ]
    export = [
        ("input_size_0x0", "--input-size 0x0", ["--model", "microisp", "--input-size", "0x0"], "0x0"),
        ("input_size_7x5", "--input-size 7x5", ["--model", "microisp", "--input-size", "7x5"], "7x5"),
        ("input_size_big", "--input-size big", ["--model", "microisp", "--input-size", "big"], "big"),
        ("input_size_not_multiple", "--input-size 100x100 (not a multiple of the model's step)",
         ["--model", "microisp", "--input-size", "100x100"], "50x50", "79"),
        ("tile_zero", "--tile 0", ["--model", "microisp", "--tile", "0", "--input-size", "324x324"], "tile"),
        ("tile_negative", "--tile -3", ["--model", "microisp", "--tile", "-3", "--input-size", "324x324"], "tile"),
        ("precision_text", "--precision fp8", ["--model", "microisp", "--precision", "fp8"], "fp8"),
        ("out_under_a_file", "--out inside an existing file",
         ["--model", "microisp", "--input-size", "324x324", "--out", str(a_file / "m.tflite")], "a_file"),
    ]
    bench = [
        ("resolution_0x0", "--resolutions 0x0", ["--resolutions", "0x0"], "0x0"),
        ("resolution_7x5", "--resolutions 7x5", ["--resolutions", "7x5"], "7x5"),
        ("resolution_big", "--resolutions big", ["--resolutions", "big"], "big"),
        ("threads_zero", "--threads 0", ["--threads", "0"], "threads"),
        ("tile_zero", "--tile 0", ["--tile", "0"], "tile"),
        ("json_folder_missing", "--json in a folder that does not exist",
         ["--json", str(d / "no_such_folder" / "out.json")], "no_such_folder"),
    ]
    train = [
        ("batch_zero", "--batch-size 0", ["--batch-size", "0"], "batch_size"),
        ("steps_zero", "--steps-per-epoch 0", ["--steps-per-epoch", "0"], "steps_per_epoch"),
        ("lr_negative", "--lr -0.1", ["--lr", "-0.1"], "learning_rate"),
        ("patch_odd", "--patch-size 33", ["--patch-size", "33"], "patch"),
        ("patch_zero", "--patch-size 0", ["--patch-size", "0"], "patch_size"),
        ("data_unknown_layout", "--data nosuch:/x", ["--data", "nosuch:/x"], "nosuch"),
        ("data_missing_folder", "--data paired:/no/such/folder", ["--data", "paired:/no/such/folder"],
         "/no/such/folder"),
        ("resume_empty", "--resume of a folder with no run", ["--resume"], "run"),
    ]
    entries = [_cli("infer", f"infer_{n}", w, a, *ws) for n, w, a, *ws in infer]
    entries.append(_cli("infer", "infer_out_folder_missing", "--out in folders that do not exist yet (created)",
                        [g, "--out", str(d / "new" / "nested"), "--renderer", "classical"], expect="ok"))
    entries += [_cli("export", f"export_{n}", w, a, *ws) for n, w, a, *ws in export]
    entries += [_cli("bench", f"bench_{n}", w, a, *ws) for n, w, a, *ws in bench]
    entries += [_cli("train", f"train_{n}", w, a, *ws) for n, w, a, *ws in train]
    return entries


def build(root) -> List[Entry]:
    """Write the whole corpus under ``root`` and return its entries."""
    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    return (_raw_entries(root) + _valid_entries(root) + _tflite_entries(root) + _weights_entries(root)
            + _recipe_entries(root) + _cli_entries(root))


def by_kind(entries: Sequence[Entry], kind: str, expect: Optional[str] = None) -> List[Entry]:
    return [e for e in entries if e.kind == kind and (expect is None or e.expect == expect)]
