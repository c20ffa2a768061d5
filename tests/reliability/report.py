"""Regenerate ``docs/RELIABILITY.md``: the malformed-input corpus, the fuzz runs and the fault injection.

    python tests/reliability/report.py                 # everything (several minutes: faults train a model)
    python tests/reliability/report.py --no-faults     # corpus and fuzzing only
    python tests/reliability/report.py --out -         # print instead of writing the file

Runs every corpus entry through every entry point (``run_corpus.run_all``, with the slow cases),
a fuzz run per target (``fuzz.py``, fixed seed), and ``faults.run_faults()`` when
``tests/reliability/faults.py`` is there; every number in the document comes from this run.
"""
from __future__ import annotations

import argparse
import collections
import datetime
import os
import pathlib
import platform
import re
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import run_corpus  # noqa: E402

FUZZ_RUNS = {"raw": 1000, "tflite": 20000}

#: what the corpus and the fuzzer found, and the fix (the entries named stay in the corpus)
FINDINGS = [
    ("raw/non_utf8_noise, raw/non_utf8_valid", "read_raw crashed (UnicodeEncodeError in rawpy) on a file "
     "name that is not UTF-8", "such names are read through LibRaw's buffer interface (isp_tf/raw/reader.py)"),
    ("raw/bits_per_sample_7.dng", "a DNG claiming 7-bit samples over 16-bit data decoded silently into "
     "garbage", "uncompressed DNG mosaics must declare 8 to 32 bits a sample"),
    ("raw/strip_bytes_half.dng, raw/strip_bytes_zero.dng, raw/ifd_first_cut_*",
     "StripByteCounts shorter than the image was ignored (read anyway); pixel data cut off was found only by "
     "LibRaw, which printed 'Unexpected end of file' on the terminal", "StripByteCounts and the file size are "
     "checked against "
     "the image size before decoding (extra bytes are tolerated)"),
    ("raw/loop.dng, raw/dangling.dng", "a symbolic-link loop was reported as 'no such RAW file'",
     "a loop and a broken link are named as such"),
    ("raw/rgb_tiff.nef", "an RGB TIFF renamed .nef was called a damaged RAW file",
     "'an ordinary RGB TIFF image renamed .nef, not a camera RAW file'"),
    ("raw/zero_width.dng", "a 0-pixel side gave LibRaw's generic message", "named as a damaged size tag"),
    ("raw/fuzz_colour_matrix_odd_rational_count.dng", "fuzzer: ValueError in `_dng_color` (the DNG colour "
     "matrix reader) on a ColorMatrix tag whose value count is odd", "rational tags that are not (num, den) "
     "pairs count as absent"),
    ("raw/fuzz_image_width_as_text.dng", "fuzzer: ValueError in the new strip check on a size tag holding text",
     "numeric tags are read with a checked helper; damaged ones are a CorruptRawError"),
    ("tflite/fuzz_operator_output_out_of_range.tflite", "fuzzer: IndexError on an operator naming a tensor "
     "the graph does not have", "every tensor and operator-code index is checked on reading"),
    ("tflite/fuzz_mean_without_output.tflite", "fuzzer: IndexError on an operator without outputs or "
     "with operands its op type does not take", "refused as a damaged flatbuffer / graph"),
    ("tflite/fuzz_constant_bytes_not_whole_values.tflite", "fuzzer: ValueError when a constant's byte count "
     "is not a whole number of its dtype's values", "refused as a damaged flatbuffer naming the tensor"),
    ("recipe/list.json", "a recipe holding a JSON list ended in a TypeError", "'must hold a JSON object'"),
    ("recipe/*", "recipe errors did not name the recipe file", "'recipe file PATH: ...'"),
    ("weights/* via train --init-from", "a bad --init-from file failed after run.json was written",
     "checked before the run folder is touched"),
    ("cli/train_data_missing_folder", "a missing data folder failed after run.json was written",
     "dataset specs name a missing folder before anything starts"),
    ("cli/export_out_under_a_file", "an output path inside a file ended in "
     "'FileExistsError' (exit 1)", "file-system errors on a named path are one error line, exit 2 "
     "(isp_tf/cli.py)"),
    ("tflite/* via benchmarks.run --reference", "only the reference's existence was checked: a damaged, "
     "custom-op or non-Bayer file went to a worker after the benchmark had started", "references are read "
     "and checked before anything runs"),
    ("cli/infer_bayer_shape_0x0", "--bayer-shape 0x0 said 'mosaic is (40, 56), expected (0, 0)'",
     "a shape smaller than one 2x2 block is named as such"),
]


def fuzz_summary(runs=None):
    rows = []
    for target, n in (runs or FUZZ_RUNS).items():
        with tempfile.TemporaryDirectory() as artifacts:
            p = subprocess.run([sys.executable, str(HERE / "fuzz.py"), target, "--runs", str(n), "--artifacts",
                                artifacts], capture_output=True, text=True, cwd=str(REPO), timeout=3600)
            crashes = sorted(os.listdir(artifacts))
        log = p.stdout + p.stderr
        done = re.search(r"Done (\d+) runs in (\d+) second", log)
        found = sorted(x.name for x in (HERE / "fuzz_crashes" / target).glob("*"))
        rows.append({"target": target, "runs": int(done.group(1)) if done else None,
                     "seconds": int(done.group(2)) if done else None, "exit": p.returncode,
                     "new_crashes": crashes, "earlier_crashes": found,
                     "seeds": len(list((HERE / "fuzz_seeds" / target).glob("*")))})
    return rows


def fault_rows():
    """``faults.run_faults()`` rows, or ``None`` (with the reason) when faults.py is absent or broken."""
    if not (HERE / "faults.py").is_file():
        return None, "tests/reliability/faults.py is absent: fault injection was not run"
    try:
        import faults
    except Exception as exc:  # noqa: BLE001 - say so in the document, never invent rows
        return None, f"tests/reliability/faults.py could not be imported ({type(exc).__name__}: {exc})"
    if not hasattr(faults, "run_faults"):
        return None, "tests/reliability/faults.py has no run_faults(): fault injection was not run"
    return faults.run_faults(), ""


def _cell(text, limit=110):
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render(outcomes, fuzz, faults, faults_note, seconds) -> str:
    entries = collections.OrderedDict()
    for o in outcomes:
        entries.setdefault(o.label, o)
    total = len(outcomes)
    errors = [o for o in outcomes if o.expect in ("error", "verdict")]
    valid = [o for o in outcomes if o.expect == "ok"]
    lines = [
        "# Reliability: malformed inputs, fuzzing, faults",
        "",
        "Generated by `python tests/reliability/report.py` (do not edit by hand; "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"{seconds:.0f} s). CI runs the same checks: `tests/reliability/test_corpus.py` (the corpus), "
        "`test_fuzz.py` (a bounded fuzz run), `test_faults.py` (fault injection).",
        "",
        "## Summary",
        "",
        "| | count |",
        "|---|---:|",
        f"| inputs in the corpus (built by `tests/reliability/corpus.py` at test time) | {len(entries)} |",
        f"| runs through the public entry points | {total} |",
        f"| bad inputs answered with a clear error (`error:` line naming the input, exit 2 / 1 in a batch) "
        f"| {sum(o.clear for o in errors)} of {len(errors)} |",
        f"| valid but unusual inputs handled (right size and orientation) | {sum(o.clear for o in valid)} of "
        f"{len(valid)} |",
        f"| crashes (traceback, exception escaping, unexpected exit code or signal) | {sum(o.crash for o in outcomes)} |",
        f"| partial or stray files left behind | {sum(bool(o.partial) for o in outcomes)} |",
        f"| hangs (past the time limit) | {sum(o.hang for o in outcomes)} |",
        f"| other wrong answers (wrong error class or message, missing output) | "
        f"{sum(not o.passed and not (o.crash or o.hang or o.partial) for o in outcomes)} |",
    ]
    if faults is None:
        lines.append(f"| faults survived | not run: {faults_note} |")
    else:
        lines.append(f"| faults survived | {sum(bool(r['survived']) for r in faults)} of {len(faults)} |")
    lines += ["", "## By entry point", "",
              "| entry point | runs | clear errors (or NNAPI verdicts) | valid handled | crashes | partial files | hangs |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    by_via = collections.OrderedDict()
    for o in outcomes:
        by_via.setdefault(o.via, []).append(o)
    for via, group in by_via.items():
        lines.append(f"| `{via}` | {len(group)} | {sum(o.clear for o in group if o.expect != 'ok')} | "
                     f"{sum(o.clear for o in group if o.expect == 'ok')} | {sum(o.crash for o in group)} | "
                     f"{sum(bool(o.partial) for o in group)} | {sum(o.hang for o in group)} |")
    lines += ["", "`infer` runs every RAW entry in one batch (exit 1, each bad file one `error:` line, every good "
              "file's PNG written); `infer (alone)` one bad file (exit 2). TensorFlow commands run many argument "
              "vectors in one process through `tests/reliability/drive.py` (each exactly as `main(argv)`), and "
              "argparse errors of each command as real processes.", "",
              "## Fault injection", ""]
    if faults is None:
        lines.append(f"Not run: {faults_note}.")
    else:
        lines += ["| fault | survived | detail |", "|---|---|---|"]
        lines += [f"| {r['name']} | {'yes' if r['survived'] else '**no**'} | {_cell(r.get('detail', ''), 200)} |"
                  for r in faults]
    lines += ["", "## Fuzzing (atheris / libFuzzer, fixed seed)", "",
              "| target | what | inputs run | seconds | crashes this run | crashes found before (now corpus entries) | seeds |",
              "|---|---|---:|---:|---:|---|---:|"]
    what = {"raw": "`read_raw` and the DNG/TIFF/CIFF metadata helpers of `isp_tf.raw.reader`",
            "tflite": "`check_nnapi` (flatbuffer reading of `isp_tf.export.flatbuffer`, the rules)"}
    for r in fuzz:
        lines.append(f"| {r['target']} | {what[r['target']]} | {r['runs']} | {r['seconds']} | "
                     f"{len(r['new_crashes']) if r['exit'] == 0 else 'exit %s: %s' % (r['exit'], r['new_crashes'])} | "
                     f"{', '.join(r['earlier_crashes']) or 'none'} | {r['seeds']} |")
    lines += ["", "Longer runs: `python tests/reliability/fuzz.py raw --seconds 3600` (or `tflite`); a crash "
              "writes its input, which goes to `tests/reliability/fuzz_crashes/<target>/` (a corpus entry from "
              "then on) with a fix.", "",
              "## Defects found and fixed", "", "| corpus entries | what happened | now |", "|---|---|---|"]
    lines += [f"| `{a}` | {b} | {c} |" for a, b, c in FINDINGS]
    lines += ["", "## Every run", "", "| entry | what | via | expected | answer |", "|---|---|---|---|---|"]
    for o in outcomes:
        answer = o.message if o.passed else f"**{'; '.join(o.problems) or 'partial files ' + str(o.partial)}**"
        lines.append(f"| `{o.label}` | {_cell(o.what, 70)} | {o.via} | {o.expect} | {_cell(_strip(answer))} |")
    return run_corpus.shown("\n".join(lines) + "\n")  # non-UTF-8 file names backslash-escaped


def _strip(text: str) -> str:
    """Answers without the temporary folder they ran in."""
    return re.sub(r"/\S*?/(corpus|work)/", "", text)


def main(argv=None) -> int:
    import time

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(REPO / "docs" / "RELIABILITY.md"), help="where to write ('-': print)")
    p.add_argument("--no-faults", action="store_true", help="do not run the fault injection")
    p.add_argument("--fuzz-runs", type=int, default=0, help="inputs per fuzz target (default: raw 1000, tflite 20000)")
    args = p.parse_args(argv)
    start = time.monotonic()
    outcomes = run_corpus.run_all(slow=True)
    fuzz = fuzz_summary({t: args.fuzz_runs for t in FUZZ_RUNS} if args.fuzz_runs else None)
    faults, note = (None, "skipped (--no-faults)") if args.no_faults else fault_rows()
    text = render(outcomes, fuzz, faults, note, time.monotonic() - start)
    if args.out == "-":
        print(text)
    else:
        from isp_tf.utils import atomic_write

        with atomic_write(args.out, "w") as f:
            f.write(text)
        print(f"wrote {args.out}")
    bad = [o for o in outcomes if not o.passed]
    return 1 if bad or any(r["exit"] for r in fuzz) or (faults and not all(r["survived"] for r in faults)) else 0


if __name__ == "__main__":
    sys.exit(main())
