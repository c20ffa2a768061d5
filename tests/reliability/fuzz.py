"""Coverage-guided fuzzing (atheris / libFuzzer) of isp_tf's own file parsing.

    python tests/reliability/fuzz.py raw    --runs 2000      # DNG/TIFF/CIFF metadata of isp_tf.raw
    python tests/reliability/fuzz.py tflite --seconds 600    # the NNAPI validator's flatbuffer reading
    python tests/reliability/fuzz.py --make-seeds            # rewrite the committed seed corpus

Targets (every input is mutated from ``fuzz_seeds/<target>/``, committed and small):

* ``raw``: the bytes are written to a ``.dng`` file and read with :func:`isp_tf.raw.read_raw`;
  the metadata helpers it relies on (``_tiff_tags``, ``_exif_tags``, ``_ciff_make_model``,
  ``_dng_color``, ``_check_dng_strips``) run on the same file too, since LibRaw rarely accepts a
  mutated file and would otherwise hide them.  Allowed: a
  :class:`~isp_tf.errors.IspTfError` (the user sees one ``error:`` line); anything else escaping
  is a crash.
* ``tflite``: :func:`isp_tf.export.nnapi.check_nnapi` on the bytes; allowed: ``ExportError``.

libFuzzer stops at the first crash, prints the Python traceback and writes the input to
``--artifacts`` (``crash-<sha1>``); a run past ``-timeout`` seconds on one input is a hang and
fails the same way.  Put a reproducer under ``fuzz_seeds/<target>/`` (it then runs on every CI
fuzz run) and under ``fuzz_crashes/<target>/`` (``corpus.py`` adds it to the malformed-input
corpus, so it goes through every command), then fix the parser.

CI (``test_fuzz.py``) runs a fixed number of iterations with a fixed seed (seconds); set
``ISP_TF_FUZZ_RUNS`` or use ``--runs`` / ``--seconds`` here for longer runs.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
SEEDS = HERE / "fuzz_seeds"
#: address-space cap of a fuzz run (MB): numpy + rawpy + atheris need about 1.5 GB of it
FUZZ_ADDRESS_SPACE_MB = 8192
CRASHES = HERE / "fuzz_crashes"
TARGETS = ("raw", "tflite")
sys.path.insert(0, str(HERE.parents[1]))


def make_seeds() -> None:
    """Write the seed corpus: small valid inputs of each parser (a few KB in all)."""
    import struct

    sys.path.insert(0, str(HERE))
    import corpus

    raw = SEEDS / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    corpus.write_dng(raw / "dng_rggb_24x24.dng", 24, 24, "RGGB", orientation=6)
    corpus.write_dng(raw / "dng_bggr_22x26.dng", 22, 26, "BGGR")
    corpus._tifffile_dng(raw / "dng_ifd_first_24x24.dng", corpus.marked_mosaic(24, 24))
    corpus.write_raw_tiff(raw / "dng_xtrans_24x24.dng", corpus.marked_mosaic(24, 24), dims=(6, 6),
                          pattern_codes=[1, 1, 0, 1, 1, 2, 1, 1, 2, 1, 1, 0, 2, 0, 1, 0, 2, 1,
                                         1, 1, 2, 1, 1, 0, 1, 1, 0, 1, 1, 2, 0, 2, 1, 2, 0, 1])
    # a minimal Canon CIFF (CRW) heap: header, one 0x080A make/model record, the directory at the end
    name = b"Canon\0Canon EOS D30\0"
    heap = name
    directory = struct.pack("<H", 1) + struct.pack("<HII", 0x080A, len(name), 0) + struct.pack("<I", len(heap))
    header = b"II" + struct.pack("<I", 26) + b"HEAPCCDR" + struct.pack("<II", 0x00010002, 0) + bytes(4)
    (raw / "ciff_make_model.crw").write_bytes(header + heap + directory)
    tfl = SEEDS / "tflite"
    tfl.mkdir(parents=True, exist_ok=True)
    (tfl / "add_packed.tflite").write_bytes(corpus.tiny_tflite())
    (tfl / "add_dynamic.tflite").write_bytes(corpus.tiny_tflite(dynamic=True))
    (tfl / "custom_op.tflite").write_bytes(corpus.tiny_tflite(custom="IspTfMystery"))


def _raw_target():
    import atheris

    with atheris.instrument_imports(include=["isp_tf"]):
        from isp_tf.errors import IspTfError
        from isp_tf.raw import reader

    folder = pathlib.Path(tempfile.mkdtemp(prefix="isp_tf_fuzz_raw_"))
    path = folder / "input.dng"

    def one(data: bytes):
        path.write_bytes(data)
        try:
            reader.read_raw(path)
        except IspTfError:
            pass
        tags = reader._tiff_tags(path)  # documented never to raise: {} when unreadable
        reader._exif_tags(path)
        reader._ciff_make_model(path)
        if tags:
            reader._dng_color(tags)
            try:
                reader._check_dng_strips(str(path), tags["raw"])
            except IspTfError:
                pass

    return one


def _tflite_target():
    import atheris

    with atheris.instrument_imports(include=["isp_tf"]):
        from isp_tf.errors import ExportError
        from isp_tf.export.nnapi import check_nnapi

    def one(data: bytes):
        try:
            report = check_nnapi(bytes(data))
        except ExportError:
            return
        report.format_table(all_ops=True)
        report.to_json()

    return one


def fuzz(target: str, runs: int = 0, seconds: int = 0, artifacts=None, seed: int = 1) -> None:
    """Run libFuzzer on ``target`` (does not return: libFuzzer exits 0, or non-zero on a crash)."""
    import atheris

    one = {"raw": _raw_target, "tflite": _tflite_target}[target]()
    work = pathlib.Path(tempfile.mkdtemp(prefix=f"isp_tf_fuzz_{target}_corpus_"))  # new inputs go here
    artifacts = pathlib.Path(artifacts or tempfile.mkdtemp(prefix="isp_tf_fuzz_artifacts_"))
    artifacts.mkdir(parents=True, exist_ok=True)
    # libFuzzer's -rss_limit_mb reads ru_maxrss, which a child inherits from the process that forked it
    # (a test session at 3 GB reads as out of memory before the first input); cap the address space
    # instead, so a runaway allocation in the parser fails as MemoryError, which the target reports.
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = FUZZ_ADDRESS_SPACE_MB << 20
    if hard == resource.RLIM_INFINITY or hard > limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    args = [sys.argv[0], f"-seed={seed}", "-timeout=20", "-rss_limit_mb=0", "-max_len=8192",
            f"-artifact_prefix={artifacts}/", "-print_final_stats=1"]
    args += [f"-runs={runs}"] if runs else []
    args += [f"-max_total_time={seconds}"] if seconds else []
    args += [str(work), str(SEEDS / target)]
    if (CRASHES / target).is_dir():
        args.append(str(CRASHES / target))
    atheris.Setup(args, one)
    try:
        atheris.Fuzz()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("target", nargs="?", choices=TARGETS)
    p.add_argument("--runs", type=int, default=int(os.environ.get("ISP_TF_FUZZ_RUNS", "0") or 0),
                   help="inputs to try (default: $ISP_TF_FUZZ_RUNS, else until --seconds)")
    p.add_argument("--seconds", type=int, default=0, help="stop after this many seconds")
    p.add_argument("--seed", type=int, default=1, help="libFuzzer's random seed (fixed: reproducible runs)")
    p.add_argument("--artifacts", help="folder for crash reproducers (default: a temporary folder)")
    p.add_argument("--make-seeds", action="store_true", help="rewrite fuzz_seeds/ and exit")
    args = p.parse_args(argv)
    if args.make_seeds:
        make_seeds()
        return 0
    if not args.target:
        p.error("name a target (raw or tflite) or --make-seeds")
    if not (args.runs or args.seconds):
        args.seconds = 60
    fuzz(args.target, args.runs, args.seconds, args.artifacts, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
