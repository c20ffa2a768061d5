"""A bounded fuzz run of isp_tf's DNG/TIFF metadata and .tflite flatbuffer parsing (see fuzz.py).

Fixed libFuzzer seed and a fixed number of inputs (``ISP_TF_FUZZ_RUNS`` overrides both targets'
counts); longer runs: ``python tests/reliability/fuzz.py raw --seconds 600``.
"""
import os
import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
#: inputs per target in CI: a few seconds each on a loaded 2-core machine
RUNS = {"raw": 120, "tflite": 2000}


def _need_atheris():
    try:
        import atheris  # noqa: F401
    except ImportError:
        msg = "atheris is not installed (pip install -e .[test])"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.mark.parametrize("target", sorted(RUNS))
def test_fuzz_finds_no_crash(target, tmp_path):
    _need_atheris()
    runs = int(os.environ.get("ISP_TF_FUZZ_RUNS", "0") or 0) or RUNS[target]
    proc = subprocess.run([sys.executable, str(HERE / "fuzz.py"), target, "--runs", str(runs),
                           "--artifacts", str(tmp_path)], capture_output=True, text=True, timeout=600,
                          cwd=str(HERE.parents[1]), env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    log = proc.stdout + proc.stderr
    crashes = sorted(p.name for p in tmp_path.iterdir())
    assert proc.returncode == 0 and not crashes, (
        f"fuzzing {target} crashed; reproducer(s) {crashes} (copy them to tests/reliability/fuzz_crashes/"
        f"{target}/ and fix the parser):\n{log[-4000:]}")
    assert f"Done {runs} runs" in log, log[-2000:]
    assert (HERE / "fuzz_seeds" / target).is_dir() and any((HERE / "fuzz_seeds" / target).iterdir())
