"""The malformed-input corpus through every public entry point: clear errors, no crash, hang or stray file.

One run of ``run_corpus.run_all`` (module fixture; about half a minute, most of it one TensorFlow
start) feeds every entry of ``corpus.py`` to ``read_raw``, ``infer``, ``train``, ``export_to_tflite.py``,
``check_nnapi.py`` and ``benchmarks.run``; each test below asserts one group of answers and lists the
failing entries with what went wrong.  ``ISP_TF_SLOW=1`` adds the cases that build a model before
they fail (``report.py`` always runs them).
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import corpus  # noqa: E402
import run_corpus  # noqa: E402


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    slow = os.environ.get("ISP_TF_SLOW", "") not in ("", "0")
    return run_corpus.run_all(tmp_path_factory.mktemp("corpus"), slow=slow)


def _failures(outcomes, via=None):
    bad = [o for o in outcomes if (via is None or o.via.split(" ")[0] in via) and not o.passed]
    return "\n".join(f"{o.via} {o.label}: {o.problems} partial={o.partial} crash={o.crash} hang={o.hang} "
                     f"rc={o.rc} :: {o.message[:200]}" for o in bad)


def test_the_corpus_has_every_input_the_issue_names(tmp_path):
    entries = corpus.build(tmp_path)
    names = {e.label for e in entries}
    raw = {e.name for e in corpus.by_kind(entries, "raw")}
    for required in ("empty.dng", "random.nef", "notes.cr2", "ifd_past_end.dng", "scrambled_tags_0.dng",
                     "strip_bytes_half.dng", "cfa_3x3.dng", "cfa_6x6_xtrans.dng", "bits_per_sample_7.dng",
                     "bits_per_sample_32.dng", "zero_width.dng", "mosaic_1x1.dng", "mosaic_2x2.dng",
                     "linear_rgb.dng", "rgb_tiff.nef", "photo_jpeg.cr2", "photo_png.arw", "folder.dng",
                     "loop.dng", "missing.dng", "non_utf8_noise", "tiny_22x22.dng", "non_utf8_valid"):
        assert required in raw, required
    cuts = sorted(int(e.name.split("_")[1]) for e in corpus.by_kind(entries, "raw") if e.name.startswith("cut_"))
    size = int(next(e for e in entries if e.name.startswith("cut_")).name.split("_of_")[1].split(".")[0])
    assert cuts[0] <= 8 and cuts[-1] >= 0.98 * size and len(cuts) >= 12  # a few bytes to 99%
    assert {f"valid/cfa_{p}.dng" for p in ("RGGB", "GRBG", "GBRG", "BGGR")} <= {
        f"valid/{e.path.name}" for e in corpus.by_kind(entries, "raw", "ok")}
    assert {e.corner for e in corpus.by_kind(entries, "raw", "ok") if e.name.startswith("orientation_")} == {
        "tl", "tr", "bl", "br"} and sum(e.name.startswith("orientation_") for e in entries) == 8
    assert {"odd_37x53_RGGB.dng", "odd_36x53_BGGR.dng", "odd_41x48_GBRG.dng"} <= raw  # odd heights, widths
    for label in ("tflite/empty.tflite", "tflite/truncated_50pct.tflite", "tflite/random.tflite",
                  "tflite/custom_op.tflite", "tflite/dynamic_shape.tflite", "tflite/other_model_rgb.tflite",
                  "weights/invisp.weights.h5", "weights/truncated.weights.h5", "weights/random.weights.h5",
                  "recipe/invalid.json", "recipe/unknown_key.json", "recipe/negative_lr.json",
                  "recipe/zero_batch.json", "recipe/zero_steps.json", "cli/export_input_size_0x0",
                  "cli/export_input_size_7x5", "cli/export_input_size_big", "cli/infer_tile_negative",
                  "cli/bench_resolution_0x0", "cli/infer_out_folder_missing", "cli/bench_json_folder_missing"):
        assert label in names, label
    assert all(e.path.exists() or e.path.is_symlink() or e.name == "missing.dng"
               for e in entries if e.path is not None and e.kind != "cli")


def test_read_raw_raises_the_specific_error_naming_the_file(outcomes):
    assert not _failures(outcomes, ("read_raw",)), _failures(outcomes, ("read_raw",))
    assert sum(o.via == "read_raw" for o in outcomes) >= 60


def test_infer_reports_each_bad_file_and_writes_the_good_ones(outcomes):
    """One classical infer over every RAW entry (exit 1), one bad file alone (exit 2), the network
    renderer on a batch: the PNGs of the valid files have the right size and orientation."""
    fails = _failures(outcomes, ("infer", "infer-network"))
    assert not fails, fails
    valid = [o for o in outcomes if o.via == "infer" and o.expect == "ok" and o.kind == "raw"]
    assert len(valid) >= 18
    assert any(o.via == "infer-network" and o.expect == "ok" for o in outcomes)


def test_train_export_and_infer_options_fail_cleanly(outcomes):
    fails = _failures(outcomes, ("train", "export", "export_to_tflite", "isp_tf.train"))
    assert not fails, fails
    kinds = {(o.via, o.kind) for o in outcomes}
    assert {("train", "recipe"), ("train", "weights"), ("export", "weights"), ("infer", "weights"),
            ("export", "cli"), ("train", "cli"), ("infer", "cli")} <= kinds


def test_check_nnapi_and_benchmarks_refuse_bad_tflite_files(outcomes):
    fails = _failures(outcomes, ("check_nnapi", "check_nnapi.py", "benchmarks"))
    assert not fails, fails
    verdicts = [o for o in outcomes if o.via == "check_nnapi" and o.expect == "verdict"]
    assert {o.label for o in verdicts} == {"tflite/custom_op.tflite", "tflite/dynamic_shape.tflite"}


def test_nothing_crashed_hung_or_left_files(outcomes):
    assert not [o.label for o in outcomes if o.crash or o.hang or o.partial]
    assert all(o.passed for o in outcomes), _failures(outcomes)
